"""Reading images and datasets."""

from mikata.data.images import IMAGE_EXTENSIONS, is_image_file, load_image, to_8bit

__all__ = ["IMAGE_EXTENSIONS", "is_image_file", "load_image", "to_8bit"]
