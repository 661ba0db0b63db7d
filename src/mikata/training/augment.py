"""Batch augmentation on normalized input tensors: flip, translate, scale in one resampling.

All randomness comes from the caller's ``torch.Generator``; one ``grid_sample`` applies every
change at once, so augmenting a batch costs far less than a forward pass.

Example:
    >>> g = torch.Generator().manual_seed(0)
    >>> augment_batch(torch.zeros(2, 3, 8, 8), Augment(hflip=True, translate=2), g).shape
    torch.Size([2, 3, 8, 8])
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from mikata.training.options import Augment


def augment_batch(x: torch.Tensor, aug: Augment, generator: torch.Generator) -> torch.Tensor:
    """Randomly flipped / shifted / zoomed copy of ``x`` ``(N, C, H, W)``; edges repeat the border."""
    if not aug.active:
        return x
    n, _, h, w = x.shape
    flip = torch.ones(n)
    if aug.hflip:
        flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    lo, hi = aug.scale
    # A zoom factor z > 1 enlarges the content: the grid then samples a region 1/z as wide.
    zoom = lo + (hi - lo) * torch.rand(n, generator=generator)
    shift = torch.zeros(n, 2)
    if aug.translate:
        pixels = torch.randint(-aug.translate, aug.translate + 1, (n, 2), generator=generator).float()
        shift = pixels * torch.tensor([2.0 / w, 2.0 / h])  # normalized grid units
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = flip / zoom
    theta[:, 1, 1] = 1.0 / zoom
    theta[:, :, 2] = -shift
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)  # (N, H, W, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
