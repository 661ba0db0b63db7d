"""Random transforms applied to the image before each forward: robustness makes features legible.

Each transform takes ``(x, generator)`` and returns a new batch; all randomness comes from the
explicit ``torch.Generator``, so a seed reproduces the run. Scale and rotation are drawn per image
and applied together with one ``affine_grid`` + ``grid_sample`` (a single resampling pass).

Example:
    >>> g = torch.Generator().manual_seed(0)
    >>> t = standard_transforms(jitter_px=8)
    >>> apply(t, torch.rand(2, 3, 64, 64), g).shape
    torch.Size([2, 3, 78, 78])
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def pad(width: int, value: float = 0.5) -> Transform:
    """Pad with a constant gray border so that jitter and rotation do not wrap the edges in."""
    return lambda x, g: F.pad(x, [width] * 4, mode="constant", value=value)


def jitter(d: int) -> Transform:
    """A random crop ``d`` pixels smaller: shifts the image by 0..d-1 pixels in each direction."""

    def fn(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        if d <= 1:
            return x
        dy, dx = torch.randint(0, d, (2,), generator=g).tolist()
        h, w = x.shape[-2:]
        return x[..., dy:h - d + 1 + dy, dx:w - d + 1 + dx]

    return fn


def scale_rotate(scales: Sequence[float] = (1.0,), degrees: Sequence[float] = (0.0,)) -> Transform:
    """Per image: a random scale and rotation (chosen from the lists), in one resampling pass."""
    scales_t = torch.tensor(list(scales), dtype=torch.float32)
    angles_t = torch.tensor(list(degrees), dtype=torch.float32) * math.pi / 180

    def fn(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        n = x.shape[0]
        s = scales_t[torch.randint(0, len(scales_t), (n,), generator=g)]
        a = angles_t[torch.randint(0, len(angles_t), (n,), generator=g)]
        if bool((s == 1).all() and (a == 0).all()):
            return x
        cos, sin = a.cos() / s, a.sin() / s
        theta = torch.stack([torch.stack([cos, -sin, torch.zeros(n)], 1),
                             torch.stack([sin, cos, torch.zeros(n)], 1)], 1).to(x)  # (N, 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    return fn


def standard_transforms(jitter_px: int = 8, pad_width: int = 12, scale: float = 0.1, degrees: float = 10) -> list[Transform]:
    """lucid/lucent's standard robustness: pad 12, jitter 8, scale ±10 %, rotate ±10°, jitter 4."""
    scales = [1 + scale * (i - 5) / 5 for i in range(11)] if scale else [1.0]
    angles = list(range(-int(degrees), int(degrees) + 1)) + 5 * [0] if degrees else [0.0]
    out = [pad(pad_width)] if pad_width else []
    out += [jitter(jitter_px), scale_rotate(scales, angles), jitter(max(1, jitter_px // 2))]
    return out


def apply(transforms: Sequence[Transform], x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    for t in transforms:
        x = t(x, generator)
    return x
