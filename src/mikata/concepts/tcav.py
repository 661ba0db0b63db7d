"""Concepts a user defines by examples (TCAV, Kim et al. 2018).

A concept vector (CAV) is the normal of a linear classifier (logistic regression, torch) that separates
the layer activations of the user's example images from those of random images of the run. The TCAV score
of a class is the fraction of its images whose class-logit gradient at the layer points along the CAV
(positive directional derivative). As in the paper, ``RANDOM_SETS`` CAVs are trained against different
random sets, and as many random-vs-random CAVs give the scores a meaningless direction gets; a two-sided
t-test between the two lists of scores says whether the concept's score is significant (p < 0.05).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

log = logging.getLogger(__name__)
RANDOM_SETS = 10
MAX_EXAMPLES = 100


def logistic_direction(pos: torch.Tensor, neg: torch.Tensor, steps: int = 300, l2: float = 1e-3, seed: int = 0) -> torch.Tensor:
    """Unit normal ``(D,)`` of a logistic-regression boundary between ``pos`` ``(m, D)`` and ``neg`` ``(m', D)``
    (features standardized by their joint scale; L-BFGS), pointing towards ``pos``."""
    X = torch.cat([pos, neg]).double()
    y = torch.cat([torch.ones(len(pos)), torch.zeros(len(neg))]).double()
    scale = X.std() + 1e-12
    mu = X.mean(0)
    Xs = (X - mu) / scale
    w = torch.zeros(X.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(Xs @ w + b, y) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    v = w.detach()
    return (v / (v.norm() + 1e-12)).float()


def _activations(service, ids_or_files, layer: str, files: bool = False) -> torch.Tensor:
    """Flattened layer activations ``(m, h*w*C)`` (position-major, as the class passes flatten gradients)."""
    from mikata.concepts.compute import BATCH, _decode
    from mikata.attribution.passes import gradient_pass

    h = service.handle
    out = []
    for s in range(0, len(ids_or_files), BATCH):
        chunk = ids_or_files[s:s + BATCH]
        if files:
            x, _, _ = _decode(service, list(range(len(chunk))), {i: f for i, f in enumerate(chunk)})
        else:
            x, _, _ = _decode(service, chunk)
        if x is None:
            continue
        p = gradient_pass(h, x.to(h.device), torch.zeros((x.shape[0], 1), dtype=torch.long, device=h.device),
                          layer=layer, modes={})
        out.append(p.activation.float().permute(0, 2, 3, 1).reshape(x.shape[0], -1).cpu())
    return torch.cat(out)


def train_cavs(service, opts, ids: np.ndarray, progress: bool) -> dict:
    """``{name: {"concept": (R, D) CAVs vs R random sets, "random": (R, D) random-vs-random CAVs, "examples": m}}``."""
    from mikata.progress import Progress

    rng = np.random.default_rng(opts.seed)
    out = {}
    with Progress(len(opts.defines), "TCAV concept vectors", "concept", progress) as bar:
        for name, files in sorted(opts.defines.items()):
            files = files[:MAX_EXAMPLES]
            pos = _activations(service, files, opts.layer, files=True)
            m = len(pos)
            need = (RANDOM_SETS + 1) * m
            pool = rng.permutation(ids)
            if len(pool) < need:  # a small run: random sets overlap
                pool = np.concatenate([pool, rng.choice(ids, size=need - len(pool), replace=True)])
            neg = _activations(service, pool[:need].tolist(), opts.layer)
            sets = [neg[r * m:(r + 1) * m] for r in range(RANDOM_SETS + 1)]
            concept = torch.stack([logistic_direction(pos, sets[r + 1], seed=r) for r in range(RANDOM_SETS)])
            random = torch.stack([logistic_direction(sets[0], sets[r + 1], seed=r) for r in range(RANDOM_SETS)])
            out[name] = {"concept": concept, "random": random, "examples": m}
            bar.update(1)
    return out


def class_scores(cav: dict, grads: torch.Tensor) -> dict:
    """TCAV score of one class: ``grads`` ``(n, D)`` are its images' class-logit gradients, flattened."""
    from scipy.stats import ttest_ind

    g = grads.float()
    concept = ((g @ cav["concept"].T) > 0).float().mean(0).numpy()  # (R,)
    random = ((g @ cav["random"].T) > 0).float().mean(0).numpy()
    if np.allclose(concept, concept[0]) and np.allclose(random, random[0]):
        p = 1.0 if np.isclose(concept[0], random[0]) else 0.0
    else:
        p = float(ttest_ind(concept, random, equal_var=False).pvalue)
    return {"score": float(concept.mean()), "score_std": float(concept.std()), "random_mean": float(random.mean()),
            "p_value": p, "significant": bool(p < 0.05), "examples": int(cav["examples"]), "images": int(len(g))}
