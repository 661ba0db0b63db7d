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
from typing import Mapping, Sequence

import numpy as np

from mikata.runs.store import RunStore
from mikata.errors import ChoiceError
from mikata.runs.data import RunData


# ------------------------------------------------------------------------------ scores and confusion
def accuracy(d: RunData) -> float:
    return float((d.labels == d.preds).mean()) if len(d) else float("nan")


def topk_accuracy(d: RunData, k: int = 5) -> float:
    """Share of images whose label is among the ``k`` most probable classes."""
    if not len(d):
        return float("nan")
    k = min(k, d.num_classes)
    p_label = d.probs[np.arange(len(d)), d.labels]  # (N,)
    # the label is in the top k when fewer than k classes are more probable (no (N, K) partition)
    return float(((d.probs > p_label[:, None]).sum(1) < k).mean())


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


def ranked_per_class(d: RunData, classes: Sequence[int], n: int = 5) -> list[tuple[list[int], list[int], list[int]]]:
    """``(most, least, confident errors)`` row indices for each class: ``class_like`` and
    ``confident_errors`` for every class at once, with two sorts of all rows instead of two per class
    (a 1,000-class run of a million images would otherwise sort 2,000 times)."""
    rows = np.arange(len(d))
    order = _by_class_then_prob(d.labels, d.probs[rows, d.labels])
    bounds = np.searchsorted(d.labels[order], np.arange(d.num_classes + 1))
    wrong = np.nonzero(d.labels != d.preds)[0]
    w_order = wrong[_by_class_then_prob(d.labels[wrong], d.probs[wrong, d.preds[wrong]])]
    w_bounds = np.searchsorted(d.labels[w_order], np.arange(d.num_classes + 1))
    out = []
    for c in classes:
        mine = order[bounds[c]:bounds[c + 1]]
        out.append((mine[:n].tolist(), mine[::-1][:n].tolist(), w_order[w_bounds[c]:w_bounds[c + 1]][:n].tolist()))
    return out


def _by_class_then_prob(classes: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Stable order by class, then by descending ``p`` — ``np.lexsort((-p, classes))`` as one float64
    key (exact: float32 probabilities in [0, 1] and class ids fit in its 53-bit mantissa), ~10x faster."""
    key = classes.astype(np.float64) + (1.0 - np.clip(p.astype(np.float64), 0.0, 1.0)) * 0.5
    return np.argsort(key, kind="stable")


def top_activating(channels: np.ndarray, channel: int, k: int = 9) -> list[int]:
    """Row indices of the ``k`` images with the highest mean activation of ``channel`` (``channels``:
    ``(N, C)`` per-image channel means), highest first; equal means: the lower row first."""
    if not 0 <= channel < channels.shape[1]:
        raise ChoiceError("channel", channel, [f"0..{channels.shape[1] - 1}"])
    from mikata.featurevis.top_images import top_k_rows  # the one ranking of top-activating images

    return top_k_rows(channels[:, channel], k).tolist()


def label_issues(d: RunData, top: int | None = None, ranked: np.ndarray | None = None) -> list[dict]:
    """Suspected label errors, most suspicious first (confident learning), each with what the evidence is.

    Uses ``cleanlab.filter.find_label_issues`` on the stored probabilities. They must be
    out-of-sample: for a model trained on other data any split qualifies; for a model trained on
    this folder use only the split it did not train on (``load_run(run, split="test")``), or
    cross-validated probabilities — on training images a model agrees with its labels, errors included.
    ``ranked`` is ``label_issue_ranking(d)`` when it was computed before (it is cached per run version).

    Each item says what the model did, not what the truth is: ``label_prob`` (P of the given label),
    ``model_class``/``model_prob`` (the model's top class and its probability), ``score`` (cleanlab's
    self-confidence label quality, lower is more suspicious), ``split``; ``suggested``/``suggested_prob``
    (the most probable class among those with images) stay for older callers. ``top`` cuts the list;
    the uncut one's length (``Overview.label_issues_total``) is the count every view shows.
    """
    present = np.unique(d.labels)
    if ranked is None:
        ranked = label_issue_ranking(d)
    rows = np.asarray(ranked[:top] if top else ranked, np.int64)
    quality = label_quality_of(d, rows)
    out = []
    for i, q in zip(rows.tolist(), np.asarray(quality, np.float64).tolist()):
        suggested = int(present[int(np.argmax(d.probs[i, present]))])
        top1 = int(d.preds[i])
        out.append({"row": i, "id": int(d.ids[i]), "path": d.paths[i], "label": d.class_names[d.labels[i]],
                    "suggested": d.class_names[suggested], "label_prob": float(d.probs[i, d.labels[i]]),
                    "suggested_prob": float(d.probs[i, suggested]), "model_class": d.class_names[top1],
                    "model_prob": float(d.probs[i, top1]), "score": float(q), "split": str(d.splits[i])})
    return out


def label_issue_evidence(item: dict) -> list[dict]:
    """Why a suspected label error is flagged, part by part, stating the evidence without asserting a
    truth: what the image is labelled and P of that label, the model's top class and its P, the issue
    score, the split. Each part is ``{"key", "value", "note", "strong"}`` (``strong``: the value is a
    class name a page sets in bold). The one source of this sentence: ``describe_label_issue`` (text),
    the report's table and the web app's review cards render these parts."""
    return [{"key": "labelled", "value": str(item["label"]), "note": f"p={item['label_prob']:.2f}", "strong": True},
            {"key": "model says", "value": str(item["model_class"]), "note": f"p={item['model_prob']:.2f}",
             "strong": True},
            {"key": "issue score", "value": f"{item['score']:.2f}", "note": "", "strong": False},
            {"key": "split", "value": str(item.get("split") or "none"), "note": "", "strong": False}]


def describe_label_issue(item: dict) -> str:
    """``label_issue_evidence`` as one line:
    ``labelled A (p=0.00) · model says B (p=1.00) · issue score 0.00 · split test``."""
    return " · ".join(f"{p['key']} {p['value']}" + (f" ({p['note']})" if p["note"] else "")
                      for p in label_issue_evidence(item))


def shown_of(shown: int, total: int) -> str:
    """``"showing 20 of 76"`` where a list is cut, ``"all 76"`` where it is not."""
    return f"showing {shown} of {total}" if shown < total else f"all {total}"


def label_issue_ranking(d: RunData) -> np.ndarray:
    """Row indices of every suspected label error, most suspicious first (the costly part: cleanlab)."""
    present = np.unique(d.labels)
    if len(present) < 2:
        return np.zeros(0, np.int64)
    from mikata.progress import quiet_tqdm_import

    with quiet_tqdm_import():
        from cleanlab.filter import find_label_issues

    col = np.full(d.num_classes, -1, np.int64)
    col[present] = np.arange(len(present))
    probs = d.probs[:, present].astype(np.float64)  # (N, K') only the classes that have images
    probs = probs / np.clip(probs.sum(1, keepdims=True), 1e-12, None)
    ranked = find_label_issues(col[d.labels], probs, return_indices_ranked_by="self_confidence", n_jobs=1)
    return np.asarray(ranked, np.int64)


def label_quality(d: RunData) -> np.ndarray:
    """``(N,)`` cleanlab self-confidence label quality of every row (low = suspicious), over the classes
    that have images: the score behind ``label_issues``'s ranking, for every image."""
    return label_quality_of(d, None)


def label_quality_of(d: RunData, rows: np.ndarray | None) -> np.ndarray:
    """``label_quality`` of the given rows only (all when ``rows`` is None): a few listed issues of a
    million-row run need not score every row. Self-confidence is P(label) renormalized over those
    classes (``cleanlab.rank.get_label_quality_scores(..., method="self_confidence")``, without its checks)."""
    present = np.unique(d.labels)
    rows = np.arange(len(d)) if rows is None else np.asarray(rows, np.int64)
    if len(present) < 2 or not len(rows):
        return np.ones(len(rows))
    col = np.full(d.num_classes, -1, np.int64)
    col[present] = np.arange(len(present))
    probs = d.probs[rows][:, present].astype(np.float64)  # (n, K')
    probs /= np.clip(probs.sum(1, keepdims=True), 1e-12, None)
    return probs[np.arange(len(rows)), col[d.labels[rows]]]


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
    # a damaged (NaN/inf) embedding, which `mikata check` names, is drawn at the origin instead of failing the plot
    x = np.nan_to_num(emb.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
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
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        cls, comma, group = line.partition(",")
        if not comma or not cls.strip() or not group.strip():
            from mikata.errors import MikataError

            raise MikataError(f"{path} line {number}: {line.strip()!r} is not CLASS,GROUP; write one "
                              "class,group pair per line (or a JSON file)")
        out[cls.strip()] = group.strip()
    return out


def reviewed_label(review: Mapping | None, label: int | None) -> int | None:
    """The class a person's review gives an image (the one rule of the export, the notebook and the
    reviews CSV): its own ``label`` when marked "fine", the reviewer's class when marked "wrong" (None
    if none was chosen), None without a review."""
    if not review:
        return None
    if review["verdict"] == "fine":
        return None if label is None else int(label)
    suggested = review.get("suggested") if review["verdict"] == "wrong" else None
    return None if suggested is None else int(suggested)
