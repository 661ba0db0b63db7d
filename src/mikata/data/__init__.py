"""Reading images and datasets.

The names below resolve on first use: ``mikata.data.filenames`` (file names in every error line),
``datasets`` and ``images`` need no torch, so a command that only reads a run (audit, check, merge)
does not pay torch's import through this package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mikata.lazy import lazy_names

if TYPE_CHECKING:
    from mikata.data.datasets import (
        DatasetError,
        ImageDataset,
        Sample,
        folder_dataset,
        load_dataset,
        manifest_dataset,
        parse_fractions,
        split_dataset,
    )
    from mikata.data.images import IMAGE_EXTENSIONS, is_image_file, load_image, to_8bit
    from mikata.data.preprocessing import Preprocessing

# public name -> module, imported on first use (mikata.lazy)
_NAMES = {
    "IMAGE_EXTENSIONS": "mikata.data.images", "is_image_file": "mikata.data.images",
    "load_image": "mikata.data.images", "to_8bit": "mikata.data.images",
    "Preprocessing": "mikata.data.preprocessing",
    **{name: "mikata.data.datasets" for name in ("DatasetError", "ImageDataset", "Sample", "folder_dataset",
                                                 "load_dataset", "manifest_dataset", "parse_fractions",
                                                 "split_dataset")},
}

__all__ = ["DatasetError", "IMAGE_EXTENSIONS", "ImageDataset", "Preprocessing", "Sample", "folder_dataset",
           "is_image_file", "load_dataset", "load_image", "manifest_dataset", "parse_fractions", "split_dataset",
           "to_8bit"]


__getattr__, __dir__ = lazy_names(__name__, _NAMES)
