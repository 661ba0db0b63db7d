"""Checking what a checkpoint's metadata may say: it is data from a file, never a choice of code.

A ``.safetensors`` checkpoint carries JSON metadata (architecture, classes, input size,
normalization). Every field is checked here before anything is built from it, so a damaged or
hostile file gives one ``CheckpointMetadataError`` naming the file and the field, instead of a
``KeyError`` deep in loading, a ``nan%`` from ``std`` 0, or a 100000x100000 probe forward.

Architectures named in a file come from a closed set: the built-in variants, ``torchvision:NAME``
and ``timm:NAME`` (plain registry names: no hub prefixes, no paths). ``package.module:factory``
strings are code; only the caller may type those.

Example:
    >>> check_input_size([224, 224], "input_size")
    (224, 224)
    >>> is_code_spec("os:abort")
    True
"""

from __future__ import annotations

import json
import math
import numbers
import re
from pathlib import Path
from typing import Iterable

from mikata.data.preprocessing import LEGACY_RESIZE, RESIZE_MODES
from mikata.errors import ModelLoadError

# Largest input side a model may claim. 4096 px covers every classifier in use; a larger claim
# makes the very first probe forward allocate gigabytes (3 x 100000^2 floats is 120 GB).
MAX_INPUT_SIDE = 4096
INTERPOLATIONS = ("bicubic", "bilinear", "nearest")
CHANNELS = (1, 3)  # what the decoder feeds: "L" or "RGB"
REQUIRED = ("architecture", "class_names", "input_size", "mean", "std")
_CODE_SPEC = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
_REGISTRY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")


class CheckpointMetadataError(ModelLoadError):
    """A checkpoint's metadata field is missing or unusable; names the file and the field."""

    def __init__(self, path: str | Path, field: str, problem: str):
        self.path, self.field = str(path), field
        super().__init__(f"{path}: checkpoint metadata field {field!r} {problem}; this file was not written by "
                         "mikata.save_checkpoint or was changed since: save the checkpoint again")


def is_code_spec(spec: str) -> bool:
    """Whether ``spec`` has the form ``package.module:factory`` (importing it runs code)."""
    return bool(_CODE_SPEC.fullmatch(str(spec)))


def check_registered_name(library: str, name: str, known: Iterable[str]) -> None:
    """Refuse a ``torchvision:``/``timm:`` name the library's registry does not list (no hub or URL forms)."""
    if not _REGISTRY_NAME.fullmatch(name) or name not in set(known):
        raise ModelLoadError(f"{library} has no registered model {name!r}; list them with "
                             f"{library}.{'models.list_models' if library == 'torchvision' else 'list_models'}()")


def check_input_size(size: object, field: str = "input_size", path: str | Path | None = None) -> tuple[int, int]:
    """``(height, width)``: two integers in 1..``MAX_INPUT_SIDE`` (bools and strings refused)."""
    def bad(problem: str) -> ModelLoadError:
        if path is not None:
            return CheckpointMetadataError(path, field, problem)
        return ModelLoadError(f"{field} {problem}")

    if not isinstance(size, (list, tuple)) or len(size) != 2:
        raise bad(f"must be [height, width], not {size!r}")
    if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in size):
        raise bad(f"must hold two integers, not {list(size)!r}")
    if not all(1 <= v <= MAX_INPUT_SIDE for v in size):
        raise bad(f"is {list(size)}: each side must be 1..{MAX_INPUT_SIDE} pixels")
    return int(size[0]), int(size[1])


def _numbers(path: Path, meta: dict, field: str, channels: int, positive: bool) -> list[float]:
    v = meta[field]
    if not isinstance(v, list) or not v or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
        raise CheckpointMetadataError(path, field, f"must be a list of numbers, not {v!r}")
    if len(v) != channels:
        raise CheckpointMetadataError(path, field, f"has {len(v)} values for {channels} input channels")
    if not all(math.isfinite(x) for x in v) or (positive and not all(x > 0 for x in v)):
        raise CheckpointMetadataError(path, field, f"is {v}: every value must be finite"
                                      + (" and above 0" if positive else ""))
    return [float(x) for x in v]


def validate_checkpoint_metadata(path: str | Path, raw: str, fmt: str) -> dict:
    """Parse and check the ``mikata`` metadata string of ``path``; returns the dict with every field usable."""
    path = Path(path)
    try:
        meta = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise ModelLoadError(f"{path}: the checkpoint metadata is not JSON ({e}); save the checkpoint again") from e
    if not isinstance(meta, dict):
        raise ModelLoadError(f"{path}: the checkpoint metadata is a JSON {type(meta).__name__}, not an object; "
                             "save the checkpoint again")
    if meta.get("format") != fmt:
        raise CheckpointMetadataError(path, "format", f"is {meta.get('format')!r}, not {fmt!r}")
    for key in REQUIRED:
        if key not in meta:
            raise CheckpointMetadataError(path, key, "is missing")
    if not isinstance(meta["architecture"], str) or not meta["architecture"]:
        raise CheckpointMetadataError(path, "architecture", f"must be a model name, not {meta['architecture']!r}")
    names = meta["class_names"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise CheckpointMetadataError(path, "class_names", "must be a non-empty list of strings")
    if len(set(names)) != len(names):
        raise CheckpointMetadataError(path, "class_names", "holds the same name twice")
    meta["input_size"] = list(check_input_size(meta["input_size"], "input_size", path))
    channels = meta.setdefault("in_channels", 3)
    if not isinstance(channels, int) or isinstance(channels, bool) or channels not in CHANNELS:
        raise CheckpointMetadataError(path, "in_channels", f"is {channels!r}; mikata feeds 1 (gray) or 3 (RGB)")
    meta["mean"] = _numbers(path, meta, "mean", channels, positive=False)
    meta["std"] = _numbers(path, meta, "std", channels, positive=True)
    crop = meta.setdefault("crop_fraction", 0.875)
    if not isinstance(crop, (int, float)) or isinstance(crop, bool) or not 0.05 <= crop <= 1:
        raise CheckpointMetadataError(path, "crop_fraction", f"is {crop!r}; it must be a number in 0.05..1")
    # a checkpoint written before ``resize`` existed was always read shorter-side-then-crop
    resize = meta.setdefault("resize", LEGACY_RESIZE)
    if resize not in RESIZE_MODES:
        raise CheckpointMetadataError(path, "resize", f"is {resize!r}; known: {', '.join(RESIZE_MODES)}")
    interp = meta.setdefault("interpolation", "bicubic")
    if interp not in INTERPOLATIONS:
        raise CheckpointMetadataError(path, "interpolation", f"is {interp!r}; known: {', '.join(INTERPOLATIONS)}")
    for key in ("default_layer", "head"):
        if meta.get(key) is not None and not isinstance(meta[key], str):
            raise CheckpointMetadataError(path, key, f"must be a layer name or null, not {meta[key]!r}")
    meta.setdefault("default_layer", None)
    if not isinstance(meta.setdefault("grayscale_data", False), bool):
        raise CheckpointMetadataError(path, "grayscale_data", f"is {meta['grayscale_data']!r}; it must be true or false")
    return meta
