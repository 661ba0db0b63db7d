"""Paired statistics for two models judged on the same images: McNemar's exact test and bootstrap intervals.

Two runs over the same images give paired observations: image i is right or wrong under model A and
under model B. The differences ``compare`` reports are statistics of those pairs, and their intervals
come from resampling images (the pairs, never the two sides apart), seeded.

Every ratio metric of the comparison (accuracy, a class's recall or precision, the accuracy of one
field value) is a function of four booleans per image: in A's denominator, in A's numerator, in B's
denominator, in B's numerator. The counts of the 16 combinations are all such a metric depends on,
and resampling N images with replacement draws those counts from Multinomial(N, observed shares):
``RatioCells.bootstrap`` draws the counts directly — the same distribution as resampling the rows,
at a cost independent of N (a million-row comparison bootstraps in milliseconds). Metrics that need
every score (AUROC, average precision) resample rows as weights over one pre-sorted order
(``ScoreBootstrap``: one sort, then O(N) per replicate).

Example:
    >>> mcnemar_exact(3, 12) < 0.05, round(mcnemar_exact(5, 5), 6)
    (True, 1.0)
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
REPLICATES = 1000
#: rows x replicates above which a row-resampling bootstrap (AUROC, AP) uses fewer replicates
MAX_ROW_DRAWS = 50_000_000
MIN_ROW_REPLICATES = 200


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pairs: ``b`` images right only under A, ``c``
    right only under B. Under "no difference" each discordant image is equally likely either way, so
    ``min(b, c)`` is Binomial(b + c, 1/2): p = 2 P(X <= min(b, c)), at most 1 (1 with no discordant pair)."""
    from scipy.special import betainc

    b, c = int(b), int(c)
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    # P(X <= k) for X ~ Binomial(n, 1/2) is the regularized incomplete beta I_{1/2}(n - k, k + 1)
    return float(min(1.0, 2.0 * betainc(n - k, k + 1, 0.5)))


def rng_for(seed: int, key: str) -> np.random.Generator:
    """A generator of its own for each metric: adding a metric never changes another's interval."""
    return np.random.default_rng([int(seed), zlib.crc32(key.encode("utf-8", "surrogateescape"))])


def percentile_interval(diffs: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float | None, float | None]:
    """The percentile bootstrap interval of replicate differences (undefined replicates left out)."""
    d = diffs[np.isfinite(diffs)]
    if not len(d):
        return None, None
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(d, [tail, 100 - tail])
    return float(low), float(high)


@dataclass
class PairedValue:
    """One metric under A and B, their difference B - A with its interval, and the paired test when it applies."""

    a: float | None
    b: float | None
    low: float | None = None
    high: float | None = None
    p: float | None = None              # McNemar's exact p (paired correctness on the same images)
    only_a: int | None = None           # images counted by A's numerator only (right only under A)
    only_b: int | None = None

    @property
    def diff(self) -> float | None:
        return None if self.a is None or self.b is None else self.b - self.a


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.maximum(den, 1), np.nan)


class RatioCells:
    """The 16 cell counts of (A denominator, A numerator, B denominator, B numerator) over paired images."""

    def __init__(self, den_a: np.ndarray, num_a: np.ndarray, den_b: np.ndarray, num_b: np.ndarray):
        code = (den_a.astype(np.int64) | (num_a & den_a).astype(np.int64) << 1
                | den_b.astype(np.int64) << 2 | (num_b & den_b).astype(np.int64) << 3)
        self.counts = np.bincount(code, minlength=16)  # (16,)
        self.same_rows = bool(np.array_equal(den_a, den_b))
        bits = np.arange(16)
        self._masks = [((bits >> k) & 1).astype(bool) for k in range(4)]  # den_a, num_a, den_b, num_b

    def values(self, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A's and B's ratio from counts ``(..., 16)``."""
        den_a, num_a, den_b, num_b = self._masks
        return (_ratio(counts[..., num_a].sum(-1), counts[..., den_a].sum(-1)),
                _ratio(counts[..., num_b].sum(-1), counts[..., den_b].sum(-1)))

    def paired(self, rng: np.random.Generator, replicates: int = REPLICATES,
               confidence: float = CONFIDENCE) -> PairedValue:
        """Both ratios, the interval of B - A from ``replicates`` multinomial draws of the counts, and
        McNemar's test when both ratios have the same denominator (a correctness rate on the same images)."""
        a, b = (float(v) for v in self.values(self.counts))
        n = int(self.counts.sum())
        low = high = None
        if n and replicates:
            draws = rng.multinomial(n, self.counts / n, size=replicates)  # (R, 16)
            ra, rb = self.values(draws)
            low, high = percentile_interval(rb - ra, confidence)
        out = PairedValue(None if a != a else a, None if b != b else b, low, high)
        if self.same_rows:
            den_a, num_a, _, num_b = self._masks
            only_a = int(self.counts[den_a & num_a & ~num_b].sum())
            only_b = int(self.counts[den_a & ~num_a & num_b].sum())
            out.only_a, out.only_b, out.p = only_a, only_b, mcnemar_exact(only_a, only_b)
        return out


class ScoreBootstrap:
    """AUROC and average precision of one score against one truth, recomputed for row weights without
    sorting again: the rows are grouped once by distinct score (descending), ties counting as one
    threshold (``sklearn.metrics.roc_auc_score`` / ``average_precision_score``)."""

    def __init__(self, positive: np.ndarray, score: np.ndarray):
        self.positive = np.asarray(positive, bool)
        uniq, inverse = np.unique(-np.asarray(score, np.float64), return_inverse=True)
        self.group = inverse.reshape(-1)  # (N,) index of the row's score among the distinct ones, highest first
        self.groups = len(uniq)

    def areas(self, weights: np.ndarray | None = None) -> tuple[float, float]:
        """(AUROC, AP) with each row counted ``weights[i]`` times (None: once); NaN without both classes."""
        w = np.ones(len(self.group)) if weights is None else np.asarray(weights, np.float64)
        pos = np.bincount(self.group, w * self.positive, minlength=self.groups)  # (G,) weight of positives per score
        neg = np.bincount(self.group, w * ~self.positive, minlength=self.groups)
        n_pos, n_neg = pos.sum(), neg.sum()
        tp, fp = np.cumsum(pos), np.cumsum(neg)
        auroc = float(np.sum(neg * (tp - pos / 2)) / (n_pos * n_neg)) if n_pos and n_neg else float("nan")
        called = tp + fp
        with np.errstate(invalid="ignore", divide="ignore"):
            ap = float(np.sum(pos / n_pos * np.where(called > 0, tp / np.maximum(called, 1e-300), 0.0))) \
                if n_pos else float("nan")
        return auroc, ap


def row_replicates(n: int, replicates: int = REPLICATES) -> int:
    """How many row-resampling replicates a metric over ``n`` rows gets (fewer on huge runs, at least 200)."""
    return int(min(replicates, max(MIN_ROW_REPLICATES, MAX_ROW_DRAWS // max(n, 1))))


def paired_areas(a: ScoreBootstrap, b: ScoreBootstrap, rng: np.random.Generator, replicates: int = REPLICATES,
                 confidence: float = CONFIDENCE) -> tuple[PairedValue, PairedValue, int]:
    """AUROC and AP of A and B with intervals of B - A from the same resampled rows for both; also the
    number of replicates used (``row_replicates``)."""
    n = len(a.group)
    ra = rb = None
    reps = row_replicates(n, replicates) if replicates else 0
    areas_a, areas_b = a.areas(), b.areas()
    if reps and n:
        ra, rb = np.empty((reps, 2)), np.empty((reps, 2))
        for r in range(reps):
            w = np.bincount(rng.integers(0, n, n), minlength=n)  # (N,) times each row is drawn
            ra[r], rb[r] = a.areas(w), b.areas(w)
    out = []
    for k in range(2):
        low = high = None
        if ra is not None:
            low, high = percentile_interval(rb[:, k] - ra[:, k], confidence)
        va, vb = areas_a[k], areas_b[k]
        out.append(PairedValue(None if va != va else va, None if vb != vb else vb, low, high))
    return out[0], out[1], reps


class CalibrationBootstrap:
    """Expected calibration error over equal-mass bins (``analysis.calibration``: quantile edges, a row in
    the first bin whose upper edge is at least its confidence) recomputed for a resample of the rows.

    Rows with the same top-1 confidence always share a bin, so the rows are kept as one group per distinct
    confidence, split into right and wrong: a resample is then one ``bincount`` of its rows' groups, and the
    weighted quantiles and each bin's sums are prefix-sum lookups over the groups. Probabilities stored as
    float16 have a few thousand distinct confidences, so a resample of a million rows costs one pass over
    its draws. The result is the ECE of the rows repeated as often as they were drawn."""

    def __init__(self, probs: np.ndarray, labels: np.ndarray, bins: int):
        p = np.asarray(probs)
        conf = p.max(axis=1).astype(np.float64)  # (N,) top-1 confidence
        right = p.argmax(axis=1) == np.asarray(labels)
        self.conf, group = np.unique(conf, return_inverse=True)  # (G,) distinct confidences, ascending
        self.key = group.reshape(-1).astype(np.int64) * 2 + right  # (N,) 2 * group + (1 if right)
        self.rows, self.bins = len(conf), bins

    def ece(self, weights: np.ndarray | None = None) -> float:
        """The ECE of the rows, each counted ``weights[i]`` times (default once)."""
        size = 2 * len(self.conf)
        counts = np.bincount(self.key, minlength=size) if weights is None else \
            np.bincount(self.key, weights=np.asarray(weights, np.float64), minlength=size)
        return self._ece(counts)

    def ece_of_draw(self, rows: np.ndarray) -> float:
        """The ECE of the resample made of ``rows`` (row indices, repeats allowed)."""
        return self._ece(np.bincount(self.key[rows], minlength=2 * len(self.conf)))

    def _ece(self, counts: np.ndarray) -> float:
        c = self.conf
        w = (counts[0::2] + counts[1::2]).astype(np.float64)  # (G,) rows of the resample per confidence
        cw = np.cumsum(w)
        n = cw[-1] if len(cw) else 0.0
        if n <= 0:
            return float("nan")
        # np.percentile's linear rule on the resample: the value at position q (n - 1), between two order stats
        pos = np.linspace(0.0, 1.0, self.bins + 1)[1:-1] * (n - 1)  # (bins - 1,)
        lo = np.floor(pos)
        v_lo = c[np.searchsorted(cw, lo, side="right")]
        v_hi = c[np.minimum(np.searchsorted(cw, lo + 1, side="right"), len(c) - 1)]
        inner = v_lo + (pos - lo) * (v_hi - v_lo)
        bounds = np.r_[np.searchsorted(c, inner, side="right"), len(c)]  # (bins,) end of each bin in the groups

        def upto(x: np.ndarray) -> np.ndarray:  # (bins + 1,) sums of x over the groups before each bound
            cs = np.cumsum(x)
            return np.r_[0.0, np.where(bounds > 0, cs[np.maximum(bounds - 1, 0)], 0.0)]
        total = upto(w)
        right_sum = upto(counts[1::2].astype(np.float64))
        conf_sum = upto(w * c)
        # sum over bins of (count / n) |accuracy - confidence| = sum |right - conf| / n
        keep = np.diff(total) > 0
        return float(np.sum(np.abs(np.diff(right_sum) - np.diff(conf_sum))[keep]) / n)


def paired_calibration(a: CalibrationBootstrap, b: CalibrationBootstrap, rng: np.random.Generator,
                       replicates: int = REPLICATES, confidence: float = CONFIDENCE) -> tuple[PairedValue, int]:
    """ECE of A and B with the interval of B - A from the same resampled rows for both, and the replicates used."""
    n = a.rows
    reps = row_replicates(n, replicates) if replicates else 0
    diffs = np.empty(reps)
    for r in range(reps):
        rows = rng.integers(0, n, n)  # the same resampled images for both runs
        diffs[r] = b.ece_of_draw(rows) - a.ece_of_draw(rows)
    low, high = percentile_interval(diffs, confidence) if reps else (None, None)
    va, vb = a.ece(), b.ece()
    return PairedValue(None if va != va else va, None if vb != vb else vb, low, high), reps
