"""Penalties on the image itself, per image ``(N,)``, subtracted from the objective.

Example:
    >>> x = torch.rand(2, 3, 32, 32)
    >>> total_variation(x).shape, lp_norm(x, p=2).shape
    (torch.Size([2]), torch.Size([2]))
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def lp_norm(x: torch.Tensor, p: float = 6.0) -> torch.Tensor:
    """Mean |x - 0.5|^p per image: keeps pixels off the extremes (the Keras/VGG example uses L2)."""
    return (x - 0.5).abs().pow(p).flatten(1).mean(1)  # (N,)


def total_variation(x: torch.Tensor, beta: float = 2.0) -> torch.Tensor:
    """Mean (dx² + dy²)^(β/2) per image (Mahendran & Vedaldi): lower means smoother."""
    dx = x[..., :-1, 1:] - x[..., :-1, :-1]  # (N, C, H-1, W-1)
    dy = x[..., 1:, :-1] - x[..., :-1, :-1]
    return (dx * dx + dy * dy + 1e-8).pow(beta / 2).flatten(1).mean(1)  # (N,)


def blur_penalty(x: torch.Tensor) -> torch.Tensor:
    """Mean squared difference from a 3x3 box blur of itself: penalizes pixel-level noise."""
    c = x.shape[1]
    kernel = torch.full((c, 1, 3, 3), 1 / 9, dtype=x.dtype, device=x.device)
    blurred = F.conv2d(F.pad(x, [1] * 4, mode="replicate"), kernel, groups=c)
    return (x - blurred).pow(2).flatten(1).mean(1)  # (N,)
