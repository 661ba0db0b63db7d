"""What ``mikata audit`` prints: the ``Overview`` of a run view with paths instead of ids, the binary
curves, per-field groups and the dataset issues, as JSON-ready data (``audit``) and as text
(``format_audit``).

Example:
    >>> r = audit("runs/fashion", split="test")                          # doctest: +SKIP
    >>> print(format_audit(r, max_listed=5))                              # doctest: +SKIP
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from mikata.analysis.audit import describe_label_issue, shown_of
from mikata.runs.heldout import label_scope_note, trained_rows_note
from mikata.data.filenames import shown
from mikata.formatting import percent

if TYPE_CHECKING:
    from mikata.analysis.view import RunView


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
    # a manifest's fields beside each suspected label error: what a reviewer decides with (bounded length)
    from mikata.analysis.fields import row_fields

    texts = row_fields(view.field_values(), [i["row"] for i in ov.label_issues])
    label_issues = [{**i, "fields": texts[i["row"]]} for i in ov.label_issues] if texts else ov.label_issues
    result = {
        "run": d.run_dir, "images": len(d), "skipped": [{"path": p, "reason": r} for p, r in ov.skipped],
        "accuracy": ov.accuracy, "top5_accuracy": ov.top5_accuracy,
        "class_histogram": {names[c]: int(ov.histogram[c]) for c in present}, "imbalance": ov.imbalance,
        "confusion": {"classes": [names[c] for c in present], "counts": cm[np.ix_(present, present)].tolist(),
                      "row_normalized": np.round(ov.confusion_normalized[np.ix_(present, present)], 4).tolist()},
        "confused_pairs": [{"a": names[a], "b": names[b], "a_as_b": ab, "b_as_a": ba}
                           for a, b, ab, ba in ov.confused_pairs],
        "per_class": per_class,
        "label_issues": label_issues,
        "label_issues_total": ov.label_issues_total, "split": split,
        "trained_rows": ov.trained_rows, "trained_rows_note": trained_rows_note(ov.trained_rows, len(d)),
        "label_scope": ov.label_scope, "label_scope_note": label_scope_note(ov.label_scope),
    }
    result["calibration"] = view.calibration()
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
    from mikata.concepts.atlas import shortcuts_section

    result.update(shortcuts_section(view.run_dir))
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
    if r.get("calibration"):
        lines += format_calibration(r["calibration"])
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
        fields = f"  [{i['fields']}]" if i.get("fields") else ""
        out(f"  {shown(i['path'])}  {describe_label_issue(i)}{fields}")
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
    from mikata.concepts.atlas import format_shortcuts

    lines += format_shortcuts(r, max_listed)
    for s in r["skipped"]:
        out(f"skipped {shown(s['path'])}: {s['reason']}")
    return "\n".join(lines)


def format_calibration(c: dict) -> list[str]:
    """The audit's calibration lines: ECE, the reliability points, and which temperature (if any) is applied."""
    curve = c["curve"]
    if not curve["counts"]:
        return []
    before = f" (before: {c['before']['ece']:.4f})" if c.get("before") else ""
    lines = [f"\ncalibration: ECE {c['ece']:.4f}{before} over {len(curve['counts'])} equal-mass bins "
             "(0 = a confidence of p is right p of the time)", f"  {c['note']}",
             "  confidence  accuracy  images"]
    for conf, acc, n in zip(curve["confidence"], curve["accuracy"], curve["counts"]):
        lines.append(f"  {conf:10.3f}  {acc:8.3f}  {n:6d}")
    return lines
