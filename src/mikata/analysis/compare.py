"""``compare(run_a, run_b)``: did model B do better than model A, where, and is the difference real?

Two runs (two models, or one model before and after a fix) are compared over the images they share
(``compare_match``: same path and file hash, or the same bytes under another path). On those paired
images: accuracy, each class's recall and precision, the accuracy of each value of every manifest
field, and on two-class runs AUROC and average precision — each as A, B and B - A with a seeded
paired-bootstrap 95% interval (``paired``), and McNemar's exact test wherever the metric is a
correctness rate over the same images. The flipped images (fixed: wrong under A, right under B;
broken: the other way) are listed most confident first, and each run's dataset-issue flags are
counted side by side over the shared images.

Each run is read through a ``RunView`` (its selection, e.g. a split); B's classes are matched to A's
by name. Each side is judged by its own stored labels (``labels_differ`` counts the shared images
whose labels disagree, e.g. after a relabeling).

A new metric is one function in ``METRICS``: it gets the paired rows and the bootstrap settings and
returns ``MetricRow``s.

Example:
    >>> c = compare("runs/model-a", "runs/model-b", split="test")              # doctest: +SKIP
    >>> c.images["shared"], c.metric("accuracy").diff, c.metric("accuracy").p  # doctest: +SKIP
    >>> c.flipped("fixed").head()        # a DataFrame, most confident first   # doctest: +SKIP
"""

from __future__ import annotations

import html
import os
import time
from dataclasses import dataclass
from operator import itemgetter
from typing import TYPE_CHECKING, Callable

import numpy as np

from mikata.analysis import compare_cache
from mikata.analysis.compare_match import Matching, match_rows
from mikata.analysis.paired import (CONFIDENCE, REPLICATES, PairedValue, RatioCells, ScoreBootstrap, paired_areas,
                                    rng_for)
from mikata.analysis.view import RunView, as_view
from mikata.errors import MikataError

if TYPE_CHECKING:
    import pandas as pd

MAX_FIELD_VALUES = 50  # values per field compared (the most frequent among the shared images)
FLIPPED_KINDS = ("fixed", "broken")


class CompareError(MikataError):
    """Two runs that cannot be compared (no shared images, other classes); the message says what to do."""


@dataclass
class Paired:
    """The shared images of two runs, row ``i`` being the same image in both (B's classes in A's order)."""

    ids_a: np.ndarray     # (S,) row ids in run A
    ids_b: np.ndarray     # (S,) row ids in run B
    labels_a: np.ndarray  # (S,) int64
    labels_b: np.ndarray
    preds_a: np.ndarray
    preds_b: np.ndarray
    probs_a: np.ndarray   # (S, K) float32
    probs_b: np.ndarray
    class_names: list[str]
    fields: dict[str, np.ndarray]  # manifest field -> (S,) value (A's, else B's)

    def __len__(self) -> int:
        return len(self.ids_a)

    @property
    def correct_a(self) -> np.ndarray:
        return self.preds_a == self.labels_a

    @property
    def correct_b(self) -> np.ndarray:
        return self.preds_b == self.labels_b


@dataclass
class MetricRow:
    """One compared number: ``metric`` (accuracy, recall, precision, field accuracy, AUROC, average
    precision, ...) of ``key`` (a class, ``field = value``, or empty), over ``images`` images."""

    metric: str
    key: str
    images: int
    value: PairedValue
    higher_is_better: bool = True  # False for an error (ECE): a negative B - A is then the improvement

    @property
    def verdict(self) -> str:
        """"better" / "worse" when the interval of B - A excludes 0, else "" (no clear difference)."""
        v = self.value
        if v.low is not None and v.low > 0:
            return "better" if self.higher_is_better else "worse"
        if v.high is not None and v.high < 0:
            return "worse" if self.higher_is_better else "better"
        return ""

    @property
    def a(self) -> float | None:
        return self.value.a

    @property
    def b(self) -> float | None:
        return self.value.b

    @property
    def diff(self) -> float | None:
        return self.value.diff

    @property
    def p(self) -> float | None:
        return self.value.p

    def to_dict(self) -> dict:
        v = self.value
        return {"metric": self.metric, "key": self.key, "images": self.images, "a": _num(v.a), "b": _num(v.b),
                "diff": _num(v.diff), "low": _num(v.low), "high": _num(v.high), "mcnemar_p": _num(v.p),
                "only_a": v.only_a, "only_b": v.only_b, "verdict": self.verdict}


def _num(v: float | None) -> float | None:
    return None if v is None or v != v else round(float(v), 6)


@dataclass
class Settings:
    """How the intervals are drawn: seeded, ``replicates`` resamples, ``confidence`` level."""

    seed: int = 0
    replicates: int = REPLICATES
    confidence: float = CONFIDENCE
    positive: int | None = None  # the positive class of two-class curves (A's class id)

    def rng(self, key: str) -> np.random.Generator:
        return rng_for(self.seed, key)


# ------------------------------------------------------------------------------------ metrics
def ratio_row(metric: str, key: str, s: Settings, den_a: np.ndarray, num_a: np.ndarray, den_b: np.ndarray,
              num_b: np.ndarray) -> MetricRow:
    """A ratio metric (numerator / denominator images) of both runs, with its paired interval."""
    cells = RatioCells(den_a, num_a, den_b, num_b)
    value = cells.paired(s.rng(f"{metric}|{key}"), s.replicates, s.confidence)
    return MetricRow(metric, key, int((den_a | den_b).sum()), value)


def accuracy_rows(p: Paired, s: Settings) -> list[MetricRow]:
    every = np.ones(len(p), bool)
    return [ratio_row("accuracy", "", s, every, p.correct_a, every, p.correct_b)]


def class_rows(p: Paired, s: Settings) -> list[MetricRow]:
    """Recall and precision of every class that has images (labeled or predicted) among the shared ones."""
    out = []
    k = len(p.class_names)
    seen = np.flatnonzero(np.bincount(np.concatenate([p.labels_a, p.labels_b, p.preds_a, p.preds_b]), minlength=k))
    for c in seen.tolist():
        name = p.class_names[c]
        la, lb, pa, pb = p.labels_a == c, p.labels_b == c, p.preds_a == c, p.preds_b == c
        out.append(ratio_row("recall", name, s, la, pa, lb, pb))
        out.append(ratio_row("precision", name, s, pa, la, pb, lb))
    return out


def field_rows(p: Paired, s: Settings) -> list[MetricRow]:
    """Accuracy of each value of each manifest field (its ``MAX_FIELD_VALUES`` most frequent values)."""
    out = []
    ok_a, ok_b = p.correct_a, p.correct_b
    for name, values in p.fields.items():
        uniq, inverse, counts = np.unique(values.astype(str), return_inverse=True, return_counts=True)
        for g in sorted(range(len(uniq)), key=lambda g: (-int(counts[g]), str(uniq[g])))[:MAX_FIELD_VALUES]:
            rows = inverse.reshape(-1) == g
            out.append(ratio_row("field accuracy", f"{name} = {uniq[g]}", s, rows, ok_a, rows, ok_b))
    return out


def binary_rows(p: Paired, s: Settings) -> list[MetricRow]:
    """AUROC and average precision of the positive class on two-class runs (or of ``positive`` one-vs-rest)."""
    if s.positive is None and len(p.class_names) != 2:
        return []
    c = s.positive
    if c is None:  # the minority class of A's labels, as the audit chooses it (ties: the second class)
        counts = np.bincount(p.labels_a, minlength=2)
        c = 0 if counts[0] < counts[1] else 1
    name = p.class_names[c]
    a = ScoreBootstrap(p.labels_a == c, p.probs_a[:, c])
    b = ScoreBootstrap(p.labels_b == c, p.probs_b[:, c])
    auroc, ap, _ = paired_areas(a, b, s.rng(f"areas|{name}"), s.replicates, s.confidence)
    return [MetricRow("AUROC", name, len(p), auroc), MetricRow("average precision", name, len(p), ap)]


def resampled_row(metric: str, key: str, p: Paired, s: Settings,
                  stat: Callable[[np.ndarray, np.ndarray], float]) -> MetricRow:
    """A metric of each run's ``(probs, labels)`` (``stat``, e.g. a calibration error), with the interval of
    B - A from resampling the shared images (the same draw for both runs; ``paired.row_replicates`` draws,
    fewer on huge runs). Adding such a metric is one entry in ``METRICS``:
    ``lambda p, s: [resampled_row("ECE", "", p, s, expected_calibration_error)]``."""
    from mikata.analysis.paired import percentile_interval, row_replicates

    a, b = float(stat(p.probs_a, p.labels_a)), float(stat(p.probs_b, p.labels_b))
    rng, n = s.rng(f"{metric}|{key}"), len(p)
    reps = row_replicates(n, s.replicates) if s.replicates else 0
    diffs = np.empty(reps)
    for r in range(reps):
        i = rng.integers(0, n, n)
        diffs[r] = float(stat(p.probs_b[i], p.labels_b[i])) - float(stat(p.probs_a[i], p.labels_a[i]))
    low, high = percentile_interval(diffs, s.confidence) if reps else (None, None)
    return MetricRow(metric, key, n, PairedValue(None if a != a else a, None if b != b else b, low, high))


def calibration_rows(p: Paired, s: Settings) -> list[MetricRow]:
    """Expected calibration error (equal-mass bins, ``analysis.calibration``) of each run's top-1 confidence;
    lower is better, so a negative B - A is an improvement."""
    from mikata.analysis.calibration import DEFAULT_BINS
    from mikata.analysis.paired import CalibrationBootstrap, paired_calibration

    a = CalibrationBootstrap(p.probs_a, p.labels_a, DEFAULT_BINS)
    b = CalibrationBootstrap(p.probs_b, p.labels_b, DEFAULT_BINS)
    value, _ = paired_calibration(a, b, s.rng("ECE|"), s.replicates, s.confidence)
    return [MetricRow("ECE", "", len(p), value, higher_is_better=False)]


#: the metric functions, in the order their rows are listed; a new metric is one entry
#: (``resampled_row`` turns any statistic of probabilities and labels into one)
METRICS: list[Callable[[Paired, Settings], list[MetricRow]]] = [accuracy_rows, calibration_rows, class_rows,
                                                                field_rows, binary_rows]


# ------------------------------------------------------------------------------------ the pairing
def _keys(view: RunView) -> tuple[list[str], list[str | None]]:
    """Path and file hash of each of ``view.data``'s rows (read once per run version)."""
    def build() -> tuple[list[str], list[str | None]]:
        ids = view.data.ids
        with view.db() as db:
            got = db.rows(status="ok", columns=("id", "path", "hash"), tuples=True)
        all_ids = np.fromiter(map(itemgetter(0), got), np.int64, len(got))
        if np.array_equal(all_ids, ids):  # the view is every row (the usual case): columns as they came
            return list(map(itemgetter(1), got)), list(map(itemgetter(2), got))
        pos = np.searchsorted(all_ids, ids)
        if len(ids) and (pos.max() >= len(all_ids) or not np.array_equal(all_ids[pos], ids)):
            raise CompareError(f"{view.run_dir} changed while it was read; run the comparison again")
        return [got[i][1] for i in pos.tolist()], [got[i][2] for i in pos.tolist()]
    return view.cached("compare-keys", build)


def class_order(a: RunView, b: RunView) -> np.ndarray:
    """``order[j]``: B's class id of A's class ``j`` (the same name); a CompareError when the names differ."""
    names_a, names_b = a.class_names, b.class_names
    if sorted(names_a) != sorted(names_b):
        only_a = [n for n in names_a if n not in names_b][:5]
        only_b = [n for n in names_b if n not in names_a][:5]
        raise CompareError(f"{b.run_dir} has other classes than {a.run_dir} (only in A: {only_a}, only in B: "
                           f"{only_b}); compare runs of models with the same class names")
    if len(set(names_a)) != len(names_a):
        raise CompareError(f"{a.run_dir} names a class twice; its classes cannot be matched by name")
    where = {n: j for j, n in enumerate(names_b)}
    return np.asarray([where[n] for n in names_a], np.int64)


def pair_views(a: RunView, b: RunView) -> tuple[Paired, Matching, int]:
    """The shared images of two views as ``Paired`` (B in A's class order), the matching, and how many
    shared images have different labels in the two runs."""
    order = class_order(a, b)
    da, db = a.data, b.data
    for v, d in ((a, da), (b, db)):
        if not len(d):
            with v.db() as store:
                splits = store.split_names()
            raise CompareError(f"{v.run_dir} has no scanned images{_selection_words(v)} (its splits: "
                               f"{', '.join(repr(s) for s in splits) or 'none'}); pick a split both runs have")
    m = match_rows(*_keys(a), *_keys(b))
    if not m.shared:
        raise CompareError(f"{a.run_dir} and {b.run_dir} share no images{_selection_words(a)} (matched by path and "
                           f"file hash; {len(da)} and {len(db)} images): compare runs scanned over the same images")
    p = paired_rows(a, b, m, order)
    return p, m, int((p.labels_a != p.labels_b).sum())


def paired_rows(a: RunView, b: RunView, m: Matching, order: np.ndarray) -> Paired:
    """The matched rows of the two views as ``Paired`` (``order``: ``class_order(a, b)``)."""
    to_a = np.argsort(order)  # B's class id -> A's
    da, db = a.data, b.data
    ra, rb = m.rows_a, m.rows_b
    fields: dict[str, np.ndarray] = {name: v[ra] for name, v in a.field_values().items()}
    for name, v in b.field_values().items():
        fields.setdefault(name, v[rb])
    return Paired(da.ids[ra], db.ids[rb], da.labels[ra], to_a[db.labels[rb]], da.preds[ra], to_a[db.preds[rb]],
                  np.asarray(da.probs[ra], np.float32), np.asarray(db.probs[rb][:, order], np.float32),
                  list(a.class_names), fields)


def _selection_words(v: RunView) -> str:
    what = v.selection.describe(v.class_names)
    return f" ({what})" if what else ""


# ------------------------------------------------------------------------------------ the result
class Comparison:
    """Run A against run B over their shared images; built by ``compare``.

    ``images``: shared / only_a / only_b / changed / matched_by_hash / labels_differ counts;
    ``rows``: every ``MetricRow``; ``metric(name, key)`` one of them; ``metrics()`` them as a DataFrame;
    ``flipped(kind)`` the fixed or broken images; ``issue_counts()`` the dataset issues side by side;
    ``to_dict()`` the JSON ``mikata compare --json`` prints. In Jupyter it shows its summary table.

    Example:
        >>> c = mikata.compare("runs/a", "runs/small")
        >>> c.metrics()[["metric", "a", "b"]].iloc[0].tolist()[0], len(c.flipped("broken"))
        ('accuracy', 1)
    """

    def __init__(self, a: RunView, b: RunView, paired: Paired, matching: Matching, labels_differ: int,
                 rows: list[MetricRow], settings: Settings, seconds: float):
        self.view_a, self.view_b = a, b
        self.paired, self.matching, self.rows, self.settings = paired, matching, rows, settings
        self.seconds = seconds
        self.images = {"shared": matching.shared, "only_a": matching.only_a, "only_b": matching.only_b,
                       "changed": matching.changed, "matched_by_hash": matching.by_hash,
                       "labels_differ": labels_differ}
        self._issues: list[dict] | None = None
        ok_a, ok_b = paired.correct_a, paired.correct_b
        # most confident first: B's probability of what it now says, then A's of what it said
        conf_a = paired.probs_a[np.arange(len(paired)), paired.preds_a]
        conf_b = paired.probs_b[np.arange(len(paired)), paired.preds_b]
        self.confidence_a, self.confidence_b = conf_a, conf_b
        self._flipped = {}
        for kind, mask in (("fixed", ~ok_a & ok_b), ("broken", ok_a & ~ok_b)):
            rows_ = np.flatnonzero(mask)
            self._flipped[kind] = rows_[np.lexsort((-conf_a[rows_], -conf_b[rows_]))]

    @property
    def run_a(self) -> str:
        return str(self.view_a.run_dir)

    @property
    def run_b(self) -> str:
        return str(self.view_b.run_dir)

    @property
    def class_names(self) -> list[str]:
        return self.paired.class_names

    def __repr__(self) -> str:
        acc = self.metric("accuracy")
        return (f"Comparison({self.run_a!r} vs {self.run_b!r}: {self.images['shared']} shared images, accuracy "
                f"{_pct(acc.a)} -> {_pct(acc.b)})")

    def metric(self, metric: str, key: str = "") -> MetricRow:
        """The row of ``metric`` for ``key`` (a class name, ``field = value``, or empty)."""
        for r in self.rows:
            if r.metric == metric and r.key == key:
                return r
        from mikata.errors import ChoiceError

        raise ChoiceError("metric", f"{metric} {key}".strip(), sorted({f"{r.metric} {r.key}".strip() for r in self.rows}))

    def flipped_rows(self, kind: str) -> np.ndarray:
        """Indices into ``paired`` of the fixed or broken images, most confident first."""
        from mikata.errors import check_choices

        check_choices("flipped kind", kind, list(FLIPPED_KINDS))
        return self._flipped[kind]

    def flipped_items(self, kind: str, start: int = 0, count: int | None = None) -> list[dict]:
        """Items ``start .. start + count`` of the fixed or broken list: ids in both runs, label, both
        predictions and their probabilities, the file's path."""
        rows = self.flipped_rows(kind)[start:None if count is None else start + count]
        p, names = self.paired, self.class_names
        with self.view_a.db() as db:  # by primary key only: the ids are scanned rows (a status filter lets
            paths = db.paths(p.ids_a[rows].tolist(), status=None)  # SQLite pick the status index: ~0.4 s at 1M)
        return [{"id_a": int(p.ids_a[r]), "id_b": int(p.ids_b[r]), "path": paths.get(int(p.ids_a[r]), ""),
                 "label": names[int(p.labels_a[r])], "pred_a": names[int(p.preds_a[r])],
                 "prob_a": round(float(self.confidence_a[r]), 6), "pred_b": names[int(p.preds_b[r])],
                 "prob_b": round(float(self.confidence_b[r]), 6)} for r in rows.tolist()]

    def issue_counts(self) -> list[dict]:
        """Per dataset-issue type, how many shared images each run flags (``RunView.issues``: the whole
        run's flags of the selected rows), computed once; the label issues are each model's own."""
        if self._issues is None:
            from mikata.analysis.issue_registry import issue_type_names

            m = self.matching
            found_a, found_b = self.view_a.issues(), self.view_b.issues()
            out = []
            for name in issue_type_names():
                ta, tb = found_a.types.get(name), found_b.types.get(name)
                if ta is None and tb is None:
                    continue
                a = None if ta is None else int(ta.flag[m.rows_a].sum())
                b = None if tb is None else int(tb.flag[m.rows_b].sum())
                out.append({"type": name, "a": a, "b": b, "diff": None if a is None or b is None else b - a})
            self._issues = out
        return self._issues

    # ------------------------------------------------------------------------------ tables
    def metrics(self) -> "pd.DataFrame":
        """Every metric row: metric, key, images, a, b, diff, low, high, mcnemar_p, only_a, only_b."""
        import pandas as pd

        return pd.DataFrame([r.to_dict() for r in self.rows])

    def flipped(self, kind: str = "fixed", count: int | None = None) -> "pd.DataFrame":
        """The fixed (wrong under A, right under B) or broken images, most confident first."""
        import pandas as pd

        return pd.DataFrame(self.flipped_items(kind, 0, count),
                            columns=["id_a", "id_b", "path", "label", "pred_a", "prob_a", "pred_b", "prob_b"])

    def pairs(self) -> "pd.DataFrame":
        """One row per shared image: both ids, labels, predictions, their probabilities, right or wrong."""
        import pandas as pd

        p, names = self.paired, np.asarray(self.class_names, dtype=object)
        return pd.DataFrame({"id_a": p.ids_a, "id_b": p.ids_b, "label_a": names[p.labels_a],
                             "label_b": names[p.labels_b], "pred_a": names[p.preds_a], "pred_b": names[p.preds_b],
                             "prob_a": self.confidence_a, "prob_b": self.confidence_b,
                             "correct_a": p.correct_a, "correct_b": p.correct_b})

    def to_dict(self, flipped: int = 50, issues: bool = True) -> dict:
        """The JSON of ``mikata compare --json`` (documented in the README): the runs, the image counts,
        the settings, every metric row, the first ``flipped`` of each flipped list with the totals, the
        issue counts (``issues``) and notes."""
        s = self.settings
        return {"run_a": self.run_a, "run_b": self.run_b, "split": self.view_a.split, "images": dict(self.images),
                "classes": list(self.class_names),
                "bootstrap": {"seed": s.seed, "replicates": s.replicates, "confidence": s.confidence},
                "metrics": [r.to_dict() for r in self.rows],
                "flipped": {k: {"count": int(len(self._flipped[k])), "images": self.flipped_items(k, 0, flipped)}
                            for k in FLIPPED_KINDS},
                "issues": self.issue_counts() if issues else None, "notes": self.notes(),
                "seconds": round(self.seconds, 3)}

    def notes(self) -> list[str]:
        """What a reader of the numbers must know (images left out, labels that differ)."""
        im, out = self.images, []
        if im["only_a"] or im["only_b"]:
            out.append(f"{im['only_a']} images only in A and {im['only_b']} only in B are not compared")
        if im["changed"]:
            out.append(f"{im['changed']} paths are in both runs with different file contents (changed between the "
                       "scans): not compared")
        if im["matched_by_hash"]:
            out.append(f"{im['matched_by_hash']} images were matched by file hash under different paths")
        for side, view in (("A", self.view_a), ("B", self.view_b)):
            t = view.temperature()
            if t is not None:
                out.append(f"{side}: {t.note()}")
        if im["labels_differ"]:
            out.append(f"{im['labels_differ']} shared images have different labels in the two runs: each run is "
                       "judged by its own labels")
        return out

    def _repr_html_(self) -> str:
        """The summary table for Jupyter: image counts, then accuracy and the other headline rows."""
        e = html.escape
        im = self.images
        head = (f"<p><b>A</b> {e(self.run_a)}<br><b>B</b> {e(self.run_b)}<br>{im['shared']:,} shared images "
                f"({im['only_a']:,} only in A, {im['only_b']:,} only in B); flipped: "
                f"{len(self._flipped['fixed']):,} fixed, {len(self._flipped['broken']):,} broken</p>")
        lines = ["<tr><th>metric</th><th></th><th>images</th><th>A</th><th>B</th><th>B − A</th>"
                 f"<th>{int(self.settings.confidence * 100)}% interval</th><th>McNemar p</th></tr>"]
        for r in self.rows:
            if r.metric in ("precision", "field accuracy"):
                continue  # the notebook summary: the whole table is ``metrics()``
            lines.append(f"<tr><td>{e(r.metric)}</td><td>{e(r.key)}</td><td>{r.images:,}</td><td>{_pct(r.a)}</td>"
                         f"<td>{_pct(r.b)}</td><td>{signed_pct(r.diff)}</td><td>{interval_text(r)}</td>"
                         f"<td>{p_text(r.p)}</td></tr>")
        return head + "<table>" + "".join(lines) + "</table>"


def _pct(v: float | None) -> str:
    from mikata.formatting import percent

    return percent(v, 2)


def signed_pct(v: float | None) -> str:
    """A difference in percentage points, signed: "+1.25 pts" ("–" when undefined)."""
    if v is None or v != v:
        return "–"
    return f"{100 * v:+.2f} pts"


def interval_text(r: MetricRow) -> str:
    v = r.value
    if v.low is None or v.high is None:
        return "–"
    return f"[{100 * v.low:+.2f}, {100 * v.high:+.2f}]"


def p_text(p: float | None) -> str:
    if p is None:
        return ""
    return "< 0.0001" if p < 1e-4 else f"{p:.4f}"


# ------------------------------------------------------------------------------------ entry point
def compare(run_a: "str | os.PathLike | RunView", run_b: "str | os.PathLike | RunView", split: str | None = None, *,
            seed: int = 0, replicates: int = REPLICATES, confidence: float = CONFIDENCE,
            positive: int | str | None = None, cache: bool = True) -> Comparison:
    """Compare run B with run A over their shared images (of ``split`` in both, when given).

    ``seed``/``replicates``/``confidence``: the paired bootstrap; ``positive``: the class whose AUROC
    and average precision are compared (default on two-class runs: A's minority class; on more
    classes, a named class gives its one-vs-rest areas). ``cache``: keep the matching and the numbers
    in run A (``compare_cache``) and reuse them while neither run changes (same values as a rebuild).

    Example:
        >>> c = mikata.compare("runs/a", "runs/small")   # the same photos seen at 224 and at 160 pixels
        >>> c.images["shared"], c.images["only_a"]
        (12, 0)
        >>> m = c.metric("accuracy")                       # B - A, a paired bootstrap interval, McNemar's p
        >>> round(m.a, 3), round(m.b, 3), m.value.low <= m.value.diff <= m.value.high
        (0.833, 0.75, True)
    """
    from mikata.models.precheck import check_at_least, check_between

    check_at_least("replicates", replicates, 0)
    check_between("confidence", confidence, 0.5, 0.999, "e.g. 0.95 for 95% intervals")
    t0 = time.perf_counter()
    a, b = as_view(run_a, split), as_view(run_b, split)
    class_order(a, b)  # other classes: refused before anything is read
    pos = None
    if positive is not None:
        from mikata.models.classes import class_index

        pos = class_index(a.class_names, positive, "positive class")
    s = Settings(seed, replicates, confidence, pos)
    key = (seed, replicates, confidence, pos)
    got = compare_cache.load(a, b, key) if cache else None
    if got is not None:  # both runs unchanged since this comparison was built: its matching and numbers
        matching, labels_differ, stored = got
        paired = paired_rows(a, b, matching, class_order(a, b))
        rows = [_metric_row(r) for r in stored]
    else:
        before = compare_cache.stamp(a, b) if cache else None
        paired, matching, labels_differ = pair_views(a, b)
        rows = [row for fn in METRICS for row in fn(paired, s)]
        if cache:
            compare_cache.save(a, b, key, before, matching, labels_differ, [_row_dict(r) for r in rows])
    return Comparison(a, b, paired, matching, labels_differ, rows, s, time.perf_counter() - t0)


def _row_dict(r: MetricRow) -> dict:
    """A metric row as the comparison cache stores it (every value as computed, unrounded)."""
    v = r.value
    return {"metric": r.metric, "key": r.key, "images": r.images, "higher_is_better": r.higher_is_better,
            "a": v.a, "b": v.b, "low": v.low, "high": v.high, "p": v.p, "only_a": v.only_a, "only_b": v.only_b}


def _metric_row(d: dict) -> MetricRow:
    value = PairedValue(d["a"], d["b"], d["low"], d["high"], d["p"], d["only_a"], d["only_b"])
    return MetricRow(str(d["metric"]), str(d["key"]), int(d["images"]), value, bool(d["higher_is_better"]))


def format_comparison(c: Comparison, flipped: int = 10, issues: bool = True) -> list[str]:
    """The lines ``mikata compare`` prints: the image counts, the headline metrics, the flipped images,
    the issue counts, the notes."""
    im = c.images
    lines = [f"A: {c.run_a}", f"B: {c.run_b}",
             f"{im['shared']:,} shared images{_selection_words(c.view_a)} ({im['only_a']:,} only in A, "
             f"{im['only_b']:,} only in B)",
             f"\n{'metric':34s} {'images':>8s} {'A':>8s} {'B':>8s} {'B - A':>11s}  "
             f"{int(c.settings.confidence * 100)}% interval (pts)   McNemar p"]
    for r in c.rows:
        label = f"{r.metric} {r.key}".strip()
        lines.append(f"{label[:34]:34s} {r.images:8,d} {_pct(r.a):>8s} {_pct(r.b):>8s} {signed_pct(r.diff):>11s}  "
                     f"{interval_text(r):22s} {p_text(r.p)}")
    for kind, what in (("fixed", "wrong under A, right under B"), ("broken", "right under A, wrong under B")):
        rows = c.flipped_rows(kind)
        lines.append(f"\n{kind}: {len(rows):,} images ({what}), most confident first")
        for it in c.flipped_items(kind, 0, flipped):
            from mikata.data.filenames import shown

            lines.append(f"  {shown(it['path'])}  label {it['label']}: A {it['pred_a']} ({it['prob_a']:.2f}), "
                         f"B {it['pred_b']} ({it['prob_b']:.2f})")
    if issues:
        lines.append("\ndataset issues flagged among the shared images (A, B, B - A)")
        for t in c.issue_counts():
            a = "–" if t["a"] is None else f"{t['a']:,}"
            b = "–" if t["b"] is None else f"{t['b']:,}"
            d = "" if t["diff"] is None else f"{t['diff']:+,}"
            lines.append(f"  {t['type']:24s} {a:>8s} {b:>8s} {d:>8s}")
    for n in c.notes():
        lines.append(f"note: {n}")
    return lines
