"""What the report, the web app and the demo show of a run's concept atlas, shaped once for all three.

``atlas_view`` turns ``Atlas.to_json()`` into per-class tables in the run's class order (concepts ranked
by importance, each with its accuracy with and without it, its slices, the class's strategies) and a
list of the suspected shortcuts; the report and the app render the same numbers from it. The images
behind an exemplar are reached by the row id only (``media.image_file``): a path written in a file
never opens a file.

``exemplar_overlay`` crops an exemplar's box out of the original image and lays the concept's heatmap
over it; ``location_image`` draws where a concept sits on average.

Example:
    >>> view = atlas_view("runs/fashion", ["T-shirt", "Trouser"])      # doctest: +SKIP
    >>> [c["concept"] for c in view["classes"][0]["concepts"]]         # doctest: +SKIP
    ['T-shirt/2', 'T-shirt/0', 'T-shirt/1']
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

CONCEPT_VERDICTS = ("object", "artefact")  # a person's review of a concept (the tool cannot know)


def concept_index(concept: str, position: int) -> int:
    """``k`` of a concept named ``"CLASS/k"``; its position in the class's list when the name has no number."""
    tail = str(concept).rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else position


def _num(x: Any, default: float | None = None) -> float | None:
    """A finite float, or ``default`` (NaN and non-numbers never reach a page)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return default
    return float(x) if math.isfinite(float(x)) else default


def _count(x: Any) -> int:
    """A whole non-negative count, 0 for anything else."""
    v = _num(x)
    return max(0, int(v)) if v is not None else 0


def _dict(x: Any) -> dict:
    return x if isinstance(x, dict) else {}


def _split(entry: Any) -> dict | None:
    """``{"images": n, "accuracy": a}`` or None."""
    if not isinstance(entry, dict):
        return None
    if _num(entry.get("images")) is None:
        return None
    return {"images": _count(entry.get("images")), "accuracy": _num(entry.get("accuracy"))}


def _errors_by_concept(errors: Any) -> dict[str, dict]:
    """concept -> {"with": {images, accuracy}, "without": {...}, "errors_with", "correct_with", "in_errors",
    "in_correct", "over_present"} (``describe.concept_errors``)."""
    out: dict[str, dict] = {}
    for rows in _dict(_dict(errors).get("per_class")).values():
        for r in rows if isinstance(rows, list) else []:
            if isinstance(r, dict) and isinstance(r.get("concept"), str):
                out[r["concept"]] = {"with": _split(r.get("with")), "without": _split(r.get("without")),
                                     "errors_with": _num(r.get("errors_with")),
                                     "correct_with": _num(r.get("correct_with")),
                                     "in_errors": _num(r.get("in_errors")), "in_correct": _num(r.get("in_correct")),
                                     "over_present": r.get("over_present") is True}
    return out


def _pairs(errors: Any, names: Sequence[str]) -> list[dict]:
    """Confused pairs (true class, the class its images were taken for) with the true class's concepts that are
    significantly more present in those errors than in its correct images (``describe.pair_errors``)."""
    pairs = _dict(errors).get("pairs")
    out: list[dict] = []
    for p in pairs if isinstance(pairs, list) else []:
        if not isinstance(p, dict) or p.get("true") not in names or p.get("pred") not in names:
            continue
        rows = [c for c in p.get("concepts", []) if isinstance(c, dict) and isinstance(c.get("concept"), str)]
        out.append({"true": p["true"], "pred": p["pred"], "ti": list(names).index(p["true"]),
                    "pi": list(names).index(p["pred"]), "errors": _count(p.get("errors")),
                    "concepts": [{"concept": c["concept"], "k": concept_index(c["concept"], j),
                                  "in_errors": _num(c.get("in_errors")), "in_correct": _num(c.get("in_correct")),
                                  "over_present": c.get("over_present") is True} for j, c in enumerate(rows)]})
    out.sort(key=lambda p: -p["errors"])
    return out


def _concept(raw: dict, position: int, errors: dict[str, dict]) -> dict:
    name = str(raw.get("concept", f"?/{position}"))
    loc = _dict(raw.get("location"))
    center = loc.get("center")
    center = center if isinstance(center, list) and len(center) == 2 else None
    deletion = raw.get("deletion") if isinstance(raw.get("deletion"), dict) else None
    exemplars = []
    raw_exemplars = raw.get("exemplars")
    for e in raw_exemplars if isinstance(raw_exemplars, list) else []:
        box = e.get("box") if isinstance(e, dict) else None
        if isinstance(e, dict) and isinstance(e.get("id"), int) and isinstance(box, list) and len(box) == 4 \
                and all(_num(v) is not None for v in box):
            exemplars.append({"id": int(e["id"]), "box": [round(float(v)) for v in box]})
    return {"concept": name, "k": concept_index(name, position), "position": position,
            "importance": _num(raw.get("importance"), 0.0), "presence": _num(raw.get("presence"), 0.0),
            "area": _num(raw.get("area")), "exemplars": exemplars,
            "center": [_num(center[0], 0.5), _num(center[1], 0.5)] if center else None,
            "spread": _num(loc.get("spread")),
            "deletion": None if deletion is None else {"flip_rate": _num(deletion.get("flip_rate")),
                                                       "mean_drop": _num(deletion.get("mean_drop")),
                                                       "images": _count(deletion.get("images"))},
            "shortcut": raw.get("shortcut") is True, "evidence": str(raw.get("evidence") or ""),
            "with": None, "without": None, "errors_with": None, "correct_with": None, "in_errors": None,
               "in_correct": None, "over_present": False,
            **errors.get(name, {})}


def _strategies(raw: Any) -> list[dict]:
    out: list[dict] = []
    for s in raw if isinstance(raw, list) else []:
        if not isinstance(s, dict):
            continue
        ids = [int(i) for i in s.get("exemplars", []) if isinstance(i, int) and not isinstance(i, bool)]
        shares = _dict(s.get("concepts"))
        strategy = _num(s.get("strategy"))
        out.append({"strategy": int(strategy) if strategy is not None else len(out), "size": _count(s.get("size")),
                    "accuracy": _num(s.get("accuracy")), "exemplars": ids,
                    "clever_hans": s.get("clever_hans") is True, "tightness": _num(s.get("tightness")),
                    "concepts": sorted(((str(k), v) for k, v in ((k, _num(v)) for k, v in shares.items())
                                        if v is not None), key=lambda kv: -kv[1])})
    return out


def _slices(raw: Any, names: Sequence[str]) -> list[dict]:
    out = []
    for s in raw if isinstance(raw, list) else []:
        if isinstance(s, dict) and s.get("class") in names and isinstance(s.get("concept"), str):
            out.append({"class": s["class"], "ci": list(names).index(s["class"]), "concept": s["concept"],
                        "present": s.get("present") is True, "images": _count(s.get("images")),
                        "accuracy": _num(s.get("accuracy")), "gap": _num(s.get("gap")),
                        "text": str(s.get("text") or "")})
    return out


def shape_atlas(data: dict, class_names: Sequence[str]) -> dict:
    """``Atlas.to_json()`` as the pages show it (see the module docstring); classes the run does not have
    are left out, and every number is checked (a damaged file shows blanks, never a broken page)."""
    names = list(class_names)
    errors = _errors_by_concept(data.get("errors"))
    raw_classes, raw_strategies = _dict(data.get("classes")), _dict(data.get("strategies"))
    slices = _slices(data.get("slices"), names)
    classes: list[dict[str, Any]] = []
    for c, name in enumerate(names):
        raw = raw_classes.get(name)
        if not isinstance(raw, list):
            continue
        concepts = [_concept(r, j, errors) for j, r in enumerate(raw) if isinstance(r, dict)]
        concepts.sort(key=lambda x: -x["importance"])
        classes.append({"index": c, "name": name, "concepts": concepts,
                        "residual": _num(_dict(data.get("residual")).get(name)),
                        "strategies": _strategies(raw_strategies.get(name)),
                        "slices": [s for s in slices if s["ci"] == c]})
    shortcuts = [{"class": cl["name"], "ci": cl["index"], **x} for cl in classes for x in cl["concepts"] if x["shortcut"]]
    split = data.get("split") if isinstance(data.get("split"), str) else None
    return {"layer": str(data.get("layer", "")), "classes": classes, "shortcuts": shortcuts, "slices": slices,
            "pairs": _pairs(data.get("errors"), names), "tcav": _tcav(data.get("tcav"), names),
            "class_findings": _class_findings(data.get("class_findings"), names), "split": split}


def _class_findings(raw: Any, names: Sequence[str]) -> list[dict]:
    """The class-level tests (``classtests``: a class resting on its context or intensities), flagged ones first."""
    out = []
    for cls, found in _dict(raw).items():
        if cls not in names or not isinstance(found, list):
            continue
        for f in found:
            if not isinstance(f, dict):
                continue
            d = _dict(f.get("deletion"))
            out.append({"class": cls, "ci": list(names).index(cls), "test": str(f.get("test") or ""),
                        "flip_rate": _num(d.get("flip_rate")), "mean_drop": _num(d.get("mean_drop")),
                        "images": _count(d.get("images")), "shortcut": f.get("shortcut") is True,
                        "concepts": [str(c) for c in f.get("concepts", []) if isinstance(c, str)]
                        if isinstance(f.get("concepts"), list) else [],
                        "evidence": str(f.get("evidence") or "")})
    return sorted(out, key=lambda f: (not f["shortcut"], -(f["flip_rate"] or 0.0)))


def scope_text(atlas_split: str | None, shown_split: str | None) -> tuple[str, bool]:
    """``(sentence, mismatch)``: which images the concepts were computed on, and whether that differs from the
    split a page or report shows (then the sentence says so and how to compute them for that split)."""
    computed = f"the images of split '{atlas_split}'" if atlas_split is not None else "every image of the run (all splits)"
    if shown_split is None or shown_split == atlas_split:
        return f"Concepts computed on {computed}.", False
    return (f"These concepts were computed on {computed}, not on split '{shown_split}' alone: "
            f"`mikata concepts RUN --split {shown_split}` computes them for it."), True


def _tcav(raw: Any, names: Sequence[str]) -> list[dict]:
    """Concepts the user defined by examples (``--define NAME=DIR``): per class the TCAV score, the random
    vectors' mean score, the t-test's p-value and whether it is significant."""
    out = []
    for concept, entry in _dict(raw).items():
        per = _dict(_dict(entry).get("classes"))
        rows = [{"class": cls, "score": _num(v.get("score")), "random": _num(v.get("random_mean")),
                 "p_value": _num(v.get("p_value")), "significant": v.get("significant") is True,
                 "images": _count(v.get("images"))}
                for cls, v in per.items() if cls in names and isinstance(v, dict)]
        out.append({"concept": str(concept), "classes": rows})
    return out


def atlas_json(run_dir: str | os.PathLike) -> dict | None:
    """The run's atlas as ``Atlas.to_json()``, or None when it has none (or a stale one)."""
    from mikata.concepts import load_atlas

    atlas = load_atlas(run_dir)
    return None if atlas is None else atlas.to_json()


def atlas_view(run_dir: str | os.PathLike, class_names: Sequence[str]) -> dict | None:
    """``shape_atlas`` of the run's atlas, or None when the run has no current atlas."""
    data = atlas_json(run_dir)
    return None if data is None else shape_atlas(data, class_names)


def find_concept(view: dict, c: int, k: int) -> tuple[dict, dict]:
    """The class table and the concept ``k`` of class index ``c``; KeyError when the atlas has neither."""
    cls = next((x for x in view["classes"] if x["index"] == c), None)
    if cls is None:
        raise KeyError(f"no concepts of class {c}")
    concept = next((x for x in cls["concepts"] if x["k"] == k), None)
    if concept is None:
        raise KeyError(f"no concept {k} of class {cls['name']}")
    return cls, concept


# ------------------------------------------------------------------------------------------- pictures
def location_image(run_dir: str | os.PathLike, concept: str, size: int = 96) -> np.ndarray:
    """Where ``concept`` sits on average (``concepts.concept_location_map``: the mean of its normalized maps over
    the images that have it, on the layer's grid over the model's input), colored from 0 (blue) to 1 (red)
    and resized to ``size`` px as ``(size, size, 3)`` uint8."""
    from PIL import Image

    from mikata.concepts import concept_location_map
    from mikata.display import SEQUENTIAL, colorize

    grid = np.clip(np.nan_to_num(np.asarray(concept_location_map(run_dir, concept), np.float32)), 0, 1)
    up = np.asarray(Image.fromarray(grid, mode="F").resize((size, size), Image.Resampling.BILINEAR))
    return colorize(up, SEQUENTIAL, 0.0, 1.0)


def original_image(run_dir: str | os.PathLike, image_id: int) -> np.ndarray:
    """The scanned image ``image_id`` as ``(H, W, 3)`` uint8, reached by its id (``media.image_file``)."""
    from mikata.presentation.media import image_file
    from mikata.runs.store import RunStore
    from mikata.data.images import load_image

    with RunStore.open(run_dir) as store:
        path = image_file(store, int(image_id))
    return np.asarray(load_image(path).convert("RGB"))


def crop_box(shape: tuple[int, ...], box: Sequence[int]) -> tuple[int, int, int, int]:
    """``box`` (x0, y0, x1, y1, original pixels) clipped to an image of ``shape`` and at least 1 px wide."""
    h, w = shape[:2]
    x0, y0 = min(max(int(box[0]), 0), w - 1), min(max(int(box[1]), 0), h - 1)
    x1, y1 = min(max(int(box[2]), x0 + 1), w), min(max(int(box[3]), y0 + 1), h)
    return x0, y0, x1, y1


def exemplar_overlay(run_dir: str | os.PathLike, image_id: int, concept: str, box: Sequence[int] | None = None,
                     *, model=None, device: str | None = "cpu", alpha: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """``(crop, overlay)``: the image's ``box`` (the whole image when None) and the same crop with the
    concept's heatmap (``concept_heatmap``) over it, colored from 0 (blue) to the map's peak over the
    whole image (red), so the crops of one concept compare."""
    from mikata.concepts import concept_heatmap
    from mikata.display import SEQUENTIAL, colorize

    img = original_image(run_dir, image_id)
    heat = np.asarray(concept_heatmap(run_dir, int(image_id), concept, model=model, device=device), np.float64)
    if heat.shape != img.shape[:2]:
        from PIL import Image

        heat = np.asarray(Image.fromarray(heat.astype(np.float32), mode="F").resize(
            (img.shape[1], img.shape[0]), Image.Resampling.BILINEAR), np.float64)
    heat = np.clip(heat / max(float(heat.max()), 1e-12), 0, 1)
    x0, y0, x1, y1 = crop_box(img.shape, box) if box is not None else (0, 0, img.shape[1], img.shape[0])
    crop = img[y0:y1, x0:x1]
    colored = colorize(heat[y0:y1, x0:x1], SEQUENTIAL).astype(np.float64)
    return crop, (alpha * colored + (1 - alpha) * crop).round().astype(np.uint8)


def decomposition_text(class_name: str, shares: Sequence[tuple[str, float]], top: int = 4) -> str:
    """``"Coat: 61% concept 2, 24% concept 0, …"`` from ``image_decomposition``'s (concept, share) pairs."""
    ranked = sorted(shares, key=lambda kv: -kv[1])
    parts = [f"{round(100 * s):d}% concept {concept_index(c, j)}" for j, (c, s) in enumerate(ranked[:top])]
    return f"{class_name}: " + ", ".join(parts) + (", …" if len(ranked) > top else "")


def atlas_files(run_dir: str | os.PathLike) -> list[Path]:
    """The files under ``RUN/concepts/`` (for the demo's list of outputs)."""
    folder = Path(run_dir) / "concepts"
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
