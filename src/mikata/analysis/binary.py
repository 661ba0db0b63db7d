"""Two-class runs: precision-recall and ROC curves of the positive class, and an operating threshold.

Accuracy and an argmax confusion matrix hide what an inspection task needs: how many defects a
threshold on P(defect) catches (recall) and how many of its alarms are real (precision), and what
moving that threshold trades. ``binary_curves(d)`` computes both curves from the run's stored
probabilities (one sort of N scores: the same counts ``sklearn.metrics`` computes, with AUROC and
average precision), ``Curves.at(t)`` the confusion counts at any threshold, and
``Curves.threshold_table()`` those counts on a fixed grid of thresholds for the web app's slider and
the report. The rule is everywhere the same: an image is called positive when P(positive) >= t.

The positive class is the one asked for (``positive=`` a name or id), else the minority class of
the scanned labels (the defect, the disease: the rare class is the one a threshold is set for),
ties going to the second class. On runs of more classes a named class gives its one-vs-rest curves.

Example:
    >>> d = load_run("runs/inspection")                                      # doctest: +SKIP
    >>> c = binary_curves(d)                                                  # doctest: +SKIP
    >>> c.auroc, c.average_precision, c.at(0.3).recall                        # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mikata.runs.data import RunData
from mikata.errors import MikataError

DEFAULT_THRESHOLD = 0.5


class CurveError(MikataError):
    """The curves cannot be drawn for this run (e.g. no images of one of the two sides)."""


def resolve_class(names: list[str], positive: int | str) -> int:
    """The id of a class given by name (case-insensitive; a name wins over an id) or by id."""
    from mikata.models.classes import class_index

    return class_index(names, positive, "positive class")


def positive_class(d: RunData, positive: int | str | None = None) -> int | None:
    """The class whose curves are drawn: ``positive`` (a name, case-insensitive, or an id), else the
    minority class of a two-class run (ties: class 1); None for a run of more classes without one."""
    names = d.class_names
    if positive is not None:
        return resolve_class(names, positive)
    if len(names) != 2:
        return None
    counts = np.bincount(d.labels, minlength=2)
    return 0 if counts[0] < counts[1] else 1


@dataclass
class OperatingPoint:
    """The confusion counts of 'P(positive) >= threshold' against the labels, and what follows from them."""

    threshold: float
    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def precision(self) -> float:
        """Of the images called positive, the share that are (NaN when none is called)."""
        called = self.tp + self.fp
        return self.tp / called if called else float("nan")

    @property
    def recall(self) -> float:
        """Of the positive images, the share called positive (NaN without positives)."""
        pos = self.tp + self.fn
        return self.tp / pos if pos else float("nan")

    @property
    def fpr(self) -> float:
        """Of the negative images, the share called positive (false alarms)."""
        neg = self.fp + self.tn
        return self.fp / neg if neg else float("nan")

    @property
    def f1(self) -> float:
        denom = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denom if denom else 0.0

    def to_dict(self) -> dict:
        return {"threshold": round(float(self.threshold), 6), "tp": self.tp, "fp": self.fp, "fn": self.fn,
                "tn": self.tn, "precision": _round(self.precision), "recall": _round(self.recall),
                "fpr": _round(self.fpr), "f1": round(self.f1, 6)}


def _round(v: float) -> float | None:
    return None if v != v else round(v, 6)


@dataclass
class Curves:
    """Both curves of one positive class, as cumulative counts over the distinct scores (descending).

    ``tp[i]`` / ``fp[i]``: positives / negatives with score >= ``thresholds[i]``. Everything else
    (ROC, PR, AUROC, AP, any operating point) is read from these two arrays.
    """

    positive: int
    class_names: list[str]
    thresholds: np.ndarray  # (T,) distinct P(positive), descending
    tp: np.ndarray          # (T,) int64
    fp: np.ndarray          # (T,) int64
    n_pos: int
    n_neg: int

    @property
    def positive_name(self) -> str:
        return self.class_names[self.positive]

    @property
    def negative_name(self) -> str:
        """The other class of a two-class run, or "rest" for one-vs-rest curves."""
        if len(self.class_names) == 2:
            return self.class_names[1 - self.positive]
        return "not " + self.positive_name

    # ---------------------------------------------------------------------------- curves
    def roc(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(fpr, tpr, thresholds)`` from (0, 0) at threshold +inf: ``sklearn.metrics.roc_curve``
        with ``drop_intermediate=False``."""
        self._need_both()
        tps, fps = np.r_[0, self.tp], np.r_[0, self.fp]
        return fps / self.n_neg, tps / self.n_pos, np.r_[np.inf, self.thresholds]

    def pr(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(precision, recall, thresholds)`` with recall rising, ending at (precision 1, recall 0)
        the other way round from ``sklearn.metrics.precision_recall_curve`` (whose arrays run from
        the lowest threshold up); the same points."""
        self._need_positives()
        precision = self.tp / (self.tp + self.fp)  # every threshold calls at least one image
        recall = self.tp / self.n_pos
        return precision, recall, self.thresholds

    @property
    def auroc(self) -> float:
        """Area under the ROC curve (trapezoids).

        The chance a random positive scores above a random negative, ties counting half; NaN when one
        side has no images."""
        if not (self.n_pos and self.n_neg):
            return float("nan")
        fpr, tpr, _ = self.roc()
        return float(np.trapezoid(tpr, fpr)) if hasattr(np, "trapezoid") else float(np.trapz(tpr, fpr))

    @property
    def average_precision(self) -> float:
        """Average precision, the sum over thresholds of (recall gain) x precision.

        No interpolation (``sklearn.metrics.average_precision_score``); NaN without positives."""
        if not self.n_pos:
            return float("nan")
        precision, recall, _ = self.pr()
        return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))

    def _need_both(self) -> None:
        if not (self.n_pos and self.n_neg):
            side = self.positive_name if not self.n_pos else self.negative_name
            raise CurveError(f"no images of {side!r} among the scanned rows: a ROC curve needs both classes")

    def _need_positives(self) -> None:
        if not self.n_pos:
            raise CurveError(f"no images of {self.positive_name!r} among the scanned rows: "
                             "a precision-recall curve needs positives")

    # ----------------------------------------------------------------- operating points
    def at(self, threshold: float) -> OperatingPoint:
        """The counts when every image with P(positive) >= ``threshold`` is called positive."""
        # thresholds descend: the number of them >= t is the count of called score levels
        k = int(np.searchsorted(-self.thresholds, -float(threshold), side="right"))
        tp = int(self.tp[k - 1]) if k else 0
        fp = int(self.fp[k - 1]) if k else 0
        return OperatingPoint(float(threshold), tp, fp, self.n_pos - tp, self.n_neg - fp)

    def best_f1(self) -> OperatingPoint:
        """The threshold (one of the scores) with the highest F1 of the positive class; ties: the higher one."""
        if not len(self.thresholds):
            return self.at(DEFAULT_THRESHOLD)
        f1 = 2 * self.tp / (2 * self.tp + self.fp + (self.n_pos - self.tp))  # (T,)
        i = int(np.argmax(f1))
        return OperatingPoint(float(self.thresholds[i]), int(self.tp[i]), int(self.fp[i]),
                              self.n_pos - int(self.tp[i]), self.n_neg - int(self.fp[i]))

    def threshold_table(self, steps: int = 200) -> dict:
        """The counts at ``steps + 1`` evenly spaced thresholds 0, 1/steps, ..., 1 (what a slider needs:
        exact at each of its stops, no recomputation in the browser)."""
        grid = np.linspace(0.0, 1.0, steps + 1)
        k = np.searchsorted(-self.thresholds, -grid, side="right")  # (steps + 1,)
        tp = np.where(k > 0, self.tp[np.maximum(k - 1, 0)], 0) if len(self.tp) else np.zeros(len(grid), np.int64)
        fp = np.where(k > 0, self.fp[np.maximum(k - 1, 0)], 0) if len(self.fp) else np.zeros(len(grid), np.int64)
        return {"thresholds": np.round(grid, 6).tolist(), "tp": tp.astype(int).tolist(), "fp": fp.astype(int).tolist(),
                "n_pos": self.n_pos, "n_neg": self.n_neg}

    def curve_points(self, max_points: int = 400) -> dict:
        """Both curves thinned to at most ``max_points`` points each (for drawing; the areas come from all)."""
        out: dict = {}
        if self.n_pos and self.n_neg:
            fpr, tpr, _ = self.roc()
            keep = _thin(len(fpr), max_points)
            out["roc"] = {"fpr": np.round(fpr[keep], 5).tolist(), "tpr": np.round(tpr[keep], 5).tolist()}
        if self.n_pos:
            precision, recall, _ = self.pr()
            keep = _thin(len(recall), max_points)
            out["pr"] = {"recall": np.round(np.r_[0.0, recall[keep]], 5).tolist(),
                         "precision": np.round(np.r_[1.0, precision[keep]], 5).tolist()}
        return out

    # --------------------------------------------------------------------------- pictures
    def figure(self):
        """The ROC and precision-recall curves side by side, AUROC and AP in the titles (a matplotlib
        ``Figure`` that shows itself as a PNG in Jupyter); a curve that cannot exist says why instead."""
        from mikata.notebook import notebook_figure

        fig = notebook_figure(figsize=(8.0, 3.6), dpi=100, layout="constrained")
        roc_ax, pr_ax = fig.subplots(1, 2)
        points = self.curve_points()
        if "roc" in points:
            roc_ax.plot(points["roc"]["fpr"], points["roc"]["tpr"], color="tab:blue")
            roc_ax.plot([0, 1], [0, 1], color="gray", linestyle=":", linewidth=1)
            roc_ax.set_title(f"ROC: AUROC {self.auroc:.3f}", fontsize=10)
        else:
            roc_ax.set_title("ROC: needs images of both classes", fontsize=10)
        roc_ax.set_xlabel("false positive rate")
        roc_ax.set_ylabel("true positive rate")
        if "pr" in points:
            pr_ax.plot(points["pr"]["recall"], points["pr"]["precision"], color="tab:orange", drawstyle="steps-post")
            prevalence = self.n_pos / (self.n_pos + self.n_neg)
            pr_ax.axhline(prevalence, color="gray", linestyle=":", linewidth=1)
            pr_ax.set_title(f"precision-recall: AP {self.average_precision:.3f}", fontsize=10)
        else:
            pr_ax.set_title("precision-recall: needs positives", fontsize=10)
        pr_ax.set_xlabel("recall")
        pr_ax.set_ylabel("precision")
        for ax in (roc_ax, pr_ax):
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1.02)
            ax.grid(alpha=0.3)
        fig.suptitle(f"positive class: {self.positive_name} ({self.n_pos} vs {self.n_neg} {self.negative_name})",
                     fontsize=10)
        return fig

    def _repr_png_(self) -> bytes:
        """The figure as PNG, drawn once (Jupyter asks for the PNG and the HTML of a result)."""
        from mikata.notebook import figure_png

        if "_png" not in self.__dict__:
            self.__dict__["_png"] = figure_png(self.figure())
        return self.__dict__["_png"]

    def _repr_html_(self) -> str:
        from mikata.notebook import STYLE, esc, img_tag, table_html

        best = self.best_f1()
        rows = [["AUROC", self.auroc], ["average precision", self.average_precision],
                ["positives / negatives", f"{self.n_pos} / {self.n_neg}"],
                ["best F1", f"{best.f1:.3f} at P({self.positive_name}) >= {best.threshold:.3f}"]]
        return (f"<div>{STYLE}<div><b>curves of {esc(self.positive_name)}</b></div>"
                f"{img_tag(self._repr_png_(), alt='ROC and precision-recall curves')}"
                f"{table_html(['', 'value'], rows)}</div>")

    def __repr__(self) -> str:
        return (f"Curves(positive={self.positive_name!r}, {self.n_pos} positives, {self.n_neg} negatives, "
                f"auroc={self.auroc:.4f}, average_precision={self.average_precision:.4f})")

    def summary(self, threshold: float = DEFAULT_THRESHOLD) -> dict:
        """JSON-ready: the classes, AUROC, AP, and the operating points at ``threshold`` and at the best F1."""
        return {"positive": self.positive_name, "negative": self.negative_name, "positives": self.n_pos,
                "negatives": self.n_neg, "auroc": _round(self.auroc), "average_precision": _round(self.average_precision),
                "prevalence": _round(self.n_pos / (self.n_pos + self.n_neg)) if self.n_pos + self.n_neg else None,
                "at_threshold": self.at(threshold).to_dict(), "best_f1": self.best_f1().to_dict()}


def _thin(n: int, max_points: int) -> np.ndarray:
    """Indices of at most ``max_points`` of ``n`` points, evenly spread, first and last kept."""
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_points).round().astype(np.int64))


def curves_from_scores(y: np.ndarray, score: np.ndarray, positive: int = 1,
                       class_names: list[str] | None = None) -> Curves:
    """``Curves`` of boolean ``y`` (N,) (is the image positive?) against ``score`` (N,) = P(positive)."""
    y = np.asarray(y, bool)
    score = np.asarray(score, np.float64)
    order = np.argsort(-score, kind="stable")
    s, t = score[order], y[order]
    # the last index of each run of equal scores: the counts once every image of that score is called
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1] if len(s) else np.zeros(0, np.int64)
    tp = np.cumsum(t)[last].astype(np.int64)
    fp = (last + 1 - tp).astype(np.int64)
    return Curves(positive, list(class_names or ["negative", "positive"]), s[last], tp, fp, int(y.sum()),
                  int(len(y) - y.sum()))


def binary_curves(d: RunData, positive: int | str | None = None) -> Curves | None:
    """The positive class's curves from the run's stored probabilities; None for a run of more than
    two classes when no ``positive`` class is named."""
    c = positive_class(d, positive)
    if c is None:
        return None
    return curves_from_scores(d.labels == c, d.probs[:, c], c, d.class_names)


#: one-vs-rest areas are computed for runs of at most this many probabilities (one sort of N per class)
ONE_VS_REST_MAX_CELLS = 20_000_000


def one_vs_rest(d: RunData, max_cells: int = ONE_VS_REST_MAX_CELLS) -> dict[int, tuple[float, float]] | None:
    """``{class id: (AUROC, average precision)}`` of each class with images against all the others,
    from the stored probabilities (scikit-learn's one-vs-rest ``roc_auc_score`` /
    ``average_precision_score`` per class); None above ``max_cells`` probabilities (K sorts of N)."""
    if len(d) * d.num_classes > max_cells:
        return None
    out = {}
    for c in np.nonzero(np.bincount(d.labels, minlength=d.num_classes))[0].tolist():
        curves = curves_from_scores(d.labels == c, d.probs[:, c], c, d.class_names)
        out[c] = (curves.auroc, curves.average_precision)
    return out


def format_binary(summary: dict) -> list[str]:
    """The lines ``mikata audit`` prints for ``Curves.summary()``: the areas, then the counts at the threshold."""
    s = summary
    pos, neg = s["positive"], s["negative"]

    def pct(v):
        return "–" if v is None else f"{v:.2%}"

    def area(v):
        return "–" if v is None else f"{v:.4f}"

    lines = [f"\noperating threshold: positive class {pos!r} ({s['positives']} images) against {neg!r} "
             f"({s['negatives']}); an image is called {pos!r} when P({pos}) >= the threshold (--positive, --threshold)",
             f"  AUROC {area(s['auroc'])}   average precision {area(s['average_precision'])}"
             f"   (prevalence {pct(s['prevalence'])})"]
    for what, p in (("threshold", s["at_threshold"]), ("best-F1 threshold", s["best_f1"])):
        lines.append(f"  {what} {p['threshold']:.4g}: precision {pct(p['precision'])}   recall {pct(p['recall'])}"
                     f"   F1 {p['f1']:.3f}   false-positive rate {pct(p['fpr'])}")
    p = s["at_threshold"]
    cols = [f"called {pos}", f"called {neg}"]
    cw = max(len(c) for c in cols)
    rows = [f"true {pos}", f"true {neg}"]
    rw = max(max(len(r) for r in rows), len(f"confusion at {p['threshold']:.4g}"))
    lines += [f"  {'confusion at ' + format(p['threshold'], '.4g'):<{rw}}  {cols[0]:>{cw}}  {cols[1]:>{cw}}",
              f"  {rows[0]:<{rw}}  {p['tp']:>{cw}}  {p['fn']:>{cw}}",
              f"  {rows[1]:<{rw}}  {p['fp']:>{cw}}  {p['tn']:>{cw}}"]
    return lines
