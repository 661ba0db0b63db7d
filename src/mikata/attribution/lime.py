"""LIME for images (Ribeiro et al. 2016): superpixels switched off at random, a weighted linear fit.

Superpixels come from scikit-image SLIC on the displayed image; each sample keeps a random half of
them (the first sample keeps all) and fills the rest with ``fill`` (0 = the dataset-mean color in
the normalized space). The target's softmax probability over the samples is fitted by a weighted
ridge regression (scikit-learn) with LIME's exponential kernel on the cosine distance. Samples run
in batches under a memory budget; one forward serves every target rank. Seeded by ``seed``.

Example:
    >>> maps = lime(handle, x, ids, samples=500, segments=50, features=10)[0]   # (N, H, W)  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import torch

from mikata.attribution.batching import DEFAULT_BUDGET_MB, chunk_size
from mikata.devices import for_chunks
from mikata.models.handle import ModelHandle


def superpixels(handle: ModelHandle, x: torch.Tensor, segments: int = 50) -> np.ndarray:
    """SLIC labels ``(H, W)`` for one normalized image ``(C, H, W)``."""
    from skimage.segmentation import slic

    img = handle.denormalize(x[None])[0].permute(1, 2, 0).cpu().numpy().astype(np.float64)  # (H, W, C)
    return slic(img, n_segments=segments, compactness=10.0, start_label=0,
                channel_axis=-1 if img.shape[-1] > 1 else None)


def lime(
    handle: ModelHandle,
    x: torch.Tensor,
    ids: torch.Tensor,
    samples: int = 500,
    segments: int = 50,
    features: int | None = None,
    kernel_width: float = 0.25,
    fill: float = 0.0,
    seed: int = 0,
    budget_mb: float = DEFAULT_BUDGET_MB,
    progress: bool = False,
) -> list[torch.Tensor]:
    """Per target rank: ``(N, H, W)`` maps painting each superpixel with its surrogate weight
    (only the ``features`` strongest per image when given, others 0)."""
    from sklearn.linear_model import Ridge

    n, t = x.shape[0], ids.shape[1]
    out = torch.zeros(t, n, *x.shape[-2:], device=x.device)
    rng = np.random.default_rng(seed)
    per = chunk_size(x, budget_mb, with_grad=False, cap=128)
    for i in range(n):
        seg = superpixels(handle, x[i], segments)  # (H, W)
        s = int(seg.max()) + 1
        z = rng.integers(0, 2, size=(samples, s)).astype(np.float32)
        z[0] = 1.0
        seg_t = torch.from_numpy(seg).long().to(x.device)
        z_t = torch.from_numpy(z).to(x.device)  # (samples, S): the masks go to the device once
        probs_t = torch.empty(samples, t, dtype=torch.float64, device=x.device)
        with torch.inference_mode(), handle.autocast():
            def run(start: int, stop: int, i: int = i) -> None:
                keep = z_t[start:stop][:, seg_t]  # (m, H, W)
                xs = x[i:i + 1] * keep[:, None] + fill * (1 - keep[:, None])
                probs_t[start:stop] = handle.model(xs).float().softmax(1)[:, ids[i]].double()

            for_chunks(samples, per, run, device=x.device, progress=progress and n == 1, desc="lime")
        probs = probs_t.cpu().numpy()  # (samples, T): the regression runs on the CPU (scikit-learn)
        dist = 1 - z.sum(1) / (np.sqrt(z.sum(1).clip(1e-12)) * np.sqrt(s))  # cosine distance to all-on
        weights = np.sqrt(np.exp(-(dist**2) / kernel_width**2))
        for k in range(t):
            coef = Ridge(alpha=1.0).fit(z, probs[:, k], sample_weight=weights).coef_  # (S,)
            if features is not None and features < s:
                coef = np.where(np.abs(coef) >= np.sort(np.abs(coef))[-features], coef, 0.0)
            out[k, i] = torch.from_numpy(coef.astype(np.float32)).to(x.device)[seg_t]
    return [out[k] for k in range(t)]


def run(ctx) -> tuple[list[torch.Tensor], dict]:
    """Registry entry point (``catalog.py``)."""
    return lime(ctx.handle, ctx.x, ctx.ids, budget_mb=ctx.budget_mb, progress=ctx.progress, **ctx.options), {}
