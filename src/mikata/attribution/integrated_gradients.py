"""Integrated Gradients (Sundararajan et al. 2017) with batched steps and a completeness check.

``attr = (x - x0) * sum_k w_k * grad f(x0 + a_k (x - x0))``; the steps run in chunks under a memory
budget, every target rank shares each chunk's forward. Quadrature as Captum's: Gauss-Legendre
(default, accurate with few steps) or Riemann left/right/middle/trapezoid. ``delta`` is
``sum(attr) - (f(x) - f(x0))`` per image: completeness says it should be ~0. The baseline ``x0``
(``mikata.attribution.baselines``; default the image's mean colour) can be several (``expected``, or
names with commas): the attribution is then the mean of one IG per baseline, and completeness holds
against the mean of their ``f(x0)``.

Example:
    >>> attrs, delta = integrated_gradients(handle, x, ids, baseline="expected", steps=64)   # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import torch

from mikata.attribution.baselines import DEFAULT, baseline_label, make_baseline, make_baselines  # noqa: F401
from mikata.attribution.batching import DEFAULT_BUDGET_MB, chunk_size
from mikata.attribution.passes import gradient_pass
from mikata.devices import for_chunks
from mikata.errors import check_choices
from mikata.models.handle import ModelHandle

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


def integrated_gradients(
    handle: ModelHandle,
    x: torch.Tensor,
    ids: torch.Tensor,
    baseline: str | torch.Tensor = DEFAULT,
    steps: int = 32,
    method: str = "gausslegendre",
    seed: int = 0,
    budget_mb: float = DEFAULT_BUDGET_MB,
    progress: bool = False,
    baselines: int = 1,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per target rank: attributions ``(N, C, H, W)`` and completeness deltas ``(N,)``, averaged over the
    baselines ``baseline`` names (``baselines`` draws of each random one)."""
    refs = make_baselines(handle, x, baseline, baselines, seed)
    attrs: list[torch.Tensor] = []
    deltas: list[torch.Tensor] = []
    for x0 in refs:
        a, d = _one_baseline(handle, x, x0, ids, steps, method, budget_mb, progress)
        attrs = a if not attrs else [u + v for u, v in zip(attrs, a)]
        deltas = d if not deltas else [u + v for u, v in zip(deltas, d)]
    return [a / len(refs) for a in attrs], [d / len(refs) for d in deltas]


def _one_baseline(handle: ModelHandle, x: torch.Tensor, x0: torch.Tensor, ids: torch.Tensor, steps: int, method: str,
                  budget_mb: float, progress: bool) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
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
    return attrs, {"completeness_delta": [d.tolist() for d in deltas],
                   "baseline": baseline_label(ctx.options.get("baseline", DEFAULT), ctx.options.get("baselines", 1))}
