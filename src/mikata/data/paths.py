"""Path safety: a stored path is served only if, with every symlink resolved, it lies inside a data root.

The web app and the HTML report take row ids, never paths; the row's stored path still goes
through ``file_inside`` before anything opens it, so a symlink planted in the data folder (or a
file swapped since the scan) cannot make them read a file outside the dataset's folders.

**The containment rule.** A run's manifest lists its data roots (``data_roots``: the folders its
images were read from), but a manifest is a file anyone can edit, so a root read from it is used
only if ``servable_root`` accepts it: an existing folder that is not the file system's root, not
a broad top-level folder (``/home``, ``/usr``, ``/tmp``, ...), not the user's home folder or one
above it, and not inside a system folder (``/etc``, ``/proc``, ``/root``, ...; ``SYSTEM_FOLDERS``).
A manifest claiming ``/`` (or a merged shard's ``/``) therefore serves nothing rather than
everything. On top of that, the server and report only ever send images they decoded and
re-encoded, never a file's raw bytes. The scan itself never reads files in a system folder
(``system_folder``): a manifest row for ``/etc/passwd`` or ``../../etc/shadow`` is a skipped row.

Example:
    >>> file_inside("/data/cats/1.png", "/data")              # doctest: +SKIP
    PosixPath('/data/cats/1.png')
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping, TypeVar

from mikata.errors import MikataError

K = TypeVar("K")


class UnservableFileError(MikataError, LookupError):
    """A stored path that resolves outside its root, or whose file is gone: never opened."""


# folders whose files are the system's, never a dataset's: not read by a scan, never a data root
SYSTEM_FOLDERS = ("/etc", "/proc", "/sys", "/dev", "/boot", "/root", "/run", "/bin", "/sbin", "/lib", "/lib32",
                  "/lib64", "/libx32", "/usr/bin", "/usr/sbin", "/usr/lib", "/usr/libexec", "/usr/local/bin",
                  "/usr/local/sbin", "/usr/local/lib", "/var/lib", "/var/log", "/var/run", "/var/spool", "/var/mail",
                  "/var/cache", "/var/backups", "/snap")
# top-level folders too broad to be one dataset's folder (their subfolders may well be)
BROAD_FOLDERS = ("/", "/home", "/Users", "/usr", "/var", "/tmp", "/mnt", "/media", "/opt", "/srv", "/private",
                 "/usr/local", "/usr/share", "/var/tmp", "/private/tmp")


def _under(real: str, folder: str) -> bool:
    return real == folder or real.startswith(folder.rstrip("/") + "/")


def system_folder(path: str | os.PathLike, resolved: bool = False) -> str | None:
    """The system folder ``path`` resolves into (``/etc``, ``/dev``, ...), or None for an ordinary place
    (``resolved``: ``path`` is already free of links)."""
    real = str(path) if resolved else os.path.realpath(path)
    return next((f for f in SYSTEM_FOLDERS if _under(real, f)), None)


def servable_root(root: object) -> str | None:
    """``root`` resolved if it may serve as a data root (see the module's containment rule), else None."""
    if not isinstance(root, (str, os.PathLike)) or not str(root):
        return None
    real = os.path.realpath(root)
    if real in BROAD_FOLDERS or system_folder(real) or not os.path.isdir(real):
        return None
    home = os.path.realpath(os.path.expanduser("~"))
    if home != "/" and _under(home, real):  # the home folder or a folder above it
        return None
    return real


def minimal_roots(folders: Iterable[str]) -> list[str]:
    """The folders of ``folders`` not inside another one of them, sorted."""
    out: list[str] = []
    for f in sorted(set(folders)):
        if not any(_under(f, o) for o in out):
            out.append(f)
    return out


def data_roots(root: str | os.PathLike, paths: Iterable[str | os.PathLike]) -> list[str]:
    """The data roots of a dataset whose folder is ``root`` and whose files are ``paths``: ``root``
    itself when it may serve, plus the folder of each file outside it (a manifest's absolute paths),
    each only if ``servable_root`` accepts it. Written into a run's manifest by the scan."""
    base = servable_root(root)
    folders = [base] if base else []
    for p in paths:
        if base is not None and _under(str(p), base):  # most files: under the folder as listed
            continue
        real = os.path.realpath(p)
        if base is None or not _under(real, base):
            parent = servable_root(os.path.dirname(real))
            if parent:
                folders.append(parent)
    return minimal_roots(folders)


def _roots(roots: str | os.PathLike | Iterable[str] | None) -> list[str]:
    """The servable ones of ``roots`` (a root read from a file is checked here, every time)."""
    if roots is None:
        return []
    items = [roots] if isinstance(roots, (str, os.PathLike)) else list(roots)
    return [r for r in (servable_root(x) for x in items) if r]


def _inside_any(real: str, bases: list[str]) -> bool:
    return any(os.path.commonpath([b, real]) == b for b in bases)


def file_inside(path: str | os.PathLike, roots: str | os.PathLike | Iterable[str] | None) -> Path:
    """``path`` resolved, if it is a file inside one of ``roots``; ``UnservableFileError`` saying why otherwise."""
    bases, real = _roots(roots), os.path.realpath(path)
    if not _inside_any(real, bases):
        shown = ", ".join(bases) if bases else "none that may serve"
        raise UnservableFileError(f"resolves outside the dataset's folders ({shown}); not served")
    if not os.path.isfile(real):
        raise UnservableFileError(f"({path}) no longer exists")
    return Path(real)


def files_inside(paths: Mapping[K, str | os.PathLike], roots: str | os.PathLike | Iterable[str] | None
                 ) -> dict[K, Path]:
    """``file_inside`` for many paths: key -> resolved file, leaving out those it would refuse."""
    bases = _roots(roots)
    out: dict[K, Path] = {}
    for key, p in paths.items():
        real = os.path.realpath(p)
        if _inside_any(real, bases) and os.path.isfile(real):
            out[key] = Path(real)
    return out
