"""Penalties on the image itself, per image ``(N,)``, subtracted from the objective.

Each also exists as an ``Objective`` on the input (``tv``, ``lp``, ``blur``, reading the pseudo-layer
``INPUT``), so regularizers compose with unit objectives by arithmetic, as in Lucid:
``channel("blocks.5", 3) - 0.05 * tv() - 0.01 * lp(6)``. ``RenderOptions``' ``tv`` / ``lp`` / ``blur``
weights are turned into the same objectives (``penalty``).

Example:
    >>> x = torch.rand(2, 3, 32, 32)
    >>> total_variation(x).shape, lp_norm(x, p=2).shape
    (torch.Size([2]), torch.Size([2]))
    >>> (2.0 * tv() + lp(2))({INPUT: x}).shape
    torch.Size([2])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mikata.featurevis.objectives import INPUT, Objective


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


# ------------------------------------------------------------------------ the same, as objectives
def tv(beta: float = 2.0) -> Objective:
    """Total variation of the input as an objective (subtract it: ``obj - w * tv()``)."""
    return Objective(lambda acts: total_variation(acts[INPUT], beta), (INPUT,), f"tv(beta={beta:g})")


def lp(p: float = 6.0) -> Objective:
    """The Lp penalty of the input as an objective."""
    return Objective(lambda acts: lp_norm(acts[INPUT], p), (INPUT,), f"lp(p={p:g})")


def blur() -> Objective:
    """The blur penalty of the input as an objective."""
    return Objective(lambda acts: blur_penalty(acts[INPUT]), (INPUT,), "blur")


def penalty(tv_weight: float = 0.0, tv_beta: float = 2.0, lp_weight: float = 0.0, lp_p: float = 6.0,
            blur_weight: float = 0.0) -> Objective | None:
    """The weighted sum of the regularizers with a non-zero weight (None when all are zero)."""
    terms = [w * term for w, term in ((tv_weight, tv(tv_beta)), (lp_weight, lp(lp_p)), (blur_weight, blur())) if w]
    total = None
    for term in terms:
        total = term if total is None else total + term
    return total
