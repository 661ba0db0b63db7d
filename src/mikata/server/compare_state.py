"""What ``mikata serve RUN_A --compare RUN_B`` keeps about run B: its view, its maps, the comparison.

The app's own run is A (every page stays A's). ``CompareState`` holds one connection to B shared by a
``RunView`` (the same split as A's pages) and B's ``MapService`` (B's model, found as the app finds
A's, or the spec the user typed), and the ``Comparison`` of the two views, rebuilt only when either
run's version changed — so the comparison pages cost a lookup once it is built. B's rows are reached
through A's ids: an A image's partner in B is the shared image it was matched with.

Example:
    >>> cmp = CompareState(state, "runs/after")                           # doctest: +SKIP
    >>> cmp.comparison().metric("accuracy").diff, cmp.partner(12)         # doctest: +SKIP
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from mikata.analysis.compare import Comparison, class_order, compare
from mikata.presentation.maps import MapService
from mikata.runs.store import RunStore
from mikata.analysis.view import RunView
from mikata.models.source import ModelSource


class CompareState:
    """Run B beside the app's run A. Thread-safe (routes run in a thread pool)."""

    def __init__(self, view_a: RunView, run_b: str | os.PathLike, source: ModelSource | None = None):
        self.view_a = view_a
        self.run_dir = Path(run_b).expanduser().resolve()
        self.store = RunStore.open(self.run_dir, annotate=True)  # B's maps are cached in B, as A's in A
        self._db_lock = threading.Lock()
        self.view = RunView(self.run_dir, split=view_a.split, store=self.store, lock=self._db_lock)
        self.maps = MapService(self.run_dir, store=self.store, lock=self._db_lock, source=source or ModelSource())
        self.order = class_order(view_a, self.view)  # B's class id of each of A's classes (a CompareError now)
        self._lock = threading.Lock()
        self._built: tuple[tuple, Comparison] | None = None
        self.builds = 0

    def comparison(self) -> Comparison:
        """The comparison of the two views, rebuilt when either run committed rows since."""
        key = (self.view_a.version(), self.view.version())
        with self._lock:
            if self._built is None or self._built[0] != key:
                self._built = (key, compare(self.view_a, self.view))
                self.builds += 1
            return self._built[1]

    def partner(self, id_a: int) -> int | None:
        """B's row id of A's image ``id_a`` (None when B did not scan that image)."""
        c = self.comparison()
        ids = c.paired.ids_a  # ascending: pairs are in A's row order
        k = int(np.searchsorted(ids, id_a))
        return int(c.paired.ids_b[k]) if k < len(ids) and ids[k] == id_a else None

    def side(self, id_a: int) -> dict | None:
        """What B says about A's image ``id_a``: its id, label and prediction (A's class ids), the
        probability of that prediction and of A's label; None when the image is not shared."""
        c = self.comparison()
        ids = c.paired.ids_a
        k = int(np.searchsorted(ids, id_a))
        if k >= len(ids) or ids[k] != id_a:
            return None
        p = c.paired
        return {"id": int(p.ids_b[k]), "label": int(p.labels_b[k]), "pred": int(p.preds_b[k]),
                "prob": float(p.probs_b[k, p.preds_b[k]]), "p_label": float(p.probs_b[k, p.labels_a[k]]),
                "pred_a": int(p.preds_a[k]), "label_a": int(p.labels_a[k])}

    def overlay(self, id_a: int, method: str, cls: int | None) -> tuple[bytes, dict]:
        """B's map of A's image ``id_a`` for ``cls`` (an A class id; None: B's prediction), with its legend."""
        from mikata.presentation.media import UnknownImageError

        id_b = self.partner(id_a)
        if id_b is None:
            raise UnknownImageError(f"image {id_a} is not in run B ({self.run_dir})")
        return self.maps.overlay(id_b, method, None if cls is None else int(self.order[cls]))

    def close(self) -> None:
        self.store.close()
