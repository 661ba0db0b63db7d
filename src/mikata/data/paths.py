"""Path safety: a stored path is served only if, with every symlink resolved, it lies inside a root.

The web app and the HTML report take row ids, never paths; the row's stored path still goes
through ``file_inside`` before anything opens it, so a symlink planted in the data folder (or a
file swapped since the scan) cannot make them read a file outside the dataset root.

Example:
    >>> file_inside("/data/cats/1.png", "/data")              # doctest: +SKIP
    PosixPath('/data/cats/1.png')
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, TypeVar

from mikata.errors import MikataError

K = TypeVar("K")


class UnservableFileError(MikataError, LookupError):
    """A stored path that resolves outside its root, or whose file is gone: never opened."""


def _root(root: str | os.PathLike | None) -> str:
    return os.path.realpath(root or "/nonexistent")  # no root: nothing is inside it


def file_inside(path: str | os.PathLike, root: str | os.PathLike | None) -> Path:
    """``path`` resolved, if it is a file inside ``root``; ``UnservableFileError`` saying why otherwise."""
    base, real = _root(root), os.path.realpath(path)
    if os.path.commonpath([base, real]) != base:
        raise UnservableFileError(f"resolves outside the dataset root {base}; not served")
    if not os.path.isfile(real):
        raise UnservableFileError(f"({path}) no longer exists")
    return Path(real)


def files_inside(paths: Mapping[K, str | os.PathLike], root: str | os.PathLike | None) -> dict[K, Path]:
    """``file_inside`` for many paths: key -> resolved file, leaving out those it would refuse."""
    base = _root(root)
    out: dict[K, Path] = {}
    for key, p in paths.items():
        real = os.path.realpath(p)
        if os.path.commonpath([base, real]) == base and os.path.isfile(real):
            out[key] = Path(real)
    return out
