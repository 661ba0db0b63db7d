"""Everything a person looks at first in a scanned run, computed once, addressed by row id.

``overview(run)`` gathers the audit numbers (accuracy, confusion, histogram, confused pairs, the
most and least class-like images of each class, confident errors, suspected label errors, the
embedding projection) into one ``Overview``. ``mikata audit`` prints it, ``mikata report`` renders
it to a file and ``mikata serve`` caches it per ``RunStore.version()``, so all three show the same
numbers. Images are referred to by store row ids (what the server serves), never by paths.
``audit(run)`` is that overview with paths instead of ids, as ``mikata audit`` prints it
(``format_audit``). The per-array functions it is built from live in ``audit.py``, which imports
nothing from here.

Example:
    >>> ov = overview("runs/fashion")                                   # doctest: +SKIP
    >>> ov.accuracy, ov.class_names[ov.confused_pairs[0][0]]            # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from mikata.analysis import overview_cache
from mikata.analysis.audit import (RunData, accuracy, class_histogram, confused_pairs, confusion_matrix,
                                   describe_label_issue, exceptional_errors, label_issues, per_class_metrics,
                                   project_2d, ranked_per_class, row_normalized, shown_of, subset, topk_accuracy)
from mikata.analysis.heldout import in_sample_rows, label_scope_note, trained_rows_note
from mikata.analysis.runstore import RunStore, RunStoreError
from mikata.data.filenames import shown
from mikata.formatting import percent
from mikata.analysis.sections import confident_first

if TYPE_CHECKING:
    from mikata.analysis.view import RunView


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

    trained_rows: int = 0               # rows the model was trained on (in-sample; see analysis.heldout)
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


# ------------------------------------------------------------------------ mikata audit's output
def audit(run: "str | os.PathLike | RunView", groups: Mapping[str, str] | None = None, n: int = 3, top_pairs: int = 10,
          top_issues: int = 20, split: str | None = None, dataset_issues: bool = True,
          thresholds: Mapping[str, float] | None = None, positive: int | str | None = None,
          threshold: float | None = None, group_by: Sequence[str] = ()) -> dict:
    """Everything ``mikata audit`` prints, as JSON-ready data (the ``Overview``, with paths instead of ids).

    ``dataset_issues`` adds ``analysis.issues`` (outliers, duplicates and leaks, image quality, weak
    groups; ``thresholds`` overrides its defaults). A two-class run (or any run with a ``positive``
    class named) gets ``binary``: AUROC, average precision and the confusion counts at ``threshold``
    (default 0.5) and at the best F1 (``analysis.binary``). ``group_by`` names fields (a manifest's
    extra columns, ``analysis.fields``): accuracy, errors and per-class recall per value, worst first;
    the first one is also the grouping of the weak-group issue type.
    """
    from mikata.analysis.binary import CurveError
    from mikata.analysis.view import as_view

    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise CurveError(f"--threshold {threshold} is not a probability; give a value in [0, 1], e.g. 0.3")
    view = as_view(run, split)
    try:
        return _audit(view, groups, n, top_pairs, top_issues, dataset_issues, thresholds, positive, threshold,
                      group_by)
    finally:
        if view is not run:
            view.close()


def _audit(view: "RunView", groups: Mapping[str, str] | None, n: int, top_pairs: int, top_issues: int,
           dataset_issues: bool, thresholds: Mapping[str, float] | None, positive: int | str | None,
           threshold: float | None, group_by: Sequence[str]) -> dict:
    """``audit`` over a view: its stages are the overview, the curves, the per-class table, the fields
    and the dataset issues, each read from the view."""
    from mikata.analysis.binary import DEFAULT_THRESHOLD, CurveError, binary_curves
    from mikata.analysis.fields import check_field, field_values, group_by as by_field

    split = view.split
    for name in group_by:  # an unknown column fails before any work
        check_field(str(view.run_dir), name)
    ov = view.overview(n=n, top_pairs=top_pairs, top_issues=top_issues, groups=groups)
    curves = binary_curves(ov.data, positive)
    if curves is None and threshold is not None:
        raise CurveError(f"--threshold needs a two-class run or a --positive CLASS (this run has "
                         f"{ov.data.num_classes} classes: {', '.join(ov.class_names[:10])}"
                         f"{', ...' if ov.data.num_classes > 10 else ''})")
    d, names, present = ov.data, ov.class_names, ov.present

    def rows(ids):
        return [ov.row(i) for i in ids]

    per_class = [{
        "class": c.name, "images": c.images, "precision": round(c.precision, 4), "recall": round(c.recall, 4),
        "f1": round(c.f1, 4),
        "most_class_like": [{"path": d.paths[i], "prob": round(float(d.probs[i, c.index]), 4)}
                            for i in rows(c.most_class_like)],
        "least_class_like": [{"path": d.paths[i], "prob": round(float(d.probs[i, c.index]), 4),
                              "predicted": names[d.preds[i]]} for i in rows(c.least_class_like)],
        "confident_errors": [{"path": d.paths[i], "predicted": names[d.preds[i]],
                              "prob": round(float(d.probs[i, d.preds[i]]), 4)} for i in rows(c.confident_errors)],
    } for c in ov.classes]
    if d.num_classes > 2:  # each class against the rest (a two-class run has its curves under "binary")
        from mikata.analysis.binary import one_vs_rest

        areas = one_vs_rest(d) or {}
        for entry, c in zip(per_class, ov.classes):
            if c.index in areas:
                entry["auroc"], entry["average_precision"] = (None if v != v else round(v, 4) for v in areas[c.index])
    cm = ov.confusion
    result = {
        "run": d.run_dir, "images": len(d), "skipped": [{"path": p, "reason": r} for p, r in ov.skipped],
        "accuracy": ov.accuracy, "top5_accuracy": ov.top5_accuracy,
        "class_histogram": {names[c]: int(ov.histogram[c]) for c in present}, "imbalance": ov.imbalance,
        "confusion": {"classes": [names[c] for c in present], "counts": cm[np.ix_(present, present)].tolist(),
                      "row_normalized": np.round(ov.confusion_normalized[np.ix_(present, present)], 4).tolist()},
        "confused_pairs": [{"a": names[a], "b": names[b], "a_as_b": ab, "b_as_a": ba}
                           for a, b, ab, ba in ov.confused_pairs],
        "per_class": per_class,
        "label_issues": ov.label_issues,
        "label_issues_total": ov.label_issues_total, "split": split,
        "trained_rows": ov.trained_rows, "trained_rows_note": trained_rows_note(ov.trained_rows, len(d)),
        "label_scope": ov.label_scope, "label_scope_note": label_scope_note(ov.label_scope),
    }
    if curves is not None:
        result["binary"] = curves.summary(DEFAULT_THRESHOLD if threshold is None else threshold)
    if ov.exceptional is not None:
        ex = ov.exceptional
        result["exceptional_errors"] = {"count": ex["count"], "pairs": ex["pairs"], "images": [
            {"path": d.paths[i], "label": names[d.labels[i]], "predicted": names[d.preds[i]],
             "prob": round(float(d.probs[i, d.preds[i]]), 4)} for i in ex["rows"][:top_issues]]}
    values = {name: field_values(d, name) for name in group_by}
    if group_by:
        result["groups"] = {name: by_field(d, name, v) for name, v in values.items()}
    if dataset_issues:
        from mikata.analysis.issues import issues_report

        # the weak-group type groups the whole run by the first field, as every other view does
        result["dataset_issues"] = issues_report(view.issues(thresholds, groups=group_by[0] if group_by else None),
                                                 worst=n)
    return result


def format_audit(r: dict, max_listed: int | None = None) -> str:
    """The text ``mikata audit`` prints for an ``audit()`` result; ``max_listed`` shortens long lists."""
    lines: list[str] = []
    out = lines.append
    cut = (lambda xs: xs[:max_listed]) if max_listed else (lambda xs: xs)
    out(f"run {r['run']}: {r['images']} images, {len(r['skipped'])} skipped")
    top5 = f"top-5 {percent(r['top5_accuracy'])}   " if r.get("top5_accuracy") is not None else ""
    out(f"accuracy {percent(r['accuracy'])}   {top5}"
        f"class imbalance {r['imbalance']:.2f}x (largest / smallest class)")
    if r.get("trained_rows_note"):
        out(f"WARNING: {r['trained_rows_note']}")
    out("\nper class                     images  precision  recall     F1")
    for c in sorted(r["per_class"], key=lambda c: c["recall"]):
        out(f"  {c['class'][:28]:28s} {c['images']:6d}  {percent(c['precision']):>9s}  {percent(c['recall']):>6s}  "
            f"{c['f1']:5.2f}")
    if "binary" in r:
        from mikata.analysis.binary import format_binary

        lines += format_binary(r["binary"])
    out("\nmost confused pairs (a as b / b as a)")
    for p in cut(r["confused_pairs"]):
        out(f"  {p['a']} <-> {p['b']}: {p['a_as_b']} / {p['b_as_a']}")
    if "exceptional_errors" in r:
        ex = r["exceptional_errors"]
        out(f"\nerrors across groups: {ex['count']}  " + ", ".join(f"{k}: {v}" for k, v in ex["pairs"].items()))
        for im in ex["images"][:10]:
            out(f"  {shown(im['path'])}  {im['label']} -> {im['predicted']} ({im['prob']:.2f})")
    out("\nper class: most / least class-like images (P of the class)")
    for c in cut(r["per_class"]):
        out(f"  {c['class']}")
        out("    most:  " + "  ".join(f"{shown(i['path'])} ({i['prob']:.2f})" for i in c["most_class_like"]))
        out("    least: " + "  ".join(f"{shown(i['path'])} ({i['prob']:.2f}, predicted {i['predicted']})"
                                     for i in c["least_class_like"]))
    listed = cut(r["label_issues"])
    total = r.get("label_issues_total", len(r["label_issues"]))
    out(f"\nsuspected label errors: {total} in {'split ' + r['split'] if r.get('split') else 'all splits'} "
        f"({shown_of(len(listed), total)}, most suspicious first; confident learning, needs out-of-sample "
        "probabilities: the model's view, not the truth)")
    for i in listed:
        out(f"  {shown(i['path'])}  {describe_label_issue(i)}")
    if len(listed) < total:
        out(f"  … {total - len(listed)} more (--issues N lists more; the web app's Label review has them all)")
    if r.get("label_scope_note"):
        out(f"  ({r['label_scope_note']})")
    if r.get("groups"):
        from mikata.analysis.fields import format_groups

        lines += format_groups(r["groups"])
    if "dataset_issues" in r:
        from mikata.analysis.issues import format_issues

        lines += format_issues(r["dataset_issues"])
    for s in r["skipped"]:
        out(f"skipped {shown(s['path'])}: {s['reason']}")
    return "\n".join(lines)
