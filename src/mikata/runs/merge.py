"""``mikata merge RUN SHARD_RUN...``: the runs of a sharded scan combined into one RunStore.

A scan split with ``--shard i/N`` (a Slurm array, several machines without Ray) writes one run per
shard. ``merge_runs`` copies their rows and vectors into one run with the ordinary commit protocol
(``RunStore.append``: vectors first, SQLite as the commit point), in shard order and, within a
shard, in id order — so shards ``0/N .. N-1/N`` of a file list merge into the store one local
scan of that list writes. Exactly once, keyed by path and file hash: a row whose path is already
in the target with the same hash (and size and mtime) is not copied again, so an interrupted
merge is simply run again, and merging a shard twice changes nothing. A path stored with another
hash is replaced (the file changed between the scans). Shards must come from the same model and
preprocessing (the manifests' ``identity``).

Example:
    >>> summary = merge_runs("runs/all", ["runs/part0", "runs/part1"])     # doctest: +SKIP
    >>> summary.added, summary.already                                    # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from mikata.runs.layout import RunLayout
from mikata.runs.store import ROW_COLUMNS, Row, RunStore, RunStoreError

log = logging.getLogger(__name__)
CHUNK = 20000  # rows copied per transaction
_COLUMNS = tuple(c for c in ROW_COLUMNS if c != "id") + ("cam", "id")


@dataclass
class MergeSummary:
    """What one ``merge_runs`` call did."""

    run_dir: str
    shards: int
    added: int        # rows copied (new paths, or paths whose file hash changed)
    already: int      # rows the target already held with the same hash
    rows: int         # rows in the target afterwards
    bytes: int        # size of the target's database and vector files afterwards
    seconds: float


def merge_runs(target: str | os.PathLike, shards: Sequence[str | os.PathLike], progress: bool = False) -> MergeSummary:
    """Copy every row of ``shards`` (in order) into the run ``target`` (created when absent)."""
    t0 = time.perf_counter()
    if not shards:
        raise RunStoreError("name at least one shard run to merge: mikata merge RUN SHARD_RUN...")
    target = Path(target).expanduser().resolve()
    manifests, kinds = [], []
    for s in shards:
        if Path(s).expanduser().resolve() == target:
            raise RunStoreError(f"{s} is the target run itself; name the shard runs after the target")
        check_shard(s, target)  # every shard whole before anything is written
        with RunStore.open(s) as store:
            manifests.append(store.manifest)
            kinds.append(sorted(store.dims()) if store.count("ok") else None)
    _check_vector_kinds(shards, kinds, target)
    first = manifests[0]  # each already migrated to the current run format (runs.format)
    from mikata.data.paths import minimal_roots

    first_id = first["identity"]
    for s, m in zip(shards[1:], manifests[1:]):
        ident = m["identity"]
        if ident != first_id:
            diff = sorted(k for k in set(ident) | set(first_id) if ident.get(k) != first_id.get(k))
            raise RunStoreError(f"{s} was scanned with another model or setup than {shards[0]} (differs in: "
                                f"{', '.join(diff)}); only shards of one scan can be merged")
    roots = {m.get("dataset_root") for m in manifests}
    manifest = dict(first, merged_from=[str(Path(s).expanduser().resolve()) for s in shards])
    if len(roots) > 1:
        manifest["dataset_root"] = os.path.commonpath([r for r in roots if r]) if all(roots) else first.get("dataset_root")
    # what may be served is each shard's own data roots, never their common ancestor (which may be "/")
    manifest["data_roots"] = minimal_roots([r for m in manifests for r in m["data_roots"]])
    added = already = 0
    with RunStore.create_or_resume(target, manifest) as out:
        done = out.done()
        for s in shards:
            a, b = copy_rows(out, Path(s), done)
            added, already = added + a, already + b
            with RunStore.open(s) as src:  # a manifest's extra columns (per-image fields) travel too
                names, values = src.field_names(), src.field_rows()
            if names:
                out.set_fields(names, values)
            log.info("merged %s: %d rows added, %d already there", s, a, b)
        rows = out.count()
    size = sum(p.stat().st_size for p in target.iterdir() if p.is_file())
    return MergeSummary(str(target), len(shards), added, already, rows, size, time.perf_counter() - t0)


def check_shard(shard: str | os.PathLike, target: Path) -> None:
    """Refuse a shard that ``mikata check`` finds damaged (vectors missing, rows pointing past their vectors or
    sharing one, garbage values), naming its first problem; image files are not its concern here."""
    from mikata.runs.integrity import check_run

    damage = [p for p in check_run(shard, files=False).problems if p.severity == "damaged"]
    if damage:
        more = f" (and {len(damage) - 1} more)" if len(damage) > 1 else ""
        raise RunStoreError(f"{shard} is damaged: {damage[0].what}{more}; nothing was written to {target}; "
                            f"`mikata check {shard}` lists every problem: scan that shard again")


def _check_vector_kinds(shards: Sequence[str | os.PathLike], kinds: list[list[str] | None], target: Path) -> None:
    """Every shard with scanned rows must store the same vector kinds (and the target, when it has rows)."""
    have = [(s, k) for s, k in zip(shards, kinds) if k is not None]
    if RunLayout(target).database.is_file():
        with RunStore.open(target) as t:
            if t.count("ok"):
                have.insert(0, (target, sorted(t.dims())))
    for s, k in have[1:]:
        if k != have[0][1]:
            raise RunStoreError(f"{s} stores the vectors {k} but {have[0][0]} stores {have[0][1]}; nothing was "
                                f"written to {target}; scan the shards with one setup (then merge)")


def copy_rows(out: RunStore, shard: Path, done: dict[str, tuple[int, int, str | None]]) -> tuple[int, int]:
    """Copy every row of the run ``shard`` into ``out`` once (``done``: ``out.done()``, updated); returns
    (rows added, rows already there). ``merge_runs`` and ``crossval`` use it."""
    added = already = 0
    with RunStore.open(shard) as src:
        with src.snapshot():
            n_vec = src.committed_vectors()
            kinds = sorted(src.dims())
            vecs = {k: src.vectors(k, n_vec) for k in kinds}
            cam_shape = src.cam_shape()
            last = 0
            while True:
                chunk = src.rows(columns=_COLUMNS, tuples=True, after_id=last, limit=CHUNK)
                if not chunk:
                    break
                last = chunk[-1][-1]
                rows: list[Row] = []
                picks: list[int] = []
                replace = False
                for (path, digest, size, mtime, label, split, status, reason, pred, pred_prob, label_prob, topk,
                     vec_row, cam, _id) in chunk:
                    if done.get(path) == (size, mtime, digest):
                        already += 1
                        continue
                    replace = replace or path in done
                    if status == "ok" and kinds and vec_row is None:
                        raise RunStoreError(f"{shard}: row {path} has no vectors; rescan that shard")
                    rows.append(Row(path, digest, size, mtime, label, split, status, reason, pred, pred_prob,
                                    label_prob, json.loads(topk) if topk else None,
                                    np.frombuffer(cam, np.float16).reshape(cam_shape) if cam is not None else None))
                    if status == "ok":
                        picks.append(int(vec_row))
                    done[path] = (size, mtime, digest)
                if rows:
                    vectors = {k: np.asarray(v[np.asarray(picks, np.int64)]) for k, v in vecs.items()} if kinds else None
                    out.append(rows, vectors, replace=replace)
                    added += len(rows)
    return added, already


def shard_of(items: Sequence, shard: tuple[int, int] | None) -> list:
    """The ``i``-th of ``n`` contiguous slices of ``items`` (``shard=(i, n)``); all of them for None.

    Contiguous, not interleaved: merging shards 0..n-1 in order gives the rows in the order one
    local scan of ``items`` stores them.
    """
    if shard is None:
        return list(items)
    i, n = shard
    return list(items[i * len(items) // n:(i + 1) * len(items) // n])


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"2/8"`` -> ``(2, 8)``: the shard index from 0, and the number of shards."""
    if not text:
        return None
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise RunStoreError(f"--shard {text!r}: write I/N, e.g. 0/4 for the first of four shards") from None
    if n < 1 or not 0 <= i < n:
        hint = f"; the last of {n} shards is {n - 1}/{n}" if i == n >= 1 else ""
        raise RunStoreError(f"--shard {text!r}: shards are counted from 0, so I must be in 0..N-1 "
                            f"(e.g. 0/4 .. 3/4){hint}")
    return i, n


def split_run(run: str | os.PathLike, out_dir: str | os.PathLike, n: int) -> list[Path]:
    """``n`` runs holding contiguous slices of ``run``'s rows (for testing and benchmarking merges)."""
    out_dir = Path(out_dir)
    with RunStore.open(run) as src:
        manifest = src.manifest
        ids = src.ids(status=None)
    parts = []
    for i in range(n):
        part = out_dir / f"shard{i}"
        mine = shard_of(ids, (i, n))
        if RunLayout(part).database.exists():
            with RunStore.open(part) as p:
                if p.count() == len(mine):
                    parts.append(part)
                    continue
            import shutil

            shutil.rmtree(part)
        with RunStore.create_or_resume(part, manifest) as out:
            if mine:
                _copy_range(out, Path(run), mine[0] - 1, mine[-1])
        parts.append(part)
    return parts


def _copy_range(out: RunStore, src_dir: Path, after: int, up_to: int) -> None:
    with RunStore.open(src_dir) as src:
        n_vec = src.committed_vectors()
        kinds = sorted(src.dims())
        vecs = {k: src.vectors(k, n_vec) for k in kinds}
        cam_shape = src.cam_shape()
        last = after
        while last < up_to:
            chunk = [r for r in src.rows(columns=_COLUMNS, tuples=True, after_id=last, limit=CHUNK) if r[-1] <= up_to]
            if not chunk:
                break
            last = chunk[-1][-1]
            rows = [Row(p, h, s, m, y, sp, st, re, pr, pp, lp, json.loads(tk) if tk else None,
                        np.frombuffer(c, np.float16).reshape(cam_shape) if c is not None else None)
                    for p, h, s, m, y, sp, st, re, pr, pp, lp, tk, vr, c, _ in chunk]
            picks = np.asarray([r[12] for r in chunk if r[6] == "ok"], np.int64)
            out.append(rows, {k: np.asarray(v[picks]) for k, v in vecs.items()} if kinds else None, replace=False)
