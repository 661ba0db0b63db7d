"""Non-negative matrix factorization ``A ≈ U W`` of spatial activations (torch only).

Why HALS (hierarchical alternating least squares, Cichocki & Phan 2009) rather than the multiplicative
updates of Lee & Seung that CRAFT and DFF use through scikit-learn: each HALS step solves one row of ``W``
(or one column of ``U``) exactly under the non-negativity bound, so it reaches the same fit in a few dozen
sweeps instead of hundreds, runs on the tensor's own device, and needs only ``A Wᵀ``, ``Wᵀ W``-sized
products (no dense ``(M, M)`` anything). ``A`` is ``(M, C)``: one row per image position (N·h·w rows),
one column per channel.

After the fit each concept direction (row of ``W``) has unit length and ``U`` carries the amplitude, so
``U[s, k]`` reads as "how much of direction k is at position s" in the layer's own units.

Example:
    >>> A = torch.rand(200, 16)
    >>> U, W = nmf(A, 3, seed=0)
    >>> U.shape, W.shape
    (torch.Size([200, 3]), torch.Size([3, 16]))
"""

from __future__ import annotations

import torch

EPS = 1e-10


def nmf(A: torch.Tensor, k: int, *, iters: int = 500, tol: float = 1e-4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``U (M, k) ≥ 0``, ``W (k, C) ≥ 0`` with ``A ≈ U W`` (Frobenius); rows of ``W`` unit length.

    ``A`` must be non-negative. Initialized by NNDSVD-style positive parts of the leading singular
    vectors (deterministic up to ``seed``, which only fills components the SVD leaves empty). Stops after
    ``iters`` sweeps or when a sweep lowers the relative error by less than ``tol`` of its value."""
    if A.dim() != 2:
        raise ValueError(f"nmf needs a (rows, channels) matrix, got shape {tuple(A.shape)}")
    if k < 1:
        raise ValueError(f"nmf needs k >= 1, got {k}")
    if bool((A < 0).any()):
        raise ValueError("nmf needs non-negative activations")
    A = A.float()
    U, W = _init(A, k, seed)
    prev = None
    norm_a = float((A * A).sum()) + EPS
    for _ in range(iters):
        W = _hals_rows(A.T @ U, U.T @ U, W)  # (k, C)
        U = _hals_rows(A @ W.T, W @ W.T, U.T).T  # (M, k)
        err = _relative_error(A, U, W, norm_a)
        if prev is not None and abs(prev - err) <= tol * err:  # the fit improves by less than tol of itself
            break
        prev = err
    return _unit_rows(U, W)


def nnls_project(A: torch.Tensor, W: torch.Tensor, *, iters: int = 100, tol: float = 1e-6) -> torch.Tensor:
    """``U ≥ 0`` minimizing ``||A - U W||`` for fixed directions ``W (k, C)``: a new image's concept
    coefficients at each position (``A`` ``(M, C)`` → ``U`` ``(M, k)``). Negative entries of ``A``
    count as they are (the projection is a least-squares fit, it does not need ``A ≥ 0``)."""
    A, W = A.float(), W.float().to(A.device)
    gram = W @ W.T  # (k, k)
    AW = A @ W.T  # (M, k)
    U = torch.linalg.lstsq(gram, AW.T).solution.T.clamp_min(0)  # unconstrained solution, clipped
    for _ in range(iters):
        new = _hals_rows(AW, gram, U.T).T
        done = float((new - U).abs().max()) <= tol * (float(new.abs().max()) + EPS)
        U = new
        if done:
            break
    return U


def _init(A: torch.Tensor, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """NNDSVD (Boutsidis & Gallopoulos 2008): each singular pair's larger positive/negative part."""
    M, C = A.shape
    q = min(k, M, C)
    u, s, vh = torch.linalg.svd(A, full_matrices=False)
    U = torch.zeros(M, k, device=A.device)
    W = torch.zeros(k, C, device=A.device)
    for j in range(q):
        x, y = u[:, j], vh[j]
        xp, xn, yp, yn = x.clamp_min(0), (-x).clamp_min(0), y.clamp_min(0), (-y).clamp_min(0)
        mp, mn = xp.norm() * yp.norm(), xn.norm() * yn.norm()
        if mp >= mn:
            a, b, m = xp / (xp.norm() + EPS), yp / (yp.norm() + EPS), mp
        else:
            a, b, m = xn / (xn.norm() + EPS), yn / (yn.norm() + EPS), mn
        scale = torch.sqrt(s[j] * m)
        U[:, j], W[j] = scale * a, scale * b
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    fill = float(A.mean().sqrt() / max(k, 1) ** 0.5) + EPS
    W = torch.where(W > 0, W, fill * 0.01 * torch.rand(W.shape, generator=gen).to(A.device))
    U = torch.where(U > 0, U, fill * 0.01 * torch.rand(U.shape, generator=gen).to(A.device))
    return U, W


def _hals_rows(AtX: torch.Tensor, gram: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """One HALS sweep over the rows of ``W (k, C)`` for the fit ``A ≈ X W``, given ``AtX = Aᵀ X (C, k)``
    and ``gram = Xᵀ X (k, k)``: row ``j`` moves to its exact non-negative least-squares optimum with the
    other rows held (they are updated in place, so row ``j+1`` sees row ``j``'s new value)."""
    W = W.clone()
    for j in range(W.shape[0]):
        denom = float(gram[j, j])
        if denom <= EPS:
            continue
        W[j] = (W[j] + (AtX[:, j] - gram[j] @ W) / denom).clamp_min(EPS)
    return W


def _relative_error(A: torch.Tensor, U: torch.Tensor, W: torch.Tensor, norm_a: float) -> float:
    # ||A - UW||² = ||A||² - 2 tr(Wᵀ Uᵀ A) + tr(Wᵀ Uᵀ U W), without forming U W
    cross = float(((U.T @ A) * W).sum())
    quad = float(((U.T @ U) * (W @ W.T)).sum())
    return max(norm_a - 2 * cross + quad, 0.0) / norm_a


def _unit_rows(U: torch.Tensor, W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    norms = W.norm(dim=1).clamp_min(EPS)  # (k,)
    return U * norms[None, :], W / norms[:, None]


def split_sign(A: torch.Tensor) -> torch.Tensor:
    """A signed activation ``(..., C)`` as ``(..., 2C)`` non-negative channels ``[relu(A), relu(-A)]``.

    Layers without a rectifier after them (the linear bottleneck of an MBConv block, a pre-ReLU conv) have
    negative activations that NMF cannot hold; splitting each channel by sign keeps the factorization
    exact and non-negative, and the gradient ``[G, -G]`` (``split_gradient``) leaves gradient × activation
    unchanged: ``[G, -G] · [A⁺, A⁻] = G · A``."""
    return torch.cat([A.clamp_min(0), (-A).clamp_min(0)], dim=-1)


def split_gradient(G: torch.Tensor) -> torch.Tensor:
    """The gradient for ``split_sign``'s channels: ``(..., 2C)`` = ``[G, -G]``."""
    return torch.cat([G, -G], dim=-1)
