"""SmoothGrad (Smilkov et al. 2017), SmoothGrad-Squared and VarGrad around any gradient method.

All three variants come from the same noisy samples, so asking for several costs one set of
passes. Noise is Gaussian with ``sigma`` relative to each image's value range (max - min), drawn
per sample from a seeded ``torch.Generator`` (one draw of shape (N, C, H, W) per sample, so the
noise does not depend on the chunk size). Samples run in chunks under a memory budget.

Example:
    >>> out = smoothgrad(handle, x, ids, base="saliency", samples=16, sigma=0.15)   # doctest: +SKIP
    >>> out["smoothgrad"][0].shape     # target rank 0: (N, C, H, W)                  # doctest: +SKIP
"""

from __future__ import annotations

import torch

from mikata.attribution.batching import DEFAULT_BUDGET_MB, chunk_size
from mikata.attribution.passes import gradient_pass
from mikata.devices import for_chunks
from mikata.models.handle import ModelHandle

# base method -> (ReLU backward mode, how a sample's gradient becomes its map)
BASES = {
    "saliency": ("plain", lambda g, x: g.abs()),
    "saliency-signed": ("plain", lambda g, x: g),
    "grad-x-input": ("plain", lambda g, x: g * x),
    "guided-backprop": ("guided", lambda g, x: g),
    "deconv": ("deconv", lambda g, x: g),
}
VARIANTS = ("smoothgrad", "smoothgrad-squared", "vargrad")


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
) -> dict[str, list[torch.Tensor]]:
    """Per variant, per target rank: the ``(N, C, H, W)`` mean (or mean square, or variance) map."""
    from mikata.errors import ChoiceError

    if base not in BASES:
        raise ChoiceError("smoothgrad base method", base, list(BASES))
    mode, to_map = BASES[base]
    n, t = x.shape[0], ids.shape[1]
    noise = noise_samples(x, samples, sigma, seed)
    total = [torch.zeros_like(x) for _ in range(t)]
    total_sq = [torch.zeros_like(x) for _ in range(t)]

    def run(start: int, stop: int) -> None:
        xs = torch.cat([x + noise[i] for i in range(start, stop)])  # (m*N, C, H, W)
        p = gradient_pass(handle, xs, ids.repeat(stop - start, 1), modes={mode: ("input",)})
        maps = [to_map(p.input_grads[mode][k], xs).view(stop - start, n, *x.shape[1:]) for k in range(t)]
        for k in range(t):  # accumulate only once the chunk's passes succeeded (an OOM retries it)
            total[k] += maps[k].sum(0)
            total_sq[k] += maps[k].pow(2).sum(0)

    for_chunks(samples, max(1, chunk_size(x, budget_mb) // n), run, device=x.device, progress=progress,
               desc="smoothgrad")
    mean = [s / samples for s in total]
    mean_sq = [s / samples for s in total_sq]
    return {"smoothgrad": mean, "smoothgrad-squared": mean_sq,
            "vargrad": [q - m.pow(2) for q, m in zip(mean_sq, mean)]}
