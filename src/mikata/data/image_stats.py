"""Per-image pixel statistics for dataset issues, computed on the batch a scan already decoded.

``image_stats`` reads the model's view of each image (``(N, C, H, W)`` in [0, 1], the preprocessed
batch denormalized, so no file is decoded twice) and the original ``(width, height)`` the decoder
saw. The columns are what cleanvision-style checks need: brightness percentiles for dark and
blown-out images, the variance of the Laplacian for blur, the grey-level entropy for images that
carry little information, and the original size and aspect ratio.

Example:
    >>> x = torch.rand(2, 3, 32, 32)
    >>> image_stats(x, [(64, 48), (10, 300)]).shape
    torch.Size([2, 7])
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    import torch  # imported by the functions: the column names and sizes are read without torch

STAT_COLUMNS = ("width", "height", "brightness", "p05", "p95", "sharpness", "entropy")
THUMB_SIDE = 16  # thumbnails for near duplicates: THUMB_SIDE x THUMB_SIDE grey levels
ENTROPY_BINS = 64  # grey levels for the entropy (so its maximum is 6 bits)


def image_stats(x01: torch.Tensor, sizes: Sequence[tuple[int, int]]) -> torch.Tensor:
    """``(N, len(STAT_COLUMNS))`` float32 on ``x01``'s device; ``sizes`` are the decoded ``(width, height)``."""
    import torch

    n = x01.shape[0]
    grey = x01.float().mean(1)  # (N, H, W) luminance proxy in [0, 1]
    flat = grey.flatten(1)      # (N, H*W)
    q = torch.quantile(flat, torch.tensor([0.05, 0.95], device=x01.device), dim=1)  # (2, N)
    # sharpness and entropy of the contrast-stretched image: a dark but detailed image is neither blurry nor
    # empty; a flat image has neither edges nor grey levels (0 for both)
    lo, hi = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True)
    stretched = (flat - lo) / (hi - lo).clamp_min(1e-6)
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], device=x01.device)
    lap = torch.nn.functional.conv2d(stretched.view_as(grey)[:, None], kernel[None, None])  # (N, 1, H-2, W-2)
    sharpness = lap.flatten(1).var(1)  # (N,) variance of the Laplacian: low = blurry
    bins = (stretched * (ENTROPY_BINS - 1)).round().long()  # (N, H*W)
    hist = torch.zeros(n, ENTROPY_BINS, device=x01.device).scatter_add_(1, bins, torch.ones_like(flat))
    p = hist / hist.sum(1, keepdim=True)
    entropy = -(p * torch.log2(p.clamp_min(1e-12))).sum(1)  # (N,) bits
    wh = torch.tensor([list(s) for s in sizes], dtype=torch.float32, device=x01.device).view(n, 2)
    return torch.stack([wh[:, 0], wh[:, 1], flat.mean(1), q[0], q[1], sharpness, entropy], dim=1)


def thumbnails(x01: torch.Tensor, side: int = THUMB_SIDE) -> torch.Tensor:
    """``(N, side * side)`` grey thumbnails, zero mean and unit norm per image (blind to brightness and
    contrast): the dot product of two is their pixel correlation, what near-duplicate checks compare."""
    import torch

    grey = x01.float().mean(1, keepdim=True)  # (N, 1, H, W)
    t = torch.nn.functional.adaptive_avg_pool2d(grey, side).flatten(1)  # (N, side * side)
    t = t - t.mean(1, keepdim=True)
    return t / t.norm(dim=1, keepdim=True).clamp_min(1e-6)
