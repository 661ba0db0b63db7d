"""Stability: max-sensitivity (Yeh et al. 2019) — how far a map moves under small input noise.

``max over s of ||Φ(x + δ_s) − Φ(x)||_F / ||Φ(x)||_F`` with ``δ_s`` drawn uniformly from the L∞
ball of radius ``radius`` in PIXEL units ([0, 1] intensities; converted to the model's normalized
input space channel by channel), ``samples`` draws from a seeded generator. The noisy maps are
explained for the same target classes as the clean ones. All samples of all images go through
``explain`` in one batch per sample (methods share their passes). Lower is better.

Example:
    >>> ms = max_sensitivity(handle, x, ["gradcam", "saliency"], ids, samples=8, radius=0.02)  # doctest: +SKIP
    >>> ms["gradcam"]          # (N,)                                                          # doctest: +SKIP
"""

from __future__ import annotations

from typing import Sequence

import torch

from mikata.attribution.batching import DEFAULT_BUDGET_MB
from mikata.models.handle import ModelHandle


def noise_batches(x: torch.Tensor, std: Sequence[float], samples: int, radius: float,
                  generator: torch.Generator) -> list[torch.Tensor]:
    """``samples`` perturbations ``δ`` shaped like ``x``, uniform in [-radius, radius] pixel units."""
    scale = torch.tensor(list(std), dtype=x.dtype).view(1, -1, 1, 1) if len(std) == x.shape[1] else 1.0
    return [(torch.rand(x.shape, generator=generator, dtype=x.dtype) * 2 - 1) * radius / scale for _ in range(samples)]


def sensitivity_ratio(original: torch.Tensor, perturbed: torch.Tensor) -> torch.Tensor:
    """``||perturbed − original|| / ||original||`` per image (Frobenius over the map): ``(N,)``; NaN
    where the original map is all zero (a relative change of nothing is undefined, not infinite)."""
    n = original.shape[0]
    a, b = original.reshape(n, -1).double(), perturbed.reshape(n, -1).double()
    norm = a.norm(dim=1)
    return torch.where(norm > 0, (b - a).norm(dim=1) / norm.clamp_min(1e-300), torch.nan)


def max_sensitivity(
    handle: ModelHandle,
    x: torch.Tensor,
    methods: Sequence[str],
    targets: torch.Tensor,
    samples: int = 8,
    radius: float = 0.02,
    layer: str | None = None,
    options: dict | None = None,
    original: dict[str, torch.Tensor] | None = None,
    seed: int = 0,
    noise: list[torch.Tensor] | None = None,
    budget_mb: float = DEFAULT_BUDGET_MB,
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """``{method: (N,)}`` max-sensitivity; ``noise`` overrides the drawn perturbations (tests)."""
    from mikata.evaluation.randomization import compute_maps

    ids = torch.as_tensor(targets, dtype=torch.long).view(-1)
    if original is None:
        original = compute_maps(handle, x, methods, ids, layer, options, budget_mb)
    if noise is None:
        noise = noise_batches(x, handle.std, samples, radius, torch.Generator().manual_seed(seed))
    worst = {m: torch.full((x.shape[0],), float("-inf"), dtype=torch.float64) for m in methods}
    it = noise
    if progress and len(noise) > 2:
        from mikata.progress import progress as bar

        it = bar(noise, desc=f"max-sensitivity: {', '.join(methods)}", unit="noisy copy", first="first copy")
    for delta in it:
        maps = compute_maps(handle, x + delta, methods, ids, layer, options, budget_mb)
        for m in methods:
            worst[m] = torch.maximum(worst[m], sensitivity_ratio(original[m], maps[m]))
    return worst
