"""``check_run``: is a run directory intact, and if not, what exactly is wrong and what to do.

A run is a manifest, a SQLite database and float16 vector files that must agree with each other
(see ``runstore``). This checks each part and each agreement, from the cheapest to the dearest,
and never stops at the first problem: manifest fields, SQLite's own ``quick_check``, the meta
values, each vector file's length against the committed count, every row's vector row (in range,
used once), class ids against the manifest's classes, and the image files (present, same size and
modification time; with ``hashes=True`` also the same sha1).

Example:
    >>> report = check_run("runs/digits")                      # doctest: +SKIP
    >>> report.ok, [p.what for p in report.problems]           # doctest: +SKIP
    (True, [])
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass, field

import numpy as np

from mikata.runs.layout import RunLayout, UnsafeRunFileError
from mikata.runs.format import RunFormatError, migrate_manifest
from mikata.runs.store import DamagedRunError, RunStore, RunStoreError, decode_map, parse_topk, vector_file_size
from mikata.data.filenames import from_db, shown
from mikata.data.files import UnreadableFileError, file_digest
from mikata.data.paths import servable_root
from mikata.data.preprocessing import FIELDS as PREPROCESSING_FIELDS, RESIZE_MODES


@dataclass
class Problem:
    """One finding: ``severity`` is "damaged" (results wrong or unreadable) or "stale" (files changed since)."""

    what: str
    todo: str
    severity: str = "damaged"

    def to_dict(self) -> dict:
        return {"severity": self.severity, "what": self.what, "todo": self.todo}


@dataclass
class CheckReport:
    run_dir: str
    rows: int = 0
    ok_rows: int = 0
    committed_vectors: int = 0
    checked: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {"run": self.run_dir, "ok": self.ok, "rows": self.rows, "ok_rows": self.ok_rows,
                "committed_vectors": self.committed_vectors, "checked": self.checked,
                "problems": [p.to_dict() for p in self.problems]}

    def format(self) -> str:
        lines = [f"{self.run_dir}: {self.rows} rows ({self.ok_rows} scanned), {self.committed_vectors} vector rows"]
        lines += [f"  checked: {c}" for c in self.checked]
        if self.ok:
            lines.append("intact: no problems found")
        for p in self.problems:
            lines.append(f"  {p.severity}: {p.what} -> {p.todo}")
        return "\n".join(lines)


RESCAN = "scan again into a new --run directory (or restore the run from a copy)"


def check_run(run_dir: str | os.PathLike, hashes: bool = False, files: bool = True) -> CheckReport:
    """Check everything in ``run_dir`` that can be checked without the model; see the module doc.
    ``files=False`` leaves out the image files (what ``merge`` checks of a shard: only the run itself)."""
    layout = RunLayout(run_dir)
    run = layout.dir
    report = CheckReport(str(run))
    add = report.problems.append
    try:
        layout.check_database()
    except UnsafeRunFileError as e:
        add(Problem(str(e).split(";")[0], "remove it, or restore the run from a copy"))
        return report
    if not layout.database.is_file():
        add(Problem(f"{run} has no run.sqlite", "give the directory that `mikata scan --run` made"))
        return report
    classes = _check_manifest(layout, report)
    try:
        store = RunStore.open(run, validate=False)  # every problem is listed below, not just the first
    except DamagedRunError as e:
        add(Problem(str(e).split(";")[0], RESCAN))
        return report
    try:
        _check_database(store, report, classes)
        if files:
            _check_files(store, report, hashes)
    except (sqlite3.DatabaseError, RunStoreError) as e:
        add(Problem(f"reading run.sqlite failed: {str(e).split(';')[0]}", RESCAN))
    except UnsafeRunFileError as e:
        add(Problem(str(e).split(";")[0], "remove it, or restore the run from a copy"))
    finally:
        store.close()
    return report


def _check_manifest(layout: RunLayout, report: CheckReport) -> list[str] | None:
    path = layout.manifest
    report.checked.append("manifest.json")
    try:
        m = json.loads(layout.read_text(path))
    except UnsafeRunFileError as e:
        report.problems.append(Problem(str(e).split(";")[0], "remove it, or restore the run from a copy"))
        return None
    except (OSError, ValueError, RecursionError) as e:
        report.problems.append(Problem(f"{path} is not readable JSON ({e})", RESCAN))
        return None
    ident = m.get("identity") if isinstance(m, dict) else None
    if not isinstance(ident, dict):
        report.problems.append(Problem(f"{path} has no 'identity' object", RESCAN))
        return None
    try:  # an older run is checked as the current format it migrates to (runs.format)
        migrated = migrate_manifest(m, path)
    except RunFormatError as e:
        report.problems.append(Problem(str(e).split(";")[0], str(e).split("; ", 1)[-1]))
        return None
    ident = migrated["identity"]
    report.checked.append("data roots (the folders images are served from)")
    refused = [r for r in migrated["data_roots"] if servable_root(r) is None]
    if refused:
        report.problems.append(Problem(
            f"{path}: data_roots {refused[:3]} may not serve images (missing, too broad, a home or a system "
            "folder): the app and the report show no images from there",
            "scan from a folder or manifest inside the data's own folder", "stale"))
    missing = [k for k in ("model_spec", "weights_sha1", "classes", *PREPROCESSING_FIELDS) if k not in ident]
    if missing:
        report.problems.append(Problem(f"{path}: identity lacks {missing}", RESCAN))
    if ident.get("resize") not in RESIZE_MODES:
        report.problems.append(Problem(f"{path}: identity.resize is {ident.get('resize')!r}, not one of "
                                       f"{list(RESIZE_MODES)}", RESCAN))
    classes = ident.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        report.problems.append(Problem(f"{path}: identity.classes is not a list of class names", RESCAN))
        return None
    return classes


def _check_database(store: RunStore, report: CheckReport, classes: list[str] | None) -> None:
    add = report.problems.append
    report.checked.append("run.sqlite (quick_check)")
    verdict = store.quick_check()
    if verdict != ["ok"]:
        add(Problem(f"SQLite reports damage in run.sqlite: {'; '.join(verdict[:3])}", RESCAN))
        return
    try:
        n, dims = store.committed_vectors(), store.dims()
    except DamagedRunError as e:
        add(Problem(str(e).split(";")[0], RESCAN))
        return
    report.committed_vectors = n
    report.rows, report.ok_rows = store.count(), store.count("ok")
    report.checked.append("vector files against the committed count")
    for kind in sorted(dims):
        p = store.layout.vector(kind)
        try:
            size = vector_file_size(p, store.dir) if os.path.lexists(p) else None
        except (DamagedRunError, UnsafeRunFileError) as e:
            add(Problem(str(e).split(";")[0], RESCAN))
            continue
        want = n * dims[kind] * 2
        if size is None:
            add(Problem(f"{p.name} is missing ({n} vector rows committed)", RESCAN))
        elif size < want:
            add(Problem(f"{p.name} holds {size // (2 * dims[kind])} vectors, {n} are committed (the file was "
                        "truncated or replaced)", RESCAN))
        elif size > want:
            add(Problem(f"{p.name} has {(size - want) // (2 * dims[kind])} uncommitted vectors after the committed "
                        f"{n} (a scan was interrupted)", "nothing to do: the next scan into this run drops them",
                        "stale"))
    report.checked.append("each row's vector row")
    if dims:
        bad, dup = store.vector_row_problems(n)
        if bad:
            add(Problem(f"{bad} scanned rows point outside the {n} committed vectors", RESCAN))
        if dup:
            add(Problem(f"{dup} rows share another row's vector (two writers interleaved?)", RESCAN))
    _check_values(store, report, n, dims, classes)
    if classes is not None:
        report.checked.append("class ids against the manifest's classes")
        hi = store.class_id_range()
        if hi[0] is not None and (hi[0] >= len(classes) or hi[1] < 0):
            add(Problem(f"rows use class ids up to {hi[0]} but the manifest lists {len(classes)} classes", RESCAN))
        if "probs" in dims and dims["probs"] != len(classes):
            add(Problem(f"probability vectors have {dims['probs']} values for {len(classes)} classes", RESCAN))


def _check_values(store: RunStore, report: CheckReport, n: int, dims: dict[str, int],
                  classes: list[str] | None) -> None:
    """The stored numbers themselves: predictions and probabilities of scanned rows, top-k lists, Grad-CAMs
    and cached maps, and the committed vectors (no NaN/inf; probabilities in [0, 1] summing to 1)."""
    add = report.problems.append
    report.checked.append("stored predictions, probabilities, top-k, Grad-CAMs and cached maps")
    k = len(classes) if classes is not None else None
    for what, count in value_problems(store, k).items():
        add(Problem(f"{count} {what}", RESCAN))
    maps = store.damaged_map_count()
    if maps:
        add(Problem(f"{maps} cached attribution maps are not finite maps of their stated size",
                    "nothing is lost: the app and the report ignore them and compute those maps again", "stale"))
    report.checked.append("committed vectors (finite; probabilities sum to 1)")
    for kind in sorted(dims):
        p = store.layout.vector(kind)
        try:
            if not os.path.lexists(p) or vector_file_size(p, store.dir) < n * dims[kind] * 2:
                continue  # named above
        except (DamagedRunError, UnsafeRunFileError):
            continue
        bad, off = _vector_problems(store.vectors(kind, n), kind == "probs")
        if bad:
            add(Problem(f"{bad} of the {n} {kind} vectors hold NaN or inf", RESCAN))
        if off:
            add(Problem(f"{off} of the {n} probability vectors are not probabilities (a value outside [0, 1], or a "
                        "sum other than 1)", RESCAN))


def value_problems(store: RunStore, classes: int | None) -> dict[str, int]:
    """What is wrong with the stored values of the scanned rows: description -> number of rows."""
    found: dict[str, int] = {}
    for col, what in (("pred", "prediction"), ("label", "label")):
        bad = store.db.execute(f"SELECT COUNT(*) FROM images WHERE status='ok' AND ({col} IS NULL OR "
                               f"typeof({col}) != 'integer')").fetchone()[0]
        if bad:
            found[f"scanned rows have no {what} ({col} is missing or not a class id)"] = int(bad)
    for col, extra in (("pred_prob", ""), ("label_prob", " AND label IS NOT NULL")):
        bad = store.db.execute(
            f"SELECT COUNT(*) FROM images WHERE status='ok'{extra} AND ({col} IS NULL OR typeof({col}) NOT IN "
            f"('real', 'integer') OR {col} < 0 OR {col} > 1)").fetchone()[0]
        if bad:
            found[f"scanned rows have a {col.replace('_', ' ')}ability that is missing, not a number, NaN/inf or "
                  "outside [0, 1]"] = int(bad)
    topk = cams = 0
    shape = _cam_shape(store)
    last = 0
    while True:
        chunk = store.db.execute("SELECT id, topk, cam FROM images WHERE status='ok' AND id > ? ORDER BY id LIMIT 5000",
                                 (last,)).fetchall()
        if not chunk:
            break
        last = chunk[-1][0]
        for _, text, cam in chunk:
            parsed = parse_topk(text)
            if text is None or parsed is None or (classes is not None and any(c >= classes for c, _ in parsed)):
                topk += 1
            if cam is not None and decode_map(cam, shape) is None:
                cams += 1
    if topk:
        found["scanned rows have a top-k list that is not [[class id, probability], ...] (garbage, NaN or null "
              "values)"] = topk
    if cams:
        found["stored Grad-CAMs are not finite maps of the run's Grad-CAM size (garbage bytes, NaN or inf)"] = cams
    return found


def _cam_shape(store: RunStore) -> tuple[int, int] | None:
    try:
        shape = store.cam_shape()
    except (ValueError, TypeError, RecursionError):
        return None
    return tuple(shape) if isinstance(shape, (list, tuple)) else None  # type: ignore[return-value]


def _vector_problems(vectors: np.ndarray, probabilities: bool) -> tuple[int, int]:
    """``(rows with NaN/inf, probability rows outside [0, 1] or not summing to 1)``, read in chunks."""
    bad = off = 0
    for start in range(0, len(vectors), 65536):
        v = np.asarray(vectors[start:start + 65536], dtype=np.float32)  # (B, dim)
        finite = np.isfinite(v).all(axis=1)
        bad += int((~finite).sum())
        if probabilities:
            v = v[finite]
            # float16 storage: each value is off by up to ~5e-4, so the sum of a row by a few thousandths
            wrong = (v < -1e-3).any(axis=1) | (v > 1 + 1e-3).any(axis=1) | (np.abs(v.sum(axis=1) - 1) > 0.02)
            off += int(wrong.sum())
    return bad, off


def _check_files(store: RunStore, report: CheckReport, hashes: bool) -> None:
    report.checked.append("image files (size, mtime" + (", sha1)" if hashes else ")"))
    gone, changed = [], []
    for p, size, mtime, digest in store.file_records():
        path = from_db(p)
        try:
            st = os.stat(path)
        except OSError:
            gone.append(path)
            continue
        if (st.st_size, st.st_mtime_ns) != (size, mtime):
            if not hashes or _sha1(path) != digest:
                changed.append(path)
        elif hashes and _sha1(path) != digest:
            changed.append(path)
    if gone:
        report.problems.append(Problem(f"{len(gone)} scanned image files are gone (e.g. {shown(gone[0])})",
                                       "restore them, or ignore: their rows stay valid", "stale"))
    if changed:
        report.problems.append(Problem(f"{len(changed)} image files changed since the scan (e.g. {shown(changed[0])})",
                                       "scan again into this run: changed files are recomputed", "stale"))


def _sha1(path: str) -> str | None:
    """The file's sha1, or None when it is no longer a readable regular file (a FIFO, a device, a
    directory, too large): then it is "changed", never a hang or a traceback."""
    try:
        return file_digest(path)[0]
    except UnreadableFileError:
        return None
