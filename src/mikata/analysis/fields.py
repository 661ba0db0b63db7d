"""Per-image fields (a CSV manifest's extra columns, e.g. ``cell_type``): slice a run's numbers by them.

A manifest ``path,label,cell_type`` makes ``cell_type`` a field: the scan stores each image's value
(``RunStore.set_fields``), and ``group_by(d, "cell_type")`` gives accuracy, errors and per-class recall
per value, worst first, which ``mikata audit --group-by``, the report and the web app all show. A
subtype the model misses far more often than the rest (44% vs 25%) is visible at once instead of being
found by hand. Values are plain text: shown (escaped), compared, never run.

Example:
    >>> d = load_run("runs/cells")                                     # doctest: +SKIP
    >>> [(g["value"], g["accuracy"]) for g in group_by(d, "cell_type")]   # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np

from mikata.runs.data import RunData
from mikata.runs.store import RunStore
from mikata.errors import ChoiceError, MikataError

MISSING = ""  # the value of an image the manifest gave no value (or that was scanned from a folder)


def field_names(run_dir: str) -> list[str]:
    """The fields stored for a run (a manifest's extra columns, in its order; ``[]`` for none)."""
    with RunStore.open(run_dir) as store:
        return store.field_names()


def check_field(run_dir: str, name: str) -> str:
    """``name`` if the run has that field; a ``ChoiceError`` listing the run's fields otherwise, or, for a run
    with none, a ``MikataError`` saying why it has none and what gives it some."""
    names = field_names(run_dir)
    if not names:
        raise MikataError(f"{run_dir} has no fields (asked for {name!r}): {_why_no_fields(run_dir)}")
    if name not in names:
        raise ChoiceError("field", name, names)
    return name


def _why_no_fields(run_dir: str) -> str:
    """Why a run holds no fields, and what gives it some, from what its manifest says it scanned."""
    with RunStore.open(run_dir) as store:
        manifest = store.manifest
    if isinstance(manifest.get("crossval"), dict):
        return ("its folds' scans stored none (scanned from a folder, or a CSV without extra columns, or combined "
                "by an older mikata); crossval of a CSV manifest path,label,FIELD,... carries its columns, and "
                "rerunning the same command reuses the finished folds")
    root = manifest.get("dataset_root") or "its data"
    return (f"its images (under {root}) came without extra columns; scan a CSV manifest whose header is "
            "path,label,FIELD,... to store one")


def field_values(d: RunData, name: str) -> np.ndarray:
    """``(N,)`` the value of field ``name`` for each row of ``d`` (``MISSING`` where it has none)."""
    check_field(d.run_dir, name)
    with RunStore.open(d.run_dir) as store:
        by_id = store.field_values(name)
    return np.array([by_id.get(int(i), MISSING) for i in d.ids.tolist()], dtype=object)


def group_by(d: RunData, name: str, values: np.ndarray | None = None) -> list[dict]:
    """Accuracy, errors and per-class recall of each value of field ``name``, lowest accuracy first.

    Each item: ``value``, ``images``, ``errors``, ``accuracy``, ``per_class`` (``class``, ``images``,
    ``correct``, ``recall`` for the classes that have images with this value). Ties are broken by
    more images first, then by value, so the order is stable.
    """
    values = field_values(d, name) if values is None else values
    correct = d.labels == d.preds
    out = []
    uniq, inverse = np.unique(values.astype(str), return_inverse=True) if len(values) else ([], np.zeros(0, int))
    for g, value in enumerate(uniq):
        rows = np.nonzero(inverse == g)[0]
        per_class = []
        labels = d.labels[rows]
        for c in np.unique(labels).tolist():
            mine = rows[labels == c]
            hit = int(correct[mine].sum())
            per_class.append({"class": d.class_names[c], "images": int(len(mine)), "correct": hit,
                              "recall": hit / len(mine)})
        ok = int(correct[rows].sum())
        out.append({"value": str(value), "images": int(len(rows)), "errors": int(len(rows) - ok),
                    "accuracy": ok / len(rows), "per_class": per_class})
    out.sort(key=lambda g: (g["accuracy"], -g["images"], g["value"]))
    return out


MAX_VALUE_CHARS = 24   # one field value on a tile, card or audit line, before it is cut with "…"
MAX_FIELDS_CHARS = 90  # all of one image's fields there


def fields_text(pairs: "list[tuple[str, str]] | dict[str, str]", max_value: int = MAX_VALUE_CHARS,
                max_total: int = MAX_FIELDS_CHARS) -> str:
    """One image's fields as a short line for where a reviewer decides (``type=poly · defect_prob=0.67``):
    each value cut to ``max_value`` characters, the whole to ``max_total``; empty values left out. Control
    characters are escaped (a terminal or a page shows them, never obeys them); HTML escaping is the
    template's.

    Example:
        >>> fields_text([("type", "poly"), ("note", "x" * 40), ("site", "")], max_value=8)
        'type=poly · note=xxxxxxx…'
    """
    from mikata.data.filenames import shown

    items = pairs.items() if isinstance(pairs, dict) else pairs
    parts = []
    for name, value in items:
        value = shown(str(value))
        if value == MISSING:
            continue
        name = shown(str(name))
        cut = value if len(value) <= max_value else value[:max_value - 1] + "…"
        parts.append(f"{name[:max_value]}={cut}")
    text = " · ".join(parts)
    return text if len(text) <= max_total else text[:max_total - 1] + "…"


def row_fields(values: dict[str, np.ndarray], rows) -> dict[int, str]:
    """``fields_text`` of each row index in ``rows`` (``values``: ``{field: (N,) values}``); {} without fields."""
    if not values:
        return {}
    return {int(r): fields_text([(name, v[int(r)]) for name, v in values.items()]) for r in rows}


def format_groups(groups: dict[str, list[dict]]) -> list[str]:
    """The lines ``mikata audit --group-by`` prints: one block per field, worst value first."""
    lines: list[str] = []
    for name, items in groups.items():
        lines.append(f"\nby {name} (worst accuracy first; images, errors, accuracy, recall per class)")
        for g in items:
            value = g["value"] if g["value"] != MISSING else "(no value)"
            recalls = "  ".join(f"{c['class']} {c['recall']:.1%} ({c['correct']}/{c['images']})" for c in g["per_class"])
            lines.append(f"  {value[:28]:28s} {g['images']:6d} images {g['errors']:6d} errors  "
                         f"accuracy {g['accuracy']:7.2%}   recall: {recalls}")
    return lines
