"""Where a run's concepts live: ``RUN/concepts/``, written atomically, read back field by field.

    atlas.json          the stable document (``Atlas.to_json``) + the key it was computed for
    class_NNNN.json     one class's finished part (resume: a killed computation keeps finished classes)
    class_NNNN.npz      its arrays (loaded with ``allow_pickle=False``): sampled ids, directions ``W``,
                        coefficients ``U`` on the layer grid, contributions, presence, labels, predictions

The key is a hash of the run's version (rows, largest id, committed vectors: a rescan or new rows change
it), the model's weights hash, the format and the options. A stored part whose key differs is stale and
is computed again; ``load_atlas`` returns None for a stale atlas.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from mikata.runs.layout import CONCEPTS, RunLayout, UnsafeRunFileError

CONCEPTS_DIR = CONCEPTS  # runs.layout names every folder of a run
FORMAT = 4  # bumped whenever a stored part changes shape: older parts are then recomputed
ARRAY_NAMES = ("ids", "W", "U", "contrib", "residual", "total", "strength", "thresholds", "labels", "preds",
               "prob", "sizes")


def folder(run_dir: str | os.PathLike) -> Path:
    return RunLayout(run_dir).dir / CONCEPTS_DIR


def _readable(path: Path) -> bool:
    """``RUN/concepts/NAME`` is read only from a real folder of the run, and never through a link."""
    if RunLayout(path.parent.parent).folder(path.parent.name) is None:
        return False
    try:
        return RunLayout(path.parent).check_file(path)
    except UnsafeRunFileError:
        return False


@contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """A new temporary name beside ``path`` (in a real folder of the run), renamed over it on success."""
    RunLayout(path.parent.parent).writable_folder(path.parent.name)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def make_key(version: tuple, weights: str | None, options: dict) -> str:
    text = json.dumps({"format": FORMAT, "version": list(version), "weights": weights, "options": options},
                      sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()


def write_json(path: Path, doc: dict) -> None:
    with _replacing(path) as tmp:
        tmp.write_text(json.dumps(doc, indent=1, allow_nan=False), encoding="utf-8")


def read_json(path: Path) -> dict | None:
    """The document at ``path``, or None when missing or not a JSON object (it is then recomputed)."""
    if not _readable(path):
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def write_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with _replacing(path) as tmp:
        np.savez(tmp, **arrays)


def read_arrays(path: Path) -> dict[str, np.ndarray] | None:
    """The class's arrays (no pickles: ``allow_pickle=False``), or None when missing or damaged."""
    if not _readable(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
    except (OSError, ValueError, KeyError):
        return None
    if any(k not in out for k in ARRAY_NAMES):
        return None
    return out


def class_paths(run_dir: str | os.PathLike, cls: int) -> tuple[Path, Path]:
    base = folder(run_dir) / f"class_{int(cls):04d}"
    return base.with_suffix(".json"), base.with_suffix(".npz")
