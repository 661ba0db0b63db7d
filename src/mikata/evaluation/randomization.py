"""Sanity checks (Adebayo et al. 2018): cascading model-parameter randomization and random logit.

A map that explains the model must change when the model's weights are destroyed. ``cascade``
deep-copies the network and re-draws the weights of its parametrized units from the output side
down to the stem, in ``stages`` groups (the logit layer alone first), computing every method's
maps after each stage for the ORIGINAL target classes, and compares each with the original map
by Spearman rank correlation and SSIM. What is re-drawn: the weight and bias of every Conv/Linear
inside the unit, from a zero-mean normal with the same standard deviation the trained tensor had
(bias: the same for its own values), from a seeded ``torch.Generator``. Batch-norm layers keep
their affine parameters and running statistics, so activations keep a sane scale (Adebayo et al.
randomize "weights"; Quantus instead calls ``reset_parameters`` which also resets BN statistics).

``random_logit`` explains a different, randomly drawn class for each image and compares the map
with the map of the target class (Sixt et al. / Quantus' RandomLogit).

Similarity is computed on absolute values (Adebayo's "ABS" variant: signs of gradient maps flip
freely): Spearman on the raw ranks, SSIM on maps min-max normalized to [0, 1] with an 11x11
Gaussian window, sigma 1.5 (Wang et al. 2004; skimage's ``gaussian_weights=True``).

Example:
    >>> res = cascade(handle, x, ["saliency", "guided-backprop"], ids, stages=8)   # doctest: +SKIP
    >>> res.spearman["saliency"].mean(1)      # (stages,) mean over images         # doctest: +SKIP
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mikata.attribution.batching import DEFAULT_BUDGET_MB
from mikata.models.handle import ModelHandle


# ---------------------------------------------------------------------------- similarity
def _average_ranks(v: torch.Tensor) -> torch.Tensor:
    """Ranks 1..n of a 1-D tensor with ties given their average rank (like scipy.stats.rankdata)."""
    sorted_v, order = torch.sort(v, stable=True)
    _, inverse, counts = torch.unique_consecutive(sorted_v, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).double()
    avg = ends - (counts.double() - 1) / 2  # average rank of each tie group
    ranks = torch.empty(v.numel(), dtype=torch.float64)
    ranks[order] = avg[inverse]
    return ranks


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation of each pair ``a[i]``, ``b[i]`` (any trailing shape): ``(N,)``.

    Ties get average ranks (scipy's default); a constant map gives NaN, as in scipy."""
    out = []
    for u, v in zip(a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)):
        ru, rv = _average_ranks(u.double()), _average_ranks(v.double())
        ru, rv = ru - ru.mean(), rv - rv.mean()
        den = (ru.norm() * rv.norm()).item()
        out.append((ru @ rv).item() / den if den > 0 else float("nan"))
    return torch.tensor(out, dtype=torch.float64)


def normalize01(m: torch.Tensor) -> torch.Tensor:
    """``(N, H, W)`` -> per-map min-max scaled to [0, 1] (a constant map becomes zeros)."""
    flat = m.reshape(m.shape[0], -1).double()
    lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    return ((flat - lo) / (hi - lo).clamp_min(1e-12)).view(m.shape)


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0, win: int = 11, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Mean SSIM of each pair of ``(N, H, W)`` maps: ``(N,)``. Gaussian window, population
    covariances, the mean over the valid (unpadded) area — skimage's ``structural_similarity(
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=...)``."""
    x, y = a.double()[:, None], b.double()[:, None]
    r = (win - 1) // 2
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    g = torch.exp(-(t ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    kh, kw = g.view(1, 1, -1, 1), g.view(1, 1, 1, -1)

    def filt(z: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(z, kh), kw)

    mx, my = filt(x), filt(y)
    vx, vy, cxy = filt(x * x) - mx * mx, filt(y * y) - my * my, filt(x * y) - mx * my
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.mean(dim=(1, 2, 3))


def similarity(original: torch.Tensor, other: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Spearman, SSIM) per image between two ``(N, H, W)`` maps, on absolute values.

    A map that became constant (e.g. Grad-CAM all zero after its ReLU once the weights are random)
    has no rank order left: its Spearman correlation, undefined, counts as 0."""
    a, b = original.abs(), other.abs()
    return torch.nan_to_num(spearman(a, b), nan=0.0), ssim(normalize01(a), normalize01(b))


# ---------------------------------------------------------------------------- randomization
_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.ConvTranspose2d)


def _has_weights(m: nn.Module) -> bool:
    return any(isinstance(sub, _WEIGHTED) for sub in m.modules())


def parametrized_units(net: nn.Module) -> list[str]:
    """The network's units in forward order: top-level children holding a Conv/Linear, with a
    Sequential / ModuleList expanded one level when two or more of its children hold one
    (``blocks.0`` ... ``blocks.15``; a conv-BN-activation triple stays one unit)."""
    units = []
    for name, child in net.named_children():
        if not _has_weights(child):
            continue
        subs = [(s, m) for s, m in child.named_children() if _has_weights(m)]
        if isinstance(child, (nn.Sequential, nn.ModuleList)) and len(subs) > 1:
            units += [f"{name}.{s}" for s, _ in subs]
        else:
            units.append(name)
    return units


def stage_groups(units: Sequence[str], stages: int) -> list[list[str]]:
    """Top-down groups: the output unit alone, then the rest split into ``stages - 1`` near-equal runs."""
    top_down = list(reversed(units))
    if not top_down:
        return []
    groups = [[top_down[0]]]
    rest = top_down[1:]
    k = max(1, min(stages - 1, len(rest)))
    for i in range(k):
        part = rest[round(i * len(rest) / k):round((i + 1) * len(rest) / k)]
        if part:
            groups.append(part)
    return groups


@torch.no_grad()
def randomize_unit(module: nn.Module, generator: torch.Generator) -> None:
    """Re-draw every Conv/Linear weight and bias in ``module`` ~ N(0, std of the trained tensor)."""
    for m in module.modules():
        if isinstance(m, _WEIGHTED):
            for p in (m.weight, m.bias):
                if p is None:
                    continue
                std = float(p.float().std()) if p.numel() > 1 else 0.0
                std = std if std > 0 else 0.01
                p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float32).to(p.dtype) * std)


@dataclass
class CascadeResult:
    """``spearman[method]`` and ``ssim[method]``: ``(stages, N)``; ``stages``: labels top-down."""

    stages: list[str]
    spearman: dict[str, torch.Tensor] = field(default_factory=dict)
    ssim: dict[str, torch.Tensor] = field(default_factory=dict)
    maps: dict[str, list[torch.Tensor]] = field(default_factory=dict)  # per stage (N, H, W), if kept


def _label(group: list[str]) -> str:
    return group[0] if len(group) == 1 else f"{group[0]}…{group[-1]}"


def compute_maps(handle: ModelHandle, x: torch.Tensor, methods: Sequence[str], ids: torch.Tensor,
                 layer: str | None, options: dict | None, budget_mb: float) -> dict[str, torch.Tensor]:
    """``{method: (N, H, W)}`` on the CPU for explicit class ids ``(N,)``: one ``explain`` call, passes
    shared. On the CPU because every comparison (Spearman, SSIM, sensitivity) runs there, against
    original maps that may come from a saved evaluate part."""
    from mikata.attribution.engine import explain

    res = explain(handle, x, list(methods), targets=ids.view(-1, 1), layer=layer, options=options, budget_mb=budget_mb)
    return {a.method: a.maps.float().cpu() for a in res}


def cascade(
    handle: ModelHandle,
    x: torch.Tensor,
    methods: Sequence[str],
    targets: torch.Tensor,
    stages: int = 8,
    layer: str | None = None,
    options: dict | None = None,
    original: dict[str, torch.Tensor] | None = None,
    seed: int = 0,
    keep_maps: bool = False,
    budget_mb: float = DEFAULT_BUDGET_MB,
    progress: bool = False,
) -> CascadeResult:
    """Cascading randomization from the logits down; the caller's model is never modified."""
    ids = torch.as_tensor(targets, dtype=torch.long).view(-1)
    if original is None:
        original = compute_maps(handle, x, methods, ids, layer, options, budget_mb)
    net = copy.deepcopy(handle.net)
    rnd = dataclasses.replace(handle, net=net)  # re-wraps the copy; the original handle is untouched
    groups = stage_groups(parametrized_units(net), stages)
    gen = torch.Generator().manual_seed(seed)
    result = CascadeResult(stages=[_label(g) for g in groups])
    it = groups
    if progress:
        from mikata.progress import progress as bar

        it = bar(groups, desc=f"randomization cascade: {', '.join(methods)}", unit="stage", first="first stage")
    for group in it:
        for name in group:
            randomize_unit(net.get_submodule(name), gen)
        maps = compute_maps(rnd, x, methods, ids, layer, options, budget_mb)
        for m in methods:
            sp, ss = similarity(original[m], maps[m])
            result.spearman.setdefault(m, []).append(sp)
            result.ssim.setdefault(m, []).append(ss)
            if keep_maps:
                result.maps.setdefault(m, []).append(maps[m])
    result.spearman = {m: torch.stack(v) for m, v in result.spearman.items()}
    result.ssim = {m: torch.stack(v) for m, v in result.ssim.items()}
    return result


def random_classes(targets: torch.Tensor, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """For each target id, a different class drawn uniformly from the other ``num_classes - 1``."""
    ids = torch.as_tensor(targets, dtype=torch.long).view(-1)
    draw = torch.randint(0, num_classes - 1, ids.shape, generator=generator)
    return draw + (draw >= ids).long()


def random_logit(
    handle: ModelHandle,
    x: torch.Tensor,
    methods: Sequence[str],
    targets: torch.Tensor,
    other: torch.Tensor | None = None,
    layer: str | None = None,
    options: dict | None = None,
    original: dict[str, torch.Tensor] | None = None,
    seed: int = 0,
    budget_mb: float = DEFAULT_BUDGET_MB,
) -> tuple[torch.Tensor, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """Explain a random other class; ``(other ids (N,), {method: (spearman (N,), ssim (N,))})``."""
    ids = torch.as_tensor(targets, dtype=torch.long).view(-1)
    if other is None:
        other = random_classes(ids, handle.num_classes, torch.Generator().manual_seed(seed))
    if original is None:
        original = compute_maps(handle, x, methods, ids, layer, options, budget_mb)
    maps = compute_maps(handle, x, methods, other, layer, options, budget_mb)
    return other, {m: similarity(original[m], maps[m]) for m in methods}
