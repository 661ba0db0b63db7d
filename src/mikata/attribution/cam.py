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
    activations (class independent), negatives clamped as in pytorch-grad-cam.

    An SVD component's sign is arbitrary (pytorch-grad-cam keeps whatever LAPACK returns, so its map
    can come out inverted). Convention here: the projection correlates positively with the
    channel-mean activation, i.e. the map is high where the layer is active overall.
    """
    n, c, h, w = acts.shape
    flat = acts.reshape(n, c, h * w).transpose(1, 2).double()  # (N, hw, C)
    flat = flat - flat.mean(dim=1, keepdim=True)
    _, _, vh = torch.linalg.svd(flat, full_matrices=False)  # vh: (N, C, C)
    proj = (flat @ vh[:, 0, :, None])[..., 0]  # (N, hw)
    mean_act = flat.mean(dim=2)  # (N, hw): channel-mean activation, centred
    sign = torch.where((proj * mean_act).sum(1) < 0, -1.0, 1.0).to(proj.dtype)  # (N,)
    return (proj * sign[:, None]).reshape(n, h, w).float().clamp_min(0)


# ---------------------------------------------------------------- registry entry points (see catalog.py)
def run_gradient_cam(fn):
    """A registry ``run`` for a gradient-weighted CAM ``fn(acts, grads)``: one map per target rank."""

    def run(ctx) -> tuple[list[torch.Tensor], dict]:
        grads = ctx.shared.layer_grads["plain"]  # T x (N, C, h, w)
        return [fn(ctx.shared.activation, g) for g in grads], {}

    return run


def run_eigencam(ctx) -> tuple[list[torch.Tensor], dict]:
    """EigenCAM is class independent: the same map for every target rank."""
    return [eigencam(ctx.shared.activation)] * ctx.ids.shape[1], {}
