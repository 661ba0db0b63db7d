"""Attention rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers").

Each block's attention, averaged over heads, plus the identity of the residual connection,
renormalized so rows sum to one: ``Â_l = (mean_h A_l + I) / 2``; the rollout is the product
``Â_L ... Â_1`` and the map is the class token's row over the patch tokens. Class independent (the
same map for every target), computed from the attention the shared forward recorded: no backward.

Example:
    >>> explain(handle, x, ["attention-rollout"])[0].maps.shape      # doctest: +SKIP
    torch.Size([N, 224, 224])
"""

from __future__ import annotations

import torch

from mikata.attribution.attention_maps import checked_attention, class_map, token_grid


def rollout(probs: list[torch.Tensor]) -> torch.Tensor:
    """``(N, T, T)``: the rollout of blocks ``(N, heads, T, T)`` in forward order."""
    n, _, t, _ = probs[0].shape
    eye = torch.eye(t, device=probs[0].device, dtype=torch.float64)
    r = eye.expand(n, t, t)
    for a in probs:
        a_hat = a.double().mean(1) + eye  # (N, T, T): attention plus the residual path
        a_hat = a_hat / a_hat.sum(-1, keepdim=True)
        r = a_hat @ r
    return r


def run(ctx) -> tuple[list[torch.Tensor], dict]:
    probs = checked_attention(ctx.handle, ctx.shared.attention, ctx.x.shape[0], "attention-rollout")
    prefix, grid = token_grid(ctx.handle, probs[0].shape[-1])
    m = class_map(rollout(probs), prefix, grid).float()  # (N, h, w)
    return [m for _ in range(ctx.ids.shape[1])], {"blocks": len(probs)}
