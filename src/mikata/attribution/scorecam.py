"""Score-CAM (Wang et al. 2020): weight each channel by the target logit of the input masked by it.

Channel maps are upsampled (bilinear, corners aligned, as pytorch-grad-cam), min-max scaled per
channel to [0, 1], multiplied into the input, and the masked copies run in batches under a memory
budget in inference mode; one forward per mask serves every target rank. Weights are the softmax of
those logits over channels.

Example:
    >>> cams = scorecam(handle, x, ids, acts)[0]    # (N, h, w)       # doctest: +SKIP
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mikata.attribution.batching import DEFAULT_BUDGET_MB, chunk_size
from mikata.devices import for_chunks
from mikata.models.handle import ModelHandle


def scorecam(
    handle: ModelHandle,
    x: torch.Tensor,
    ids: torch.Tensor,
    acts: torch.Tensor,
    budget_mb: float = DEFAULT_BUDGET_MB,
    progress: bool = False,
) -> list[torch.Tensor]:
    """Per target rank: Score-CAM maps ``(N, h, w)`` from layer activations ``acts`` ``(N, C, h, w)``."""
    n, c = acts.shape[:2]
    t = ids.shape[1]
    up = F.interpolate(acts, size=x.shape[-2:], mode="bilinear", align_corners=True)  # (N, C, H, W)
    lo = up.amin(dim=(2, 3), keepdim=True)
    hi = up.amax(dim=(2, 3), keepdim=True)
    masks = (up - lo) / (hi - lo + 1e-8)
    scores = torch.empty(n, c, t, device=x.device)
    per = max(1, chunk_size(x, budget_mb, with_grad=False, cap=256))
    with torch.inference_mode(), handle.autocast():
        for i in range(n):
            def run(start: int, stop: int, i: int = i) -> None:
                xs = x[i:i + 1] * masks[i, start:stop, None]  # (m, C_in, H, W)
                out = handle.model(xs).float()  # (m, K)
                scores[i, start:stop] = out[:, ids[i]]

            for_chunks(c, per, run, device=x.device, progress=progress and n == 1, desc="scorecam")
    weights = scores.softmax(dim=1)  # (N, C, T)
    return [(weights[:, :, k, None, None] * acts).sum(1).clamp_min(0) for k in range(t)]


def run(ctx) -> tuple[list[torch.Tensor], dict]:
    """Registry entry point (``catalog.py``): masks from the shared pass's activation."""
    return scorecam(ctx.handle, ctx.x, ctx.ids, ctx.shared.activation, ctx.budget_mb, ctx.progress), {}
