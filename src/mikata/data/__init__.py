"""Reading images and datasets."""

from mikata.data.images import IMAGE_EXTENSIONS, is_image_file, load_image, to_8bit
from mikata.data.preprocessing import Preprocessing

__all__ = ["IMAGE_EXTENSIONS", "Preprocessing", "is_image_file", "load_image", "to_8bit"]
from mikata.data.datasets import (  # noqa: E402
    DatasetError,
    ImageDataset,
    Sample,
    folder_dataset,
    load_dataset,
    manifest_dataset,
    parse_fractions,
    split_dataset,
)

__all__ += ["DatasetError", "ImageDataset", "Sample", "folder_dataset", "load_dataset", "manifest_dataset",
            "parse_fractions", "split_dataset"]
