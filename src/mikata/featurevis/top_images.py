"""The real images that activate a unit most, to show beside its synthetic image.

One ranking rule for every "images that activate a unit most" in mikata: an image's score is the
channel's mean activation over space, the highest ``k`` scores win, and among equal scores the
earlier image (lower row, earlier file) wins. ``top_k_rows`` ranks one column of scores held in
memory (a run's stored channel means: ``mikata units``, ``analysis.audit.top_activating``);
``TopActivating`` keeps the same ranking over batches that stream past (``top_activating_images``:
image files through the network, inference mode, the forward stopped at the layer). Files that
cannot be decoded are skipped and recorded, never fatal.

Example:
    >>> top = top_activating_images(handle, "photos/", "blocks.5", [0, 1, 2], k=4)   # doctest: +SKIP
    >>> top.best[0][0]                                                                # doctest: +SKIP
    ('photos/chelsea.png', 3.71)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
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


def top_k_rows(scores: np.ndarray, k: int, order: np.ndarray | None = None) -> np.ndarray:
    """Indices of the ``k`` highest of the 1-D ``scores``, highest first; equal scores: the lower
    ``order`` (default: the index itself) first. NaN ranks below every number.

    Linear in ``len(scores)`` (a partition, then a sort of the ``k`` kept): a million-row run's
    channel column costs milliseconds, not a full sort per channel.
    """
    scores = np.asarray(scores, np.float64)
    order = np.arange(len(scores)) if order is None else np.asarray(order)
    k = max(0, min(int(k), len(scores)))
    if k == 0:
        return np.zeros(0, np.int64)
    s = np.where(np.isnan(scores), -np.inf, scores)
    kth = np.partition(s, len(s) - k)[len(s) - k]  # the k-th highest score
    above = np.flatnonzero(s > kth)
    tied = np.flatnonzero(s == kth)
    tied = tied[np.argsort(order[tied], kind="stable")][:k - len(above)]  # the earliest of the tied
    top = np.concatenate([above, tied])
    return top[np.lexsort((order[top], -s[top]))].astype(np.int64)


class TopActivating:
    """The ``k`` best rows per channel of score batches ``(n, C)`` that arrive one after another, ranked
    as ``top_k_rows`` ranks all of them at once (rows are numbered in arrival order)."""

    def __init__(self, channels: Sequence[int], k: int) -> None:
        self.channels = [int(c) for c in channels]
        self.k = int(k)
        self.rows = 0  # rows seen so far
        self._best = {c: (np.zeros(0), np.zeros(0, np.int64)) for c in self.channels}  # (scores, rows)

    def add(self, scores: np.ndarray) -> None:
        """Rank one batch ``(n, C)`` of per-channel scores of the next ``n`` rows."""
        scores = np.asarray(scores, np.float64)
        new = np.arange(self.rows, self.rows + len(scores))
        for c in self.channels:
            vals, rows = self._best[c]
            vals, rows = np.concatenate([vals, scores[:, c]]), np.concatenate([rows, new])
            keep = top_k_rows(vals, self.k, order=rows)
            self._best[c] = (vals[keep], rows[keep])
        self.rows += len(scores)

    def best(self) -> dict[int, list[tuple[int, float]]]:
        """``channel -> [(row, score), ...]`` best first."""
        return {c: [(int(r), float(v)) for v, r in zip(*self._best[c])] for c in self.channels}


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
    ranking = TopActivating(channels, k)
    files: list[str] = []  # the decoded files, in ranking row order
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
            a = run(torch.stack(inputs).to(handle.device, non_blocking=True))[layer]  # (n, C, h, w) or (n, C)
            bad = [c for c in channels if not 0 <= c < a.shape[1]]
            if bad:
                raise ChoiceError("channel", bad[0], [f"0..{a.shape[1] - 1}"], hint=f"layer {layer!r}")
            means = (a.flatten(2).mean(2) if a.dim() > 2 else a).float().cpu()  # (n, C)
            ranking.add(means.numpy())
            files += good
            result.scanned += len(good)
    result.best = {c: [(files[r], v) for r, v in best] for c, best in ranking.best().items()}
    return result
