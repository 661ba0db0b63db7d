"""What a class's factorization says about each concept, from its arrays alone (numpy only).

Inputs are the class's sampled images: ``U`` ``(n, h, w, k)`` concept coefficients on the layer's grid,
their sizes and the preprocessing geometry (to go from the model's input back to the original pixels),
labels and predictions. Nothing here runs the model.

Presence: image ``i`` has concept ``k`` when the concept's strongest position reaches half of the
class's 90th percentile of that strength (``presence_threshold``). A quantile of the class's own
strengths keeps the rule scale-free (layers differ by orders of magnitude), and the 90th percentile
still sees a concept that only a tenth of the class has. Errors, slices and the app's "images with the
concept" all use this one rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PRESENCE_QUANTILE, PRESENCE_FRACTION = 0.9, 0.5
REGION_FRACTION = 0.5  # a concept's region in an image: where its map reaches half of its maximum there
MIN_SLICE = 5  # smallest slice worth naming (images)


@dataclass(frozen=True)
class Geometry:
    """How an original ``width`` x ``height`` image became the model's ``in_w`` x ``in_h`` input: resized to
    ``rw`` x ``rh``, then cropped at ``(left, top)``."""

    width: int
    height: int
    rw: int
    rh: int
    left: int
    top: int
    in_w: int
    in_h: int

    def to_original(self, x: float, y: float) -> tuple[float, float]:
        """An input-pixel coordinate as an original-pixel coordinate."""
        return (x + self.left) * self.width / self.rw, (y + self.top) * self.height / self.rh


def strengths(U: np.ndarray) -> np.ndarray:
    """``(n, k)``: each concept's largest coefficient over each image's positions."""
    return U.reshape(U.shape[0], -1, U.shape[-1]).max(1)


def presence_threshold(strength: np.ndarray) -> np.ndarray:
    """``(k,)`` thresholds: ``PRESENCE_FRACTION`` of the class's ``PRESENCE_QUANTILE`` of each concept's strength."""
    if strength.shape[0] == 0:
        return np.zeros(strength.shape[1], np.float32)
    return (PRESENCE_FRACTION * np.quantile(strength, PRESENCE_QUANTILE, axis=0)).astype(np.float32)


def present(strength: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """``(n, k)`` bool: the image has the concept (strength above its threshold and above zero)."""
    return (strength >= thresholds[None, :]) & (strength > 0)


def upsample(m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A grid map ``(h, w)`` bilinearly resized to ``size`` = (H, W) (align_corners=False, as torch)."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(m, dtype=np.float32))[None, None]
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


def region_box(m: np.ndarray, geo: Geometry) -> list[int]:
    """The box ``[x0, y0, x1, y1]`` in ORIGINAL pixels around where the grid map ``m`` ``(h, w)``, upsampled to
    the model's input, reaches ``REGION_FRACTION`` of its maximum."""
    up = upsample(m, (geo.in_h, geo.in_w))
    peak = float(up.max())
    if peak <= 0:
        return [0, 0, geo.width, geo.height]
    ys, xs = np.nonzero(up >= REGION_FRACTION * peak)
    x0, y0 = geo.to_original(float(xs.min()), float(ys.min()))
    x1, y1 = geo.to_original(float(xs.max() + 1), float(ys.max() + 1))
    clip = lambda v, hi: int(round(min(max(v, 0.0), hi)))  # noqa: E731
    return [clip(x0, geo.width), clip(y0, geo.height), clip(x1, geo.width), clip(y1, geo.height)]


def centroid(m: np.ndarray, geo: Geometry) -> tuple[float, float]:
    """Where the grid map ``m`` ``(h, w)`` sits: the mass-weighted center of its region (the cells reaching
    ``REGION_FRACTION`` of its maximum, as the boxes), normalized to [0, 1] over the ORIGINAL image. Only the
    region weighs in: the small coefficients a concept has everywhere would pull every center to the middle."""
    h, w = m.shape
    peak = float(m.max())
    m = np.where(m >= REGION_FRACTION * peak, m, 0.0) if peak > 0 else m
    mass = float(m.sum())
    ys, xs = (np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w
    cy = float((m.sum(1) * ys).sum() / mass) if mass > 0 else 0.5
    cx = float((m.sum(0) * xs).sum() / mass) if mass > 0 else 0.5
    ox, oy = geo.to_original(cx * geo.in_w, cy * geo.in_h)
    return min(max(ox / geo.width, 0.0), 1.0), min(max(oy / geo.height, 0.0), 1.0)


def area(m: np.ndarray) -> float:
    """Share of the grid where the map reaches ``REGION_FRACTION`` of its maximum (0 for an empty map)."""
    peak = float(m.max())
    return float((m >= REGION_FRACTION * peak).mean()) if peak > 0 else 0.0


def location(U: np.ndarray, k: int, has: np.ndarray, geos: list[Geometry]) -> tuple[list[float], float, float, float]:
    """``(center [x, y], spread, area, off_center)`` of concept ``k`` over the images that have it: the mean of
    their centroids, the mean distance of a centroid from that mean (0 = always at the same place), the mean
    share of the image the concept covers, and the mean distance of a centroid from the image's center (a
    patch placed anywhere is off-center in each image though its mean center is central)."""
    rows = np.nonzero(has)[0]
    if rows.size == 0:
        return [0.5, 0.5], 0.0, 0.0, 0.0
    cents = np.array([centroid(U[i, :, :, k], geos[i]) for i in rows])  # (m, 2)
    center = cents.mean(0)
    spread = float(np.linalg.norm(cents - center, axis=1).mean())
    off = float(np.linalg.norm(cents - 0.5, axis=1).mean())
    return ([round(float(center[0]), 4), round(float(center[1]), 4)], spread,
            float(np.mean([area(U[i, :, :, k]) for i in rows])), off)


def location_map(U: np.ndarray, k: int, has: np.ndarray) -> np.ndarray:
    """``(h, w)`` in [0, 1]: the mean over the images that have concept ``k`` of its map, each scaled to a
    maximum of 1 (where the concept sits on average, on the layer's grid)."""
    rows = np.nonzero(has)[0]
    if rows.size == 0:
        return np.zeros(U.shape[1:3], np.float32)
    maps = U[rows, :, :, k]
    peaks = maps.reshape(len(rows), -1).max(1).clip(min=1e-12)
    mean = (maps / peaks[:, None, None]).mean(0)
    return (mean / max(float(mean.max()), 1e-12)).astype(np.float32)


# ------------------------------------------------------------------------------------ errors and slices
def _rate(x: np.ndarray) -> float | None:
    return float(x.mean()) if x.size else None


def fisher_greater(a: int, b: int, c: int, d: int) -> float:
    """One-sided Fisher exact test of the 2x2 table ``[[a, b], [c, d]]``: the probability, with the margins
    fixed, of an ``a`` at least this large (the hypergeometric upper tail), in exact integer arithmetic.
    (scipy's ``fisher_exact`` gives the same; importing scipy.stats costs seconds, this costs nothing.)"""
    from math import comb

    row, col, n = a + b, a + c, a + b + c + d
    if n == 0:
        return 1.0
    total = comb(n, row)
    tail = sum(comb(col, x) * comb(n - col, row - x) for x in range(a, min(row, col) + 1))
    return float(tail / total)


def concept_errors(name: str, has: np.ndarray, correct: np.ndarray) -> dict:
    """Accuracy with and without a concept, and whether it is over-present in the errors (Fisher's exact test)."""
    ew, cw = int((~correct & has).sum()), int((correct & has).sum())
    eo, co = int((~correct & ~has).sum()), int((correct & ~has).sum())
    in_err, in_ok = _rate(has[~correct]), _rate(has[correct])
    p = fisher_greater(ew, eo, cw, co) if (ew + eo) and (cw + co) else 1.0
    return {"concept": name, "with": {"images": ew + cw, "accuracy": _rate(correct[has])},
            "without": {"images": eo + co, "accuracy": _rate(correct[~has])},
            "errors_with": ew, "correct_with": cw, "in_errors": in_err, "in_correct": in_ok,
            "over_present": bool(in_err is not None and in_ok is not None and in_err > in_ok and p < 0.05),
            "p_value": p}


def pair_errors(names: list[str], has: np.ndarray, correct: np.ndarray, preds: np.ndarray, true: str,
                class_names: list[str], min_errors: int = 3) -> list[dict]:
    """For each class the images were mistaken for (at least ``min_errors`` times): the class's concepts
    by how much more often the images mistaken for it have them than the correct images do."""
    out = []
    for b in sorted(set(preds[~correct].tolist())):
        errs = ~correct & (preds == b)
        if int(errs.sum()) < min_errors:
            continue
        rows = [_pair_row(n, has[:, j], errs, correct) for j, n in enumerate(names)]
        rows.sort(key=lambda r: -(r["in_errors"] - (r["in_correct"] or 0.0)))
        out.append({"true": true, "pred": class_names[b], "errors": int(errs.sum()), "concepts": rows})
    return out


def _pair_row(name: str, has: np.ndarray, errs: np.ndarray, correct: np.ndarray) -> dict:
    a, b = int((has & errs).sum()), int((~has & errs).sum())
    c, d = int((has & correct).sum()), int((~has & correct).sum())
    p = fisher_greater(a, b, c, d) if (a + b) and (c + d) else 1.0
    in_err, in_ok = a / max(a + b, 1), (c / (c + d) if c + d else None)
    return {"concept": name, "in_errors": in_err, "in_correct": in_ok, "errors_with": a, "correct_with": c,
            "over_present": bool(in_ok is not None and in_err > in_ok and p < 0.05), "p_value": p}


def slices(cls: str, names: list[str], has: np.ndarray, correct: np.ndarray, min_images: int | None = None) -> list[dict]:
    """Concept-defined slices of one class (with / without each concept) that are less accurate than the
    class, worst first: ``{"class", "concept", "present", "images", "accuracy", "gap", "text"}``."""
    n = len(correct)
    if n == 0:
        return []
    base = float(correct.mean())
    least = min_images if min_images is not None else max(MIN_SLICE, int(np.ceil(0.05 * n)))
    out = []
    for j, name in enumerate(names):
        for flag in (True, False):
            sel = has[:, j] if flag else ~has[:, j]
            size = int(sel.sum())
            if size < least or size == n:
                continue
            acc = float(correct[sel].mean())
            if acc >= base:
                continue
            text = (f"{cls} images {'with' if flag else 'without'} concept {name.rsplit('/', 1)[-1]}: "
                    f"{round(100 * acc)}% accurate, {size} images (class: {round(100 * base)}%)")
            out.append({"class": cls, "concept": name, "present": flag, "images": size, "accuracy": acc,
                        "gap": base - acc, "text": text})
    out.sort(key=lambda s: (-s["gap"], -s["images"]))
    return out
