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

from mikata.analysis.layout import RunLayout, UnsafeRunFileError
from mikata.analysis.run_format import RunFormatError, migrate_manifest
from mikata.analysis.runstore import DamagedRunError, RunStore, RunStoreError
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


def check_run(run_dir: str | os.PathLike, hashes: bool = False) -> CheckReport:
    """Check everything in ``run_dir`` that can be checked without the model; see the module doc."""
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
    try:  # an older run is checked as the current format it migrates to (analysis.run_format)
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
            size = p.stat().st_size if store.layout.check_file(p) else None
        except UnsafeRunFileError as e:
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
    if classes is not None:
        report.checked.append("class ids against the manifest's classes")
        hi = store.class_id_range()
        if hi[0] is not None and (hi[0] >= len(classes) or hi[1] < 0):
            add(Problem(f"rows use class ids up to {hi[0]} but the manifest lists {len(classes)} classes", RESCAN))
        if "probs" in dims and dims["probs"] != len(classes):
            add(Problem(f"probability vectors have {dims['probs']} values for {len(classes)} classes", RESCAN))


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
