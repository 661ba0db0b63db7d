"""What the attention methods share: checking the recorded attention and reading a token map off it.

Rollout-style methods multiply token-to-token matrices through the blocks, so they need global
self-attention over one token sequence per image (ViT, DeiT, EVA, BEiT, a Hugging Face ViT).
Windowed attention (Swin, MaxViT) mixes tokens only inside windows and is refused with a message
naming what to use instead.
"""

from __future__ import annotations

import torch

from mikata.errors import MikataError
from mikata.models.handle import ModelHandle


class AttentionMethodError(MikataError):
    """The model's attention cannot carry an attention-rollout style method."""


def checked_attention(handle: ModelHandle, probs: list[torch.Tensor], n: int, method: str) -> list[torch.Tensor]:
    """The recorded blocks ``(N, heads, T, T)``, refused unless each is global attention over the same
    T tokens for the ``n`` images."""
    if not probs:
        raise AttentionMethodError(f"{method}: the forward recorded no attention probabilities on "
                                   f"{handle.spec or type(handle.net).__name__}; it needs a transformer "
                                   "(timm ViT/DeiT/EVA/BEiT, torchvision ViT or a Hugging Face ViT)")
    tokens = probs[0].shape[-1]
    for a in probs:
        if a.shape[0] != n or a.shape[-1] != a.shape[-2] or a.shape[-1] != tokens:
            raise AttentionMethodError(
                f"{method} needs global self-attention over one token sequence per image; "
                f"{handle.spec or type(handle.net).__name__} has windowed or pooled attention (a block gives "
                f"{tuple(a.shape)} for {n} images). Use gradcam at the last stage (the default layer) instead")
    return probs


def token_grid(handle: ModelHandle, tokens: int) -> tuple[int, tuple[int, int]]:
    """``(prefix, (h, w))``: how ``tokens`` split into class/register tokens and a patch grid, from the
    handle's token layouts (``handle.layouts()``)."""
    for layout in handle.layouts().values():
        if layout.kind == "tokens" and layout.grid is not None and \
                layout.prefix + layout.grid[0] * layout.grid[1] == tokens:
            return layout.prefix, layout.grid
    for prefix in range(9):  # a layer the trace did not see at this size: a square grid
        side = round((tokens - prefix) ** 0.5)
        if side > 1 and side * side == tokens - prefix:
            return prefix, (side, side)
    raise AttentionMethodError(f"cannot tell the patch grid of {tokens} tokens; feed images at the model's input "
                               f"size {handle.input_size}")


def class_map(rel: torch.Tensor, prefix: int, grid: tuple[int, int]) -> torch.Tensor:
    """``(N, h, w)``: the class token's row of a token relevance matrix ``(N, T, T)`` over the patches;
    a model without a class token (prefix 0, tokens averaged by the head) takes the mean row."""
    row = rel[:, 0] if prefix > 0 else rel.mean(1)  # (N, T)
    h, w = grid
    return row[:, prefix:prefix + h * w].reshape(-1, h, w)
