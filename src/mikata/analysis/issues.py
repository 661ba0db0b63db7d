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
from typing import Callable, Mapping, Sequence

import numpy as np

from mikata.runs.data import RunData, load_run, subset
from mikata.analysis.issue_registry import (IssueContext, IssueTypeSpec, Scored, default_thresholds, issue_type_names, issue_type_specs, register_issue_type)
from mikata.runs.store import RunStore
from mikata.data.image_stats import ENTROPY_BINS, STAT_COLUMNS, THUMB_SIDE
from mikata.errors import ChoiceError

KNN_EXACT_MAX = 50_000  # above this many images the k-NN search is approximate (faiss HNSW)


@dataclass
class IssueType:
    """One issue type over the images of a ``RunData`` (row order)."""

    name: str
    score: np.ndarray      # (N,) in [0, 1], lower is worse
    flag: np.ndarray       # (N,) bool
    threshold: float | None
    order: np.ndarray | None = None  # (F,) the flagged rows, most severe first, when the method ranks them itself
    description: str = ""            # the registry's description of the type

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

    def select(self, rows: np.ndarray) -> "IssueType":
        """This type over rows ``rows`` (ascending indices): scores and flags as computed, the order kept."""
        order = None
        if self.order is not None:
            pos = np.full(len(self.score), -1, np.int64)
            pos[rows] = np.arange(len(rows))
            order = pos[self.order]
            order = order[order >= 0]
        return IssueType(self.name, self.score[rows], self.flag[rows], self.threshold, order, self.description)


@dataclass
class DatasetIssues:
    """Every issue type over the rows of ``data``. When ``data`` is a selection of a run's rows (a split,
    a class...), every score and flag is the whole run's (a test image duplicating a training image is
    a leak) and ``pairs`` index ``whole``, the run's rows, so a pair's partner outside the selection is
    still named."""

    data: RunData
    types: dict[str, IssueType]
    pairs: list[tuple[int, int, float, str, bool]] = field(default_factory=list)  # (i, j, sim, kind, across splits)
    groups: list[dict] = field(default_factory=list)  # {"group", "size", "accuracy", "ratio", "flagged", "rows"}
    notes: list[str] = field(default_factory=list)
    whole: RunData | None = None  # the rows ``pairs`` index, when ``data`` is a selection of them
    # row ids -> thumbnail bytes, for the notebook display (``Run.issues`` sets it; None: no pictures)
    thumbnails: Callable[[Sequence[int]], dict[int, bytes]] | None = field(default=None, repr=False, compare=False)

    def __repr__(self) -> str:
        counts = ", ".join(f"{t.name} {int(t.flag.sum())}" for t in self.types.values())
        return f"DatasetIssues({len(self.data)} images; flagged: {counts}; {len(self.pairs)} duplicate pairs)"

    def _repr_html_(self, worst: int = 4) -> str:
        """A table: per issue type the count flagged, the threshold, what it means and thumbnails of
        its worst images; then the weak groups and notes. Every name from the run is escaped."""
        from mikata.notebook import STYLE, Raw, esc, img_tag, table_html

        d = self.data
        picked = {t.name: [int(d.ids[r]) for r in t.worst(worst)] for t in self.types.values()}
        pictures = self.thumbnails(sorted({i for ids in picked.values() for i in ids})) if self.thumbnails else {}
        rows = []
        for t in self.types.values():
            name_of = {int(d.ids[r]): os.path.basename(str(d.paths[r])) for r in t.worst(worst)}
            thumbs = "".join(img_tag(pictures[i], alt=name_of[i], title=f"#{i} {name_of[i]}", side=48)
                             if i in pictures else f"<div>#{i} {esc(name_of[i])}</div>" for i in picked[t.name])
            th = "confident learning" if t.threshold is None else f"< {t.threshold:g}"
            rows.append([t.name, int(t.flag.sum()), th, t.description, Raw(f'<div style="display:flex;gap:3px">'
                                                                          f"{thumbs}</div>")])
        table = table_html(["issue type", "flagged", "threshold", "what it means", "worst images"], rows)
        groups = [[g["group"], g["size"], g["accuracy"], g["ratio"]] for g in self.groups if g["flagged"]]
        weak = table_html(["weak group", "images", "accuracy", "of overall"], groups) if groups else ""
        notes = "".join(f"<div>note: {esc(n)}</div>" for n in self.notes)
        return (f"<div>{STYLE}<div><b>dataset issues</b> of {len(d)} images (score in [0, 1], lower is worse; "
                f"{len(self.pairs)} duplicate pairs)</div>{table}{weak}{notes}</div>")

    @property
    def pair_data(self) -> RunData:
        """The rows that ``pairs``' indices refer to."""
        return self.whole if self.whole is not None else self.data

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

    def select(self, rows: np.ndarray) -> "DatasetIssues":
        """The issues of rows ``rows`` (ascending indices into ``data``, which must be the whole run's rows):
        the whole run's scores and flags of those rows, the pairs one of them is in, the groups they fall in
        (each group's numbers stay the whole run's)."""
        if self.whole is not None:
            raise ValueError("select from the whole run's issues, not from a selection")
        rows = np.asarray(rows, np.int64)
        pos = np.full(len(self.data), -1, np.int64)
        pos[rows] = np.arange(len(rows))
        inside = pos >= 0
        groups = []
        for g in self.groups:
            kept = pos[np.asarray(g["rows"], np.int64)]
            kept = kept[kept >= 0]
            if len(kept):
                groups.append({**g, "rows": kept.tolist()})
        return DatasetIssues(subset(self.data, rows), {n: t.select(rows) for n, t in self.types.items()},
                             [p for p in self.pairs if inside[p[0]] or inside[p[1]]], groups, list(self.notes),
                             whole=self.data)


def issue_rows(found: DatasetIssues, name: str, cls: int | None = None) -> np.ndarray:
    """Row indices of the images flagged for ``name`` (of class ``cls``), most severe first: what the
    report's and the web app's issue grids show."""
    if name not in found.types:
        raise ChoiceError("issue type", name, list(found.types))
    rows = found.types[name].ranked()
    return rows if cls is None else rows[found.data.labels[rows] == cls]


def check_thresholds(thresholds: Mapping[str, float] | None) -> dict[str, float | None]:
    merged = default_thresholds()
    for name, value in (thresholds or {}).items():
        if name not in merged:
            raise ChoiceError("issue type", name, list(merged))
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
    """Score every image of a run for every registered issue type (``issue_registry``; the built-in
    types are defined in the module doc).

    Issues are a property of the whole run: a selection (``split``, or a ``RunData`` of some of the
    run's rows) gets the whole run's scores and flags of its rows (``DatasetIssues.select``), so a test
    image that duplicates a training image is a leak from every view. ``groups``: one group name per
    image of the run (row order of its whole ``RunData``) or a path -> group mapping; without it the
    groups are k-means clusters of the embedding. ``label_ranking``: the run's ``Overview.label_ranking``
    when the caller has it (rows of the whole run), so the flagged label errors are exactly the
    overview's list and cleanlab does not run twice.
    """
    from mikata.analysis.overview_cache import run_data

    th = check_thresholds(thresholds)
    d = run if isinstance(run, RunData) else load_run(run, split)
    whole = d
    if split is not None or isinstance(run, RunData):
        with RunStore.open(d.run_dir) as store:
            with store.snapshot():
                whole = run_data(store).data  # the run's rows (kept on disk per run version)
    if len(whole) == len(d) and np.array_equal(whole.ids, d.ids):
        return score_issues(d, th, k, groups, min_group, seed, label_ranking)
    rows = rows_of(whole, d.ids)
    return score_issues(whole, th, k, groups, min_group, seed, None).select(rows)


def rows_of(whole: RunData, ids: np.ndarray) -> np.ndarray:
    """Indices into ``whole`` of the row ids ``ids`` (ascending); a ``RunStoreError`` if one is gone."""
    from mikata.runs.store import RunStoreError

    ids = np.asarray(ids, np.int64)
    rows = np.searchsorted(whole.ids, ids)
    if len(ids) and (rows.max() >= len(whole) or not np.array_equal(whole.ids[np.minimum(rows, len(whole) - 1)], ids)):
        raise RunStoreError(f"{whole.run_dir}: rows changed while they were read (a scan replaced them); read again")
    return rows


def score_issues(d: RunData, th: Mapping[str, float | None], k: int = 10,
                 groups: Sequence[str] | Mapping[str, str] | None = None, min_group: int = 10, seed: int = 0,
                 label_ranking: np.ndarray | None = None) -> DatasetIssues:
    """The stages of ``find_issues`` over every row of ``d``: each registered type's score, its flags
    (its own rule, or below its threshold), then each type's ``refine`` step; weak groups and duplicate
    pairs come out of the types that found them.

    Every score is a function of the set of rows, not of their order: the rows are scored sorted by
    path (``canonical_order``), so the seeded steps (the SVD's sample, k-means' initialisation) and
    the tie-breaks (nearest neighbours at equal distance, pair records) see the same input whether
    the run was scanned in one go, resumed, scanned on Ray or merged from shards in any order; the
    results come back in ``d``'s row order.
    """
    order = canonical_order(d)
    if label_ranking is None and th.get("label") is None:
        label_ranking = _overview_ranking(d)  # the overview's list, ranked in the run's own order as it is there
    if np.array_equal(order, np.arange(len(d))):
        return _score_rows(d, th, k, groups, min_group, seed, label_ranking)
    inv = np.empty_like(order)
    inv[order] = np.arange(len(order))
    if groups is None or isinstance(groups, Mapping):
        given = groups
    else:
        listed = list(groups)
        if len(listed) != len(d):
            raise ValueError(f"groups has {len(listed)} entries for {len(d)} images")
        given = [listed[i] for i in order]
    ranking = None if label_ranking is None else inv[np.asarray(label_ranking, np.int64)]
    found = _score_rows(subset(d, order), th, k, given, min_group, seed, ranking)
    return _reordered(found, d, order, inv)


def canonical_order(d: RunData) -> np.ndarray:
    """Indices into ``d`` that sort its rows by path (``RunStore.ids_by_path``); rows the store no longer
    holds by that id (replaced while ``d`` was read) go last, in id order."""
    with RunStore.open(d.run_dir) as store:
        by_path = store.ids_by_path()
    ids = np.asarray(d.ids, np.int64)
    if not len(ids):
        return np.zeros(0, np.int64)
    sorter = np.argsort(by_path, kind="stable")
    pos = np.minimum(np.searchsorted(by_path, ids, sorter=sorter), max(len(by_path) - 1, 0))
    found = by_path[sorter[pos]] == ids if len(by_path) else np.zeros(len(ids), bool)
    key = np.where(found, sorter[pos] if len(by_path) else 0, len(by_path) + np.arange(len(ids)))
    return np.argsort(key, kind="stable")


def _reordered(found: DatasetIssues, d: RunData, order: np.ndarray, inv: np.ndarray) -> DatasetIssues:
    """``found`` (scored over ``subset(d, order)``) in the row order of ``d``."""
    types = {name: IssueType(t.name, t.score[inv], t.flag[inv], t.threshold,
                             None if t.order is None else order[t.order], t.description)
             for name, t in found.types.items()}
    pairs = [(int(order[i]), int(order[j]), sim, kind, across) for i, j, sim, kind, across in found.pairs]
    groups = [{**g, "rows": np.sort(order[np.asarray(g["rows"], np.int64)]).tolist()} for g in found.groups]
    return DatasetIssues(d, types, pairs, groups, found.notes)


def _score_rows(d: RunData, th: Mapping[str, float | None], k: int,
                groups: Sequence[str] | Mapping[str, str] | None, min_group: int, seed: int,
                label_ranking: np.ndarray | None) -> DatasetIssues:
    """``score_issues`` over the rows of ``d`` in the order given."""
    ctx = IssueContext(d, th, k=k, seed=seed, groups=groups, min_group=min_group, label_ranking=label_ranking)
    specs = issue_type_specs()
    types: dict[str, IssueType] = {}
    for spec in specs:
        got = spec.score(ctx)
        if got is None:
            continue
        score = np.clip(np.asarray(got.score, dtype=np.float64), 0.0, 1.0) + 0.0  # + 0.0: no negative zeros
        t = th.get(spec.name)
        flag = np.asarray(got.flag, bool) if got.flag is not None else score < t
        types[spec.name] = IssueType(spec.name, score, flag, t, None if got.order is None else np.asarray(got.order),
                                     spec.description)
        ctx.scored[spec.name], ctx.flags[spec.name] = got, flag
    for spec in specs:
        if spec.refine is not None and spec.name in types:
            spec.refine(types, ctx.notes)
    splits = np.asarray(d.splits)
    pairs = []
    for (i, j), (sim, kind) in sorted(ctx.pairs.items(), key=lambda kv: -kv[1][0]):
        across = bool(splits[i] != splits[j]) and bool(splits[i]) and bool(splits[j])
        pairs.append((int(i), int(j), float(sim), kind, across))
    return DatasetIssues(d, types, pairs, ctx.shared.get("group_list", []), ctx.notes)


# ---------------------------------------------------------------------- the built-in issue types
def _label(ctx: IssueContext) -> Scored:
    """The overview's own confident-learning list, so every view agrees; rows the model trained on are
    never flagged (their probabilities are in-sample)."""
    from mikata.analysis.audit import label_quality

    d, n = ctx.data, len(ctx)
    trained = _trained_rows(d)
    quality = label_quality(d)
    if trained.any():
        ctx.notes.append(f"label: {int(trained.sum())} rows the model was trained on are not searched for label "
                         "errors (their probabilities are in-sample)")
    if ctx.threshold("label") is None:
        ranking = (np.asarray(ctx.label_ranking, np.int64) if ctx.label_ranking is not None
                   else _overview_ranking(d))
        flagged = np.zeros(n, bool)
        flagged[ranking] = True
        return Scored(quality, flagged, ranking)  # the overview's order: the issues page and review queue agree
    return Scored(quality, (np.clip(quality, 0, 1) < ctx.threshold("label")) & ~trained)


def _trained_rows(d: RunData) -> np.ndarray:
    """``(N,)`` bool: the rows the run's model was trained on (``runs.heldout``)."""
    from mikata.runs.heldout import in_sample_rows

    with RunStore.open(d.run_dir) as store:
        return in_sample_rows(store.manifest, d.splits)


def _overview_ranking(d: RunData) -> np.ndarray:
    """The suspected label errors, most severe first, as the overview ranks them: the held-out rows only
    (a trained-on row's label fits)."""
    from mikata.analysis.overview_cache import ranking_without

    return np.asarray(ranking_without(d, _trained_rows(d)), np.int64)


def _near_distance(ctx: IssueContext) -> tuple[np.ndarray, np.ndarray] | None:
    """Each row's distance to its most similar other row in pixel thumbnails, and that row."""
    def compute() -> tuple[np.ndarray, np.ndarray] | None:
        thumbs = ctx.vectors("thumbs")
        if thumbs is None or len(ctx) < 2:
            return None
        unit = thumbs / np.clip(np.linalg.norm(thumbs, axis=1, keepdims=True), 1e-12, None)
        tdist, tidx = knn(np.ascontiguousarray(unit), 1)
        return tdist[:, 0], tidx[:, 0]
    return ctx.once("near", compute)


def _near_duplicate(ctx: IssueContext) -> Scored | None:
    """Brightness- and contrast-blind pixel thumbnails: what a person calls "the same picture"."""
    got = _near_distance(ctx)
    if got is None:
        ctx.missing("thumbs")
        return None
    near, partner = got
    t = ctx.threshold("near_duplicate")
    score = np.clip(near.astype(np.float64), 0.0, 1.0) + 0.0
    flag = score < t
    for i in np.nonzero(flag)[0]:
        ctx.pair(int(i), int(partner[i]), 1.0 - float(near[i]), "near")
    return Scored(score, flag)


def _features(ctx: IssueContext) -> np.ndarray | None:
    """The embeddings as unit vectors of at most 128 dimensions (``embedding_features``), or None."""
    def compute() -> np.ndarray | None:
        emb = ctx.vectors("embed")
        return embedding_features(emb, seed=ctx.seed) if emb is not None and len(ctx) > 2 else None
    return ctx.once("features", compute)


def _outlier(ctx: IssueContext) -> Scored | None:
    """Far from every other image in what the model sees (embedding k-NN) and in its pixels."""
    feats = _features(ctx)
    if feats is None:
        ctx.missing("embed")
        return None
    z = embedding_outlier_z(feats, ctx.k)
    near = _near_distance(ctx)
    if near is not None:
        z = np.minimum(z, _robust_z(near[0]))
    return Scored(1.0 / (1.0 + np.maximum(z, 0.0)))


def _hashes(ctx: IssueContext) -> list[str]:
    """Each row's file hash, read by row id (the rows may be any selection of the run)."""
    def read() -> list[str]:
        d = ctx.data
        with RunStore.open(d.run_dir) as store:
            by_id = dict(store.rows(status="ok", columns=("id", "hash"), tuples=True))
        return [by_id.get(int(i)) or "" for i in d.ids.tolist()]
    return ctx.once("hashes", read)


def _exact_duplicate(ctx: IssueContext) -> Scored:
    """The same bytes (sha1 of the file)."""
    exact = np.ones(len(ctx))
    by_hash: dict[str, list[int]] = {}
    for i, h in enumerate(_hashes(ctx)):
        if h:
            by_hash.setdefault(h, []).append(i)
    for members in by_hash.values():
        if len(members) > 1:
            exact[members] = 0.0
            for j in members[1:]:
                ctx.pair(members[0], j, 1.0, "exact", replace=True)
    return Scored(exact)


def _leak(ctx: IssueContext) -> Scored:
    """A duplicate partner (exact or near, as found above) in another split."""
    leak = np.ones(len(ctx))
    splits = np.asarray(ctx.data.splits)
    for (i, j), (sim, kind) in ctx.pairs.items():
        if splits[i] != splits[j] and splits[i] and splits[j]:
            leak[[i, j]] = np.minimum(leak[[i, j]], 0.0 if kind == "exact" else 1.0 - sim)
    return Scored(leak)


def _stat(ctx: IssueContext, column: str) -> np.ndarray | None:
    stats = ctx.vectors("stats")
    if stats is None:
        ctx.missing("stats")
        return None
    return stats[:, STAT_COLUMNS.index(column)]


def _pixel_type(column: str, score: Callable[[Callable[[str], np.ndarray]], np.ndarray]) -> Callable:
    """A type scored from the scan's pixel statistics (``data.image_stats``, gathered from the same decode)."""
    def run(ctx: IssueContext) -> Scored | None:
        if _stat(ctx, column) is None:
            return None
        return Scored(score(lambda c: _stat(ctx, c)))
    return run


def _blurry(col: Callable[[str], np.ndarray]) -> np.ndarray:
    flat = col("p95") - col("p05") < 1e-3  # no content at all: a low-information image, not a blurry one
    return np.where(flat, 1.0, col("sharpness") / max(float(np.median(col("sharpness"))), 1e-12))


def _odd_size(col: Callable[[str], np.ndarray]) -> np.ndarray:
    side = np.sqrt(np.clip(col("width") * col("height"), 1, None))
    med = float(np.median(side))
    return np.minimum(side / med, med / side)


def _odd_aspect(col: Callable[[str], np.ndarray]) -> np.ndarray:
    w, h = np.clip(col("width"), 1, None), np.clip(col("height"), 1, None)
    return np.minimum(w, h) / np.maximum(w, h)


def _class_imbalance(ctx: IssueContext) -> Scored:
    d, n = ctx.data, len(ctx)
    counts = np.bincount(d.labels, minlength=d.num_classes) if n else np.zeros(d.num_classes, int)
    present = counts[counts > 0]
    mean_count = float(present.mean()) if len(present) else 1.0
    return Scored(counts[d.labels] / mean_count if n else np.ones(0))


def _underperforming_group(ctx: IssueContext) -> Scored:
    """Accuracy of the image's group over the overall accuracy; groups also go to ``DatasetIssues.groups``."""
    d, n = ctx.data, len(ctx)
    group_rows, group_names = _groups(d, _features(ctx), ctx.groups, ctx.seed)
    correct = d.labels == d.preds
    overall = float(correct.mean()) if n else float("nan")
    th = ctx.threshold("underperforming_group")
    ratio = np.ones(n)
    group_list = []
    flag = np.zeros(n, bool)
    for g, name in enumerate(group_names):
        rows = np.nonzero(group_rows == g)[0]
        if not len(rows):
            continue
        acc = float(correct[rows].mean())
        r = acc / overall if overall > 0 else 1.0
        flagged = bool(len(rows) >= ctx.min_group and th is not None and r < th)
        ratio[rows] = min(1.0, r)
        flag[rows] = flagged
        group_list.append({"group": name, "size": int(len(rows)), "accuracy": acc, "ratio": r, "flagged": flagged,
                           "rows": rows.tolist()})
    group_list.sort(key=lambda g: g["ratio"])
    ctx.shared["group_list"] = group_list
    return Scored(ratio, flag)


def _explain_outliers(types: dict[str, IssueType], notes: list[str]) -> None:
    """An image of odd size or aspect is seen by the model through a crop or a large resize, which
    alone moves it away from the rest in embedding space: it is flagged for its geometry, not again as
    an outlier, so the outlier flag keeps the images whose content is foreign (a photo among garments).
    Their outlier score is kept; the note counts them."""
    if "outlier" not in types or "odd_size" not in types or "odd_aspect" not in types:
        return
    geometry = types["odd_size"].flag | types["odd_aspect"].flag
    explained = types["outlier"].flag & geometry
    if explained.any():
        types["outlier"].flag = types["outlier"].flag & ~geometry
        notes.append(f"outlier: {int(explained.sum())} more images are far from the rest and flagged for their odd "
                     "size or aspect instead (the model sees them cropped or heavily resized)")


for _spec in (  # registry order is scoring order: near duplicates and exact ones before the leaks they make
    IssueTypeSpec("label", "suspected label errors (confident learning on the stored probabilities)", _label,
                  None, ("probs",), explained_by_maps=True),
    IssueTypeSpec("near_duplicate", "images that are nearly the same picture as another: pixel correlation of "
                  f"their {THUMB_SIDE}x{THUMB_SIDE} grey thumbnails above 1 - threshold (blind to brightness, "
                  "contrast, compression)", _near_duplicate, 0.003, ("thumbs",), pairs=True),
    IssueTypeSpec("outlier", "images far from every other image in embedding space (out of distribution)", _outlier,
                  0.3, ("embed", "thumbs"), explained_by_maps=True, refine=_explain_outliers),
    IssueTypeSpec("exact_duplicate", "files whose bytes equal another file's", _exact_duplicate, 0.5, ("hash",),
                  pairs=True),
    IssueTypeSpec("leak", "duplicates (exact or near) across splits: they inflate held-out accuracy", _leak, 0.003,
                  ("hash", "thumbs"), pairs=True),
    IssueTypeSpec("dark", "dark images (95% of pixels below the threshold)",
                  _pixel_type("p95", lambda col: col("p95")), 0.25, ("stats",)),
    IssueTypeSpec("light", "blown-out images (95% of pixels above 1 - threshold)",
                  _pixel_type("p05", lambda col: 1.0 - col("p05")), 0.15, ("stats",)),
    IssueTypeSpec("blurry", "images much less sharp than the dataset's typical image",
                  _pixel_type("sharpness", _blurry), 0.15, ("stats",)),
    IssueTypeSpec("low_information", "images with very few grey levels (blank, flat, nearly constant)",
                  _pixel_type("entropy", lambda col: col("entropy") / np.log2(ENTROPY_BINS)), 0.25, ("stats",)),
    IssueTypeSpec("odd_size", "images much smaller or larger than the typical one", _pixel_type("width", _odd_size),
                  0.3, ("stats",)),
    IssueTypeSpec("odd_aspect", "images with an unusual aspect ratio", _pixel_type("width", _odd_aspect), 0.4,
                  ("stats",)),
    IssueTypeSpec("class_imbalance", "images of classes with far fewer images than the mean", _class_imbalance, 0.2,
                  explained_by_maps=True),
    IssueTypeSpec("underperforming_group", "images in a group (embedding cluster or given group) where accuracy is "
                  "much lower", _underperforming_group, 0.6, ("embed", "groups"), explained_by_maps=True),
):
    if _spec.name not in issue_type_names():  # a reload of this module keeps the first registration
        register_issue_type(_spec)
DEFAULT_THRESHOLDS: dict[str, float | None] = default_thresholds()  # the built-in types' (tests, docs)
ISSUE_TYPES = tuple(DEFAULT_THRESHOLDS)


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


def pair_measure(kind: str, similarity: float) -> str:
    """What a duplicate pair's similarity measured, in words: ``near`` pairs are compared by the pixel
    correlation of brightness- and contrast-blind grey thumbnails (neighbouring crops of one object can
    correlate that highly too, so a person should look at the two side by side)."""
    if kind == "exact":
        return "the same bytes (sha1)"
    return (f"pixel correlation {similarity:.4f} of their {THUMB_SIDE}x{THUMB_SIDE} grey thumbnails "
            "(brightness and contrast removed)")


def pair_partners(found: DatasetIssues, type_name: str) -> dict[int, tuple[int, str]]:
    """Image id -> (its duplicate partner's id, what the pair shares in words) for the pair types
    (``near_duplicate``: its most similar image; ``exact_duplicate``: a file with its bytes; ``leak``: its
    partner in another split); {} for other types. The first, most similar pair of an image wins."""
    keep = {"near_duplicate": lambda kind, across: True, "exact_duplicate": lambda kind, across: kind == "exact",
            "leak": lambda kind, across: across}.get(type_name)
    if keep is None:
        return {}
    ids, splits = found.pair_data.ids, np.asarray(found.pair_data.splits)
    out: dict[int, tuple[int, str]] = {}
    for i, j, sim, kind, across in found.pairs:
        if not keep(kind, across):
            continue
        for a, b in ((i, j), (j, i)):
            where = f", split {splits[b]}" if across and splits[b] else ""
            out.setdefault(int(ids[a]), (int(ids[b]), f"{kind} duplicate of #{int(ids[b])}{where}: "
                                                      f"{pair_measure(kind, sim)}"))
    return out


def issues_report(found: DatasetIssues, worst: int = 5, max_pairs: int = 20) -> dict:
    """JSON-ready summary: per type the count flagged and the worst images; duplicate pairs; weak groups."""
    d = found.data
    types = []
    for t in found.types.values():
        types.append({"type": t.name, "description": t.description, "threshold": t.threshold,
                      "flagged": int(t.flag.sum()),
                      "worst": [{"id": int(d.ids[i]), "path": d.paths[i], "score": round(float(t.score[i]), 4)}
                                for i in t.worst(worst)]})
    pd_ = found.pair_data
    pairs = [{"a": pd_.paths[i], "b": pd_.paths[j], "similarity": round(sim, 4), "kind": kind, "across_splits": across,
              "measured": pair_measure(kind, sim)} for i, j, sim, kind, across in found.pairs[:max_pairs]]
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
            measured = p.get("measured") or f"{p['similarity']:.3f}"
            lines.append(f"      {p['a']} = {p['b']} ({p['kind']}: {measured}"
                         f"{'; across splits' if p['across_splits'] else ''})")
    for g in r["underperforming_groups"][:5]:
        lines.append(f"  weak group {g['group']}: {g['size']} images, accuracy {g['accuracy']:.1%} "
                     f"({g['ratio']:.2f} of overall)")
    lines += [f"  note: {n}" for n in r["notes"]]
    return lines
