"""Strategies (SpRAy, Lapuschkin et al. 2019): a class's images clustered by how the model recognises
them, here by their concept shares (numpy only).

Each image's evidence split over the class's concepts (``importance.shares``) is a point on the
simplex; k-means (k-means++ starts, a seeded generator) groups images that the model recognises the
same way. The number of strategies is the k in 2..``max_k`` with the best silhouette, or one strategy
when no split is clearly better (silhouette below ``MIN_SILHOUETTE``). A small, tight strategy (few
images, close together compared with the class's own spread) is a Clever-Hans candidate: a narrow way
of being recognised that a few images share, the signature of a shortcut in SpRAy's paper.
"""

from __future__ import annotations

import numpy as np

MIN_SILHOUETTE = 0.5  # a uniform cloud split by k-means scores 0.35-0.45: below this, one strategy
SMALL_SHARE, TIGHT_RATIO = 0.2, 0.6


def kmeans(X: np.ndarray, k: int, seed: int = 0, iters: int = 100, restarts: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Labels ``(n,)`` and centers ``(k, d)`` of the best of ``restarts`` k-means++ runs (lowest inertia)."""
    rng = np.random.default_rng(seed)
    best = None
    for _ in range(restarts):
        centers = _plusplus(X, k, rng)
        for _ in range(iters):
            d = ((X[:, None, :] - centers[None]) ** 2).sum(-1)  # (n, k)
            labels = d.argmin(1)
            new = np.array([X[labels == j].mean(0) if (labels == j).any() else centers[j] for j in range(k)])
            if np.allclose(new, centers):
                break
            centers = new
        inertia = float(((X - centers[labels]) ** 2).sum())
        if best is None or inertia < best[0]:
            best = (inertia, labels, centers)
    return best[1], best[2]


def _plusplus(X: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    centers = [X[rng.integers(len(X))]]
    for _ in range(1, k):
        d = np.min(((X[:, None, :] - np.array(centers)[None]) ** 2).sum(-1), axis=1)
        p = d / d.sum() if d.sum() > 0 else np.full(len(X), 1 / len(X))
        centers.append(X[rng.choice(len(X), p=p)])
    return np.array(centers, dtype=np.float64)


def silhouette(X: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette coefficient (Rousseeuw 1987); 0 when there is a single cluster."""
    ks = np.unique(labels)
    if len(ks) < 2:
        return 0.0
    D = np.sqrt(((X[:, None, :] - X[None]) ** 2).sum(-1))  # (n, n)
    s = np.zeros(len(X))
    for i in range(len(X)):
        same = labels == labels[i]
        a = D[i, same].sum() / max(same.sum() - 1, 1)
        b = min(D[i, labels == j].mean() for j in ks if j != labels[i])
        s[i] = 0.0 if same.sum() == 1 else (b - a) / max(a, b, 1e-12)
    return float(s.mean())


def strategies(shares: np.ndarray, correct: np.ndarray, ids: np.ndarray, names: list[str], max_k: int = 5,
               exemplars: int = 5, seed: int = 0) -> list[dict]:
    """The class's strategies, largest first: ``{"strategy", "size", "accuracy", "exemplars" (ids nearest the
    center), "concepts" ({concept: mean share}), "tightness", "clever_hans"}``."""
    n = len(shares)
    if n == 0:
        return []
    X = shares.astype(np.float64)
    labels, centers = np.zeros(n, int), X.mean(0, keepdims=True)
    best = MIN_SILHOUETTE
    for k in range(2, min(max_k, n // 4) + 1):
        lab, cen = kmeans(X, k, seed=seed)
        s = silhouette(X, lab)
        if s > best:
            best, labels, centers = s, lab, cen
    overall = float(np.linalg.norm(X - X.mean(0), axis=1).mean()) or 1e-12
    out = []
    for j in range(len(centers)):
        rows = np.nonzero(labels == j)[0]
        if rows.size == 0:
            continue
        dist = np.linalg.norm(X[rows] - centers[j], axis=1)
        tight = float(dist.mean()) / overall
        near = rows[np.argsort(dist, kind="stable")[:exemplars]]
        out.append({"size": int(rows.size), "accuracy": float(correct[rows].mean()),
                    "exemplars": [int(ids[i]) for i in near],
                    "concepts": {nm: round(float(centers[j][c]), 4) for c, nm in enumerate(names)},
                    "tightness": round(tight, 4),
                    "clever_hans": bool(len(centers) > 1 and rows.size <= SMALL_SHARE * n and tight <= TIGHT_RATIO)})
    out.sort(key=lambda s: -s["size"])
    for i, s in enumerate(out):
        s["strategy"] = i
    return [{"strategy": s.pop("strategy"), **s} for s in out]
