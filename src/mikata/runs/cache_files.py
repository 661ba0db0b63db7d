"""Array files in a run's ``cache/`` folder (overview, dataset issues, comparisons): read only when the
folder and the file are the run's own (a link is never followed), written whole or not at all.

A cache is derived data: a reader that gets ``None`` rebuilds it, and a writer that cannot write only
loses speed. The stamps that say whether a cache still holds are each cache's own business.
"""

from __future__ import annotations

import logging
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from mikata.runs.layout import CACHE, RunLayout, UnsafeRunFileError

log = logging.getLogger(__name__)


def read_arrays(run_dir: str | os.PathLike, path: Path, what: str) -> dict[str, np.ndarray] | None:
    """The arrays of ``path`` (in ``run_dir``'s cache folder), or None when the folder or the file is absent or
    a link (said at INFO, naming ``what``). A damaged file raises ``OSError``/``ValueError``/``EOFError``/
    ``KeyError`` for the caller to treat as absent (a cut-off zip too: ``ValueError``). Never unpickles."""
    layout = RunLayout(run_dir)
    try:
        if layout.folder(CACHE) is None or not layout.check_file(path):  # absent, or a link: never read
            return None
    except UnsafeRunFileError as e:
        log.info("ignoring the %s: %s", what, str(e).split(";")[0])
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except zipfile.BadZipFile as e:  # not an OSError: said as the damage every cache already treats as absent
        raise ValueError(f"{path.name} is not a whole .npz file ({e})") from e


def write_arrays(run_dir: str | os.PathLike, path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` in ``run_dir``'s cache folder (created, never through a link) through a
    temporary file that is renamed: readers see the old file or the new one, whole. Raises ``OSError`` or
    ``UnsafeRunFileError`` (the temporary file removed)."""
    RunLayout(run_dir).writable_folder(CACHE)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
