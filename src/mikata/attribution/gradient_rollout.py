"""Gradient-weighted attention rollout (Chefer, Gur & Wolf 2021, "Generic Attention-model
Explainability for Interpreting Bi-Modal and Encoder-Decoder Transformers", self-attention rule).

Per block, the attention weighted by its gradient for the target class, positive part, averaged
over heads: ``Ā_l = mean_h relu(∇A_l ⊙ A_l)``; relevance starts at the identity and accumulates
``R ← R + Ā_l · R`` through the blocks in forward order; the map is the class token's row of R over
the patch tokens. Class specific; one forward and one backward (stopping at the first block's
attention) per target rank, shared with any other method of the same call.

Example:
    >>> explain(handle, x, ["gradient-rollout"], targets="top1")[0].maps.shape   # doctest: +SKIP
    torch.Size([N, 224, 224])
"""

from __future__ import annotations

import torch

from mikata.attribution.attention_maps import checked_attention, class_map, token_grid


def gradient_rollout(probs: list[torch.Tensor], grads: list[torch.Tensor]) -> torch.Tensor:
    """``(N, T, T)`` relevance from blocks' probabilities and gradients ``(N, heads, T, T)``."""
    n, _, t, _ = probs[0].shape
    r = torch.eye(t, device=probs[0].device, dtype=torch.float64).repeat(n, 1, 1)
    for a, g in zip(probs, grads):
        cam = (g.double() * a.double()).clamp_min(0).mean(1)  # (N, T, T)
        r = r + cam @ r
    return r


def run(ctx) -> tuple[list[torch.Tensor], dict]:
    probs = checked_attention(ctx.handle, ctx.shared.attention, ctx.x.shape[0], "gradient-rollout")
    prefix, grid = token_grid(ctx.handle, probs[0].shape[-1])
    maps = [class_map(gradient_rollout(probs, grads), prefix, grid).float() for grads in ctx.shared.attention_grads]
    return maps, {"blocks": len(probs)}
