"""A hand-made concept atlas in the stored format (``RUN/concepts/atlas.json``) over a real scanned run:
the report's and the app's rendering checked on known numbers, and on hostile text, independently of how
an atlas is computed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mikata.analysis.runstore import RunStore

HOSTILE = '<script>alert("x")</script> & </textarea>'


def write_atlas(run: Path, k: int = 3, per_class: int = 3, evidence: str = "") -> dict:
    """Concepts ``CLASS/0..k-1`` for every class of the run with images: exemplars among the class's own
    rows, boxes inside their 28-px images; ``CLASS/1`` of the first class is a suspected shortcut whose
    evidence sentence is ``evidence`` (default: a hostile string). Returns the JSON written."""
    with RunStore.open(run) as store:
        names = store.classes
        rows = store.rows(columns=("id", "label", "pred"), tuples=True)
    by_class: dict[int, list[tuple[int, int]]] = {}
    for i, y, p in rows:
        by_class.setdefault(int(y), []).append((int(i), int(p)))
    rng = np.random.default_rng(0)
    classes, strategies, per_class_errors, slices = {}, {}, {}, []
    first = min(by_class)
    for c, items in sorted(by_class.items()):
        name = names[c]
        ids = [i for i, _ in items]
        acc = float(np.mean([p == c for _, p in items]))
        imp = rng.dirichlet(np.ones(k))
        concepts, errs = [], []
        for j in range(k):
            shortcut = c == first and j == 1
            ex = [{"id": i, "path": "/etc/passwd", "box": [2 + j, 3, 20 + j, 24]} for i in ids[:per_class]]
            concepts.append({"concept": f"{name}/{j}", "importance": float(imp[j]), "presence": 0.5 + 0.1 * j,
                             "exemplars": ex, "location": {"center": [0.2 + 0.3 * j, 0.5], "spread": 0.1 + 0.05 * j},
                             "area": 0.1 * (j + 1),
                             "deletion": {"flip_rate": 0.6 if shortcut else 0.05, "mean_drop": 0.4 if shortcut else 0.02,
                                          "images": len(ids)},
                             "shortcut": shortcut, "evidence": (evidence or HOSTILE) if shortcut else f"{name} concept {j}"})
            errs.append({"concept": f"{name}/{j}", "with": {"images": len(ids) // 2, "accuracy": acc},
                         "without": {"images": len(ids) - len(ids) // 2, "accuracy": max(0.0, acc - 0.1 * j)},
                         "errors_with": 1, "correct_with": len(ids) // 2 - 1})
            slices.append({"class": name, "concept": f"{name}/{j}", "present": False,
                           "images": len(ids) - len(ids) // 2, "accuracy": max(0.0, acc - 0.1 * j)})
        classes[name] = concepts
        per_class_errors[name] = errs
        strategies[name] = [{"strategy": 0, "size": len(ids), "accuracy": acc, "exemplars": ids[:4],
                             "concepts": {f"{name}/{j}": float(imp[j]) for j in range(k)}}]
    slices.sort(key=lambda s: s["accuracy"])
    data = {"layer": "conv_layers.6", "classes": classes, "strategies": strategies,
            "errors": {"per_class": per_class_errors, "pairs": []}, "slices": slices}
    (run / "concepts").mkdir(exist_ok=True)
    (run / "concepts" / "atlas.json").write_text(json.dumps(data), encoding="utf-8")
    return data
