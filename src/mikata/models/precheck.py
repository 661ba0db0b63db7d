"""Arguments checked before expensive work: class names before the model is built, layers before
any image is decoded.

A typo in ``--target tabby`` should cost a second, not the minute a large model takes to load
(or the hour an evaluate takes before it reaches the class). The class names of a ``.safetensors``
checkpoint are in its metadata, read without building anything; the built-in EfficientNet-Lite
variants use ImageNet's names. Other specs (torchvision, timm, TorchScript, factories) only know
their names once built: for those the names are checked right after loading, still before any
image is decoded.

Example:
    >>> check_class_targets(["cat", "dog"], ["Dog", "top1", 1])
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

from mikata.errors import MikataError
from mikata.models.classes import class_index


def class_names_before_loading(spec: str | os.PathLike) -> tuple[str, ...] | None:
    """The class names model ``spec`` will have, read without building it; None when only building tells.

    A checkpoint whose metadata is unusable raises its ``CheckpointMetadataError`` here, which is
    what loading would raise a moment later."""
    from mikata.models.efficientnet_lite import VARIANTS
    from mikata.models.loading import imagenet_class_names, read_checkpoint_metadata

    spec = str(spec)
    if spec in VARIANTS:
        return imagenet_class_names()
    path = Path(spec)
    if path.suffix == ".safetensors" and path.is_file():
        return tuple(read_checkpoint_metadata(path)["class_names"])
    return None


def check_class_targets(names: Sequence[str] | None, targets: Iterable[int | str] | int | str | None) -> None:
    """Refuse unknown class names or ids among ``targets`` (``topK`` entries are fine); nothing to
    check when ``names`` is None (not known before loading)."""
    if names is None or targets is None:
        return
    if isinstance(targets, (str, int)):
        targets = [targets]
    for t in targets:
        if isinstance(t, str) and _is_topk(t):
            continue
        class_index(names, t)


def _is_topk(text: str) -> bool:
    import re

    return bool(re.fullmatch(r"\s*top-?\d+\s*", text.lower()))


def check_layer(net, layer: str | None) -> None:
    """Refuse a layer name the network does not have (listing the ones it has), before any image work."""
    if layer is None:
        return
    from mikata.hooks import get_layer

    get_layer(net, layer)


def check_at_least(name: str, value: float | int | None, low: float | int, hint: str = "") -> None:
    """``--name`` must be at least ``low`` (a count, a size): one line saying so."""
    if value is not None and value < low:
        raise MikataError(f"--{name} must be at least {low}, not {value}" + (f"; {hint}" if hint else ""))


def check_between(name: str, value: float | None, low: float, high: float, hint: str = "") -> None:
    """``--name`` must lie in ``[low, high]`` (a threshold, a fraction, a radius)."""
    if value is not None and not low <= value <= high:
        raise MikataError(f"--{name} must lie in {low}..{high}, not {value}" + (f"; {hint}" if hint else ""))
