"""Class activation maps from a layer's activations ``A`` ``(N, C, h, w)`` and gradients ``G``.

Each returns ``relu(sum_c w_c * A_c)`` (or LayerCAM's element-wise form) as ``(N, h, w)``, with the
weights of the paper; they match pytorch-grad-cam's definitions term by term.

Example:
    >>> gradcam(acts, grads).shape                                    # doctest: +SKIP
    torch.Size([N, 7, 7])
"""

from __future__ import annotations

import torch

EPS = 1e-6


def gradcam(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Selvaraju et al. 2017: channel weights = spatial mean of the gradient."""
    w = grads.mean(dim=(2, 3), keepdim=True)  # (N, C, 1, 1)
    return (w * acts).sum(1).clamp_min(0)


def gradcam_plus_plus(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Chattopadhay et al. 2018: pixel-wise alphas from second/third powers of the gradient."""
    g2 = grads.pow(2)
    g3 = g2 * grads
    sum_a = acts.sum(dim=(2, 3), keepdim=True)  # (N, C, 1, 1)
    alpha = g2 / (2 * g2 + sum_a * g3 + EPS)
    alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
    w = (grads.clamp_min(0) * alpha).sum(dim=(2, 3), keepdim=True)
    return (w * acts).sum(1).clamp_min(0)


def xgradcam(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Fu et al. 2020: weights = sum of gradient x activation / sum of activation."""
    sum_a = acts.sum(dim=(2, 3), keepdim=True)
    w = (grads * acts / (sum_a + EPS)).sum(dim=(2, 3), keepdim=True)
    return (w * acts).sum(1).clamp_min(0)


def layercam(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Jiang et al. 2021: element-wise positive gradient x activation."""
    return (grads.clamp_min(0) * acts).sum(1).clamp_min(0)


def eigencam(acts: torch.Tensor) -> torch.Tensor:
    """Muhammad & Yeasin 2020: projection on the first principal component of the centred
    activations (class independent). The SVD sign is arbitrary; like pytorch-grad-cam we keep the
    sign the SVD gives and clamp negatives."""
    n, c, h, w = acts.shape
    flat = acts.reshape(n, c, h * w).transpose(1, 2).double()  # (N, hw, C)
    flat = flat - flat.mean(dim=1, keepdim=True)
    _, _, vh = torch.linalg.svd(flat, full_matrices=False)  # vh: (N, C, C)
    proj = flat @ vh[:, 0, :, None]  # (N, hw, 1)
    return proj.reshape(n, h, w).float().clamp_min(0)


GRADIENT_CAMS = {"gradcam": gradcam, "gradcam++": gradcam_plus_plus, "xgradcam": xgradcam, "layercam": layercam}
