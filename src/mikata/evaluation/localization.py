"""Localization against boxes or masks: the pointing game and the energy inside the box.

Pointing game (Zhang et al. 2016): a hit when a pixel holding the map's maximum lies inside the
object (Quantus' PointingGame: any of the tied maxima). Energy inside (Wang et al. 2020, Score-CAM's
energy-based pointing game): the share of the map's positive mass that falls inside the object,
``sum(max(m, 0) * mask) / sum(max(m, 0))``. Both are higher-is-better; an empty mask gives NaN.

Boxes come as a CSV ``file,x0,y0,x1,y1`` in ORIGINAL image pixels (several rows per file are
united); masks as PNG files named like the image (non-zero = object). Both are carried through the
model's own preprocessing (resize the shorter side, center crop) onto the input grid.

Example:
    >>> boxes = read_boxes("boxes.csv")                                      # doctest: +SKIP
    >>> mask = box_mask(handle, (w, h), boxes["chelsea.png"])                # doctest: +SKIP
    >>> pointing_game(maps, masks), energy_inside(maps, masks)              # doctest: +SKIP
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mikata.errors import MikataError
from mikata.models.handle import ModelHandle


class BoxesError(MikataError, ValueError):
    """A boxes CSV or mask file that cannot be used; the message says which row and why."""


def read_boxes(path: str | os.PathLike) -> dict[str, list[tuple[float, float, float, float]]]:
    """``{file name: [(x0, y0, x1, y1), ...]}`` from a CSV with rows ``file,x0,y0,x1,y1``
    (a header row is allowed). Keys are the file's base name and the path as written."""
    p = Path(path)
    if not p.is_file():
        raise BoxesError(f"boxes file {p} does not exist; give a CSV with rows file,x0,y0,x1,y1")
    out: dict[str, list] = {}
    with open(p, newline="") as f:
        for i, row in enumerate(csv.reader(f), 1):
            if not row or row[0].startswith("#"):
                continue
            if len(row) != 5:
                raise BoxesError(f"{p}:{i}: expected 5 columns file,x0,y0,x1,y1, got {len(row)}")
            try:
                box = tuple(float(v) for v in row[1:])
            except ValueError:
                if i == 1:
                    continue  # header
                raise BoxesError(f"{p}:{i}: x0,y0,x1,y1 must be numbers, got {row[1:]}") from None
            if box[2] <= box[0] or box[3] <= box[1]:
                raise BoxesError(f"{p}:{i}: need x1 > x0 and y1 > y0, got {box}")
            for key in {row[0].strip(), os.path.basename(row[0].strip())}:
                out.setdefault(key, []).append(box)
    return out


def _geometry(handle: ModelHandle, size: tuple[int, int]) -> tuple[float, float, int, int]:
    """(x scale, y scale, left, top) of ``ModelHandle.preprocess`` for an original image of ``size`` (w, h)."""
    rw, rh, left, top = handle.preprocessing.geometry(*size)
    return rw / size[0], rh / size[1], left, top


def box_mask(handle: ModelHandle, size: tuple[int, int], boxes: list[tuple[float, float, float, float]]) -> torch.Tensor:
    """``(H, W)`` bool mask on the model's input grid of boxes given in original pixels ``size`` (w, h)."""
    h, w = handle.input_size
    sx, sy, left, top = _geometry(handle, size)
    mask = torch.zeros(h, w, dtype=torch.bool)
    cy = torch.arange(h).view(-1, 1) + 0.5  # pixel centers in crop coordinates
    cx = torch.arange(w).view(1, -1) + 0.5
    for x0, y0, x1, y1 in boxes:
        mask |= ((cx + left) >= x0 * sx) & ((cx + left) <= x1 * sx) & ((cy + top) >= y0 * sy) & ((cy + top) <= y1 * sy)
    return mask


def mask_from_png(handle: ModelHandle, path: str | os.PathLike, size: tuple[int, int]) -> torch.Tensor:
    """``(H, W)`` bool mask from a mask image the size of the original (non-zero = object)."""
    with Image.open(path) as im:
        m = im.convert("L")
    if m.size != tuple(size):
        raise BoxesError(f"mask {path} is {m.size[0]}x{m.size[1]} but its image is {size[0]}x{size[1]}")
    h, w = handle.input_size
    rw, rh, left, top = handle.preprocessing.geometry(*size)
    m = m.resize((rw, rh), Image.NEAREST)
    arr = np.asarray(m.crop((left, top, left + w, top + h))) > 0
    return torch.from_numpy(arr.copy())


def pointing_game(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """``(N,)`` 1.0 when a maximum of ``maps[i]`` lies in ``masks[i]``, else 0.0; NaN for empty masks."""
    n = maps.shape[0]
    a, s = maps.reshape(n, -1).double(), masks.reshape(n, -1).bool()
    top = a == a.max(dim=1, keepdim=True).values
    hit = (top & s).any(dim=1).double()
    hit[s.sum(1) == 0] = float("nan")
    return hit


def energy_inside(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """``(N,)`` share of positive attribution inside the mask; NaN for empty masks."""
    n = maps.shape[0]
    a, s = maps.reshape(n, -1).double().clamp_min(0), masks.reshape(n, -1).double()
    out = (a * s).sum(1) / (a.sum(1) + 1e-12)
    out[s.sum(1) == 0] = float("nan")
    return out
