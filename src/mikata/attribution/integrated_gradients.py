"""Integrated Gradients (Sundararajan et al. 2017) with batched steps and a completeness check.

``attr = (x - x0) * sum_k w_k * grad f(x0 + a_k (x - x0))``; the steps run in chunks under a memory
budget, every target rank shares each chunk's forward. Quadrature as Captum's: Gauss-Legendre
(default, accurate with few steps) or Riemann left/right/middle/trapezoid. ``delta`` is
``sum(attr) - (f(x) - f(x0))`` per image: completeness says it should be ~0.

Example:
    >>> attrs, delta = integrated_gradients(handle, x, ids, baseline="black", steps=64)   # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from mikata.attribution.batching import DEFAULT_BUDGET_MB, chunk_size
from mikata.attribution.passes import gradient_pass
from mikata.devices import for_chunks
from mikata.errors import ChoiceError, check_choices
from mikata.models.handle import ModelHandle

BASELINES = ("black", "zero", "blur", "noise")
QUADRATURES = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")


def quadrature(steps: int, method: str = "gausslegendre") -> tuple[list[float], list[float]]:
    """``(alphas, weights)`` on [0, 1] for ``steps`` points, as Captum's approximation methods."""
    if method == "gausslegendre":
        pts, wts = np.polynomial.legendre.leggauss(steps)
        return list(0.5 * (pts + 1)), list(0.5 * wts)
    if method == "riemann_trapezoid":
        if steps < 2:
            raise ValueError("riemann_trapezoid needs at least 2 steps")
        a = list(np.linspace(0, 1, steps))
        w = [1 / (steps - 1)] * steps
        w[0] = w[-1] = 0.5 / (steps - 1)
        return a, w
    offsets = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}
    check_choices("quadrature", method, QUADRATURES)
    return [(k + offsets[method]) / steps for k in range(steps)], [1 / steps] * steps


def make_baseline(handle: ModelHandle, x: torch.Tensor, kind: str | torch.Tensor, seed: int = 0,
                  blur_sigma: float = 10.0) -> torch.Tensor:
    """A baseline like ``x``: black pixels, zeros (the mean image after normalization), a Gaussian
    blur of ``x``, or uniform pixel noise; or a given tensor broadcast to ``x``."""
    if isinstance(kind, torch.Tensor):
        return kind.to(x).expand_as(x)
    mean = torch.tensor(handle.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(handle.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    if kind == "black":
        return ((0 - mean) / std).expand_as(x).clone()
    if kind == "zero":
        return torch.zeros_like(x)
    if kind == "noise":
        gen = torch.Generator(device=x.device).manual_seed(seed)
        return (torch.rand(x.shape, generator=gen, dtype=x.dtype, device=x.device) - mean) / std
    if kind == "blur":
        radius = int(3 * blur_sigma)
        r = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
        k = torch.exp(-r.pow(2) / (2 * blur_sigma**2))
        k = k / k.sum()
        c = x.shape[1]
        y = F.pad(x, (radius, radius, radius, radius), mode="replicate")
        y = F.conv2d(y, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
        return F.conv2d(y, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    raise ChoiceError("baseline", kind, list(BASELINES))


def integrated_gradients(
    handle: ModelHandle,
    x: torch.Tensor,
    ids: torch.Tensor,
    baseline: str | torch.Tensor = "black",
    steps: int = 32,
    method: str = "gausslegendre",
    seed: int = 0,
    budget_mb: float = DEFAULT_BUDGET_MB,
    progress: bool = False,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per target rank: attributions ``(N, C, H, W)`` and completeness deltas ``(N,)``."""
    x0 = make_baseline(handle, x, baseline, seed)
    diff = x - x0  # (N, C, H, W)
    alphas, weights = quadrature(steps, method)
    n, t = x.shape[0], ids.shape[1]
    acc = [torch.zeros_like(x) for _ in range(t)]

    def run(start: int, stop: int) -> None:
        a = torch.tensor(alphas[start:stop], dtype=x.dtype, device=x.device).view(-1, 1, 1, 1, 1)
        w = torch.tensor(weights[start:stop], dtype=x.dtype, device=x.device).view(-1, 1, 1, 1, 1)
        xs = (x0[None] + a * diff[None]).reshape(-1, *x.shape[1:])  # (m*N, C, H, W)
        p = gradient_pass(handle, xs, ids.repeat(stop - start, 1), modes={"plain": ("input",)})
        for k in range(t):
            acc[k] += (p.input_grads["plain"][k].view(stop - start, n, *x.shape[1:]) * w).sum(0)

    for_chunks(steps, max(1, chunk_size(x, budget_mb) // n), run, device=x.device, progress=progress,
               desc="integrated-gradients")
    with torch.inference_mode():
        ends = handle.model(torch.cat([x, x0]))  # (2N, K)
    f_x, f_0 = ends[:n].gather(1, ids), ends[n:].gather(1, ids)  # (N, T)
    attrs = [diff * g for g in acc]
    deltas = [attrs[k].sum(dim=(1, 2, 3)) - (f_x[:, k] - f_0[:, k]) for k in range(t)]
    return attrs, deltas


def run(ctx) -> tuple[list[torch.Tensor], dict]:
    """Registry entry point (``catalog.py``): attributions and the completeness delta per rank."""
    attrs, deltas = integrated_gradients(ctx.handle, ctx.x, ctx.ids, budget_mb=ctx.budget_mb,
                                         progress=ctx.progress, **ctx.options)
    return attrs, {"completeness_delta": [d.tolist() for d in deltas]}
