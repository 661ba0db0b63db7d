"""How much each concept gives the class logit: gradient × concept coefficient (torch only).

With a layer's activations ``A`` (positions s, channels c), the gradient ``G = ∂y/∂A`` of the class
logit and a factorization ``A ≈ U W``::

    Σ_s G_s · A_s  =  Σ_k Σ_s U_sk (G_s · W_k)   +   Σ_s G_s · (A_s − U_s W)
                      └─ concept k's share ─┘        └── residual ──┘

The left side is gradient × activation at the layer, which equals ``y − bias`` exactly when a linear
head follows a global average pool (the gradient is then the same at every position); the split over
concepts is exact by construction, with what the factorization misses (and any negative activation it
could not hold) reported as its own residual term. Chosen over CRAFT's Sobol indices because it costs
one backward per image instead of thousands of masked forwards, it is additive (the shares of an image
sum to its evidence, so an image's decomposition and a class's importance come from the same numbers),
and it is defined per image, which strategies and error slices need.

Example:
    >>> U, W = torch.rand(2, 4, 3), torch.rand(3, 8)        # (n, s, k), (k, C)
    >>> A, G = torch.rand(2, 4, 8), torch.rand(2, 4, 8)     # (n, s, C)
    >>> c, r = contributions(U, W, G, A)
    >>> torch.allclose(c.sum(1) + r, (G * A).sum((1, 2)))
    True
"""

from __future__ import annotations

import torch


def contributions(U: torch.Tensor, W: torch.Tensor, G: torch.Tensor, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image and concept, ``Σ_s U_sk (G_s · W_k)`` ``(n, k)``, and the residual ``(n,)``.

    ``U`` ``(n, s, k)``, ``W`` ``(k, C)``, ``G`` and ``A`` ``(n, s, C)``."""
    U, W, G, A = U.float(), W.float(), G.float(), A.float()
    per = torch.einsum("nsk,nsc,kc->nk", U, G, W)  # (n, k)
    total = (G * A).sum((1, 2))  # (n,)
    return per, total - per.sum(1)


def shares(per: torch.Tensor) -> torch.Tensor:
    """Each image's positive contributions as shares summing to 1 ``(n, k)``; an image with no positive
    contribution gets equal shares (it has no concept evidence to split)."""
    pos = per.clamp_min(0)
    s = pos.sum(1, keepdim=True)
    even = torch.full_like(pos, 1.0 / max(pos.shape[1], 1))
    return torch.where(s > 0, pos / s.clamp_min(1e-12), even)
