"""``RunStore``: one scan's results on disk — SQLite rows, float16 vector files, a manifest.

Layout of a run directory::

    manifest.json     model spec + weights hash, dataset root, preprocessing, versions
    run.sqlite        one row per image (WAL mode: readers never block the writer)
    probs.f16         (rows, K) class probabilities   } raw float16, appended batch by batch;
    embed.f16         (rows, D) penultimate embedding  } row ``i`` of every file belongs to the
    channels.f16      (rows, C) mean channel activation} image whose ``vec_row`` is ``i``

Why this shape: SQLite is the commit point. A batch's vectors are appended to the files first,
then its rows and the new committed vector count go into SQLite in one transaction. A process
killed in between leaves bytes past the committed count; the next writer truncates them away,
so a resumed scan neither loses nor duplicates a row, and readers only ever look at committed
rows (``np.memmap`` over the committed prefix). Grad-CAM maps are small float16 blobs in SQLite.

Example:
    >>> store = RunStore.open("runs/digits")                      # doctest: +SKIP
    >>> store.count(), store.vectors("probs").shape               # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Iterable, Iterator, Sequence
from urllib.parse import quote

import numpy as np

from mikata.runs.layout import LOCK, RunLayout, refuse
from mikata.runs.lock import RunLock
from mikata.data.filenames import from_db, to_db
from mikata.errors import MikataError

log = logging.getLogger(__name__)
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    hash TEXT,                 -- sha1 of the file's bytes
    size INTEGER, mtime_ns INTEGER,
    label INTEGER,             -- model class index of the ground truth
    split TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,      -- 'ok' or 'skipped'
    reason TEXT,               -- why it was skipped
    pred INTEGER, pred_prob REAL, label_prob REAL,
    topk TEXT,                 -- JSON [[class, prob], ...]
    vec_row INTEGER,           -- row in the .f16 vector files
    cam BLOB                   -- float16 (h, w) Grad-CAM of the predicted class, optional
);
CREATE INDEX IF NOT EXISTS images_hash ON images(hash);
-- covering index: the confusion matrix is a GROUP BY read straight off it, in order, no sort
CREATE INDEX IF NOT EXISTS images_confusion ON images(status, label, pred);
"""
# What readers add to a run: attribution maps computed on demand, and a person's label reviews.
# Created by the writer too, and by ``RunStore.open(run, annotate=True)`` on runs made before them.
ANNOTATION_SCHEMA = """
CREATE TABLE IF NOT EXISTS maps (
    image_id INTEGER NOT NULL, method TEXT NOT NULL, class INTEGER NOT NULL, layer TEXT NOT NULL,
    height INTEGER NOT NULL, width INTEGER NOT NULL,
    map BLOB NOT NULL,         -- float16 (height, width) at model input resolution, unnormalized
    seconds REAL,              -- how long it took to compute
    PRIMARY KEY (image_id, method, class, layer)
);
CREATE TABLE IF NOT EXISTS reviews (
    image_id INTEGER PRIMARY KEY,
    verdict TEXT NOT NULL CHECK (verdict IN ('wrong', 'fine')),  -- is the stored label wrong?
    suggested INTEGER,         -- the class the reviewer (or the audit) proposes instead
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS concept_reviews (
    concept TEXT PRIMARY KEY,  -- "CLASS/k" of the run's concept atlas
    verdict TEXT NOT NULL CHECK (verdict IN ('object', 'artefact')),  -- what a person judged the concept to be
    updated TEXT NOT NULL
);
"""
REVIEW_VERDICTS = ("wrong", "fine")
CONCEPT_VERDICTS = ("object", "artefact")
# Per-image metadata from a CSV manifest's extra columns (``path,label,cell_type``): plain text values,
# keyed by the image's stored path so a resumed or incremental scan keeps them. Written by the scan.
FIELDS_SCHEMA = """
CREATE TABLE IF NOT EXISTS fields (
    path TEXT NOT NULL,        -- images.path of the image (the same stored form)
    name TEXT NOT NULL,        -- the manifest column
    value TEXT NOT NULL,       -- its text in that row (data: never code)
    PRIMARY KEY (name, path)
);
"""
# the columns of a stored row that readers get (the Grad-CAM blob has its own reader, ``cam``)
ROW_COLUMNS = ("id", "path", "hash", "size", "mtime_ns", "label", "split", "status", "reason", "pred", "pred_prob",
               "label_prob", "topk", "vec_row")
_IN_CHUNK = 500  # ids per ``IN (...)`` query, well under SQLite's variable limit


class RunStoreError(MikataError):
    """A run directory that cannot be used for what was asked; the message says what to do."""


class ReadOnlyRunError(RunStoreError):
    """The run directory cannot be written (read-only disk or no rights): nothing can be stored in it."""


class DamagedRunError(RunStoreError):
    """A run whose files are damaged or inconsistent (truncated database, short vector file, bad manifest)."""

    def __init__(self, what: str, run_dir: str | os.PathLike | None = None):
        hint = f"`mikata check {run_dir}` lists every problem; " if run_dir else ""
        super().__init__(f"{what}; {hint}scan again into a new --run directory (or restore the run from a copy)")


@dataclass
class Row:
    """One scanned (or skipped) image, as the scanner hands it to ``RunStore.append``."""

    path: str
    hash: str | None
    size: int
    mtime_ns: int
    label: int | None
    split: str = ""
    status: str = "ok"
    reason: str | None = None
    pred: int | None = None
    pred_prob: float | None = None
    label_prob: float | None = None
    topk: list | None = None
    cam: np.ndarray | None = None  # (h, w)


class RunStore:
    """A run directory. ``create_or_resume`` for the writer, ``open`` for readers (any process)."""

    def __init__(self, run_dir: str | os.PathLike, readonly: bool = True, annotate: bool = False):
        self.layout = RunLayout(run_dir)
        self.dir = self.layout.dir
        self.readonly = readonly
        self.annotate = annotate or not readonly  # may write maps and reviews
        db = self.layout.database
        if readonly and not os.path.lexists(db):
            raise RunStoreError(f"{self.dir} is not a mikata run (no run.sqlite); create one with `mikata scan`")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.layout.check_database()  # SQLite would follow a link at run.sqlite or its -wal/-shm files
        if readonly and annotate:  # no tables are added to a run of a format this mikata does not read
            _refuse_newer_format(self.layout)
        # explicit transactions; one thread at a time, but it may be a writer thread (see scan)
        self.read_only_media = False  # set when the run can be read but not written (read-only disk, no rights)
        self.db = sqlite3.connect(str(db), timeout=60, isolation_level=None, check_same_thread=False)
        try:
            self.db.execute("PRAGMA busy_timeout=60000")
            try:
                self.db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # "file is not a database" here
            except sqlite3.OperationalError:
                if not readonly:
                    raise
                # a WAL database in a directory we cannot write (no -shm file can be made): read it as
                # immutable, which needs no -shm; nobody can be writing to it there anyway
                self.db.close()
                self.db = sqlite3.connect(f"file:{quote(str(db))}?immutable=1", uri=True, timeout=60,
                                          isolation_level=None, check_same_thread=False)
                self.db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
                self.read_only_media = True
            if not readonly:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
                self.db.executescript(SCHEMA)
            elif not self._has_table("images"):
                raise DamagedRunError(f"{db} has no images table", self.dir)
            if not readonly or annotate:
                self._annotation_tables()
        except sqlite3.DatabaseError as e:
            self.db.close()
            raise DamagedRunError(f"{db} is damaged ({e})", self.dir) from e
        self._files: dict[str, object] = {}
        self._lock: RunLock | None = None  # held by the writer (create_or_resume) until close()
        self._manifest: dict | None = None
        self._cam_shape: tuple[int, int] | None = None

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, run_dir: str | os.PathLike, annotate: bool = False, validate: bool = True) -> "RunStore":
        """Open for reading; safe while another process is scanning into it.

        ``annotate=True`` also allows writing maps and reviews (never images or vectors), so a
        viewer can cache and record while a scan appends. ``validate`` (cheap: the manifest, the
        meta values and one ``stat`` per vector file) turns a damaged run into one
        ``DamagedRunError`` here instead of a failure deep in whatever reads it first.
        """
        store = cls(run_dir, readonly=True, annotate=annotate)
        if validate:
            try:
                store.validate()
            except BaseException:
                store.close()
                raise
        return store

    def validate(self) -> None:
        """Raise ``DamagedRunError`` if the manifest, the meta values or a vector file's length are unusable."""
        self.manifest  # noqa: B018 - parsed and checked on first use
        n, dims = self.committed_vectors(), self.dims()
        for kind, dim in dims.items():
            path = self.layout.vector(kind)
            have = vector_file_size(path, self.dir) // (2 * dim)
            if have < n:  # a writer appends before it commits: a shorter file is always damage
                raise DamagedRunError(f"{path} holds {have} vectors but the database committed {n}"
                                      + ("" if path.exists() else " (the file is missing)"), self.dir)

    @classmethod
    def create_or_resume(cls, run_dir: str | os.PathLike, manifest: dict) -> "RunStore":
        """Open for writing. An existing run must have been made by the same model and preprocessing.

        ``manifest["identity"]`` (weights hash, preprocessing, layer, ...) is compared with the stored
        one; any difference raises ``RunStoreError`` telling to use a new run directory.
        """
        layout = RunLayout(run_dir)
        run_dir, mpath = layout.dir, layout.manifest
        if not os.path.lexists(mpath) and run_dir.exists() and any(p.name != LOCK for p in run_dir.iterdir()):
            raise RunStoreError(f"{run_dir} exists, is not empty and is not a mikata run; pass a new --run directory")
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = RunLock.acquire(run_dir)  # one writer per run: a second scan is refused, naming the first's PID
        try:
            if layout.check_file(mpath):
                from mikata.runs.format import migrate_manifest

                raw = _parse_manifest(layout)
                old = migrate_manifest(raw, mpath, run_dir)
                # an older run is migrated to today's format first, so the same setup compares equal
                old_id, new_id = old["identity"], migrate_manifest(manifest, mpath, run_dir)["identity"]
                if old_id != new_id:
                    diff = sorted(k for k in set(old_id) | set(new_id) if old_id.get(k) != new_id.get(k))
                    raise RunStoreError(
                        f"{run_dir} holds a run of a different model or setup (differs in: {', '.join(diff)}); "
                        "pass a new --run directory to scan with this model")
                # migrated on disk too, and the data roots of files added since kept (data.paths)
                from mikata.data.paths import minimal_roots

                roots = minimal_roots([*old["data_roots"], *manifest.get("data_roots", [])])
                if raw.get("format") != old["format"] or roots != old["data_roots"]:
                    with layout.replacing(mpath, binary=False) as f:
                        f.write(json.dumps({**old, "data_roots": roots}, indent=2))
            else:  # the manifest first: a directory with a database always has one
                with layout.replacing(mpath, binary=False) as f:
                    f.write(json.dumps(manifest, indent=2))
            store = cls(run_dir, readonly=False)
            store._lock = lock
            store._truncate_uncommitted()
        except BaseException:
            lock.release()
            raise
        return store

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()
        self.db.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------- metadata
    @property
    def manifest(self) -> dict:
        """The run's manifest, read once per store (it is written once, before the database). Do not mutate."""
        if self._manifest is None:
            self._manifest = self._read_manifest()
        return self._manifest

    def _read_manifest(self) -> dict:
        from mikata.runs.format import migrate_manifest

        path = self.layout.manifest
        m = migrate_manifest(_parse_manifest(self.layout), path, self.dir)
        classes = m["identity"].get("classes", [""])  # absent: checked by the readers that need classes
        if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
            raise DamagedRunError(f"{path}: 'identity.classes' must be a non-empty list of class names", self.dir)
        return m

    @property
    def identity(self) -> dict:
        """``manifest["identity"]``: model spec and weights hash, classes, preprocessing, scan layer."""
        return self.manifest["identity"]

    @property
    def classes(self) -> list[str]:
        """The model's class names the run was scanned with (``DamagedRunError`` when the manifest lost them)."""
        classes = self.identity.get("classes")
        if classes is None:
            raise DamagedRunError(f"{self.dir / 'manifest.json'} has no 'identity.classes', so its rows cannot be read",
                                  self.dir)
        return classes

    def meta(self, key: str, default: str | None = None) -> str | None:
        r = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return r[0] if r else default

    def committed_vectors(self) -> int:
        """How many vector rows are committed (the prefix of each .f16 file that readers may see)."""
        raw = self.meta("vec_rows", "0")
        try:
            n = int(raw)
        except (TypeError, ValueError):
            n = -1
        if n < 0:
            raise DamagedRunError(f"{self.dir / 'run.sqlite'}: the committed vector count {raw!r} is not a count",
                                  self.dir)
        return n

    def dims(self) -> dict[str, int]:
        """kind -> values per vector, e.g. ``{"probs": 10, "embed": 256, "channels": 128}``."""
        raw = self.meta("dims", "{}")
        try:
            d = json.loads(raw)
        except (TypeError, ValueError, RecursionError):
            d = None
        if not isinstance(d, dict) or not all(isinstance(k, str) and k.isidentifier() and isinstance(v, int)
                                              and not isinstance(v, bool) and v > 0 for k, v in d.items()):
            raise DamagedRunError(f"{self.dir / 'run.sqlite'}: the vector dims {str(raw)[:80]!r} are not "
                                  "{kind: count} JSON", self.dir)
        return d

    def has_vectors(self, kind: str) -> bool:
        """Whether the run stores ``kind`` vectors. Runs scanned before a kind existed lack it (``stats``,
        ``thumbs``: see ``runs.format``); readers then leave that analysis out with a note."""
        return kind in self.dims()

    def cam_shape(self) -> tuple[int, int] | None:
        """``(h, w)`` of the scan's Grad-CAMs; set once by the first batch that has them, then cached."""
        if self._cam_shape is None:
            s = self.meta("cam_shape")
            self._cam_shape = tuple(json.loads(s)) if s else None
        return self._cam_shape

    # ----------------------------------------------------------------- writing
    def _truncate_uncommitted(self) -> None:
        """Drop vector bytes appended by a batch whose SQLite transaction never committed."""
        n = self.committed_vectors()
        for kind, dim in self.dims().items():
            p = self.layout.vector(kind)
            if self.layout.check_file(p):  # a link here would truncate the file it points to: refused
                fd = self.layout.open_fd(p, os.O_RDWR)
                try:
                    if os.fstat(fd).st_size > n * dim * 2:
                        os.ftruncate(fd, n * dim * 2)
                finally:
                    os.close(fd)

    def done(self) -> dict[str, tuple[int, int, str | None]]:
        """path -> (size, mtime_ns, hash) for every stored row; the scanner skips unchanged files."""
        return {from_db(p): (s, m, h) for p, s, m, h in self.db.execute("SELECT path, size, mtime_ns, hash FROM images")}

    def append(self, rows: Sequence[Row], vectors: dict[str, np.ndarray] | None = None, replace: bool = True) -> None:
        """Store one batch atomically. ``vectors[kind]`` is ``(n_ok, dim)``, one row per ``status == 'ok'`` row.

        Vectors go to the files first, then one SQLite transaction commits the rows and the new
        vector count: a crash before the commit leaves only bytes that the next writer truncates.
        ``replace=False`` promises that none of the paths is stored yet (saves a DELETE per row).
        """
        if self.readonly:
            raise RunStoreError("this RunStore was opened read-only")
        vectors = vectors or {}
        ok = [r for r in rows if r.status == "ok"]
        arrays = {}
        for kind, arr in vectors.items():
            arrays[kind] = np.ascontiguousarray(np.clip(arr, -65504, 65504), dtype=np.float16)  # (n_ok, dim)
            if arrays[kind].shape[0] != len(ok):
                raise ValueError(f"{kind}: {arrays[kind].shape[0]} vectors for {len(ok)} ok rows")
        cam_shape = next((r.cam.shape for r in ok if r.cam is not None), None)
        with self._transaction():
            # The offset is read inside the write transaction that commits it: no other writer can
            # commit between reading it and using it (the run lock already keeps other scans out).
            start = self.committed_vectors()
            dims = self.dims()
            for kind, arr in arrays.items():
                if dims.setdefault(kind, arr.shape[1]) != arr.shape[1]:
                    raise RunStoreError(f"{kind} vectors have {arr.shape[1]} values, the run has {dims[kind]}")
                f = self._files.get(kind)
                if f is None:
                    f = self._files[kind] = self.layout.open_binary(self.layout.vector(kind), writable=True)
                f.seek(start * arr.shape[1] * 2)
                f.write(arr.tobytes())
                f.flush()
            if replace:
                self.db.executemany("DELETE FROM images WHERE path=?", [(to_db(r.path),) for r in rows])
            vec_rows = iter(range(start, start + len(ok)))
            self.db.executemany(
                "INSERT INTO images (path, hash, size, mtime_ns, label, split, status, reason, pred, pred_prob, "
                "label_prob, topk, vec_row, cam) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [(to_db(r.path), r.hash, r.size, r.mtime_ns, r.label, r.split, r.status, r.reason, r.pred, r.pred_prob,
                  r.label_prob, json.dumps(r.topk) if r.topk is not None else None,
                  next(vec_rows) if r.status == "ok" and vectors else None,
                  np.asarray(r.cam, dtype=np.float16).tobytes() if r.cam is not None else None) for r in rows])
            if vectors:
                self._set("vec_rows", str(start + len(ok)))
                self._set("dims", json.dumps(dims))
            if cam_shape is not None and self.meta("cam_shape") is None:
                self._set("cam_shape", json.dumps(list(cam_shape)))

    def _set(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def set_meta(self, key: str, value: str) -> None:
        with self._transaction():
            self._set(key, value)

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # ----------------------------------------------------------------- reading
    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """A consistent read: rows and the committed vector count from one point in time."""
        self.db.execute("BEGIN")
        try:
            yield
        finally:
            self.db.execute("COMMIT")

    def split_names(self) -> list[str]:
        """The split names of the scanned (ok) rows, sorted; ``""`` for rows scanned without a split."""
        return [r[0] for r in self.db.execute("SELECT DISTINCT split FROM images WHERE status='ok' ORDER BY split")]

    def count(self, status: str | None = None) -> int:
        if status is None:
            return self.db.execute("SELECT COUNT(*) FROM images").fetchone()[0]
        return self.db.execute("SELECT COUNT(*) FROM images WHERE status=?", (status,)).fetchone()[0]

    def vectors(self, kind: str, n: int | None = None) -> np.ndarray:
        """A read-only ``(n, dim)`` float16 memmap over the committed rows of one vector file."""
        if kind not in self.dims():
            raise RunStoreError(f"this run has no {kind!r} vectors (it has {sorted(self.dims())})")
        dim = self.dims()[kind]
        n = self.committed_vectors() if n is None else n
        if n == 0:
            return np.zeros((0, dim), np.float16)
        path = self.layout.vector(kind)
        have = vector_file_size(path, self.dir) // (2 * dim)
        exists = os.path.lexists(path)
        if have < n:
            raise DamagedRunError(f"{path} holds {have} vectors but the database committed {n}"
                                  + ("" if exists else " (the file is missing)"), self.dir)
        with self.layout.open_binary(path) as f:  # never a link: the map stays on the run's own file
            return np.memmap(f, dtype=np.float16, mode="r", shape=(n, dim))

    def skipped(self) -> list[tuple[str, str]]:
        """(path, reason) for every file that could not be used."""
        return [(from_db(p), r) for p, r in
                self.db.execute("SELECT path, reason FROM images WHERE status='skipped' ORDER BY path")]

    def cam(self, image_id: int) -> np.ndarray | None:
        """The stored ``(h, w)`` Grad-CAM of one image's predicted class, or None."""
        r = self.db.execute("SELECT cam FROM images WHERE id=?", (image_id,)).fetchone()
        if not r or r[0] is None:
            return None
        return decode_map(r[0], self.cam_shape())

    def version(self) -> tuple[int, int, int]:
        """Changes whenever a scan commits rows: ``(rows, largest id, committed vectors)``; cheap."""
        n, top = self.db.execute("SELECT COUNT(*), COALESCE(MAX(id), 0) FROM images").fetchone()
        return int(n), int(top), self.committed_vectors()

    def rows(self, status: str | None = None, split: str | None = None, columns: Sequence[str] = ROW_COLUMNS,
             tuples: bool = False, after_id: int = 0, limit: int | None = None) -> list[dict] | list[tuple]:
        """Stored rows in id order, optionally of one ``status`` and one ``split``, with ``id > after_id``.

        ``limit`` rows at most (read a big run in chunks: ``after_id`` = the last id of the previous
        chunk); ``columns`` may also name ``"cam"`` (the raw float16 blob, for copying rows between runs).

        ``columns`` picks from ``ROW_COLUMNS``; ``tuples=True`` gives plain tuples in that order
        (what a reader of many rows wants: no dict per row). ``topk`` stays JSON text in tuples.
        """
        bad = [c for c in columns if c not in ROW_COLUMNS + ("cam",)]
        if bad:
            raise RunStoreError(f"unknown row columns {bad}; a row has {list(ROW_COLUMNS)}")
        where, args = [], []
        if after_id:  # rows committed since a reader last looked (ids only grow)
            where.append("id > ?")
            args.append(int(after_id))
        if status is not None:
            where.append(status_term(status))
            args.append(status)
        if split is not None:
            where.append("split=?")
            args.append(split)
        q = f"SELECT {', '.join(columns)} FROM images" + (f" WHERE {' AND '.join(where)}" if where else "")
        got = self.db.execute(q + " ORDER BY id" + (f" LIMIT {int(limit)}" if limit is not None else ""),
                              args).fetchall()
        if "path" in columns:  # non-UTF-8 names come back as their bytes: to the str the file system takes
            k = list(columns).index("path")
            if bytes in set(map(type, map(itemgetter(k), got))):  # C-level pass: ~0.1 s at 1M rows
                got = [r[:k] + (from_db(r[k]),) + r[k + 1:] for r in got]
        if tuples:
            return got
        out = [dict(zip(columns, r)) for r in got]
        if "topk" in columns:
            for row in out:
                row["topk"] = parse_topk(row["topk"]) or []
        return out

    def row_codes(self, status: str = "ok", split: str | None = None, after_id: int = 0
                  ) -> tuple[np.ndarray, list[str]]:
        """``(table, split names)``: an ``(n, 5)`` int64 table of ``id, label, pred, split code, vec_row`` of
        the rows of ``status`` (and ``split``) with ``id > after_id`` in id order, the split code indexing
        the sorted ``split names``. What a reader of a whole run wants: the values go from SQLite straight
        into one array (no list of a million row tuples), splits as small integers.

        A row whose value is NULL or not a number raises ``TypeError``/``ValueError``: read those rows
        with ``rows()``, which keeps them as they are (readers then name the damage)."""
        import itertools

        where, args = [status_term(status)], [status]
        if after_id:
            where.append("id > ?")
            args.append(int(after_id))
        if split is not None:
            where.append("split=?")
            args.append(split)
        cond = " WHERE " + " AND ".join(where)
        with self._read():  # the names and the rows from one point in time
            names = [r[0] for r in self.db.execute(f"SELECT DISTINCT split FROM images{cond}", args)]
            if not all(isinstance(n, str) for n in names):
                raise ValueError("split names that are not text")
            names.sort()
            case = "CASE split " + " ".join(f"WHEN ? THEN {k}" for k in range(len(names))) + " END" if names else "0"
            cur = self.db.execute(f"SELECT id, label, pred, {case}, vec_row FROM images{cond} ORDER BY id",
                                  [*names, *args])
            flat = np.fromiter(itertools.chain.from_iterable(cur), np.int64)
        return flat.reshape(-1, 5), names

    @contextmanager
    def _read(self) -> Iterator[None]:
        """One read transaction for several queries (the caller's snapshot when one is open)."""
        if self.db.in_transaction:
            yield
        else:
            with self.snapshot():
                yield

    def count_up_to(self, max_id: int, status: str | None = "ok", split: str | None = None) -> int:
        """How many rows (of ``status``, ``split``) have ``id <= max_id``: did rows a reader saw go away?"""
        q, args = "SELECT COUNT(*) FROM images WHERE id <= ?", [int(max_id)]
        if status is not None:
            q += " AND status=?"
            args.append(status)
        if split is not None:
            q += " AND split=?"
            args.append(split)
        return int(self.db.execute(q, args).fetchone()[0])

    def ids(self, status: str | None = "ok") -> list[int]:
        """Row ids in order (of usable rows by default)."""
        return [r[0] for r in self.rows(status=status, columns=("id",), tuples=True)]

    def ids_by_path(self, status: str | None = "ok") -> np.ndarray:
        """Row ids ordered by their stored path (the run's unique key, read off its index): an order that
        depends only on which files the run holds, not on the order a scan, a resume or a merge wrote them."""
        q = "SELECT id FROM images" + (" WHERE status=?" if status is not None else "") + " ORDER BY path"
        cur = self.db.execute(q, (status,) if status is not None else ())
        return np.fromiter((r[0] for r in cur), np.int64)

    def paths(self, ids: Iterable[int], status: str | None = "ok") -> dict[int, str]:
        """id -> stored path for those of ``ids`` that exist (and have ``status``), in chunked ``IN`` queries."""
        wanted = sorted({int(i) for i in ids})
        out: dict[int, str] = {}
        if len(wanted) > 20 * _IN_CHUNK:  # most of a run: one pass over the table beats many IN lists
            keep = set(wanted)
            return {int(i): p for i, p in self.rows(status=status, columns=("id", "path"), tuples=True) if i in keep}
        for start in range(0, len(wanted), _IN_CHUNK):
            chunk = wanted[start:start + _IN_CHUNK]
            q = f"SELECT id, path FROM images WHERE id IN ({','.join('?' * len(chunk))})"
            args: list = list(chunk)
            if status is not None:  # never through the status index: the ids are the selective term
                q += " AND +status=?"
                args.append(status)
            out.update((int(i), from_db(p)) for i, p in self.db.execute(q, args))
        return out

    def confusion_counts(self) -> list[tuple[int, int, int]]:
        """``(label, pred, count)`` of the usable rows: a ``GROUP BY`` read off the covering index."""
        return self.db.execute("SELECT label, pred, COUNT(*) FROM images WHERE status='ok' "
                               "GROUP BY label, pred").fetchall()

    def image(self, image_id: int, cam: bool = False) -> dict | None:
        """One stored row as a dict, or None for an unknown id.

        ``cam=True`` adds ``row["cam"]``, the scan's ``(h, w)`` Grad-CAM or None, from the same lookup.
        """
        keys = ("id", "path", "label", "split", "status", "reason", "pred", "pred_prob", "label_prob", "topk", "vec_row")
        r = self.db.execute(f"SELECT {', '.join(keys)}{', cam' if cam else ''} FROM images WHERE id=?",
                            (int(image_id),)).fetchone()
        if r is None:
            return None
        row = dict(zip(keys, r))
        row["path"] = from_db(row["path"])  # non-UTF-8 names are stored as their bytes
        # A damaged value (``mikata check`` names it) reads as missing and is listed in row["damaged"],
        # so a page shows "damaged" where a number would be instead of failing.
        damaged = []
        topk = parse_topk(row["topk"])
        if topk is None and row["status"] == "ok":
            damaged.append("top-k")
        row["topk"] = topk or []
        for key in ("pred_prob", "label_prob"):
            value = as_probability(row[key])
            if value is None and row["status"] == "ok" and (key == "pred_prob" or row["label"] is not None):
                damaged.append(key.replace("_", " "))
            row[key] = value
        for key in ("label", "pred"):
            if row[key] is not None and (not isinstance(row[key], int) or isinstance(row[key], bool)):
                row[key] = None
            if row[key] is None and row["status"] == "ok" and key == "pred":
                damaged.append("prediction")
        if cam:
            blob = r[len(keys)]
            row["cam"] = None if blob is None else decode_map(blob, self.cam_shape())
            if blob is not None and row["cam"] is None:
                damaged.append("Grad-CAM")
        row["damaged"] = damaged
        return row

    # ------------------------------------------------------------- annotations
    def get_map(self, image_id: int, method: str, cls: int, layer: str = "") -> np.ndarray | None:
        """A cached ``(H, W)`` float32 attribution map, or None."""
        try:
            r = self.db.execute("SELECT height, width, map FROM maps WHERE image_id=? AND method=? AND class=? "
                                "AND layer=?", (int(image_id), method, int(cls), layer)).fetchone()
        except sqlite3.OperationalError:  # a run made before maps were cached, opened read-only
            return None
        if r is None:
            return None
        return decode_map(r[2], (r[0], r[1]))  # a damaged entry reads as a miss: computed again

    def put_map(self, image_id: int, method: str, cls: int, layer: str, m: np.ndarray, seconds: float) -> None:
        """Cache one ``(H, W)`` map (stored as float16)."""
        self.put_maps([(image_id, method, cls, layer, m, seconds)])

    def put_maps(self, items: Iterable[tuple[int, str, int, str, np.ndarray, float]]) -> None:
        """Cache many ``(image id, method, class, layer, (H, W) map, seconds)`` in one transaction."""
        self._require_annotations()
        values = []
        for image_id, method, cls, layer, m, seconds in items:
            m16 = as_cached_map(m)  # (H, W) float16
            values.append((int(image_id), method, int(cls), layer, m16.shape[0], m16.shape[1], m16.tobytes(),
                           float(seconds)))
        with self._transaction():
            self.db.executemany("INSERT OR REPLACE INTO maps VALUES (?,?,?,?,?,?,?,?)", values)

    def map_seconds(self, method: str, limit: int = 200) -> list[float]:
        """How long cached maps of ``method`` took to compute, in seconds (up to ``limit``, the
        latest rows first): what the app's "about N s" for the next one is based on."""
        if not self._has_table("maps"):
            return []
        rows = self.db.execute("SELECT seconds FROM maps WHERE method=? AND seconds > 0 ORDER BY rowid DESC LIMIT ?",
                               (method, int(limit))).fetchall()
        return [float(r[0]) for r in rows]

    def map_keys(self, image_id: int) -> list[tuple[str, int, str]]:
        """``(method, class, layer)`` of every cached map of one image."""
        if not self._has_table("maps"):
            return []
        return self.db.execute("SELECT method, class, layer FROM maps WHERE image_id=? ORDER BY method, class, layer",
                               (int(image_id),)).fetchall()

    def set_review(self, image_id: int, verdict: str | None, suggested: int | None = None) -> None:
        """Record whether a person found the stored label ``wrong`` or ``fine``; ``None`` clears it.

        Only a "wrong" verdict keeps ``suggested``: "fine" means the given label stands, so a class
        proposed before (by the audit or the page's menu) is dropped rather than exported against it."""
        self._require_annotations()
        if verdict != "wrong":
            suggested = None
        if verdict is not None and verdict not in REVIEW_VERDICTS:
            raise RunStoreError(f"review verdict must be one of {REVIEW_VERDICTS}, not {verdict!r}")
        if self.image(image_id) is None:
            raise RunStoreError(f"no image with id {image_id} in this run")
        try:
            with self._transaction():
                if verdict is None:
                    self.db.execute("DELETE FROM reviews WHERE image_id=?", (int(image_id),))
                else:
                    self.db.execute("INSERT OR REPLACE INTO reviews VALUES (?,?,?,?)",
                                    (int(image_id), verdict, suggested,
                                     time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())))
        except sqlite3.OperationalError as e:
            # a read-only mount that SQLite opened (its -wal/-shm files were there) refuses only at the write
            if "readonly" not in str(e) and "read-only" not in str(e):
                raise
            self.read_only_media = True
            self._require_annotations()

    def reviews(self) -> list[dict]:
        """Every review with its image's path and labels, oldest id first."""
        if not self._has_table("reviews"):
            return []
        rows = self.db.execute("SELECT r.image_id, i.path, i.label, i.pred, r.verdict, r.suggested, r.updated "
                               "FROM reviews r JOIN images i ON i.id = r.image_id ORDER BY r.image_id").fetchall()
        keys = ("id", "path", "label", "pred", "verdict", "suggested", "updated")
        return [dict(zip(keys, r), path=from_db(r[1])) for r in rows]

    def review(self, image_id: int) -> dict | None:
        """One image's review (keys as in ``reviews()``), or None: one indexed lookup, not every review."""
        if not self._has_table("reviews"):
            return None
        r = self.db.execute("SELECT r.image_id, i.path, i.label, i.pred, r.verdict, r.suggested, r.updated "
                            "FROM reviews r JOIN images i ON i.id = r.image_id WHERE r.image_id=?",
                            (int(image_id),)).fetchone()
        if r is None:
            return None
        return dict(zip(("id", "path", "label", "pred", "verdict", "suggested", "updated"), r), path=from_db(r[1]))

    def set_concept_review(self, concept: str, verdict: str | None) -> None:
        """Record whether a person judged a concept (``"CLASS/k"``) to be the ``object`` or an ``artefact``
        (a shortcut); ``None`` clears it. Kept beside the label reviews, in the same annotation tables."""
        self._require_annotations()
        if verdict is not None and verdict not in CONCEPT_VERDICTS:
            raise RunStoreError(f"concept verdict must be one of {CONCEPT_VERDICTS}, not {verdict!r}")
        with self._transaction():
            if verdict is None:
                self.db.execute("DELETE FROM concept_reviews WHERE concept=?", (str(concept),))
            else:
                self.db.execute("INSERT OR REPLACE INTO concept_reviews VALUES (?,?,?)",
                                (str(concept), verdict, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())))

    def concept_reviews(self) -> dict[str, dict]:
        """``{concept: {"verdict", "updated"}}`` for every reviewed concept."""
        if not self._has_table("concept_reviews"):
            return {}
        return {c: {"verdict": v, "updated": u}
                for c, v, u in self.db.execute("SELECT concept, verdict, updated FROM concept_reviews ORDER BY concept")}

    # ------------------------------------------------------------ per-image fields (manifest columns)
    def set_fields(self, names: Sequence[str], values: Iterable[tuple[str, str, str]]) -> None:
        """Store manifest columns: ``names`` in the manifest's order, ``(path, name, value)`` triples.

        Writer only (the scan); values replace those of earlier scans of the same paths."""
        if self.readonly:
            raise RunStoreError("fields are written by the scan (RunStore.create_or_resume), not by a reader")
        self.db.executescript(FIELDS_SCHEMA)
        known = [n for n in json.loads(self.meta("fields", "[]")) if n not in names]
        with self._transaction():
            self.db.executemany("INSERT OR REPLACE INTO fields (path, name, value) VALUES (?,?,?)",
                                ((to_db(p), str(n), str(v)) for p, n, v in values))
            self._set("fields", json.dumps(known + list(names)))

    def field_names(self) -> list[str]:
        """The manifest columns stored for this run's images (none for a folder dataset or an old run)."""
        try:
            names = json.loads(self.meta("fields", "[]"))
        except ValueError:
            raise DamagedRunError(f"{self.dir / 'run.sqlite'}: the meta value 'fields' is not a JSON list",
                                  self.dir) from None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DamagedRunError(f"{self.dir / 'run.sqlite'}: the meta value 'fields' is not a list of names",
                                  self.dir)
        return names if self._has_table("fields") else []

    def field_values(self, name: str) -> dict[int, str]:
        """Row id -> value of one field, for the ok rows that have it (one indexed join)."""
        if not self._has_table("fields"):
            return {}
        return dict(self.db.execute("SELECT i.id, f.value FROM fields f JOIN images i ON i.path = f.path "
                                    "WHERE f.name=? AND i.status='ok'", (name,)).fetchall())

    def field_rows(self) -> list[tuple[str, str, str]]:
        """Every stored ``(path, field, value)`` (for ``mikata merge`` to carry a shard's fields over)."""
        if not self._has_table("fields"):
            return []
        return [(from_db(p), n, v) for p, n, v in self.db.execute("SELECT path, name, value FROM fields")]

    def _annotation_tables(self) -> None:
        """Create the maps/reviews tables if missing; on a read-only run, carry on without them.

        A viewer of a read-only run still computes maps (they are just not cached) and is told
        clearly that reviews cannot be saved (``_require_annotations``).
        """
        if self.read_only_media:
            self.annotate = False
            return
        try:
            self.db.executescript(ANNOTATION_SCHEMA)
            # maps are a cache and reviews are small: in WAL mode NORMAL never corrupts the database,
            # and it spares a viewer an fsync per cached map (~10 ms each on this machine)
            self.db.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.OperationalError as e:
            if self.readonly and ("readonly" in str(e) or "read-only" in str(e) or "unable to open" in str(e)):
                self.read_only_media, self.annotate = True, False
                log.info("%s is read-only: maps are computed but not cached, reviews cannot be saved", self.dir)
            else:
                raise

    # ------------------------------------------------------------- integrity (``mikata check``)
    def quick_check(self) -> list[str]:
        """SQLite's own ``PRAGMA quick_check``: ``["ok"]`` for an intact database, else the damage found."""
        return [r[0] for r in self.db.execute("PRAGMA quick_check").fetchall()]

    def data_version(self) -> int:
        """SQLite's ``PRAGMA data_version``: changes when another connection commits (microseconds to ask)."""
        return int(self.db.execute("PRAGMA data_version").fetchone()[0])

    def vector_row_problems(self, committed: int) -> tuple[int, int]:
        """``(rows pointing outside the committed vectors, rows sharing another row's vector)``."""
        bad = self.db.execute("SELECT COUNT(*) FROM images WHERE status='ok' AND (vec_row IS NULL OR vec_row < 0 "
                              "OR vec_row >= ?)", (committed,)).fetchone()[0]
        dup = self.db.execute("SELECT COUNT(*) - COUNT(DISTINCT vec_row) FROM images WHERE vec_row IS NOT NULL"
                              ).fetchone()[0]
        return int(bad), int(dup)

    def damaged_map_count(self) -> int:
        """How many cached maps are not finite float16 maps of their stated height and width."""
        if not self._has_table("maps"):
            return 0
        bad = 0
        for h, w, blob in self.db.execute("SELECT height, width, map FROM maps"):
            if decode_map(blob, (h, w)) is None:
                bad += 1
        return bad

    def class_id_range(self) -> tuple[int | None, int | None]:
        """``(largest, smallest)`` class id used by any row's label or prediction (``None`` for an empty run)."""
        hi, lo = self.db.execute("SELECT MAX(MAX(COALESCE(label, -1)), MAX(COALESCE(pred, -1))), "
                                 "MIN(MIN(COALESCE(label, 0)), MIN(COALESCE(pred, 0))) FROM images").fetchone()
        return hi, lo

    def file_records(self) -> Iterator[tuple[object, int, int, str | None]]:
        """``(stored path, size, mtime_ns, sha1)`` of every scanned row; paths as stored (``data.filenames.from_db``)."""
        yield from self.db.execute("SELECT path, size, mtime_ns, hash FROM images WHERE status='ok'")

    def _has_table(self, name: str) -> bool:
        return self.db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone() is not None

    def _require_annotations(self) -> None:
        if self.read_only_media:
            raise ReadOnlyRunError(f"{self.dir} is read-only: maps cannot be cached and reviews cannot be saved "
                                   "here; copy the run directory somewhere writable to record reviews")
        if not self.annotate:
            raise RunStoreError("open the run with RunStore.open(run, annotate=True) to store maps or reviews")


def status_term(status: str) -> str:
    """The SQL filter on a row's status for a query that reads rows in id order.

    Without ``ANALYZE`` statistics SQLite takes any index on an equality term to be selective, so
    ``status='ok'`` would walk the ``images_confusion`` index and then sort every row by id (or fetch
    each row through the index): ~1 s at 1M rows where a plain pass in id order takes a fraction of
    it. ``ok`` is nearly every row, so its term is written ``+status`` (SQLite then uses no index for
    it); other statuses are few and keep the index."""
    return "+status=?" if status == "ok" else "status=?"


def _refuse_newer_format(layout: RunLayout) -> None:
    """``RunFormatError`` if the manifest names a format this mikata does not read (a damaged manifest is
    left to ``validate``, which says so in its own words)."""
    from mikata.runs.format import format_version

    try:
        raw = _parse_manifest(layout)
    except DamagedRunError:
        return
    format_version(raw, layout.manifest)


def _parse_manifest(layout: RunLayout) -> dict:
    """``manifest.json`` parsed (never through a link), or ``DamagedRunError``; not yet migrated."""
    path = layout.manifest
    try:
        m = json.loads(layout.read_text(path))
    except (OSError, ValueError, RecursionError) as e:
        raise DamagedRunError(f"{path} cannot be read as JSON ({e})", layout.dir) from e
    if not isinstance(m, dict) or not isinstance(m.get("identity"), dict):
        raise DamagedRunError(f"{path} has no 'identity' object", layout.dir)
    return m


def as_cached_map(m: np.ndarray) -> np.ndarray:
    """A map as the cache stores it: float16, clipped to its range. ``(H, W)``."""
    return np.clip(np.asarray(m, dtype=np.float32), -65504, 65504).astype(np.float16)


def decode_map(blob: object, shape: Sequence[int] | None) -> np.ndarray | None:
    """A stored float16 map blob as a float32 ``(h, w)`` array; None when the blob is not ``h * w`` float16
    values or holds NaN/inf (damage that ``mikata check`` names; readers then compute the map again)."""
    if not isinstance(blob, bytes) or shape is None or len(shape) != 2:
        return None
    h, w = shape
    if not all(isinstance(v, int) and 0 < v <= 1 << 15 for v in (h, w)) or len(blob) != 2 * h * w:
        return None
    m = np.frombuffer(blob, dtype=np.float16).reshape(h, w).astype(np.float32)
    return m if np.isfinite(m).all() else None


def parse_topk(text: object) -> list[list] | None:
    """A row's stored top-k (JSON ``[[class id, probability], ...]``); ``[]`` for none stored, None when it
    is not that (damaged).

    Example:
        >>> parse_topk("[[3, 0.9], [1, 0.05]]"), parse_topk(None), parse_topk("{oops")
        ([[3, 0.9], [1, 0.05]], [], None)
    """
    if text is None or text == "":
        return []
    if not isinstance(text, str) or len(text) > 100_000:
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, list):
        return None
    for item in value:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], int)
                and not isinstance(item[0], bool) and item[0] >= 0 and as_probability(item[1]) is not None):
            return None
    return value


def as_probability(value: object) -> float | None:
    """``value`` as a float in [0, 1], or None when it is missing, not a number, NaN/inf or out of range."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    v = float(value)
    return v if 0.0 <= v <= 1.0 else None


def vector_file_size(path: Path, run_dir: Path) -> int:
    """The size of a run's vector file (0 when absent); ``UnsafeRunFileError`` for a link, ``DamagedRunError``
    when it is not a regular file."""
    import stat

    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return 0
    if stat.S_ISLNK(st.st_mode):  # never followed: a link here would read (or, resumed, truncate) its target
        raise refuse(path, st.st_mode)
    if not stat.S_ISREG(st.st_mode):
        raise DamagedRunError(f"{path} is not a regular file ({_file_kind(st.st_mode)})", run_dir)
    return st.st_size


def _file_kind(mode: int) -> str:
    import stat

    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a plain file"
