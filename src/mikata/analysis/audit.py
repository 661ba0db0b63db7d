"""Audits of a scanned run: accuracy, confusion, confused pairs, class-like images, label errors.

Every function takes arrays or a ``RunData`` (the committed rows of a store, loaded once) and
returns plain numbers, arrays or lists of row indices, so the CLI, the HTML report and the web
app all share them. Heavy work is vectorized: the confusion matrix is one ``np.bincount``.

Example:
    >>> d = load_run("runs/digits")                               # doctest: +SKIP
    >>> accuracy(d), confused_pairs(confusion_matrix(d.labels, d.preds, d.num_classes))[:3]   # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from mikata.analysis.runstore import RunStore
from mikata.errors import ChoiceError


@dataclass
class RunData:
    """The usable (status ``ok``) rows of a run, in id order, with their probability vectors."""

    ids: np.ndarray          # (N,) store row ids
    paths: list[str]
    labels: np.ndarray       # (N,) int64 class index
    preds: np.ndarray        # (N,) int64
    splits: np.ndarray       # (N,) str
    vec_rows: np.ndarray     # (N,) row in the vector files
    probs: np.ndarray        # (N, K) float32
    class_names: list[str]
    run_dir: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.ids)

    def vectors(self, kind: str) -> np.ndarray:
        """``(N, dim)`` float32 ``embed`` or ``channels`` vectors of these rows."""
        with RunStore.open(self.run_dir) as store:
            return np.asarray(store.vectors(kind)[self.vec_rows], dtype=np.float32)


def load_run(run: str | os.PathLike | RunStore, split: str | None = None) -> RunData:
    """Read the committed rows of a run (consistent even while a scan is writing)."""
    store = run if isinstance(run, RunStore) else RunStore.open(run)
    try:
        with store.snapshot():
            rows = store.rows(status="ok", split=split, columns=("id", "path", "label", "pred", "split", "vec_row"),
                              tuples=True)
            n_vec = store.committed_vectors()
            probs_mm = store.vectors("probs", n_vec) if rows else None
        classes = store.identity["classes"]
        if rows:
            ids, paths, labels, preds, splits, vec_rows = zip(*rows)
            vec_rows = np.asarray(vec_rows, dtype=np.int64)
            probs = np.asarray(probs_mm[vec_rows], dtype=np.float32)
        else:
            ids = paths = labels = preds = splits = ()
            vec_rows = np.zeros(0, np.int64)
            probs = np.zeros((0, len(classes)), np.float32)
        return RunData(np.asarray(ids, np.int64), list(paths), np.asarray(labels, np.int64),
                       np.asarray(preds, np.int64), np.asarray(splits, dtype=str), vec_rows, probs, classes,
                       str(store.dir))
    finally:
        if not isinstance(run, RunStore):
            store.close()


# ------------------------------------------------------------------------------ scores and confusion
def accuracy(d: RunData) -> float:
    return float((d.labels == d.preds).mean()) if len(d) else float("nan")


def topk_accuracy(d: RunData, k: int = 5) -> float:
    """Share of images whose label is among the ``k`` most probable classes."""
    if not len(d):
        return float("nan")
    k = min(k, d.num_classes)
    top = np.argpartition(-d.probs, k - 1, axis=1)[:, :k]  # (N, k)
    return float((top == d.labels[:, None]).any(1).mean())


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """``(K, K)`` counts, rows = true class, columns = predicted class; one ``bincount``."""
    flat = labels.astype(np.int64) * num_classes + preds.astype(np.int64)
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def confusion_counts(run: str | os.PathLike | RunStore) -> np.ndarray:
    """The confusion matrix straight from SQLite (``GROUP BY`` in C): no rows cross into Python."""
    store = run if isinstance(run, RunStore) else RunStore.open(run)
    try:
        k = len(store.identity["classes"])
        cm = np.zeros((k, k), np.int64)
        got = np.array(store.confusion_counts(), dtype=np.int64).reshape(-1, 3)
        cm[got[:, 0], got[:, 1]] = got[:, 2]
        return cm
    finally:
        if not isinstance(run, RunStore):
            store.close()


def row_normalized(cm: np.ndarray) -> np.ndarray:
    """Each row divided by its total (recall on the diagonal); empty rows stay 0."""
    totals = cm.sum(1, keepdims=True)
    return np.divide(cm, totals, out=np.zeros(cm.shape, np.float64), where=totals > 0)


def per_class_metrics(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support per class (0 where undefined)."""
    tp = np.diag(cm).astype(np.float64)
    pred_total, true_total = cm.sum(0), cm.sum(1)
    precision = np.divide(tp, pred_total, out=np.zeros_like(tp), where=pred_total > 0)
    recall = np.divide(tp, true_total, out=np.zeros_like(tp), where=true_total > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": true_total}


def class_histogram(labels: np.ndarray, num_classes: int) -> tuple[np.ndarray, float]:
    """Images per class, and the imbalance ratio (largest / smallest non-empty class)."""
    counts = np.bincount(labels, minlength=num_classes)
    nonzero = counts[counts > 0]
    return counts, float(nonzero.max() / nonzero.min()) if len(nonzero) else float("nan")


def confused_pairs(cm: np.ndarray, top: int = 10) -> list[tuple[int, int, int, int]]:
    """Class pairs ranked by mutual confusion: ``(a, b, a_as_b, b_as_a)``, largest total first."""
    off = cm.copy()
    np.fill_diagonal(off, 0)
    mutual = np.triu(off + off.T, 1)  # (K, K), each unordered pair once
    a, b = np.nonzero(mutual)
    order = np.lexsort((b, a, -mutual[a, b]))[:top]
    return [(int(a[i]), int(b[i]), int(cm[a[i], b[i]]), int(cm[b[i], a[i]])) for i in order]


def exceptional_errors(d: RunData, groups: Mapping[str, str]) -> dict:
    """Errors across groups (e.g. a cat breed predicted as a dog breed), the serious kind.

    ``groups`` maps class name -> group name; classes not in it form their own group.
    Returns the count per (true group, predicted group) and the row indices, most confident first.
    """
    group_of = np.array([groups.get(c, c) for c in d.class_names], dtype=object)
    across = np.nonzero(group_of[d.labels] != group_of[d.preds])[0]
    across = across[np.argsort(-d.probs[across, d.preds[across]], kind="stable")]
    pairs: dict[str, int] = {}
    for i in across:
        key = f"{group_of[d.labels[i]]} -> {group_of[d.preds[i]]}"
        pairs[key] = pairs.get(key, 0) + 1
    return {"count": int(len(across)), "pairs": dict(sorted(pairs.items(), key=lambda kv: -kv[1])),
            "rows": across.tolist()}


# ------------------------------------------------------------------------------------ ranked images
def class_like(d: RunData, cls: int, n: int = 5) -> tuple[list[int], list[int]]:
    """Row indices of the ``n`` most and least class-like images labeled ``cls`` (by P(cls)).

    The least class-like images of a class are where mislabeled or atypical examples hide
    (MATLAB's food example finds sushi labeled sashimi this way).
    """
    rows = np.nonzero(d.labels == cls)[0]
    order = rows[np.argsort(-d.probs[rows, cls], kind="stable")]
    return order[:n].tolist(), order[::-1][:n].tolist()


def confident_errors(d: RunData, cls: int | None = None, n: int = 10) -> list[int]:
    """Wrong predictions (of images labeled ``cls``, or all) ranked by the predicted class's probability."""
    wrong = np.nonzero((d.labels != d.preds) & ((d.labels == cls) if cls is not None else True))[0]
    return wrong[np.argsort(-d.probs[wrong, d.preds[wrong]], kind="stable")][:n].tolist()


def top_activating(channels: np.ndarray, channel: int, k: int = 9) -> list[int]:
    """Row indices of the ``k`` images with the highest mean activation of ``channel``."""
    if not 0 <= channel < channels.shape[1]:
        raise ChoiceError("channel", channel, [f"0..{channels.shape[1] - 1}"])
    col = channels[:, channel]
    k = min(k, len(col))
    top = np.argpartition(-col, k - 1)[:k] if k else np.zeros(0, np.int64)
    return top[np.argsort(-col[top], kind="stable")].tolist()


def label_issues(d: RunData, top: int | None = None) -> list[dict]:
    """Suspected label errors, most suspicious first, each with a suggested label (confident learning).

    Uses ``cleanlab.filter.find_label_issues`` on the stored probabilities. They must be
    out-of-sample: for a model trained on other data any split qualifies; for a model trained on
    this folder use only the split it did not train on (``load_run(run, split="test")``), or
    cross-validated probabilities — on training images a model agrees with its labels, errors included.
    """
    from cleanlab.filter import find_label_issues

    present = np.unique(d.labels)
    if len(present) < 2:
        return []
    col = {c: i for i, c in enumerate(present)}
    probs = d.probs[:, present].astype(np.float64)  # (N, K') only the classes that have images
    probs = probs / np.clip(probs.sum(1, keepdims=True), 1e-12, None)
    labels = np.array([col[c] for c in d.labels])
    ranked = find_label_issues(labels, probs, return_indices_ranked_by="self_confidence", n_jobs=1)
    out = []
    for i in ranked[:top] if top else ranked:
        suggested = int(present[int(np.argmax(probs[i]))])
        out.append({"row": int(i), "id": int(d.ids[i]), "path": d.paths[i], "label": d.class_names[d.labels[i]],
                    "suggested": d.class_names[suggested], "label_prob": float(d.probs[i, d.labels[i]]),
                    "suggested_prob": float(d.probs[i, suggested])})
    return out


def label_quality(d: RunData) -> np.ndarray:
    """``(N,)`` cleanlab self-confidence label quality of every row (low = suspicious), over the classes
    that have images: the score behind ``label_issues``'s ranking, for every image."""
    from cleanlab.rank import get_label_quality_scores

    present = np.unique(d.labels)
    if len(present) < 2:
        return np.ones(len(d))
    col = {c: i for i, c in enumerate(present)}
    probs = d.probs[:, present].astype(np.float64)
    probs /= np.clip(probs.sum(1, keepdims=True), 1e-12, None)
    return get_label_quality_scores(np.array([col[c] for c in d.labels]), probs, method="self_confidence")


# -------------------------------------------------------------------------------------- embeddings
def near_duplicates(emb: np.ndarray, splits: np.ndarray, threshold: float = 0.98,
                    chunk: int = 2048) -> list[tuple[int, int, float]]:
    """Pairs of rows in different splits with embedding cosine similarity >= ``threshold``.

    A test image nearly identical to a training image inflates test accuracy (leakage).
    Returns ``(i, j, similarity)`` with ``i < j``, most similar first. Memory: ``chunk x N`` floats.
    """
    x = emb.astype(np.float32)
    x /= np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)
    codes = np.unique(splits, return_inverse=True)[1]
    found: list[tuple[int, int, float]] = []
    for s in range(0, len(x), chunk):
        sim = x[s:s + chunk] @ x.T  # (chunk, N)
        i, j = np.nonzero(sim >= threshold)
        gi = i + s
        keep = (gi < j) & (codes[gi] != codes[j])
        found.extend(zip(gi[keep].tolist(), j[keep].tolist(), sim[i[keep], j[keep]].tolist()))
    return sorted(found, key=lambda t: -t[2])


def project_2d(emb: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """``(N, 2)`` projection of embeddings for a scatter plot: PCA (fast) or t-SNE (seeded)."""
    x = emb.astype(np.float32)
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(x)
    if method == "tsne":
        from sklearn.manifold import TSNE

        return TSNE(n_components=2, random_state=seed, init="pca",
                    perplexity=min(30.0, max(2.0, (len(x) - 1) / 3))).fit_transform(x)
    raise ChoiceError("projection method", method, ["pca", "tsne"])


# ----------------------------------------------------------------------------------------- summary
def load_groups(path: str | os.PathLike) -> dict[str, str]:
    """A class -> group mapping from JSON (``{"cat": ["siamese", ...]}`` or ``{"siamese": "cat"}``) or
    from a text file of ``class,group`` lines."""
    text = open(path, encoding="utf-8").read()
    if str(path).lower().endswith(".json"):
        data = json.loads(text)
        if all(isinstance(v, list) for v in data.values()):
            return {c: g for g, cs in data.items() for c in cs}
        return {str(k): str(v) for k, v in data.items()}
    pairs = [l.split(",", 1) for l in text.splitlines() if l.strip() and not l.startswith("#")]
    return {a.strip(): b.strip() for a, b in pairs if len((a, b)) == 2}
