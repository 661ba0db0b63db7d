"""The real images that activate a unit most, to show beside its synthetic image.

Streams image files through the network in batches (inference mode, stopping the forward at the
layer), scores each image by the mean activation of each channel over space, and keeps the top
``k`` per channel. Files that cannot be decoded are skipped and recorded, never fatal.

Example:
    >>> top = top_activating_images(handle, "photos/", "blocks.5", [0, 1, 2], k=4)   # doctest: +SKIP
    >>> top.best[0][0]                                                                # doctest: +SKIP
    ('photos/chelsea.png', 3.71)
"""

from __future__ import annotations

import heapq
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import torch

from mikata.data import is_image_file, load_image
from mikata.errors import ChoiceError, ImageDecodeError
from mikata.featurevis.forward import recording
from mikata.hooks import preserved
from mikata.models.handle import ModelHandle


@dataclass
class TopImages:
    """``best[channel]`` = ``[(path, mean activation), ...]`` best first; ``skipped`` = ``[(path, reason)]``."""

    layer: str
    best: dict[int, list[tuple[str, float]]]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    scanned: int = 0


def _image_paths(folder_or_paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[str]:
    if isinstance(folder_or_paths, (str, os.PathLike)) and Path(folder_or_paths).is_dir():
        return sorted(str(p) for p in Path(folder_or_paths).rglob("*") if p.is_file() and is_image_file(p))
    if isinstance(folder_or_paths, (str, os.PathLike)):
        return [str(folder_or_paths)]
    return [str(p) for p in folder_or_paths]


def top_activating_images(
    handle: ModelHandle,
    folder_or_paths: str | os.PathLike | Iterable[str | os.PathLike],
    layer: str,
    channels: Sequence[int],
    k: int = 9,
    batch_size: int = 32,
) -> TopImages:
    """The ``k`` files whose mean activation of each channel of ``layer`` is highest."""
    paths = _image_paths(folder_or_paths)
    channels = [int(c) for c in channels]
    heaps: dict[int, list[tuple[float, int, str]]] = {c: [] for c in channels}
    result = TopImages(layer, {}, [])
    mode = handle.mode
    with preserved(handle.net), torch.inference_mode(), recording(handle, [layer]) as run:
        handle.net.eval()
        for start in range(0, len(paths), batch_size):
            good, inputs = [], []
            for p in paths[start:start + batch_size]:
                try:  # one image at a time: a file too large to resize is skipped, not the batch
                    inputs.append(handle.preprocess([load_image(p, mode=mode)])[0])  # (C, H, W)
                    good.append(p)
                except ImageDecodeError as e:
                    result.skipped.append((p, e.reason))
            if not inputs:
                continue
            a = run(torch.stack(inputs))[layer]  # (n, C, h, w) or (n, C)
            bad = [c for c in channels if not 0 <= c < a.shape[1]]
            if bad:
                raise ChoiceError("channel", bad[0], [f"0..{a.shape[1] - 1}"], hint=f"layer {layer!r}")
            means = a.flatten(2).mean(2) if a.dim() > 2 else a  # (n, C)
            for c in channels:
                for j, v in enumerate(means[:, c].tolist()):
                    item = (v, -(start + j), good[j])  # ties: the earlier file wins
                    if len(heaps[c]) < k:
                        heapq.heappush(heaps[c], item)
                    else:
                        heapq.heappushpop(heaps[c], item)
            result.scanned += len(good)
    result.best = {c: [(p, v) for v, _, p in sorted(h, reverse=True)] for c, h in heaps.items()}
    return result
