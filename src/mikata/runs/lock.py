"""One writer per run: an exclusive lock file, ``RUN_DIR/writer.lock``, holding the writer's PID.

Two scans into one run directory would interleave their vector appends (rows pointing at another
image's vectors). The lock is an ``fcntl.flock`` on the file, so the kernel drops it when the
writer dies for any reason (kill -9, power cut of the process): a stale lock never needs
clearing, and a PID left in the file by a dead process is simply overwritten. The file stays in
place after release (removing it would let two writers lock two different inodes).

Readers never take the lock: SQLite's WAL mode lets them read while the writer appends.

A forked child (a DataLoader worker) would share the lock's open file, and keep the run locked after
its parent was killed until the child exits too; so every forked child closes its copy at once
(``os.register_at_fork``), and only the writer itself holds the lock.

Example:
    >>> with RunLock.acquire("runs/digits"):            # doctest: +SKIP
    ...     pass                                          # the only writer of runs/digits
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from mikata.runs.layout import LOCK, RunLayout, UnsafeRunFileError
from mikata.errors import MikataError

LOCK_NAME = LOCK  # the lock file's name inside a run (named with the run's other files in runs.layout)
_HELD: set[int] = set()  # lock fds of this process, closed in every forked child


def _close_in_child() -> None:
    for fd in list(_HELD):
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


os.register_at_fork(after_in_child=_close_in_child)


class RunLockedError(MikataError):
    """Another live process is writing the run; the message names its PID."""


class RunLock:
    """An acquired writer lock; ``release()`` (or leaving the ``with`` block) gives it up."""

    def __init__(self, path: Path, fd: int):
        self.path, self._fd = path, fd

    @classmethod
    def acquire(cls, run_dir: str | os.PathLike) -> "RunLock":
        """Lock ``run_dir`` for writing, or raise ``RunLockedError`` naming the writer's PID."""
        layout = RunLayout(run_dir)
        path = layout.lock
        try:  # never through a link: the lock file is truncated, and a link would truncate its target
            fd = layout.open_fd(path, os.O_RDWR, create=True)
        except UnsafeRunFileError:
            raise
        except OSError as e:
            if e.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
                raise RunLockedError(f"{run_dir} is not writable ({e.strerror}); scan into a directory you can "
                                     "write, or copy the run there first") from e
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"PID {holder}" if holder else "another process"
            raise RunLockedError(f"{run_dir} is being written by {who}; wait for it to finish (or stop it), "
                                 "or scan into another --run directory") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _HELD.add(fd)
        return cls(path, fd)

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        except OSError:  # a full or read-only disk must not keep the lock: closing releases it
            pass
        _HELD.discard(self._fd)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None
