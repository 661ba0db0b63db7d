"""A comparison's costly parts kept on disk in run A, stamped with both runs' versions.

Comparing two 1,000,000-row runs reads 2M paths and hashes, matches them and draws the bootstrap
intervals (the ECE's above all): minutes on a busy 2-core machine. Only the matching (which row of A
is which row of B), the image counts and the metric rows are costly; the paired arrays are a gather
from each view's rows and the flipped lists a sort of the flipped images. So ``save`` keeps the costly
parts in ``RUN_A/cache/compare-<key>.npz``, and ``load`` gives them back while they are still true:

- the key names run B (its resolved folder), both views' splits and the bootstrap settings: each
  such comparison has its own file;
- the stamp inside holds both runs' ``RunStore.version()``, their databases' identity (device and
  inode of ``run.sqlite``: a run deleted and scanned again is another run) and their calibration
  files' stamps (a temperature changes every probability): any difference and the file is ignored,
  then replaced by the next build.

Views narrower than a split (classes, a field value, chosen ids) are not cached. The cache is data,
never code: plain arrays and JSON text (``allow_pickle=False``); a damaged or foreign file is a miss.
A run directory that cannot be written simply gets no cache.

Example:
    >>> got = load(view_a, view_b, (0, 1000, 0.95, None))                     # doctest: +SKIP
    >>> matching, labels_differ, rows = got                                    # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mikata.analysis.compare_match import Matching
from mikata.analysis.temperature import stamp as temperature_stamp
from mikata.runs.cache_files import read_arrays, write_arrays
from mikata.runs.layout import CACHE, UnsafeRunFileError

if TYPE_CHECKING:
    from mikata.analysis.view import RunView

log = logging.getLogger(__name__)
FORMAT = 1
COUNTS = ("by_hash", "changed", "only_a", "only_b", "labels_differ")


def _cacheable(view: "RunView") -> bool:
    s = view.selection
    return s.field is None and s.classes is None and s.ids is None


def _database_id(view: "RunView") -> list[int] | None:
    try:
        st = os.stat(view.run_dir / "run.sqlite")
    except OSError:
        return None
    return [st.st_dev, st.st_ino]


def stamp(a: "RunView", b: "RunView") -> dict:
    """What must be unchanged for a stored comparison of ``a`` and ``b`` to hold."""
    return {"format": FORMAT, "version_a": list(a.version()), "version_b": list(b.version()),
            "db_a": _database_id(a), "db_b": _database_id(b),
            "temperature_a": temperature_stamp(a.run_dir), "temperature_b": temperature_stamp(b.run_dir)}


def path_for(a: "RunView", b: "RunView", settings: tuple) -> Path:
    """``RUN_A/cache/compare-<key>.npz`` of this comparison (run B, both splits, the settings)."""
    key = json.dumps([str(b.run_dir), a.split, b.split, list(settings)], default=str)
    return a.run_dir / CACHE / f"compare-{hashlib.sha1(key.encode('utf-8', 'surrogateescape')).hexdigest()[:16]}.npz"


def load(a: "RunView", b: "RunView", settings: tuple) -> tuple[Matching, int, list[dict]] | None:
    """``(matching, labels_differ, metric rows as dicts)`` of a stored comparison that still holds, else None.

    ``settings``: ``(seed, replicates, confidence, positive)``, as the intervals were drawn."""
    if not (_cacheable(a) and _cacheable(b)):
        return None
    path = path_for(a, b, settings)
    try:
        got = read_arrays(a.run_dir, path, "comparison cache")
        if got is None:
            return None
        if json.loads(str(got["stamp"])) != json.loads(json.dumps(stamp(a, b))):
            return None
        rows_a, rows_b = got["rows_a"].astype(np.int64), got["rows_b"].astype(np.int64)
        counts = dict(zip(COUNTS, (int(v) for v in got["counts"])))
        rows = json.loads(str(got["metrics"]))
        n_a, n_b = len(a.data), len(b.data)
        if len(rows_a) != len(rows_b) or not isinstance(rows, list) or (len(rows_a) and (
                rows_a.min() < 0 or rows_b.min() < 0 or rows_a.max() >= n_a or rows_b.max() >= n_b)):
            return None
    except (OSError, KeyError, ValueError, TypeError, EOFError) as e:  # damaged or not ours: a miss
        if not isinstance(e, FileNotFoundError):
            log.info("ignoring the comparison cache %s (%s)", path, e)
        return None
    m = Matching(rows_a, rows_b, counts["by_hash"], counts["changed"], counts["only_a"], counts["only_b"])
    return m, counts["labels_differ"], rows


def save(a: "RunView", b: "RunView", settings: tuple, before: dict, matching: Matching, labels_differ: int,
         rows: list[dict]) -> bool:
    """Store a comparison built while both runs were at ``before`` (``stamp`` taken before reading them);
    nothing is stored when either run changed meanwhile. Written to a temporary file then renamed.
    True when stored."""
    if not (_cacheable(a) and _cacheable(b)) or stamp(a, b) != before:
        return False
    path = path_for(a, b, settings)
    counts = [matching.by_hash, matching.changed, matching.only_a, matching.only_b, labels_differ]
    try:
        write_arrays(a.run_dir, path, {"stamp": np.asarray(json.dumps(before)), "rows_a": matching.rows_a,
                                       "rows_b": matching.rows_b, "counts": np.asarray(counts, np.int64),
                                       "metrics": np.asarray(json.dumps(rows))})
    except (OSError, UnsafeRunFileError) as e:
        log.info("cannot write the comparison cache in %s (%s); the comparison is built each time", path.parent, e)
        return False
    return True
