"""Everything a person looks at first in a scanned run, computed once, addressed by row id.

``overview(run)`` gathers the audit numbers (accuracy, confusion, histogram, confused pairs, the
most and least class-like images of each class, confident errors, suspected label errors, the
embedding projection) into one ``Overview``. ``mikata audit`` prints it, ``mikata report`` renders
it to a file and ``mikata serve`` caches it per ``RunStore.version()``, so all three show the same
numbers. Images are referred to by store row ids (what the server serves), never by paths.
``audit_summary.audit(run)`` is that overview with paths instead of ids, as ``mikata audit`` prints
it (``format_audit``). ``view.RunView`` caches it per selection and version. The per-array
functions it is built from live in ``audit.py``, which imports
nothing from here.

Example:
    >>> ov = overview("runs/fashion")                                   # doctest: +SKIP
    >>> ov.accuracy, ov.class_names[ov.confused_pairs[0][0]]            # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from mikata.analysis import overview_cache
from mikata.runs.data import RunData, subset
from mikata.analysis.audit import (
    accuracy, class_histogram, confused_pairs, confusion_matrix, exceptional_errors, label_issues, per_class_metrics,
    project_2d, ranked_per_class, row_normalized, topk_accuracy)
from mikata.runs.heldout import in_sample_rows, label_scope_note, trained_rows_note
from mikata.runs.store import RunStore, RunStoreError
from mikata.presentation.sections import confident_first


@dataclass
class ClassView:
    """One class's numbers and its telling images (row ids, most telling first)."""

    index: int
    name: str
    images: int
    precision: float
    recall: float
    f1: float
    most_class_like: list[int]
    least_class_like: list[int]
    confident_errors: list[int]


@dataclass
class Overview:
    run_dir: str
    version: tuple[int, int, int]
    data: RunData
    skipped: list[tuple[str, str]]
    accuracy: float
    top5_accuracy: float | None         # None with 5 classes or fewer (it would be 100% by definition)
    confusion: np.ndarray               # (K, K) counts, rows = true class
    confusion_normalized: np.ndarray    # (K, K) rows sum to 1 (recall on the diagonal)
    histogram: np.ndarray               # (K,) images per class
    imbalance: float
    present: list[int]                  # classes that have images
    confused_pairs: list[tuple[int, int, int, int]]  # (a, b, a as b, b as a)
    classes: list[ClassView]
    label_issues: list[dict]            # audit.label_issues rows (with "id"), the first ``top_issues``
    exceptional: dict | None = None     # audit.exceptional_errors, when groups are given
    label_issues_total: int = -1        # every suspected label error (``label_issues`` may be cut); see below
    label_ranking: np.ndarray | None = None  # (T,) rows of every suspected label error, most suspicious first
    split: str | None = None            # the split the rows are of (None: every split)

    trained_rows: int = 0               # rows the model was trained on (in-sample; see runs.heldout)
    label_scope: dict | None = None     # {"used", "rows", "left_out": {why: n}}: which rows label_issues searched
    def __post_init__(self) -> None:
        if self.label_issues_total < 0:
            self.label_issues_total = len(self.label_issues)

    def label_issue_page(self, start: int = 0, count: int | None = None) -> list[dict]:
        """Items ``start .. start+count`` of the full ranked list of suspected label errors (the same
        ranking the counts come from), so a view can page past the overview's first ``top_issues``."""
        ranked = self.label_ranking if self.label_ranking is not None else np.asarray(
            [i["row"] for i in self.label_issues], np.int64)
        stop = len(ranked) if count is None else start + count
        if stop <= len(self.label_issues):
            return self.label_issues[start:stop]
        return label_issues(self.data, ranked=ranked[start:stop])

    @property
    def class_names(self) -> list[str]:
        return self.data.class_names

    @property
    def trained_note(self) -> str | None:
        """"N of M rows were used to train this model; ..." when the run holds in-sample rows, else None."""
        return trained_rows_note(self.trained_rows, len(self.data))

    @property
    def label_scope_note(self) -> str | None:
        """Which rows the label-issue search used and why the others were left out."""
        return label_scope_note(self.label_scope) if self.label_scope else None

    def row(self, image_id: int) -> int:
        """The index in ``data`` of a store row id (KeyError for ids not in this overview).

        ``data.ids`` is ascending: a binary search, no million-entry dict to build first.
        """
        ids = self.data.ids
        k = int(np.searchsorted(ids, int(image_id)))
        if k >= len(ids) or int(ids[k]) != int(image_id):
            raise KeyError(image_id)
        return k

    def cell(self, true: int, pred: int) -> np.ndarray:
        """Row ids of the images of class ``true`` predicted as ``pred``, most confident first."""
        d = self.data
        return d.ids[confident_first(d, np.nonzero((d.labels == true) & (d.preds == pred))[0])]

    def embedding_2d(self, method: str = "pca", max_points: int = 20000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, xy)``: a 2-D projection of the embeddings, a seeded subsample of at most ``max_points``.

        The embeddings are L2-normalized first, so the plot compares directions, not magnitudes:
        with raw post-ReLU features a few high-norm classes stretch it and the rest collapse into a corner.
        """
        d = self.data
        rows = np.arange(len(d))
        if len(rows) > max_points:
            rows = np.sort(np.random.default_rng(seed).choice(len(rows), max_points, replace=False))
        with RunStore.open(d.run_dir) as store:
            if "embed" not in store.dims():
                raise RunStoreError("this run has no embeddings (the model has no linear head to read them from)")
            emb = np.asarray(store.vectors("embed")[d.vec_rows[rows]], dtype=np.float32)  # (n, D)
        if len(rows) < 3:
            raise RunStoreError("fewer than 3 scanned images: nothing to project")
        emb /= np.clip(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12, None)
        return d.ids[rows], project_2d(emb, method, seed).astype(np.float32)


def overview(run: str | os.PathLike, n: int = 3, top_pairs: int = 10, top_issues: int | None = 50,
             split: str | None = None, groups: Mapping[str, str] | None = None) -> Overview:
    """Compute the overview of the committed rows of a run (consistent while a scan writes); ``split``:
    of that split's rows only, with the whole run's label-issue search (see ``overview_of``)."""
    with RunStore.open(run) as store:
        with store.snapshot():  # the version and the rows from one point in time
            cached = overview_cache.run_data(store)
            skipped = store.skipped()
            manifest = store.manifest
    rows = None if split is None else np.flatnonzero(cached.data.splits == split)
    return overview_of(cached, rows, skipped, manifest, n=n, top_pairs=top_pairs, top_issues=top_issues,
                       split=split, groups=groups)


def overview_of(cached: overview_cache.CachedRun, rows: np.ndarray | None, skipped: list[tuple[str, str]],
                manifest: dict, n: int = 3, top_pairs: int = 10, top_issues: int | None = 50,
                split: str | None = None, groups: Mapping[str, str] | None = None,
                selection: str = "") -> Overview:
    """The overview of rows ``rows`` (ascending indices into ``cached.data``, the run's committed rows;
    None: all of them). The suspected label errors are the whole run's search (every out-of-sample row
    informs confident learning's per-class thresholds), restricted to the rows: every view of a split
    flags exactly the rows the whole run flags. ``selection`` describes the rows for the error of an
    empty selection."""
    whole = cached.data
    d = whole if rows is None else subset(whole, rows)
    if not len(d):
        if split and len(whole):
            named = ", ".join(repr(s) if s else "'' (rows scanned without a split)" for s in _split_names(whole))
            raise RunStoreError(f"{whole.run_dir} has no images in split {split!r}; its splits are {named} "
                                "(or leave out --split for every row)")
        if len(whole) and selection:
            raise RunStoreError(f"{whole.run_dir} has no images {selection}; widen the selection")
        raise RunStoreError(f"{whole.run_dir} has no scanned images yet{f' in split {split!r}' if split else ''}")
    trained_whole = in_sample_rows(manifest, whole.splits)
    # THE list of suspected label errors (out-of-sample rows only): every view's count and order come from it
    ranking, scope = label_issue_search(cached, None, trained_whole, len(skipped))
    trained = trained_whole
    if rows is not None:
        pos = np.full(len(whole), -1, np.int64)
        pos[rows] = np.arange(len(rows))
        ranking = pos[ranking]
        ranking = ranking[ranking >= 0]
        trained = trained_whole[rows]
        scope = _view_scope(scope, d, trained, len(skipped))
    k = d.num_classes
    cm = confusion_matrix(d.labels, d.preds, k)
    metrics = per_class_metrics(cm)
    counts, imbalance = class_histogram(d.labels, k)
    present = np.nonzero(counts)[0].tolist()
    classes = []
    for c, (most, least, errors) in zip(present, ranked_per_class(d, present, n)):
        classes.append(ClassView(c, d.class_names[c], int(counts[c]), float(metrics["precision"][c]),
                                 float(metrics["recall"][c]), float(metrics["f1"][c]),
                                 d.ids[most].tolist(), d.ids[least].tolist(), d.ids[errors].tolist()))
    return Overview(
        run_dir=d.run_dir, version=cached.version, data=d, skipped=skipped, accuracy=accuracy(d),
        top5_accuracy=topk_accuracy(d, 5) if k > 5 else None, confusion=cm, confusion_normalized=row_normalized(cm),
        histogram=counts, imbalance=imbalance, present=present, confused_pairs=confused_pairs(cm, top_pairs),
        classes=classes, label_issues=label_issues(d, top_issues, ranking),
        exceptional=exceptional_errors(d, groups) if groups else None,
        label_issues_total=int(len(ranking)), label_ranking=ranking, split=split, trained_rows=int(trained.sum()),
        label_scope=scope)


def _split_names(d: RunData) -> list[str]:
    return sorted(set(np.asarray(d.splits).tolist()))


def _view_scope(whole_scope: dict, d: RunData, trained: np.ndarray, skipped: int) -> dict:
    """``label_issue_search``'s scope counted over a selection's rows (the search itself ran on the whole run)."""
    scope = {"used": int(len(d) - trained.sum()), "rows": int(len(d) + skipped),
             "left_out": {"rows the model was trained on (in-sample probabilities)": int(trained.sum()),
                          "files that could not be read": int(skipped)}}
    single = "rows searched but of a single class (confident learning needs two)"
    if single in whole_scope["left_out"] and scope["used"]:
        scope["left_out"][single] = scope["used"]
        scope["used"] = 0
    return scope


def label_issue_search(cached: overview_cache.CachedRun, split: str | None, trained: np.ndarray,
                       skipped: int) -> tuple[np.ndarray, dict]:
    """The label-issue ranking over the out-of-sample rows only (rows of ``cached.data``), and which rows
    it used: on its training images a model agrees with their labels, errors included, so those rows
    would only hide issues. Nothing is left out silently: ``scope`` counts every row not searched."""
    d = cached.data
    scope = {"used": int(len(d) - trained.sum()), "rows": int(len(d) + skipped),
             "left_out": {"rows the model was trained on (in-sample probabilities)": int(trained.sum()),
                          "files that could not be read": int(skipped)}}
    ranked = overview_cache.issue_ranking(cached, split, trained)
    if len(np.unique(d.labels[~trained])) < 2 and scope["used"]:
        scope["left_out"]["rows searched but of a single class (confident learning needs two)"] = scope["used"]
        scope["used"] = 0
    return ranked, scope
