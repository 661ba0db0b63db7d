"""Everything wrong with a dataset, from one scan: labels, outliers, duplicates and leaks, bad images, weak slices.

Every issue type gives every image a **score in [0, 1], lower is worse** (cleanlab's convention) and a
**flag** (score below the type's threshold, which the caller may change). All of it is read from what
the scan stored (probabilities, embeddings, file hashes, and the pixel statistics of
``data.image_stats`` gathered from the same decode), so no image is decoded again.

=====================  ============================================================  =========
type                   score                                                          threshold
=====================  ============================================================  =========
label                  cleanlab's self-confidence label quality; flagged by           (cleanlab)
                       confident learning (``find_label_issues``) unless a threshold
                       is given
outlier                ``1 / (1 + z)``, z = the smaller of two robust z-scores (median,   0.3
                       MAD): of the mean cosine distance to the k nearest neighbours in
                       embedding space, and of the near-duplicate distance below (far
                       in what the model sees AND in pixels); odd size or aspect
                       explains it instead (not flagged)
near_duplicate         1 - the pixel correlation with the most similar other image    0.003
                       (16 x 16 grey thumbnails, blind to brightness and contrast)
exact_duplicate        0 when another file has the same bytes (sha1), else 1          0.5
leak                   the duplicate score of a partner in another split              0.003
dark                   the 95th percentile of brightness (most pixels are darker)     0.25
light                  1 - the 5th percentile of brightness (blown out)               0.15
blurry                 variance of the Laplacian relative to the dataset's median     0.15
low_information        grey-level entropy / 6 bits                                    0.25
odd_size               linear size relative to the median, min(s/m, m/s)              0.3
odd_aspect             short side / long side                                         0.4
class_imbalance        images of the class / the mean per class                       0.2
underperforming_group  accuracy of the image's group / overall accuracy               0.6
=====================  ============================================================  =========

Groups are k-means clusters of the embedding (or groups the caller gives, one per image); a group is
reported when its accuracy ratio is below the threshold and it holds at least ``min_group`` images.

Example:
    >>> found = find_issues("runs/fashion")                                   # doctest: +SKIP
    >>> [(t.name, int(t.flag.sum())) for t in found.types.values()]          # doctest: +SKIP
    >>> found.pairs[:3]          # (row, row, similarity, 'exact' | 'near', leak?)   # doctest: +SKIP
"""

from __future__ import annotations

import math

import os
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from mikata.analysis.audit import RunData, load_run
from mikata.analysis.runstore import RunStore
from mikata.data.image_stats import ENTROPY_BINS, STAT_COLUMNS
from mikata.errors import ChoiceError

DEFAULT_THRESHOLDS: dict[str, float | None] = {
    "label": None, "outlier": 0.3, "near_duplicate": 0.003, "exact_duplicate": 0.5, "leak": 0.003,
    "dark": 0.25, "light": 0.15, "blurry": 0.15, "low_information": 0.25, "odd_size": 0.3, "odd_aspect": 0.4,
    "class_imbalance": 0.2, "underperforming_group": 0.6,
}
ISSUE_TYPES = tuple(DEFAULT_THRESHOLDS)
DESCRIPTIONS = {
    "label": "suspected label errors (confident learning on the stored probabilities)",
    "outlier": "images far from every other image in embedding space (out of distribution)",
    "near_duplicate": "images that are nearly the same picture as another (up to brightness, contrast, compression)",
    "exact_duplicate": "files whose bytes equal another file's",
    "leak": "duplicates (exact or near) across splits: they inflate held-out accuracy",
    "dark": "dark images (95% of pixels below the threshold)",
    "light": "blown-out images (95% of pixels above 1 - threshold)",
    "blurry": "images much less sharp than the dataset's typical image",
    "low_information": "images with very few grey levels (blank, flat, nearly constant)",
    "odd_size": "images much smaller or larger than the typical one",
    "odd_aspect": "images with an unusual aspect ratio",
    "class_imbalance": "images of classes with far fewer images than the mean",
    "underperforming_group": "images in a group (embedding cluster or given group) where accuracy is much lower",
}
KNN_EXACT_MAX = 50_000  # above this many images the k-NN search is approximate (faiss HNSW)


@dataclass
class IssueType:
    """One issue type over the images of a ``RunData`` (row order)."""

    name: str
    score: np.ndarray      # (N,) in [0, 1], lower is worse
    flag: np.ndarray       # (N,) bool
    threshold: float | None
    order: np.ndarray | None = None  # (F,) the flagged rows, most severe first, when the method ranks them itself

    @property
    def description(self) -> str:
        return DESCRIPTIONS[self.name]

    def ranked(self) -> np.ndarray:
        """Row indices of every flagged image, most severe first: the method's own order (the label
        issues' confident-learning ranking, which the review queue uses), else by ascending score."""
        if self.order is not None:
            return self.order
        rows = np.nonzero(self.flag)[0]
        return rows[np.argsort(self.score[rows], kind="stable")]

    def worst(self, n: int = 10) -> list[int]:
        """Row indices of the ``n`` flagged images with the lowest scores (most severe first)."""
        return self.ranked()[:n].tolist()


@dataclass
class DatasetIssues:
    data: RunData
    types: dict[str, IssueType]
    pairs: list[tuple[int, int, float, str, bool]] = field(default_factory=list)  # (i, j, sim, kind, across splits)
    groups: list[dict] = field(default_factory=list)  # {"group", "size", "accuracy", "ratio", "flagged"}
    notes: list[str] = field(default_factory=list)

    def summary(self) -> list[dict]:
        return [{"type": t.name, "flagged": int(t.flag.sum()), "threshold": t.threshold,
                 "description": t.description} for t in self.types.values()]

    def columns(self) -> dict[str, np.ndarray]:
        """``{f"{type}_score": (N,), f"{type}_issue": (N,) bool}`` for a table with one row per image."""
        out: dict[str, np.ndarray] = {}
        for t in self.types.values():
            out[f"{t.name}_score"] = t.score
            out[f"{t.name}_issue"] = t.flag
        return out


def issue_rows(found: DatasetIssues, name: str, cls: int | None = None) -> np.ndarray:
    """Row indices of the images flagged for ``name`` (of class ``cls``), most severe first: what the
    report's and the web app's issue grids show."""
    if name not in found.types:
        raise ChoiceError("issue type", name, list(found.types))
    rows = found.types[name].ranked()
    return rows if cls is None else rows[found.data.labels[rows] == cls]


# methods whose maps explain an issue: the evidence behind a label issue, an outlier, a weak group
EXPLAINED_BY_MAPS = ("label", "outlier", "underperforming_group", "class_imbalance")


def check_thresholds(thresholds: Mapping[str, float] | None) -> dict[str, float | None]:
    merged = dict(DEFAULT_THRESHOLDS)
    for name, value in (thresholds or {}).items():
        if name not in DEFAULT_THRESHOLDS:
            raise ChoiceError("issue type", name, list(ISSUE_TYPES))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            from mikata.errors import MikataError

            raise MikataError(f"--thresholds: {name}={value} is not a finite number; give one like {name}=0.05")
        merged[name] = float(value)
    return merged


def parse_thresholds(text: str | None) -> dict[str, float]:
    """``"outlier=0.05,dark=0.3"`` -> ``{"outlier": 0.05, "dark": 0.3}``."""
    from mikata.errors import MikataError

    out: dict[str, float] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, _, value = part.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise MikataError(f"--thresholds: {part!r} is not TYPE=NUMBER (e.g. outlier=0.05,dark=0.3)") from None
    check_thresholds(out)
    return out


# --------------------------------------------------------------------------------- neighbours
def embedding_features(emb: np.ndarray, dims: int = 128, seed: int = 0, fit_rows: int = 50_000,
                       chunk: int = 100_000) -> np.ndarray:
    """``(N, dims)`` float32 unit vectors: L2-normalized embeddings projected on their first ``dims``
    right singular vectors (fitted on a seeded sample of at most ``fit_rows``), normalized again.

    The projection is not centred (a truncated SVD, not a PCA): centring and normalizing again
    removes the direction every in-distribution image shares and inflates the differences between
    them. Measured on the planted Fashion-MNIST case (lite0 at 64 px, ``bench_issues.py``), the
    embedding-only outlier AUROC is 0.997 uncentred against 0.988 with PCA; on the digits test with
    the MNIST CNN, 0.83 against 0.82. Works chunk by chunk, so a million float16 embeddings never become one
    float32 copy.
    """
    def unit(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, dtype=np.float32)
        return a / np.clip(np.linalg.norm(a, axis=1, keepdims=True), 1e-12, None)

    n, width = emb.shape
    if width <= dims or n <= dims:
        return np.ascontiguousarray(unit(emb))
    from sklearn.decomposition import TruncatedSVD

    sample = np.sort(np.random.default_rng(seed).choice(n, min(n, fit_rows), replace=False))
    basis = TruncatedSVD(n_components=dims, algorithm="randomized", random_state=seed).fit(
        unit(emb[sample])).components_.T.astype(np.float32)  # (width, dims)
    out = np.empty((n, dims), np.float32)
    for s in range(0, n, chunk):
        out[s:s + chunk] = unit(unit(emb[s:s + chunk]) @ basis)
    return out


def knn(x: np.ndarray, k: int, chunk_mb: float = 256.0) -> tuple[np.ndarray, np.ndarray]:
    """``(distances (N, k), indices (N, k))``: cosine distance to the k nearest other rows of unit vectors ``x``.

    Exact up to ``KNN_EXACT_MAX`` rows: blocked matrix products (``chunk_mb`` of similarities at a time,
    never an N x N matrix), or faiss's flat index above 20k rows when faiss is installed (the same
    neighbours, selected faster); approximate (faiss HNSW) above that.
    """
    n = len(x)
    k = max(1, min(k, n - 1))
    if n > KNN_EXACT_MAX:
        return _knn_faiss(x, k)
    if n > 20_000:
        try:  # the same exact search, but faiss selects the top k with heaps instead of a partition of each row
            return _knn_faiss(x, k, exact=True)
        except ImportError:
            pass
    dist = np.empty((n, k), np.float32)
    idx = np.empty((n, k), np.int64)
    step = max(1, int(chunk_mb * 2**20 / (4 * n)))
    for s in range(0, n, step):
        sim = x[s:s + step] @ x.T  # (chunk, N)
        sim[np.arange(len(sim)), np.arange(s, s + len(sim))] = -np.inf  # not its own neighbour
        part = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(sim, part, 1)
        order = np.argsort(-top, axis=1, kind="stable")
        idx[s:s + step] = np.take_along_axis(part, order, 1)
        dist[s:s + step] = 1.0 - np.take_along_axis(top, order, 1)
    return np.clip(dist, 0.0, 2.0), idx


def _knn_faiss(x: np.ndarray, k: int, exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """k-NN by inner product with faiss: exact (a flat index) or approximate (HNSW, 32 links)."""
    try:
        import faiss
    except ImportError:
        if exact:
            raise
        from mikata.errors import MikataError

        raise MikataError(f"{len(x)} images: the exact neighbour search would take hours; install faiss-cpu "
                          "(pip install -c constraints.txt faiss-cpu) for the approximate one") from None
    x = np.ascontiguousarray(x, dtype=np.float32)
    if exact:
        index = faiss.IndexFlatIP(x.shape[1])
    else:
        index = faiss.IndexHNSWFlat(x.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
    index.add(x)
    if not exact:
        index.hnsw.efSearch = max(64, 2 * k)
    sim, idx = index.search(x, k + 1)
    self_hit = idx == np.arange(len(x))[:, None]  # each row finds itself (usually first): drop it
    keep = ~self_hit
    keep[~self_hit.any(1), k] = False  # rows that did not find themselves keep their k best
    out_i = idx[keep].reshape(len(x), k)
    out_s = sim[keep].reshape(len(x), k)
    return np.clip(1.0 - out_s, 0.0, 2.0).astype(np.float32), out_i.astype(np.int64)


# ------------------------------------------------------------------------------------ issues
def find_issues(run: str | os.PathLike | RunData, thresholds: Mapping[str, float] | None = None, k: int = 10,
                split: str | None = None, groups: Sequence[str] | Mapping[str, str] | None = None,
                min_group: int = 10, seed: int = 0, label_ranking: np.ndarray | None = None) -> DatasetIssues:
    """Score every image of a run for every issue type (see the module doc for the definitions).

    ``groups``: one group name per image (row order of the run's ``RunData``) or a path -> group
    mapping; without it the groups are k-means clusters of the embedding. ``label_ranking``:
    ``Overview.label_ranking`` when the caller has it, so the flagged label errors are exactly the
    overview's list (and cleanlab does not run twice).
    """
    th = check_thresholds(thresholds)
    d = run if isinstance(run, RunData) else load_run(run, split)
    n = len(d)
    types: dict[str, IssueType] = {}
    notes: list[str] = []

    def add(name: str, score: np.ndarray, flag: np.ndarray | None = None) -> None:
        score = np.clip(np.asarray(score, dtype=np.float64), 0.0, 1.0) + 0.0  # + 0.0: no negative zeros
        t = th[name]
        types[name] = IssueType(name, score, score < t if flag is None else np.asarray(flag, bool), t)

    # labels: the overview's own confident-learning list, so every view agrees
    from mikata.analysis.audit import label_quality
    from mikata.analysis.heldout import in_sample_rows
    from mikata.analysis.overview_cache import ranking_without

    with RunStore.open(d.run_dir) as store:
        trained = in_sample_rows(store.manifest, d.splits)  # rows the model trained on: never flagged
    quality = label_quality(d)
    if th["label"] is None:
        if label_ranking is not None:
            ranking = np.asarray(label_ranking, np.int64)
        else:  # the held-out rows only: a trained-on row's label fits by construction
            ranking = ranking_without(d, trained)
        flagged = np.zeros(n, bool)
        flagged[ranking] = True
        add("label", quality, flagged)
        types["label"].order = ranking  # the overview's order: the issues page and the review queue agree
    else:
        add("label", quality, (np.clip(quality, 0, 1) < th["label"]) & ~trained)
    if trained.any():
        notes.append(f"label: {int(trained.sum())} rows the model was trained on are not searched for label errors "
                     "(their probabilities are in-sample)")

    with RunStore.open(d.run_dir) as store:
        dims = store.dims()
        emb = np.asarray(store.vectors("embed")[d.vec_rows]) if "embed" in dims and n else None  # float16
        stats = np.asarray(store.vectors("stats")[d.vec_rows], np.float32) if "stats" in dims and n else None
        thumbs = np.asarray(store.vectors("thumbs")[d.vec_rows], np.float32) if "thumbs" in dims and n else None
        hashes = [r[0] for r in store.rows(status="ok", split=split, columns=("hash",), tuples=True)]
    # damaged (NaN/inf) vectors, which `mikata check` names, count as zeros here rather than failing every search
    emb, stats, thumbs = (None if a is None else np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
                          for a in (emb, stats, thumbs))

    # near duplicates: brightness- and contrast-blind pixel thumbnails (what a person calls "the same picture")
    pairs: dict[tuple[int, int], tuple[float, str]] = {}
    near = None
    if thumbs is not None and n > 1:
        tdist, tidx = knn(np.ascontiguousarray(thumbs / np.clip(np.linalg.norm(thumbs, axis=1, keepdims=True),
                                                                1e-12, None)), 1)
        near = tdist[:, 0]
        add("near_duplicate", near)
        for i in np.nonzero(types["near_duplicate"].flag)[0]:
            j = int(tidx[i, 0])
            pairs.setdefault((min(i, j), max(i, j)), (1.0 - float(near[i]), "near"))
    else:
        notes.append("no thumbnails in this run (scanned before mikata stored them): near duplicates are not computed")

    # outliers: far from every other image in what the model sees (embedding k-NN) and in its pixels
    feats = None
    if emb is not None and n > 2:
        feats = embedding_features(emb, seed=seed)
        z = embedding_outlier_z(feats, k)
        if near is not None:
            z = np.minimum(z, _robust_z(near))
        add("outlier", 1.0 / (1.0 + np.maximum(z, 0.0)))
    else:
        notes.append("no embeddings in this run: outliers and embedding groups are not computed")

    # exact duplicates: the same bytes
    exact = np.ones(n)
    by_hash: dict[str, list[int]] = {}
    for i, h in enumerate(hashes):
        if h:
            by_hash.setdefault(h, []).append(i)
    for members in by_hash.values():
        if len(members) > 1:
            exact[members] = 0.0
            for j in members[1:]:
                pairs[(members[0], j)] = (1.0, "exact")
    add("exact_duplicate", exact)

    # leaks: a duplicate partner in another split
    leak = np.ones(n)
    splits = np.asarray(d.splits)
    out_pairs = []
    for (i, j), (sim, kind) in sorted(pairs.items(), key=lambda kv: -kv[1][0]):
        across = bool(splits[i] != splits[j]) and bool(splits[i]) and bool(splits[j])
        out_pairs.append((int(i), int(j), float(sim), kind, across))
        if across:
            leak[[i, j]] = np.minimum(leak[[i, j]], 0.0 if kind == "exact" else 1.0 - sim)
    add("leak", leak)

    # image quality: the pixel statistics the scan gathered from the same decode
    if stats is not None:
        col = {c: stats[:, STAT_COLUMNS.index(c)] for c in STAT_COLUMNS}
        add("dark", col["p95"])
        add("light", 1.0 - col["p05"])
        flat = col["p95"] - col["p05"] < 1e-3  # no content at all: a low-information image, not a blurry one
        add("blurry", np.where(flat, 1.0, col["sharpness"] / max(float(np.median(col["sharpness"])), 1e-12)))
        add("low_information", col["entropy"] / np.log2(ENTROPY_BINS))
        side = np.sqrt(np.clip(col["width"] * col["height"], 1, None))
        med = float(np.median(side))
        add("odd_size", np.minimum(side / med, med / side))
        w, h = np.clip(col["width"], 1, None), np.clip(col["height"], 1, None)
        add("odd_aspect", np.minimum(w, h) / np.maximum(w, h))
        _explain_outliers(types, notes)
    else:
        notes.append("no pixel statistics in this run (scanned before mikata stored them): rescan into a new run "
                     "for dark / light / blurry / low-information / size checks")

    # class imbalance
    counts = np.bincount(d.labels, minlength=d.num_classes) if n else np.zeros(d.num_classes, int)
    present = counts[counts > 0]
    mean_count = float(present.mean()) if len(present) else 1.0
    add("class_imbalance", counts[d.labels] / mean_count if n else np.ones(0))

    # underperforming groups
    group_rows, group_names = _groups(d, feats, groups, seed)
    correct = d.labels == d.preds
    overall = float(correct.mean()) if n else float("nan")
    ratio = np.ones(n)
    group_list = []
    flag = np.zeros(n, bool)
    for g, name in enumerate(group_names):
        rows = np.nonzero(group_rows == g)[0]
        if not len(rows):
            continue
        acc = float(correct[rows].mean())
        r = acc / overall if overall > 0 else 1.0
        flagged = bool(len(rows) >= min_group and th["underperforming_group"] is not None
                       and r < th["underperforming_group"])
        ratio[rows] = min(1.0, r)
        flag[rows] = flagged
        group_list.append({"group": name, "size": int(len(rows)), "accuracy": acc, "ratio": r, "flagged": flagged,
                           "rows": rows.tolist()})
    add("underperforming_group", ratio, flag)
    group_list.sort(key=lambda g: g["ratio"])
    return DatasetIssues(d, types, out_pairs, group_list, notes)


def _explain_outliers(types: dict[str, IssueType], notes: list[str]) -> None:
    """An image of odd size or aspect is seen by the model through a crop or a large resize, which
    alone moves it away from the rest in embedding space: it is flagged for its geometry, not again as
    an outlier, so the outlier flag keeps the images whose content is foreign (a photo among garments).
    Their outlier score is kept; the note counts them."""
    if "outlier" not in types:
        return
    geometry = types["odd_size"].flag | types["odd_aspect"].flag
    explained = types["outlier"].flag & geometry
    if explained.any():
        types["outlier"].flag = types["outlier"].flag & ~geometry
        notes.append(f"outlier: {int(explained.sum())} more images are far from the rest and flagged for their odd "
                     "size or aspect instead (the model sees them cropped or heavily resized)")


def embedding_outlier_z(feats: np.ndarray, k: int) -> np.ndarray:
    """``(N,)`` robust z-score of each row's mean cosine distance to its ``k`` nearest other rows (the
    k-NN definition cleanlab's ``OutOfDistribution`` uses on features); the outlier score caps it by
    the pixel thumbnails' nearest-neighbour z."""
    dist, _ = knn(feats, k)
    return _robust_z(dist.mean(1))


def _robust_z(v: np.ndarray) -> np.ndarray:
    """(v - median) / (1.4826 MAD): a z-score that the outliers themselves do not inflate."""
    v = np.asarray(v, np.float64)
    med = float(np.median(v))
    return (v - med) / max(1.4826 * float(np.median(np.abs(v - med))), 1e-9)


def _groups(d: RunData, feats: np.ndarray | None, groups, seed: int) -> tuple[np.ndarray, list[str]]:
    """Group index per row and the group names: the given groups, or k-means clusters of the embedding."""
    n = len(d)
    if groups is not None:
        given = [groups.get(p, "") for p in d.paths] if isinstance(groups, Mapping) else list(groups)
        if len(given) != n:
            raise ValueError(f"groups has {len(given)} entries for {n} images")
        names = sorted(set(given))
        index = {g: i for i, g in enumerate(names)}
        return np.array([index[g] for g in given], np.int64), names
    if feats is None or n < 20:
        return np.zeros(n, np.int64), ["all"]
    from sklearn.cluster import MiniBatchKMeans

    clusters = int(np.clip(round(np.sqrt(n / 10)), 2, 50))
    labels = MiniBatchKMeans(n_clusters=clusters, random_state=seed, n_init=3, batch_size=4096).fit_predict(feats)
    return labels.astype(np.int64), [f"cluster {c}" for c in range(clusters)]


def issues_report(found: DatasetIssues, worst: int = 5, max_pairs: int = 20) -> dict:
    """JSON-ready summary: per type the count flagged and the worst images; duplicate pairs; weak groups."""
    d = found.data
    types = []
    for t in found.types.values():
        types.append({"type": t.name, "description": t.description, "threshold": t.threshold,
                      "flagged": int(t.flag.sum()),
                      "worst": [{"id": int(d.ids[i]), "path": d.paths[i], "score": round(float(t.score[i]), 4)}
                                for i in t.worst(worst)]})
    pairs = [{"a": d.paths[i], "b": d.paths[j], "similarity": round(sim, 4), "kind": kind, "across_splits": across}
             for i, j, sim, kind, across in found.pairs[:max_pairs]]
    groups = [{k: g[k] for k in ("group", "size", "accuracy", "ratio")} for g in found.groups if g["flagged"]]
    return {"types": types, "duplicate_pairs": pairs, "duplicate_pairs_total": len(found.pairs),
            "leaks": int(sum(1 for p in found.pairs if p[4])), "underperforming_groups": groups, "notes": found.notes}


def format_issues(r: dict) -> list[str]:
    """The lines ``mikata audit`` prints for an ``issues_report``."""
    lines = ["\ndataset issues (score in [0, 1], lower is worse; flagged below the threshold)"]
    for t in r["types"]:
        th = "confident learning" if t["threshold"] is None else f"< {t['threshold']:g}"
        lines.append(f"  {t['type']:22s} {t['flagged']:6d} flagged ({th}): {t['description']}")
        for w in t["worst"][:3]:
            lines.append(f"      {w['path']} ({w['score']:.3f})")
    if r["duplicate_pairs"]:
        lines.append(f"  duplicate pairs: {r['duplicate_pairs_total']} ({r['leaks']} across splits)")
        for p in r["duplicate_pairs"][:5]:
            lines.append(f"      {p['a']} = {p['b']} ({p['kind']}, {p['similarity']:.3f}"
                         f"{', across splits' if p['across_splits'] else ''})")
    for g in r["underperforming_groups"][:5]:
        lines.append(f"  weak group {g['group']}: {g['size']} images, accuracy {g['accuracy']:.1%} "
                     f"({g['ratio']:.2f} of overall)")
    lines += [f"  note: {n}" for n in r["notes"]]
    return lines
