"""What the HTML report and the web app both show, computed in one place from the same data.

The report (one offline file) and ``mikata serve`` (pages on demand) render with their own
templates, but every number and every choice they share comes from here, so a page and the
report never disagree: which classes the confusion matrix draws when there are too many, the
order of a confusion cell's images, and the scorecard table of ``mikata evaluate``.

Example:
    >>> rows, cols = confusion_view(ov.confusion, ov.present, limit=40)          # doctest: +SKIP
    >>> table = scorecard_table(read_scorecard("runs/fashion"))                   # doctest: +SKIP
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from mikata.runs.data import RunData


def confusion_view(cm: np.ndarray, present: Sequence[int], limit: int = 40) -> tuple[list[int], list[int]]:
    """Rows and columns of the ``(K, K)`` confusion matrix to draw.

    Rows: the classes with images; columns: every class that has images or predictions. With more
    than ``limit`` columns (ImageNet), only the ``limit`` of them involved in the most errors (as the
    true or as the predicted class; ties: lower id first) are drawn, and the rest stays reachable
    through the grids.
    """
    used = sorted(set(int(c) for c in present) | set(np.nonzero(cm.sum(0))[0].tolist()))
    if len(used) <= limit:
        return [int(c) for c in present], used
    off = cm.copy()
    np.fill_diagonal(off, 0)
    involved = (off.sum(0) + off.sum(1))[used]  # (len(used),) errors as the true or the predicted class
    keep = set(np.asarray(used)[np.argsort(-involved, kind="stable")[:limit]].tolist())
    return [int(c) for c in present if c in keep], [c for c in used if c in keep]


def confident_first(d: RunData, rows: np.ndarray) -> np.ndarray:
    """``rows`` (indices into ``d``) ordered by the probability of their predicted class, highest first;
    ties keep id order. The order of every list of images of a confusion cell or a prediction."""
    rows = np.asarray(rows, dtype=np.int64)
    return rows[np.argsort(-d.probs[rows, d.preds[rows]], kind="stable")]


def confusion_cells(d: RunData) -> dict[tuple[int, int], np.ndarray]:
    """``(true, pred)`` -> row ids of that cell in ``confident_first`` order, for every non-empty cell, in one sort."""
    if not len(d):
        return {}
    pp = d.probs[np.arange(len(d)), d.preds]
    order = np.lexsort((-pp, d.preds, d.labels))  # stable: equal probabilities keep id order
    key = d.labels[order] * d.num_classes + d.preds[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    ids = d.ids[order]
    return {(int(key[a]) // d.num_classes, int(key[a]) % d.num_classes): ids[a:b]
            for a, b in zip(starts, np.r_[starts[1:], len(order)])}


def _value(v: object) -> str:
    return "–" if v is None else (f"{v:.4g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v))


def scorecard_table(card: dict) -> dict:
    """The scorecard (``scorecard.json`` of ``mikata evaluate``) as one table for both renderers.

    ``{"model", "images", "target", "created", "metrics": [{"name", "better", "description"}],
    "checks": [names], "rows": [{"method" (with its baseline, when it has one), "cells": [formatted values], "passes": [True/False/None]}],
    "figures": [names as stored]}`` — values as 4 significant digits, "–" where missing.
    """
    metrics = [m if isinstance(m, dict) else {"name": str(m)} for m in card.get("metrics") or []]
    table = card.get("table") or {}
    methods = list(card.get("methods") or table.keys())
    passes = card.get("passes") or {}
    checks = sorted({c for v in passes.values() if isinstance(v, dict) for c in v})
    named = card.get("baselines") if isinstance(card.get("baselines"), dict) else {}
    rows = [{"method": f"{m} ({named[m]})" if isinstance(named.get(m), str) else m, "cells": [_value((table.get(m) or {}).get(x.get("name", ""))) for x in metrics],
             "passes": [(passes.get(m) or {}).get(c) for c in checks]} for m in methods]
    return {"model": card.get("model"), "images": card.get("images"), "target": card.get("target"),
            "created": card.get("created"), "metrics": metrics, "rows": rows, "checks": checks,
            "figures": list(card.get("figures") or [])}
