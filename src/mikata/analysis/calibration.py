"""Calibration of a classifier's probabilities: is a top-1 confidence of 0.9 right 90% of the time?

- ``reliability_curve``: the top-1 confidences cut into equal-mass bins (each bin holds about the
  same number of images), and per bin the mean confidence, the accuracy and the count. The bin
  edges are the confidences' quantiles and an image goes to the first bin whose upper edge is at
  least its confidence, the rule of scikit-learn's ``calibration_curve(strategy="quantile")``:
  tied confidences always share a bin, so the result does not depend on the order of the rows
  (a model that says 1.0 for half the images puts them all in one bin, and the bins left empty are
  dropped).
- ``expected_calibration_error``: ECE = sum over bins of (bin count / N) * |accuracy - confidence|,
  0 for a perfectly calibrated model, at most 1.
- ``fit_temperature`` / ``apply_temperature``: temperature scaling (Guo et al., 2017): one number
  T > 0 that divides the logits, fitted by minimizing the negative log-likelihood on a held-out
  split. A run stores probabilities, not logits; ``log p`` differs from the logits by a per-row
  constant, which softmax ignores, so ``softmax(log p / T)`` is exactly temperature scaling.
  T > 1 softens an overconfident model, T < 1 sharpens an underconfident one; the top-1 class never
  changes.

Example:
    >>> import numpy as np
    >>> probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    >>> labels = np.array([0, 1, 1, 0])
    >>> round(expected_calibration_error(probs, labels, bins=2), 3)
    0.35
    >>> reliability_curve(probs, labels, bins=2).counts.tolist()
    [2, 2]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_BINS = 15
T_RANGE = (0.05, 20.0)      # temperatures searched by ``fit_temperature``
_LOG_FLOOR = np.log(np.float32(2.0 ** -24))  # the smallest float16 step: a stored 0 was below it


def _top1(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, correct) of each row: the largest probability, and whether its class is the label."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels).astype(np.int64, copy=False)
    if p.ndim != 2 or y.shape != (p.shape[0],):
        raise ValueError(f"probs must be (N, K) and labels (N,); got {p.shape} and {y.shape}")
    return p.max(axis=1), p.argmax(axis=1) == y  # (N,), (N,)


def quantile_bins(confidence: np.ndarray, bins: int = DEFAULT_BINS) -> np.ndarray:
    """The bin of each confidence (0 .. bins-1) for equal-mass bins (quantile edges; ties share a bin)."""
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    c = np.asarray(confidence, dtype=np.float64)
    edges = np.percentile(c, np.linspace(0.0, 100.0, bins + 1))  # (bins + 1,)
    return np.searchsorted(edges[1:-1], c)  # (N,) an image goes to the first bin whose upper edge >= it


@dataclass(frozen=True)
class ReliabilityCurve:
    """Per non-empty bin, lowest confidence first: mean confidence, accuracy and number of images."""

    confidence: np.ndarray   # (B,) mean top-1 confidence in the bin
    accuracy: np.ndarray     # (B,) fraction of the bin whose top-1 class is the label
    counts: np.ndarray       # (B,) images in the bin
    bins: int                # the bins asked for (B may be fewer: empty bins are dropped)

    @property
    def ece(self) -> float:
        n = int(self.counts.sum())
        if n == 0:
            return float("nan")
        return float(np.sum(self.counts / n * np.abs(self.accuracy - self.confidence)))

    def _repr_html_(self) -> str:
        from mikata.notebook import STYLE, table_html

        rows = [[round(float(c), 4), round(float(a), 4), int(n)] for c, a, n in
                zip(self.confidence, self.accuracy, self.counts)]
        return (f"<div>{STYLE}<div><b>ReliabilityCurve</b> ECE {self.ece:.4f} over {len(self.counts)} equal-mass "
                f"bins</div>{table_html(['confidence', 'accuracy', 'images'], rows)}</div>")

    def to_dict(self) -> dict:
        return {"bins": self.bins, "ece": self.ece, "confidence": self.confidence.tolist(),
                "accuracy": self.accuracy.tolist(), "counts": self.counts.tolist()}


def reliability_curve(probs: np.ndarray, labels: np.ndarray, bins: int = DEFAULT_BINS) -> ReliabilityCurve:
    """The reliability diagram's points for top-1 predictions, with equal-mass bins.

    ``probs`` (N, K) class probabilities, ``labels`` (N,) class indices. No rows gives empty arrays
    (and ``ece`` NaN).

    Example:
        >>> d = mikata.open_run("runs/a").overview.data
        >>> curve = mikata.reliability_curve(d.probs, d.labels, bins=3)
        >>> curve.counts.tolist(), round(curve.ece, 3) == round(mikata.expected_calibration_error(d.probs, d.labels, 3), 3)
        ([4, 4, 4], True)
    """
    conf, correct = _top1(probs, labels)
    return reliability_of(conf, correct, bins)


def reliability_of(confidence: np.ndarray, correct: np.ndarray, bins: int = DEFAULT_BINS) -> ReliabilityCurve:
    """``reliability_curve`` from each row's top-1 confidence (N,) and whether that prediction is right (N,)."""
    conf = np.asarray(confidence, dtype=np.float64)
    right = np.asarray(correct, dtype=bool)
    if conf.shape != right.shape or conf.ndim != 1:
        raise ValueError(f"confidence and correct must be (N,) alike; got {conf.shape} and {right.shape}")
    if conf.size == 0:
        empty = np.zeros(0)
        return ReliabilityCurve(empty, empty, np.zeros(0, dtype=np.int64), bins)
    b = quantile_bins(conf, bins)
    total = np.bincount(b, minlength=bins)  # (bins,)
    sum_conf = np.bincount(b, weights=conf, minlength=bins)
    sum_right = np.bincount(b, weights=right.astype(np.float64), minlength=bins)
    keep = total > 0
    return ReliabilityCurve(sum_conf[keep] / total[keep], sum_right[keep] / total[keep],
                            total[keep].astype(np.int64), bins)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = DEFAULT_BINS) -> float:
    """ECE of the top-1 predictions over equal-mass bins (see the module docstring); NaN for no rows.

    Example:
        >>> d = mikata.open_run("runs/a").overview.data          # stored probabilities and labels
        >>> round(mikata.expected_calibration_error(d.probs, d.labels), 3)
        0.496
    """
    return reliability_curve(probs, labels, bins).ece


# ---------------------------------------------------------------- temperature scaling
def _log_probs(probs: np.ndarray) -> np.ndarray:
    """log p, with a stored 0 (a float16 underflow) read as the smallest float16 step."""
    with np.errstate(divide="ignore"):
        return np.maximum(np.log(np.asarray(probs, dtype=np.float64)), _LOG_FLOOR)  # (N, K)


def apply_temperature(probs: np.ndarray, temperature: float, chunk: int = 65536) -> np.ndarray:
    """``softmax(log(probs) / T)`` row by row, as float32 (``T == 1`` returns the probabilities as float32).

    Works ``chunk`` rows at a time, so a million-row run needs no float64 copy of all its probabilities."""
    p = np.asarray(probs, dtype=np.float32)
    if temperature == 1.0 or p.size == 0:
        return p
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    out = np.empty(p.shape, dtype=np.float32)
    for start in range(0, len(p), chunk):
        z = _log_probs(p[start:start + chunk]) / temperature  # (n, K)
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        out[start:start + chunk] = e / e.sum(axis=1, keepdims=True)
    return out


def nll(probs: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the labels under ``softmax(log(probs) / T)``."""
    z = _log_probs(probs) / temperature  # (N, K)
    m = z.max(axis=1, keepdims=True)
    lse = (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True)))[:, 0]  # (N,)
    y = np.asarray(labels, dtype=np.int64)
    return float(np.mean(lse - z[np.arange(len(y)), y]))


def fit_temperature(probs: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = T_RANGE) -> float:
    """The temperature T in ``bounds`` that minimizes the NLL of ``labels`` under ``softmax(log p / T)``.

    With b = 1/T the NLL is ``mean(logsumexp(b z) - b z_y)``, convex in b (its second derivative is
    the variance of z under the scaled softmax), so its derivative is increasing: the minimum is
    found by bisection on the derivative's sign, tightened by Newton steps that stay inside the
    bracket. A bound is returned when the minimum lies beyond it (e.g. every row right and
    confident: the NLL keeps falling as T shrinks)."""
    y = np.asarray(labels, dtype=np.int64)
    if len(y) == 0:
        raise ValueError("fitting a temperature needs at least one labeled row")
    z = _log_probs(probs)  # (N, K)
    zy = z[np.arange(len(y)), y]  # (N,)

    def grad_hess(b: float) -> tuple[float, float]:
        s = b * z
        s -= s.max(axis=1, keepdims=True)
        w = np.exp(s)
        w /= w.sum(axis=1, keepdims=True)  # (N, K) the scaled softmax
        mean = (w * z).sum(axis=1)  # (N,) E[z]
        var = (w * z * z).sum(axis=1) - mean ** 2
        return float(np.mean(mean - zy)), float(np.mean(np.maximum(var, 0.0)))

    lo, hi = 1.0 / bounds[1], 1.0 / bounds[0]  # b = 1/T
    if grad_hess(lo)[0] >= 0:
        return float(bounds[1])
    if grad_hess(hi)[0] <= 0:
        return float(bounds[0])
    b = 1.0 if lo < 1.0 < hi else (lo + hi) / 2
    for _ in range(100):
        g, h = grad_hess(b)
        if g > 0:
            hi = b
        else:
            lo = b
        if hi - lo < 1e-10 * hi:
            break
        step = b - g / h if h > 0 else None
        b = step if step is not None and lo < step < hi else (lo + hi) / 2
    return float(1.0 / b)
