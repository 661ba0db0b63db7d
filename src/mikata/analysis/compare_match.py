"""Which rows of two runs are the same image: matched by path and file hash, as ``mikata merge`` keys rows.

A row of run A and a row of run B are one image when they have the same stored path and the same file
hash (a hash missing on either side, as in runs written without one, leaves the path to decide). A path
stored in both with different hashes is a file that changed between the scans: not the same image, so
it is counted apart (``changed``) and compared nowhere. Rows left over are matched by hash alone (the
same bytes under another path: a dataset copied or moved between the scans), each hash's rows in path
order. Everything else is only in A or only in B.

Example:
    >>> m = match_rows(["a.png", "b.png", "c.png"], ["h1", "h2", "h3"], ["/x/c.png", "a.png"], ["h3", "h1"])
    >>> m.rows_a.tolist(), m.rows_b.tolist(), m.by_hash, m.only_a
    ([0, 2], [1, 0], 1, 1)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass
class Matching:
    """Paired rows (``rows_a[i]`` of A is ``rows_b[i]`` of B, ordered by A's row) and what was left over."""

    rows_a: np.ndarray  # (S,) indices into A's rows, ascending
    rows_b: np.ndarray  # (S,) indices into B's rows
    by_hash: int        # pairs whose paths differ (matched by file hash)
    changed: int        # paths in both runs whose file hashes differ (not compared)
    only_a: int         # rows of A with no partner in B (the changed ones not counted)
    only_b: int

    @property
    def shared(self) -> int:
        return len(self.rows_a)


def match_rows(paths_a: Sequence[str], hashes_a: Sequence[str | None], paths_b: Sequence[str],
               hashes_b: Sequence[str | None]) -> Matching:
    """Pair the rows of A and B (see the module doc); each row is used at most once."""
    if len(paths_a) == len(paths_b) and list(paths_a) == list(paths_b):  # the same files in the same order
        return _same_paths(hashes_a, hashes_b)  # (one dataset scanned twice): no lookups, nothing left over
    return _match_by_lookup(paths_a, hashes_a, paths_b, hashes_b)


def _match_by_lookup(paths_a: Sequence[str], hashes_a: Sequence[str | None], paths_b: Sequence[str],
                     hashes_b: Sequence[str | None]) -> Matching:
    """``match_rows`` for any two path lists: a lookup of each of A's paths in B, then the hash match."""
    where_b = {p: j for j, p in enumerate(paths_b)}
    pairs: list[tuple[int, int]] = []
    used_a = np.zeros(len(paths_a), bool)
    used_b = np.zeros(len(paths_b), bool)
    changed = 0
    for i, p in enumerate(paths_a):
        j = where_b.get(p)
        if j is None:
            continue
        ha, hb = hashes_a[i], hashes_b[j]
        used_a[i] = used_b[j] = True  # a changed file is not left over for the hash match either
        if ha is not None and hb is not None and ha != hb:
            changed += 1
        else:
            pairs.append((i, j))
    by_hash = 0
    left_b: dict[str, list[int]] = {}
    for j in sorted(np.flatnonzero(~used_b).tolist(), key=lambda j: paths_b[j], reverse=True):
        if hashes_b[j] is not None:
            left_b.setdefault(hashes_b[j], []).append(j)  # popped from the end: path order
    if left_b:
        for i in sorted(np.flatnonzero(~used_a).tolist(), key=lambda i: paths_a[i]):
            h = hashes_a[i]
            partners = left_b.get(h) if h is not None else None
            if partners:
                j = partners.pop()
                used_a[i] = used_b[j] = True
                pairs.append((i, j))
                by_hash += 1
    pairs.sort()
    rows = np.asarray(pairs, np.int64).reshape(-1, 2)
    return Matching(rows[:, 0].copy(), rows[:, 1].copy(), by_hash, changed,
                    int((~used_a).sum()), int((~used_b).sum()))


def _same_paths(hashes_a: Sequence[str | None], hashes_b: Sequence[str | None]) -> Matching:
    """``match_rows`` of two runs whose path lists are equal: row ``i`` pairs with row ``i`` unless both
    hashes are known and differ (changed; with every path used, nothing is left for the hash match)."""
    ha = np.asarray(hashes_a, dtype=object)
    hb = np.asarray(hashes_b, dtype=object)
    known = (ha != None) & (hb != None)  # noqa: E711 - elementwise
    changed = known & (ha != hb)
    rows = np.flatnonzero(~changed)
    return Matching(rows, rows.copy(), 0, int(changed.sum()), 0, 0)
