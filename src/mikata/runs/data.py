"""A run's committed rows read into arrays, once: ``RunData`` and ``load_run``; paths read by id
on demand (``RowPaths``); probability vectors and the consistency check of what a store holds.

Example:
    >>> d = load_run("runs/digits")                               # doctest: +SKIP
    >>> d.labels[:5], d.preds[:5]                                  # doctest: +SKIP
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from mikata.runs.store import RunStore


class RowPaths(Sequence[str]):
    """The file paths of a run's rows, read from its SQLite by row id when asked for.

    A million-row run would spend seconds and ~100 MB building a list of every path, while the
    audit, the report and the web app only ever show a few hundred of them.
    """

    def __init__(self, run_dir: str, ids: np.ndarray):
        self.run_dir, self.ids = run_dir, ids
        self._store: RunStore | None = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.ids)

    def _paths(self, ids: Sequence[int] | None) -> dict[int, str]:
        with self._lock:
            if self._store is None:
                self._store = RunStore.open(self.run_dir)
            return self._store.paths(self.ids if ids is None else ids)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return list(self)[i]
        got = self._paths([int(self.ids[i])])
        if not got:
            raise IndexError(f"row {i} (id {int(self.ids[i])}) is no longer in the run")
        return next(iter(got.values()))

    def __iter__(self) -> Iterator[str]:
        paths = self._paths(None)
        return iter([paths[int(i)] for i in self.ids])

    def __getstate__(self) -> dict:  # picklable (no connection)
        return {"run_dir": self.run_dir, "ids": self.ids}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["run_dir"], state["ids"])


@dataclass
class RunData:
    """The usable (status ``ok``) rows of a run, in id order, with their probability vectors."""

    ids: np.ndarray          # (N,) store row ids, ascending
    paths: Sequence[str]     # a list, or ``RowPaths`` (read on demand)
    labels: np.ndarray       # (N,) int64 class index
    preds: np.ndarray        # (N,) int64
    splits: np.ndarray       # (N,) str
    vec_rows: np.ndarray     # (N,) row in the vector files
    probs: np.ndarray        # (N, K) float32
    class_names: list[str]
    run_dir: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.ids)

    def vectors(self, kind: str) -> np.ndarray:
        """``(N, dim)`` float32 ``embed`` or ``channels`` vectors of these rows."""
        with RunStore.open(self.run_dir) as store:
            return np.asarray(store.vectors(kind)[self.vec_rows], dtype=np.float32)


def subset(d: RunData, rows: np.ndarray) -> RunData:
    """The rows ``rows`` (indices into ``d``, ascending) of ``d`` as a ``RunData`` of their own."""
    rows = np.asarray(rows, np.int64)
    paths = RowPaths(d.run_dir, d.ids[rows]) if isinstance(d.paths, RowPaths) else [d.paths[i] for i in rows]
    return RunData(d.ids[rows], paths, d.labels[rows], d.preds[rows], np.asarray(d.splits)[rows], d.vec_rows[rows],
                   d.probs[rows], list(d.class_names), d.run_dir)


def check_consistent(store: RunStore, labels: np.ndarray, preds: np.ndarray, vec_rows: np.ndarray, n_vec: int,
                     classes: list[str]) -> None:
    """Rows, vectors and classes must agree; a damaged run is one clear ``DamagedRunError``, not an IndexError.

    Vectorized: it runs on every fresh read of a million-row run."""
    from mikata.runs.store import DamagedRunError

    if len(labels):
        top, low = max(int(labels.max()), int(preds.max())), min(int(labels.min()), int(preds.min()))
        if top >= len(classes) or low < 0:
            raise DamagedRunError(f"{store.dir}: rows use class ids up to {top} but the manifest lists "
                                  f"{len(classes)} classes", store.dir)
    if len(vec_rows) and (int(vec_rows.min()) < 0 or int(vec_rows.max()) >= n_vec):
        raise DamagedRunError(f"{store.dir}: rows point outside the {n_vec} committed vectors", store.dir)
    dim = store.dims().get("probs")
    if len(labels) and dim is not None and dim != len(classes):
        raise DamagedRunError(f"{store.dir}: probability vectors have {dim} values for {len(classes)} classes",
                              store.dir)


def load_run(run: str | os.PathLike | RunStore, split: str | None = None) -> RunData:
    """Read the committed rows of a run (consistent even while a scan is writing).

    Paths are not read here (``RowPaths`` fetches the few that are shown); for a run that is read
    again and again, ``overview_cache.run_data`` keeps these arrays on disk per run version.
    """
    store = run if isinstance(run, RunStore) else RunStore.open(run)
    try:
        with store.snapshot():
            ids, labels, preds, splits, vec_rows = fetch_rows(store, split)
            n_vec = store.committed_vectors()
            classes = store.identity.get("classes")
            if not classes:
                from mikata.runs.store import DamagedRunError

                raise DamagedRunError(f"{store.dir / 'manifest.json'}: identity has no 'classes'", store.dir)
            check_consistent(store, labels, preds, vec_rows, n_vec, classes)
            probs = read_probs(store, vec_rows, n_vec, len(classes))
        return RunData(ids, RowPaths(str(store.dir), ids), labels, preds, splits, vec_rows, probs, classes,
                       str(store.dir))
    finally:
        if not isinstance(run, RunStore):
            store.close()


def fetch_rows(store: RunStore, split: str | None = None, after_id: int = 0
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(ids, labels, preds, splits, vec_rows)`` of the ok rows with ``id > after_id``, in id order."""
    ids, labels, preds, codes, names, vec_rows = fetch_coded_rows(store, split, after_id)
    splits = np.asarray(names, dtype=str)[codes] if len(codes) else np.zeros(0, dtype=str)
    return ids, labels, preds, splits, vec_rows


def fetch_coded_rows(store: RunStore, split: str | None = None, after_id: int = 0
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str], np.ndarray]:
    """``fetch_rows`` with the splits as codes: ``(ids, labels, preds, split codes, split names, vec_rows)``,
    ``names[codes[i]]`` being row ``i``'s split and ``names`` sorted."""
    try:
        table, names = store.row_codes("ok", split, after_id)
    except (TypeError, ValueError):  # a NULL or a non-number somewhere: read row by row to name it
        return _fetch_row_tuples(store, split, after_id)
    if not len(table):
        z = np.zeros(0, np.int64)
        return z, z.copy(), z.copy(), z.copy(), [], z.copy()
    cols = [np.ascontiguousarray(table[:, k]) for k in range(5)]
    return cols[0], cols[1], cols[2], cols[3], names, cols[4]


def _fetch_row_tuples(store: RunStore, split: str | None, after_id: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str], np.ndarray]:
    rows = store.rows(status="ok", split=split, columns=("id", "label", "pred", "split", "vec_row"), tuples=True,
                      after_id=after_id)
    if not rows:
        z = np.zeros(0, np.int64)
        return z, z.copy(), z.copy(), z.copy(), [], z.copy()
    ids, labels, preds, splits, vec_rows = zip(*rows)
    if None in labels or None in preds or None in vec_rows:
        from mikata.runs.store import DamagedRunError

        raise DamagedRunError(f"{store.dir}: usable rows without a label, a prediction or vectors", store.dir)
    names, codes = np.unique(np.asarray(splits, dtype=str), return_inverse=True)
    return (np.asarray(ids, np.int64), np.asarray(labels, np.int64), np.asarray(preds, np.int64),
            codes.reshape(-1).astype(np.int64), [str(n) for n in names], np.asarray(vec_rows, np.int64))


def read_probs(store: RunStore, vec_rows: np.ndarray, n_vec: int, num_classes: int) -> np.ndarray:
    """``(N, K)`` float32 probabilities of the given vector rows (committed prefix only)."""
    if not len(vec_rows):
        return np.zeros((0, num_classes), np.float32)
    return np.asarray(store.vectors("probs", n_vec)[vec_rows], dtype=np.float32)
