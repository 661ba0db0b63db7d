"""``RunLayout``: the name of every file in a run directory, and the only way to open them.

A run directory is data someone may hand you. Any name inside it may have been replaced by a
symbolic link (``report.html`` -> ``~/thesis.tex``) or by something that is not a file (a FIFO, a
directory). So mikata never follows a link inside a run:

- a file (``writer.lock``, ``run.sqlite``, ``manifest.json``, the vector files, ``report.html``,
  ``export.*``) is opened with ``O_NOFOLLOW`` on its last component and must be a regular file;
  an output is written to a temporary file beside it and renamed over it, so even a link planted
  between the check and the write is replaced, never written through;
- a folder (``featurevis/``, ``evaluate/``, ``units/``, ``cache/``) counts only if it is a real
  folder (not a link) whose resolved path stays inside the run; readers treat any other as absent,
  writers refuse it.

Refusals are ``UnsafeRunFileError``: one line naming the file and what to do.

Example:
    >>> lay = RunLayout("runs/fashion")                      # doctest: +SKIP
    >>> lay.vector("embed"), lay.report                       # doctest: +SKIP
    (PosixPath('.../runs/fashion/embed.f16'), PosixPath('.../runs/fashion/report.html'))
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from mikata.errors import MikataError

MANIFEST = "manifest.json"
DATABASE = "run.sqlite"
DATABASE_SIDE_FILES = ("run.sqlite-wal", "run.sqlite-shm", "run.sqlite-journal")
LOCK = "writer.lock"
REPORT = "report.html"
EXPORT_STEM = "export"            # export.parquet / export.csv / export.json
VECTOR_SUFFIX = ".f16"            # probs.f16, embed.f16, channels.f16, stats.f16, thumbs.f16
FEATUREVIS = "featurevis"         # mikata visualize --out RUN/featurevis/NAME; the demo's class images
EVALUATE = "evaluate"             # mikata evaluate RUN: scorecard.json, figures, parts/
SCORECARD = "scorecard.json"
PARTS = "parts"                   # evaluate/parts: finished pieces of an evaluation, for resuming
UNITS = "units"                   # mikata units: units.json and its PNGs
UNITS_CARD = "units.json"
CACHE = "cache"                   # overview, issues and comparison caches (rebuilt when absent)
CONCEPTS = "concepts"             # mikata concepts: atlas.json and its arrays
CONCEPT_ATLAS = "atlas.json"
CROSSVAL = "crossval.json"        # a cross-validation work folder's plan
CALIBRATION = "calibration.json"  # mikata calibrate: the fitted temperature (optional; absent = none)


class UnsafeRunFileError(MikataError):
    """A name inside a run directory that mikata will not open: a symbolic link, or not a regular file."""


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def refuse(path: Path, mode: int, todo: str = "") -> UnsafeRunFileError:
    """The one-line refusal for ``path`` (of ``lstat`` mode ``mode``)."""
    what = _kind(mode)
    target = ""
    if stat.S_ISLNK(mode):
        try:
            target = f" (to {os.readlink(path)})"
        except OSError:
            pass
    return UnsafeRunFileError(f"{path} is {what}{target}; mikata never follows or writes through such a name "
                              f"inside a run: {todo or 'remove it (or restore the run from a copy)'}")


class RunLayout:
    """Where each file of the run directory ``run_dir`` lives, and safe ways to open them."""

    def __init__(self, run_dir: str | os.PathLike):
        self.dir = Path(run_dir).expanduser().resolve()  # the run directory itself may be a link: the user's choice

    # ---------------------------------------------------------------- names
    @property
    def manifest(self) -> Path:
        return self.dir / MANIFEST

    @property
    def database(self) -> Path:
        return self.dir / DATABASE

    @property
    def lock(self) -> Path:
        return self.dir / LOCK

    @property
    def report(self) -> Path:
        return self.dir / REPORT

    def export(self, fmt: str) -> Path:
        return self.dir / f"{EXPORT_STEM}.{fmt}"

    def vector(self, kind: str) -> Path:
        if not kind.isidentifier():  # a kind read from the database names a file: keep it a plain name
            raise UnsafeRunFileError(f"{self.database}: vector kind {kind[:40]!r} is not a plain name; "
                                     "scan again into a new --run directory")
        return self.dir / f"{kind}{VECTOR_SUFFIX}"

    @property
    def featurevis(self) -> Path:
        return self.dir / FEATUREVIS

    @property
    def evaluate(self) -> Path:
        return self.dir / EVALUATE

    @property
    def scorecard(self) -> Path:
        return self.evaluate / SCORECARD

    @property
    def evaluate_parts(self) -> Path:
        return self.evaluate / PARTS

    @property
    def units(self) -> Path:
        return self.dir / UNITS

    @property
    def units_card(self) -> Path:
        return self.units / UNITS_CARD

    @property
    def cache(self) -> Path:
        return self.dir / CACHE

    @property
    def calibration(self) -> Path:
        return self.dir / CALIBRATION

    # ---------------------------------------------------------------- checks
    def check_file(self, path: Path, todo: str = "") -> bool:
        """True if ``path`` is a regular file, False if it does not exist; refuses links and anything else."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return False
        if not stat.S_ISREG(st.st_mode):
            raise refuse(path, st.st_mode, todo)
        return True

    def check_database(self) -> None:
        """``run.sqlite`` and SQLite's side files must not be links (SQLite itself follows them)."""
        for name in (DATABASE, *DATABASE_SIDE_FILES):
            self.check_file(self.dir / name)

    def folder(self, name_or_path: str | os.PathLike) -> Path | None:
        """A folder of the run for reading: the path if it is a real folder inside the run, else None.

        A link, or a folder that resolves outside the run, is treated as absent (readers show nothing)."""
        path = self.dir / name_or_path
        try:
            rel = path.relative_to(self.dir)
        except ValueError:
            return None
        if ".." in rel.parts:
            return None
        cur = self.dir
        for part in rel.parts:  # every component a real directory, none a link
            cur = cur / part
            try:
                st = os.lstat(cur)
            except OSError:
                return None
            if not stat.S_ISDIR(st.st_mode):
                return None
        real = os.path.realpath(path)
        return path if os.path.commonpath([str(self.dir), real]) == str(self.dir) else None

    def writable_folder(self, name_or_path: str | os.PathLike) -> Path:
        """A folder of the run for writing, created if absent; refuses a link or anything not a folder."""
        path = self.dir / name_or_path
        rel = path.relative_to(self.dir)  # ValueError for a path elsewhere: a programming error
        if ".." in rel.parts:
            raise ValueError(f"{name_or_path}: a run folder's name has no '..'")
        cur = self.dir
        for part in rel.parts:
            cur = cur / part
            try:
                st = os.lstat(cur)
            except FileNotFoundError:
                cur.mkdir()
                continue
            if not stat.S_ISDIR(st.st_mode):
                raise refuse(cur, st.st_mode, "remove it, or write elsewhere (--out DIR)")
        return path

    # ---------------------------------------------------------------- opening
    def open_fd(self, path: Path, flags: int, create: bool = False, mode: int = 0o644) -> int:
        """``os.open`` of a run file without following a link at its name; the result must be a regular file."""
        fl = flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | (os.O_CREAT if create else 0)
        try:
            fd = os.open(path, fl, mode)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.EISDIR):  # a link at the name, or a directory opened for writing
                raise refuse(path, os.lstat(path).st_mode) from None
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise refuse(path, st.st_mode)
            if flags & (os.O_RDWR | os.O_WRONLY) and st.st_nlink > 1:  # a hard link shares its bytes with another name
                raise UnsafeRunFileError(f"{path} has {st.st_nlink} hard links; mikata does not write a file it "
                                         "shares with another name: copy the run with `cp -r` (not `cp -al`), or "
                                         "remove that file")
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def open_binary(self, path: Path, writable: bool = False) -> IO[bytes]:
        """A run file opened for reading (or, ``writable``, reading and writing, created if absent)."""
        fd = self.open_fd(path, os.O_RDWR if writable else os.O_RDONLY, create=writable)
        return os.fdopen(fd, "r+b" if writable else "rb")

    def read_text(self, path: Path) -> str:
        with self.open_binary(path) as f:
            return f.read().decode("utf-8")

    @contextmanager
    def replacing(self, path: Path, binary: bool = True) -> Iterator[IO]:
        """Write ``path`` whole: to a temporary file beside it, renamed over it on success.

        A link at ``path`` is refused (the user may have planted it on purpose: say so rather than
        silently dropping it); the rename replaces a name, never writes through one."""
        existed = self.check_file(path, "remove it, or pass --out with another file")
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, (os.stat(path).st_mode & 0o777) if existed else 0o644)  # mkstemp's 0600 is not a file's
            with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
                yield f
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise


def write_output(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write an output file (report, export) whole, never through a link at its name (see ``replacing``)."""
    p = Path(path).expanduser()
    p = p.parent.resolve() / p.name
    with RunLayout(p.parent).replacing(p, binary=isinstance(data, bytes)) as f:
        f.write(data)
    return p


@contextmanager
def output_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` for a library that writes a file by name (pyarrow, pandas);
    renamed over ``path`` when the block succeeds. A link at ``path`` is refused first."""
    p = Path(path).expanduser()
    p = p.parent.resolve() / p.name
    existed = RunLayout(p.parent).check_file(p, "remove it, or pass --out with another file")
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    os.fchmod(fd, (os.stat(p).st_mode & 0o777) if existed else 0o644)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
