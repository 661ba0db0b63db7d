"""``RunView``: one run and a selection of its rows, the object every reader of a run takes.

In the spirit of FiftyOne's Dataset/View: a view owns the run's store connection, the selection
(a split, a field value, classes, a list of row ids) and a cache keyed by the run's version
(``RunStore.version()``). Everything a person looks at is built lazily from it, by row id: the
overview, the dataset issues, the binary curves, the per-image fields, the embedding projection and
the label-issue ranking. ``mikata audit``, ``mikata report``, the web app (``RunState`` keeps only
what is about HTTP), ``mikata export`` and the notebook's ``Run`` all read through one, so the same
selection shows the same numbers everywhere.

Issues and label errors are properties of the whole run: a view of a split shows the whole run's
flags of its rows (a test image that duplicates a training image is a leak from the test view too).

Example:
    >>> view = RunView("runs/fashion", split="test")                       # doctest: +SKIP
    >>> view.overview().accuracy, len(view)                                 # doctest: +SKIP
    >>> shirts = view.select(classes=["Shirt"])                             # doctest: +SKIP
    >>> found = shirts.issues(); found.types["leak"].flag.sum()             # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence, TypeVar

import numpy as np

from mikata.analysis import overview_cache
from mikata.analysis.overview import Overview, overview_of
from mikata.runs.store import RunStore
from mikata.analysis.temperature import Temperature, read_temperature, stamp as temperature_stamp

if TYPE_CHECKING:
    from mikata.runs.data import RunData
    from mikata.analysis.binary import Curves
    from mikata.analysis.issues import DatasetIssues

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Selection:
    """Which rows of a run a view shows: all conditions hold (None: no condition)."""

    split: str | None = None
    field: tuple[str, str] | None = None   # (field name, value): a manifest column equals the value
    classes: tuple[int, ...] | None = None  # labeled as one of these classes
    ids: tuple[int, ...] | None = None      # these row ids

    @property
    def everything(self) -> bool:
        return self.split is None and self.field is None and self.classes is None and self.ids is None

    def describe(self, class_names: Sequence[str] = ()) -> str:
        """``"in split 'test', with cell_type = B"``: the words a page or an error names the rows by."""
        parts = []
        if self.split is not None:
            parts.append(f"in split {self.split!r}")
        if self.field is not None:
            parts.append(f"with {self.field[0]} = {self.field[1]}")
        if self.classes is not None:
            names = [class_names[c] if c < len(class_names) else str(c) for c in self.classes]
            parts.append(f"labeled {' or '.join(names)}")
        if self.ids is not None:
            parts.append(f"among {len(self.ids)} chosen ids")
        return ", ".join(parts)


class RunView:
    """A run seen through a row selection. Thread-safe (the web app's routes share one).

    ``store``/``lock``: a connection (and the lock that guards it) the caller already holds, e.g. the
    web app's; otherwise the view opens one for each read (nothing to close).

    Example:
        >>> view = mikata.RunView("runs/a", classes=["espresso"])
        >>> len(view.data), view.class_names[967]
        (3, 'espresso')
    """

    def __init__(self, run: str | os.PathLike, split: str | None = None, field: tuple[str, str] | None = None,
                 classes: Sequence[int | str] | None = None, ids: Sequence[int] | None = None, *,
                 store: RunStore | None = None, lock: threading.Lock | None = None):
        self.run_dir = Path(run).expanduser().resolve()
        self._store = store  # the caller's connection (the web app's), else one per read
        self.lock = lock if lock is not None else threading.Lock()
        with self.db() as db:
            self.identity = db.manifest["identity"]
            self.class_names: list[str] = list(db.classes)  # a DamagedRunError now, not on a page
        self.selection = Selection(split or None, None if field is None else (str(field[0]), str(field[1])),
                                   None if classes is None else tuple(self._class(c) for c in classes),
                                   None if ids is None else tuple(sorted({int(i) for i in ids})))
        if field is not None:
            from mikata.analysis.fields import check_field

            check_field(str(self.run_dir), self.selection.field[0])  # ChoiceError listing the run's fields
        self._cache: dict[Any, tuple[tuple[int, int, int], Any]] = {}
        self._cache_lock = threading.Lock()
        self._key_locks: dict[Any, threading.Lock] = {}
        self._version: tuple[int, tuple[int, int, int]] | None = None  # (data_version, RunStore.version())
        self._all: RunView | None = None  # the whole run over the same connection (``select_all``)
        self.overview_builds = 0
        self.last_build_seconds = 0.0
        self._grids: OrderedDict[tuple, np.ndarray] = OrderedDict()  # (version, true, pred) -> sorted ids
        self._grid_lock = threading.Lock()

    def __repr__(self) -> str:
        what = self.selection.describe(self.class_names)
        return f"RunView({str(self.run_dir)!r}{', ' + what if what else ''})"

    def __enter__(self) -> "RunView":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release: a view without the caller's connection opens one per read."""

    @property
    def split(self) -> str | None:
        return self.selection.split

    def select(self, split: str | None = None, field: tuple[str, str] | None = None,
               classes: Sequence[int | str] | None = None, ids: Sequence[int] | None = None) -> "RunView":
        """A narrower view (the conditions given replace this view's of the same kind; the others are kept)
        over its own connection."""
        s = self.selection
        return RunView(self.run_dir, split if split is not None else s.split,
                       field if field is not None else s.field,
                       classes if classes is not None else s.classes, ids if ids is not None else s.ids)

    def _class(self, cls: int | str) -> int:
        from mikata.models.classes import class_index

        return class_index(self.class_names, cls)

    # ------------------------------------------------------------------------------- versioning
    def version(self) -> tuple[int, int, int]:
        """``RunStore.version()``, asked again only when another connection committed since the last ask.

        ``version()`` counts the rows (~0.1-0.5 s at 1M rows); SQLite's ``data_version`` says in
        microseconds whether anything was committed meanwhile."""
        if self._store is None:
            with RunStore.open(self.run_dir) as db:
                return db.version()
        with self.lock:
            changes = self._store.data_version()
            if self._version is not None and self._version[0] == changes:
                return self._version[1]
            v = self._store.version()
            self._version = (changes, v)
            return v

    @contextmanager
    def db(self) -> Iterator[RunStore]:
        """The run's store for one read: the caller's connection under its lock, or a fresh one."""
        if self._store is None:
            with RunStore.open(self.run_dir) as db:
                yield db
        else:
            with self.lock:
                yield self._store

    def cached(self, key: Any, build: Callable[[], T], version: tuple[int, int, int] | None = None) -> T:
        """``build()`` once per run version for ``key`` (one builder at a time per key; readers of an
        unchanged run never wait)."""
        # the calibration file changes what every probability shows: it is part of the version
        v = (self.version() if version is None else version, temperature_stamp(self.run_dir))
        got = self._cache.get(key)
        if got is not None and got[0] == v:
            return got[1]
        with self._cache_lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            got = self._cache.get(key)
            if got is not None and got[0] == v:
                return got[1]
            value = build()
            self._cache[key] = (v, value)
            return value

    # ----------------------------------------------------------------------------- the rows
    def _whole(self) -> tuple[overview_cache.CachedRun, list[tuple[str, str]], dict]:
        """The run's committed rows (cache on disk per version; the run's temperature applied to their
        probabilities), its skipped files and its manifest."""
        return self._whole_with_raw()[:3]

    def _whole_with_raw(self) -> tuple[overview_cache.CachedRun, list[tuple[str, str]], dict, np.ndarray]:
        """``_whole()`` and each row's top-1 confidence as the model gave it (before any temperature)."""
        def build():
            with self.db() as db:
                with db.snapshot():  # the version and the rows from one point in time
                    cached = overview_cache.run_data(db)
                    skipped, manifest = db.skipped(), db.manifest
            d = cached.data
            raw = d.probs[np.arange(len(d)), d.preds] if len(d) else np.zeros(0, np.float32)  # (N,)
            return self._calibrated(cached, manifest), skipped, manifest, raw
        return self.cached("whole", build)

    def _calibrated(self, cached: overview_cache.CachedRun, manifest: dict) -> overview_cache.CachedRun:
        """``cached`` with the run's temperature applied to its probabilities (itself when it has none).

        The label-issue ranking is computed first, on the model's own probabilities (confident
        learning's per-class thresholds are on the model's scale), and carried over."""
        t = read_temperature(self.run_dir)
        d = cached.data
        if t is None or not len(d):
            return cached
        from mikata.runs.heldout import in_sample_rows
        from mikata.analysis.calibration import apply_temperature

        overview_cache.issue_ranking(cached, None, in_sample_rows(manifest, d.splits))  # sets cached.ranking
        return overview_cache.CachedRun(cached.version, replace(d, probs=apply_temperature(d.probs, t.value)),
                                        cached.ranking, cached.ranking_scope)

    def temperature(self) -> Temperature | None:
        """The run's fitted temperature (``mikata calibrate``), applied to every probability this view
        shows; None when the run has none."""
        return self.cached("temperature", lambda: read_temperature(self.run_dir))

    def calibration(self, bins: int = 15) -> dict:
        """The reliability diagram and ECE of the selected rows (equal-mass bins, ``analysis.calibration``):
        ``{"ece", "curve", "temperature", "note", "before"}``. ``before`` (the model's own probabilities)
        is there when a temperature is applied; ``note`` says which, and whether the fit saw these rows."""
        from mikata.analysis.calibration import reliability_of

        def build() -> dict:
            d, rows = self.data, self.rows()
            raw_whole = self._whole_with_raw()[3]
            right = d.preds == d.labels
            shown = d.probs[np.arange(len(d)), d.preds] if len(d) else np.zeros(0)
            curve = reliability_of(shown, right, bins)
            t = self.temperature()
            out = {"ece": curve.ece, "curve": curve.to_dict(), "images": int(len(d)), "temperature": None,
                   "note": "probabilities as the model gave them (no temperature: `mikata calibrate RUN --split val` "
                           "fits one)", "before": None}
            if t is not None:
                raw = raw_whole if rows is None else raw_whole[rows]
                before = reliability_of(raw, right, bins)
                seen = int((d.splits == t.split).sum())
                out.update(temperature=t.to_dict(), note=t.note() + (
                    f"; {seen} of these {len(d)} images were its fitting set, so their ECE after is optimistic"
                    if seen else ""), before={"ece": before.ece, "curve": before.to_dict()})
            return out
        return self.cached(("calibration", bins), build)

    def rows(self) -> np.ndarray | None:
        """The selected rows as ascending indices into the run's committed rows (None: every row)."""
        if self.selection.everything:
            return None

        def build() -> np.ndarray:
            d = self._whole()[0].data
            s = self.selection
            keep = np.ones(len(d), bool)
            if s.split is not None:
                keep &= d.splits == s.split
            if s.classes is not None:
                keep &= np.isin(d.labels, s.classes)
            if s.ids is not None:
                keep &= np.isin(d.ids, np.asarray(s.ids, np.int64))
            if s.field is not None:
                keep &= self._whole_field(s.field[0]) == s.field[1]
            return np.flatnonzero(keep)
        return self.cached("rows", build)

    def _whole_field(self, name: str) -> np.ndarray:
        from mikata.analysis.fields import MISSING

        def build() -> np.ndarray:
            d = self._whole()[0].data
            with self.db() as db:
                by_id = db.field_values(name)
            return np.array([by_id.get(int(i), MISSING) for i in d.ids.tolist()], dtype=object)
        return self.cached(("field", name), build)

    def __len__(self) -> int:
        rows = self.rows()
        return len(self._whole()[0].data) if rows is None else len(rows)

    # ------------------------------------------------------------------------- what is shown
    def overview(self, n: int = 3, top_pairs: int = 10, top_issues: int | None = 50,
                 groups: Mapping[str, str] | None = None) -> Overview:
        """The ``Overview`` of the selected rows (``analysis.overview``), rebuilt only when the run changed."""
        key = ("overview", n, top_pairs, top_issues, None if groups is None else tuple(sorted(groups.items())))
        version = self.version()

        def build() -> Overview:
            start = time.perf_counter()
            cached, skipped, manifest = self._whole()
            ov = overview_of(cached, self.rows(), skipped, manifest, n=n, top_pairs=top_pairs, top_issues=top_issues,
                             split=self.selection.split, groups=groups,
                             selection=self.selection.describe(self.class_names))
            self.last_build_seconds = time.perf_counter() - start
            self.overview_builds += 1
            log.info("overview of %d images built in %.2f s", len(ov.data), self.last_build_seconds)
            return ov
        return self.cached(key, build, version)

    @property
    def data(self) -> "RunData":
        """The selected rows (``RunData``, id order)."""
        def build() -> "RunData":
            from mikata.runs.data import subset

            whole, rows = self._whole()[0].data, self.rows()
            return whole if rows is None else subset(whole, rows)
        return self.cached("data", build)

    def label_ranking(self) -> np.ndarray:
        """Rows (of ``data``) of every suspected label error, most suspicious first: the whole run's
        confident-learning ranking (out-of-sample rows only) restricted to the selection."""
        def whole() -> np.ndarray:
            from mikata.runs.heldout import in_sample_rows
            from mikata.analysis.overview import label_issue_search

            cached, skipped, manifest = self._whole()
            return label_issue_search(cached, None, in_sample_rows(manifest, cached.data.splits), len(skipped))[0]
        ranking = self.cached("ranking", whole)
        rows = self.rows()
        if rows is None:
            return ranking
        pos = np.full(len(self._whole()[0].data), -1, np.int64)
        pos[rows] = np.arange(len(rows))
        got = pos[ranking]
        return got[got >= 0]

    def issues(self, thresholds: Mapping[str, float] | None = None,
               groups: Sequence[str] | Mapping[str, str] | str | None = None) -> "DatasetIssues":
        """Every dataset-issue type (``analysis.issues``) over the selected rows: the whole run's scores
        and flags, computed once per run version. ``groups``: a field name (its values are the groups
        of the weak-group type), one group per row of the whole run, or a path -> group mapping."""
        from mikata.analysis.issues import check_thresholds, score_issues

        th_key = None if not thresholds else tuple(sorted((k, float(v)) for k, v in thresholds.items()))
        g_key = groups if isinstance(groups, (str, type(None))) else ("given", id(groups))

        def whole_issues() -> "DatasetIssues":
            from mikata.analysis import issues_cache

            stored = th_key is None and groups is None  # the default issues: kept on disk per run version
            before = issues_cache.stamp(self) if stored else None
            whole = self._whole()[0].data
            if before is not None:
                got = issues_cache.load(self, whole)
                if got is not None:
                    return got
            ranking = self.select_all().label_ranking()  # rows of the whole run
            given = self._whole_field(groups) if isinstance(groups, str) else groups
            if given is not None and not isinstance(given, Mapping):
                given = list(given)
            found = score_issues(whole, check_thresholds(thresholds), groups=given, label_ranking=ranking)
            if before is not None:
                issues_cache.save(self, before, found)
            return found

        found = self.cached(("issues", th_key, g_key), whole_issues)
        rows = self.rows()
        if rows is None:
            return found
        return self.cached(("issues-selected", th_key, g_key), lambda: found.select(rows))

    def select_all(self) -> "RunView":
        """This run without a selection, sharing this view's connection and caches of the whole run."""
        if self.selection.everything:
            return self
        with self._cache_lock:
            if self._all is None:
                self._all = _shared(self)
            return self._all

    def curves(self, positive: int | str | None = None) -> "Curves | None":
        """The binary curves of ``positive`` over the selected rows (``analysis.binary.binary_curves``)."""
        from mikata.analysis.binary import binary_curves

        return self.cached(("curves", positive), lambda: binary_curves(self.data, positive))

    def field_names(self) -> list[str]:
        with self.db() as db:
            return db.field_names()

    def field_values(self) -> dict[str, np.ndarray]:
        """``{field: (N,) values of the selected rows, in row order}``, read once per run version."""
        def build() -> dict[str, np.ndarray]:
            rows = self.rows()
            out = {}
            for name in self.field_names():
                values = self._whole_field(name)
                out[name] = values if rows is None else values[rows]
            return out
        return self.cached("fields", build)

    def field_groups(self, max_values: int = 30) -> list[dict]:
        """Per field ``analysis.fields.group_by`` (the worst ``max_values`` values): the dashboard's tables."""
        from mikata.analysis.fields import group_by

        def build() -> list[dict]:
            d = self.data
            out = []
            for k, (name, values) in enumerate(self.field_values().items()):
                groups = group_by(d, name, values)
                out.append({"index": k, "name": name, "groups": groups[:max_values], "count": len(groups)})
            return out
        return self.cached(("field-groups", max_values), build)

    def embedding(self, max_points: int = 20000) -> dict:
        """Scatter data ``{ids, x, y, label, pred, classes, total, fields}`` of a PCA projection of the
        selected rows (``fields``: per manifest column its distinct ``values`` and each point's ``codes``)."""
        def build() -> dict:
            ov = self.overview()
            ids, xy = ov.embedding_2d("pca", max_points=max_points)
            rows = np.searchsorted(ov.data.ids, ids)
            fields = {}
            for name, values in self.field_values().items():  # colour by a manifest column: values + codes
                uniq, codes = np.unique(values[rows].astype(str), return_inverse=True)
                fields[name] = {"values": uniq.tolist(), "codes": codes.tolist()}
            return {"ids": ids.tolist(), "x": np.round(xy[:, 0], 4).tolist(), "y": np.round(xy[:, 1], 4).tolist(),
                    "label": ov.data.labels[rows].tolist(), "pred": ov.data.preds[rows].tolist(),
                    "classes": ov.class_names, "total": len(ov.data), "fields": fields}
        return self.cached(("embedding", max_points), build)

    # ------------------------------------------------------------- browsing the selection
    def field_mask(self, where: str) -> tuple[np.ndarray | None, str]:
        """The selected rows whose field matches ``where`` (``"K:VALUE"``: field number K of
        ``field_names()`` equals VALUE), and a description; ``(None, "")`` for an empty filter. An unknown
        field is a ``ChoiceError``. The field is named by number so any column name or value survives a URL."""
        if not where:
            return None, ""
        from mikata.errors import ChoiceError

        values = self.field_values()
        names = list(values)
        k, sep, value = where.partition(":")
        if not sep or not k.isdigit() or int(k) >= len(names):
            raise ChoiceError("field filter", where,
                              [f"{i}:VALUE ({n})" for i, n in enumerate(names)] or ["none: this run has no fields"])
        name = names[int(k)]
        return values[name] == value, f"{name} = {value}"

    def field_choices(self, max_values: int = 200) -> list[tuple[int, str, list[tuple[str, int]]]]:
        """``(field index, field, [(value, images), ...])`` for filter menus: the ``max_values`` most
        frequent values of each field among the selected rows, most frequent first."""
        out = []
        for k, (name, values) in enumerate(self.field_values().items()):
            uniq, counts = np.unique(values.astype(str), return_counts=True) if len(values) else ([], [])
            order = sorted(range(len(uniq)), key=lambda j: (-int(counts[j]), str(uniq[j])))[:max_values]
            out.append((k, name, [(str(uniq[j]), int(counts[j])) for j in order]))
        return out

    def image_fields(self, image_id: int, ov: Overview) -> list[tuple[str, str]]:
        """``(field, value)`` of one selected image (the manifest's extra columns); [] for another id."""
        try:
            r = ov.row(image_id)
        except KeyError:
            return []
        return [(name, str(values[r])) for name, values in self.field_values().items()]

    def grid_ids(self, ov: Overview, true: int = -1, pred: int = -1, where: str = "") -> np.ndarray:
        """Ids of ``ov``'s rows labeled ``true`` and predicted ``pred`` (-1: any), most confident prediction
        first; ``where`` (``field_mask``) keeps only the images with that field value. A cell is sorted
        once per run version (the 64 most recent are kept), not once per page."""
        if where:
            mask, _ = self.field_mask(where)
            ids = self.grid_ids(ov, true, pred)
            keep = mask[np.searchsorted(ov.data.ids, ids)] if len(ids) else np.zeros(0, bool)
            return ids[keep]
        key = (ov.version, int(true), int(pred))
        with self._grid_lock:
            got = self._grids.get(key)
            if got is not None:
                self._grids.move_to_end(key)
                return got
        got = _grid_ids(ov, true, pred)
        with self._grid_lock:
            self._grids[key] = got
            while len(self._grids) > 64:
                self._grids.popitem(last=False)
        return got

    def neighbours(self, image_id: int, ov: Overview) -> tuple[int | None, int | None]:
        """The previous and next selected image ids around ``image_id`` (arrow-key browsing)."""
        r = ov.row(image_id)
        ids = ov.data.ids
        return (int(ids[r - 1]) if r > 0 else None, int(ids[r + 1]) if r + 1 < len(ids) else None)

    def to_json(self) -> str:
        """The selection as JSON (for a log line or a page): ``{"run", "split", "field", "classes", "ids"}``."""
        s = self.selection
        return json.dumps({"run": str(self.run_dir), "split": s.split, "field": s.field, "classes": s.classes,
                           "ids": None if s.ids is None else len(s.ids)})


def _grid_ids(ov: Overview, true: int, pred: int) -> np.ndarray:
    from mikata.presentation.sections import confident_first

    if true >= 0 and pred >= 0:
        return ov.cell(true, pred)
    d = ov.data
    mask = np.ones(len(d), bool)
    if true >= 0:
        mask &= d.labels == true
    if pred >= 0:
        mask &= d.preds == pred
    return d.ids[confident_first(d, np.nonzero(mask)[0])]


def _shared(view: RunView) -> RunView:
    """A view of every row of ``view``'s run over the same connection and lock."""
    whole = RunView.__new__(RunView)
    whole.__dict__.update(view.__dict__)
    whole.selection = replace(view.selection, split=None, field=None, classes=None, ids=None)
    whole._cache, whole._cache_lock, whole._key_locks, whole._all = {}, threading.Lock(), {}, None
    whole._grids, whole._grid_lock = OrderedDict(), threading.Lock()  # grids of other rows
    if "whole" in view._cache:
        whole._cache["whole"] = view._cache["whole"]  # the rows already read
    return whole


def as_view(run: "str | os.PathLike | RunView", split: str | None = None) -> RunView:
    """``run`` itself when it is a view (``split`` must then be None or its own), else a new view."""
    if isinstance(run, RunView):
        if split is not None and split != run.split:
            return run.select(split=split)
        return run
    return RunView(run, split=split)
