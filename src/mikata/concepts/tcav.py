"""Concepts a user defines by examples (TCAV, Kim et al. 2018).

A concept vector (CAV) is the normal of a linear classifier (L2-regularized logistic regression, torch) that separates
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


def logistic_directions(pos: torch.Tensor, negs: torch.Tensor, steps: int = 100, l2: float = 1e-2) -> torch.Tensor:
    """Unit normals ``(R, D)`` of ``R`` L2-regularized logistic-regression boundaries, each between ``pos``
    ``(m, D)`` and one set ``negs[r]`` ``(m', D)`` (features centered and scaled by each problem's spread;
    full-batch Adam, all R problems in one batched optimization, deterministic), pointing towards ``pos``."""
    R = negs.shape[0]
    X = torch.cat([pos.float()[None].expand(R, -1, -1), negs.float()], dim=1)  # (R, m + m', D)
    y = torch.cat([torch.ones(len(pos)), torch.zeros(negs.shape[1])])[None].expand(R, -1)
    Xs = (X - X.mean(1, keepdim=True)) / (X.flatten(1).std(1)[:, None, None] + 1e-12)
    w = torch.zeros(R, X.shape[2], requires_grad=True)
    b = torch.zeros(R, 1, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=0.1)
    with torch.enable_grad():
        for _ in range(steps):
            opt.zero_grad()
            logits = torch.einsum("rnd,rd->rn", Xs, w) + b
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none").mean(1).sum()
            (loss + l2 * (w * w).sum()).backward()
            opt.step()
    v = w.detach()
    return v / (v.norm(dim=1, keepdim=True) + 1e-12)


def _activations(service, ids_or_files, layer: str, files: bool = False) -> torch.Tensor:
    """Flattened layer activations ``(m, h*w*C)`` (position-major, as the class passes flatten gradients)."""
    from mikata.attribution.passes import gradient_pass
    from mikata.concepts.passes import BATCH, decode_images, shared_handle

    h = shared_handle(service)  # a cross-validation run: its first fold's model
    out = []
    for s in range(0, len(ids_or_files), BATCH):
        chunk = ids_or_files[s:s + BATCH]
        if files:
            x, _, _ = decode_images(service, list(range(len(chunk))), {i: f for i, f in enumerate(chunk)})
        else:
            x, _, _ = decode_images(service, chunk)
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
            concept = logistic_directions(pos, torch.stack(sets[1:]))  # the concept against each random set
            random = logistic_directions(sets[0], torch.stack(sets[1:]))  # a random set against the others
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
