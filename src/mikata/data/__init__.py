"""Reading images and datasets.

The names below resolve on first use: ``mikata.data.filenames`` (file names in every error line),
``datasets`` and ``images`` need no torch, so a command that only reads a run (audit, check, merge)
does not pay torch's import through this package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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

# public name -> module; resolved on first use, then kept as a module attribute
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


def __getattr__(name: str):
    if name in _NAMES:
        import importlib

        value = getattr(importlib.import_module(_NAMES[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'mikata.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_NAMES))
