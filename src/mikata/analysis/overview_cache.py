"""The costly parts of a run's overview, kept on disk per run version so big runs open fast.

A 1,000,000-row run takes ~25 s to read its rows from SQLite and rank its label issues with
cleanlab; the numbers only change when a scan commits. So ``run_data`` and ``issue_ranking``
keep them in ``RUN_DIR/cache/overview-<split>.npz``, stamped with the ``RunStore.version()`` they
were computed at:

- same version: loaded as they are (a few arrays; ~0.1 s at 1M rows);
- rows only appended since (every stored row still there, new ids above the cached largest): only
  the new rows are read and concatenated; the label-issue ranking (it depends on every row) is
  recomputed once for the new version and saved again;
- anything else (rows replaced, a damaged or foreign file): rebuilt from the store.

The cache is data, never code: plain arrays (``allow_pickle=False``), checked against the store.
A run directory that cannot be written (someone else's run) simply gets no cache.

Example:
    >>> with RunStore.open("runs/big") as store:                       # doctest: +SKIP
    ...     with store.snapshot():                                      # doctest: +SKIP
    ...         cached = run_data(store)                                # doctest: +SKIP
    >>> ranked = issue_ranking(cached)                                  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mikata.runs.data import RowPaths, RunData, check_consistent, fetch_coded_rows, read_probs, subset
from mikata.analysis.audit import label_issue_ranking
from mikata.runs.cache_files import read_arrays, write_arrays
from mikata.runs.layout import CACHE, UnsafeRunFileError
from mikata.runs.store import RunStore

log = logging.getLogger(__name__)
CACHE_DIR = CACHE
FORMAT = 1


def _path(run_dir: str | os.PathLike, split: str | None) -> Path:
    key = "all" if split is None else "split-" + hashlib.sha1(split.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return Path(run_dir) / CACHE_DIR / f"overview-{key}.npz"


def _load(path: Path) -> dict[str, np.ndarray] | None:
    try:
        got = read_arrays(path.parent.parent, path, "overview cache")
        if got is None:
            return None
        if int(got["format"]) != FORMAT:
            return None
        n = len(got["ids"])
        if any(len(got[k]) != n for k in ("labels", "preds", "split_codes", "vec_rows")):
            return None
        return got
    except (OSError, KeyError, ValueError, EOFError) as e:  # absent, damaged or not ours: rebuild
        if not isinstance(e, FileNotFoundError):
            log.info("ignoring the overview cache %s (%s); rebuilding it", path, e)
        return None


def _save(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Written to a temporary file then renamed: readers see the old cache or the new one, whole."""
    try:
        write_arrays(path.parent.parent, path, {"format": np.int64(FORMAT), **arrays})
    except (OSError, UnsafeRunFileError) as e:
        log.info("cannot write the overview cache in %s (%s); big runs will be read in full each time", path.parent, e)


def clear(run_dir: str | os.PathLike) -> None:
    """Drop every cached overview of a run (the next read rebuilds them)."""
    shutil.rmtree(Path(run_dir) / CACHE_DIR, ignore_errors=True)


@dataclass
class CachedRun:
    """The committed ok rows of a run at ``version``; ``ranking`` when the cache already had it."""

    version: tuple[int, int, int]
    data: RunData
    ranking: np.ndarray | None = None
    ranking_scope: str = ""  # which rows ``ranking`` left out: "" none, else ``_scope`` of the mask


def run_data(store: RunStore, split: str | None = None) -> CachedRun:
    """The committed ok rows (and their version), from the cache when it is still good.

    Call inside ``store.snapshot()`` so the version and the rows are from one point in time.
    """
    version = store.version()
    classes = store.classes
    path = _path(store.dir, split)
    cached = _load(path)
    ids = labels = preds = vec_rows = None
    split_names: list[str] = []
    codes = np.zeros(0, np.int64)
    if cached is not None:
        old_version = tuple(int(v) for v in cached["version"])
        n_old, top_old = len(cached["ids"]), int(cached["top_id"])
        if old_version == version or _only_appended(store, split, n_old, top_old):
            ids, labels, preds, vec_rows = (cached[k] for k in ("ids", "labels", "preds", "vec_rows"))
            codes, split_names = cached["split_codes"], [str(s) for s in cached["split_names"]]
            if old_version != version:
                n_ids, n_labels, n_preds, n_codes, n_names, n_vec = fetch_coded_rows(store, split, after_id=top_old)
                new_codes, split_names = _recode(n_codes, n_names, split_names)
                ids, labels, preds = np.concatenate([ids, n_ids]), np.concatenate([labels, n_labels]), \
                    np.concatenate([preds, n_preds])
                vec_rows, codes = np.concatenate([vec_rows, n_vec]), np.concatenate([codes, new_codes])
            if len(vec_rows) and (vec_rows.max() >= version[2] or labels.max() >= len(classes)
                                  or preds.max() >= len(classes) or labels.min() < 0):
                ids = None  # inconsistent with the store: rebuild
    from_cache = ids is not None
    if ids is None:
        ids, labels, preds, codes, split_names, vec_rows = fetch_coded_rows(store, split)
        check_consistent(store, labels, preds, vec_rows, version[2], classes)
    probs = read_probs(store, vec_rows, version[2], len(classes))
    splits = np.asarray(split_names, dtype=str)[codes] if len(codes) else np.zeros(0, dtype=str)
    d = RunData(ids, RowPaths(str(store.dir), ids), labels, preds, splits, vec_rows, probs, classes, str(store.dir))
    ranking, scope = None, ""
    if from_cache and tuple(int(v) for v in cached["version"]) == version and "ranking" in cached:
        ranking, scope = cached["ranking"], str(cached.get("ranking_scope", ""))
    if cached is None or tuple(int(v) for v in cached["version"]) != version or \
            not np.array_equal(cached["ids"], ids):
        _save(path, _arrays(version, d, codes, split_names, None))
    return CachedRun(version, d, ranking, scope)


def issue_ranking(run: CachedRun, split: str | None = None, exclude: np.ndarray | None = None) -> np.ndarray:
    """``audit.label_issue_ranking`` over the rows not in ``exclude`` (``(N,)`` bool: the rows the model
    was trained on), computed once per run version and kept with the rows."""
    d, version = run.data, run.version
    scope = _scope(exclude)
    ranking = run.ranking
    if ranking is not None and run.ranking_scope == scope and \
            (not len(ranking) or (ranking.min() >= 0 and ranking.max() < len(d))):
        return ranking
    ranking = ranking_without(d, exclude)
    path = _path(d.run_dir, split)
    cached = _load(path)
    if cached is not None and tuple(int(v) for v in cached["version"]) == version and \
            np.array_equal(cached["ids"], d.ids):
        cached.pop("format", None)
        cached["ranking"], cached["ranking_scope"] = ranking, np.asarray(scope)
        _save(path, cached)
    run.ranking, run.ranking_scope = ranking, scope
    return ranking


def ranking_without(d: RunData, exclude: np.ndarray | None) -> np.ndarray:
    """Row indices of ``d``'s suspected label errors, most suspicious first, searched over the rows not in
    ``exclude``: on its training images a model agrees with their labels, errors included."""
    if exclude is None or not exclude.any():
        return label_issue_ranking(d)
    keep = np.flatnonzero(~exclude)
    return keep[label_issue_ranking(subset(d, keep))] if len(keep) else np.zeros(0, np.int64)


def _scope(exclude: np.ndarray | None) -> str:
    if exclude is None or not exclude.any():
        return ""
    return hashlib.sha1(np.packbits(np.asarray(exclude, bool)).tobytes()).hexdigest()


def _only_appended(store: RunStore, split: str | None, n_old: int, top_old: int) -> bool:
    """True when every cached row is still stored as it was: no ok row at or below the old top id went away."""
    return store.count_up_to(top_old, status="ok", split=split) == n_old


def _recode(codes: np.ndarray, names: list[str], known: list[str]) -> tuple[np.ndarray, list[str]]:
    """Split codes into ``names`` as codes into ``known`` (extended with the names it lacks)."""
    known = list(known)
    index = {s: i for i, s in enumerate(known)}
    for s in names:
        if s not in index:
            index[s] = len(known)
            known.append(s)
    lut = np.array([index[s] for s in names], np.int64)
    return (lut[codes] if len(codes) else np.zeros(0, np.int64)), known


def _arrays(version: tuple[int, int, int], d: RunData, codes: np.ndarray, split_names: list[str],
            ranking: np.ndarray | None) -> dict[str, np.ndarray]:
    out = {"version": np.asarray(version, np.int64), "ids": d.ids, "labels": d.labels, "preds": d.preds,
           "vec_rows": d.vec_rows, "split_codes": codes, "split_names": np.asarray(split_names, dtype=str),
           "top_id": np.int64(d.ids.max() if len(d.ids) else 0)}
    if ranking is not None:
        out["ranking"] = ranking
    return out
