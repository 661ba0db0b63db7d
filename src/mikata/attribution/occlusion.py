"""Occlusion (Zeiler & Fergus 2014): slide a filled window, record the drop of each target's logit.

Windows are placed like Captum's (starts at multiples of ``stride``, ``ceil((H - window) / stride) + 1``
per axis, cut at the border); each pixel gets the mean drop over the windows that cover it. Occluded
copies run as batches under a memory budget in inference mode, and one forward serves every target
rank (Captum needs one full sweep per target).

What fills the window is a baseline (``mikata.attribution.baselines``; default the image's own mean
colour, so dark and bright regions both change the input when covered): each window takes the
baseline's pixels under it; several baselines (``expected``, names with commas) average their drops.
``fill=v`` fills with one constant ``v`` of the model's input space instead (0 = the normalization's
mean colour, Captum's ``baselines=0``).

Example:
    >>> maps = occlusion(handle, x, ids, window=32, stride=16)[0]      # (N, H, W)   # doctest: +SKIP
"""

from __future__ import annotations

import math

import torch

from mikata.attribution.baselines import DEFAULT, baseline_label, make_baselines
from mikata.attribution.batching import DEFAULT_BUDGET_MB, chunk_size
from mikata.devices import for_chunks
from mikata.models.handle import ModelHandle


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Start offsets along one axis, as Captum places its sliding windows."""
    if window > size:
        raise ValueError(f"occlusion window {window} is larger than the input ({size} px); pass a smaller window")
    return [i * stride for i in range(math.ceil((size - window) / stride) + 1)]


def occlusion(
    handle: ModelHandle,
    x: torch.Tensor,
    ids: torch.Tensor,
    window: int = 32,
    stride: int = 16,
    fill: float | None = None,
    budget_mb: float = DEFAULT_BUDGET_MB,
    progress: bool = False,
    baseline: str | torch.Tensor = DEFAULT,
    baselines: int = 1,
    seed: int = 0,
) -> list[torch.Tensor]:
    """Per target rank: ``(N, H, W)`` mean logit drop of the windows covering each pixel.

    A window takes the ``baseline``'s pixels (mean over several baselines' drops), or the constant
    ``fill`` of the model's (normalized) input space when one is given (0 is the normalization's mean colour).
    The forwards run at ``handle.precision`` (bf16 autocast on a capable GPU under "auto"); the
    drops are accumulated in fp32. A chunk that runs out of device memory is halved and retried.
    """
    n, _, h, w = x.shape
    refs = [torch.full_like(x, float(fill))] if fill is not None else make_baselines(handle, x, baseline, baselines,
                                                                                       seed)
    boxes = [(r, c) for r in window_starts(h, window, stride) for c in window_starts(w, window, stride)]
    with torch.inference_mode(), handle.autocast():
        base = handle.model(x).float().gather(1, ids)  # (N, T)
        total = torch.zeros(ids.shape[1], n, h, w, device=x.device)
        count = torch.zeros(h, w, device=x.device)
        for r, c in boxes:
            count[r:r + window, c:c + window] += 1

        for x0 in refs:
            def run(start: int, stop: int, x0: torch.Tensor = x0) -> None:
                xs = x.repeat(stop - start, 1, 1, 1)  # (m*N, C, H, W), window-major
                for j, (r, c) in enumerate(boxes[start:stop]):
                    xs[j * n:(j + 1) * n, :, r:r + window, c:c + window] = x0[:, :, r:r + window, c:c + window]
                out = handle.model(xs).float().view(stop - start, n, -1)  # (m, N, K)
                drop = base[None] - out.gather(2, ids[None].expand(stop - start, -1, -1))  # (m, N, T)
                for j, (r, c) in enumerate(boxes[start:stop]):
                    total[:, :, r:r + window, c:c + window] += drop[j].T[:, :, None, None]

            per = max(1, chunk_size(x, budget_mb, with_grad=False, cap=256) // n)
            for_chunks(len(boxes), per, run, device=x.device, progress=progress, desc="occlusion")
    return [total[k] / (count * len(refs)) for k in range(ids.shape[1])]


def run(ctx) -> tuple[list[torch.Tensor], dict]:
    """Registry entry point (``catalog.py``)."""
    o = ctx.options
    label = f"fill {o['fill']:g}" if o.get("fill") is not None else baseline_label(o.get("baseline", DEFAULT),
                                                                                   o.get("baselines", 1))
    return occlusion(ctx.handle, ctx.x, ctx.ids, budget_mb=ctx.budget_mb, progress=ctx.progress, **o), \
        {"baseline": label}
