"""SmoothGrad (Smilkov et al. 2017), SmoothGrad-Squared and VarGrad around any gradient method.

Like Captum's NoiseTunnel, SmoothGrad wraps any ``gradient``-kind method of the registry
(``mikata.attribution.registry``): each chunk of noisy copies gets the shared pass that base method
asks for (its backwards, its layer) and the base's own ``run`` turns it into maps, so a new gradient
method is smoothable without touching this file. All three variants come from the same noisy
samples, so asking for several costs one set of passes. Noise is Gaussian with ``sigma`` relative to
each image's value range (max - min), drawn per sample from a seeded ``torch.Generator`` (one draw of
shape (N, C, H, W) per sample, so the noise does not depend on the chunk size). Samples run in
chunks under a memory budget.

Example:
    >>> out = smoothgrad(handle, x, ids, base="saliency", samples=16, sigma=0.15)   # doctest: +SKIP
    >>> out["smoothgrad"][0].shape     # target rank 0: (N, C, H, W)                  # doctest: +SKIP
"""

from __future__ import annotations

import torch

from mikata.attribution import registry
from mikata.attribution.batching import DEFAULT_BUDGET_MB, chunk_size
from mikata.attribution.passes import gradient_pass
from mikata.attribution.registry import MethodContext, MethodSpec
from mikata.devices import for_chunks
from mikata.errors import check_choices
from mikata.models.handle import ModelHandle

VARIANTS = ("smoothgrad", "smoothgrad-squared", "vargrad")


def bases() -> tuple[str, ...]:
    """Methods SmoothGrad can wrap: registered gradient-kind methods with pixel-level maps."""
    return registry.names(kind="gradient", layer_resolution=False)


def base_spec(base: str) -> MethodSpec:
    """The registry spec of ``base``; ``ChoiceError`` listing the wrappable methods otherwise."""
    return registry.get(check_choices("smoothgrad base method", base, bases()))


def noise_samples(x: torch.Tensor, samples: int, sigma: float, seed: int) -> list[torch.Tensor]:
    """The exact noise SmoothGrad adds: ``samples`` tensors like ``x``, scaled per image by its range."""
    gen = torch.Generator(device=x.device).manual_seed(seed)
    span = (x.amax(dim=(1, 2, 3)) - x.amin(dim=(1, 2, 3))).view(-1, 1, 1, 1)  # (N, 1, 1, 1)
    return [torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype) * (sigma * span)
            for _ in range(samples)]


def smoothgrad(
    handle: ModelHandle,
    x: torch.Tensor,
    ids: torch.Tensor,
    base: str = "saliency",
    samples: int = 16,
    sigma: float = 0.15,
    seed: int = 0,
    budget_mb: float = DEFAULT_BUDGET_MB,
    progress: bool = False,
    layer: str | None = None,
    base_options: dict | None = None,
) -> dict[str, list[torch.Tensor]]:
    """Per variant, per target rank: the ``(N, C, H, W)`` mean (or mean square, or variance) map.

    ``layer`` is the CAM layer for a base that needs one (guided-gradcam); ``base_options`` are the
    base method's own options.
    """
    spec = base_spec(base)
    n, t = x.shape[0], ids.shape[1]
    noise = noise_samples(x, samples, sigma, seed)
    total: list[torch.Tensor | float] = [0.0] * t
    total_sq: list[torch.Tensor | float] = [0.0] * t

    def run(start: int, stop: int) -> None:
        m = stop - start
        xs = torch.cat([x + noise[i] for i in range(start, stop)])  # (m*N, C, H, W)
        rep = ids.repeat(m, 1)  # (m*N, T)
        p = None
        if spec.uses_shared:
            p = gradient_pass(handle, xs, rep, layer=layer if spec.layer_needed(base_options) else None,
                              modes=spec.modes(), asked_by={mode: f"smoothgrad of {base}" for mode, _ in spec.backwards})
        raws, _ = spec.run(MethodContext(handle, xs, rep, p, dict(base_options or {}), layer, budget_mb, False, {}))
        maps = [raws[k].reshape(m, n, *raws[k].shape[1:]) for k in range(t)]  # (m, N, ...) each
        for k in range(t):  # accumulated only once the chunk's passes succeeded (an OOM retries it)
            total[k] = total[k] + maps[k].sum(0)
            total_sq[k] = total_sq[k] + maps[k].pow(2).sum(0)

    for_chunks(samples, max(1, chunk_size(x, budget_mb) // n), run, device=x.device, progress=progress,
               desc="smoothgrad")
    mean = [s / samples for s in total]
    mean_sq = [s / samples for s in total_sq]
    return {"smoothgrad": mean, "smoothgrad-squared": mean_sq,
            "vargrad": [q - m.pow(2) for q, m in zip(mean_sq, mean)]}


_OWN = ("base", "samples", "sigma", "seed", "base_options")


def run_variant(variant: str):
    """A registry ``run`` for one variant; the three share one set of samples per option set."""

    def run(ctx: MethodContext) -> tuple[list[torch.Tensor], dict]:
        opts = dict(ctx.options)
        base = opts.get("base", "saliency")
        extra = {k: v for k, v in opts.items() if k not in _OWN}
        if extra:  # a base method's option given at the top level, e.g. {"base": "deeplift", "baseline": "zero"}
            opts["base_options"] = {**extra, **opts.get("base_options", {})}
            opts = {k: v for k, v in opts.items() if k in _OWN}
        key = repr(sorted((k, repr(v)) for k, v in opts.items()))
        cache = ctx.cache.setdefault("smoothgrad", {})
        if key not in cache:
            cache[key] = smoothgrad(ctx.handle, ctx.x, ctx.ids, budget_mb=ctx.budget_mb, progress=ctx.progress,
                                    layer=ctx.layer, **opts)
        return cache[key][variant], {"samples": opts.get("samples", 16), "base": base}

    return run


def reduction(options: dict) -> str:
    """A smoothed map is reduced over channels as its base method's map is."""
    return base_spec(options.get("base", "saliency")).reduction({})


def signed(variant: str):
    """A registry ``signed`` for one variant: the mean of a signed, sum-reduced base map keeps its sign
    (SmoothGrad of Gradient x Input); squares and variances never do."""

    def is_signed(options: dict) -> bool:
        if variant != "smoothgrad":
            return False
        spec = base_spec(options.get("base", "saliency"))
        return spec.is_signed(options.get("base_options")) and spec.reduction({}) == "sum"

    return is_signed


def needs_layer(options: dict) -> bool:
    """SmoothGrad needs a CAM layer when its base does."""
    return base_spec(options.get("base", "saliency")).layer_needed(options.get("base_options"))
