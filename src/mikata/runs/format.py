"""The run format's version, and the one place where older runs are brought up to date on open.

``manifest.json`` carries ``"format": "mikata-run/N"``. Readers and writers see a manifest only
through ``migrate_manifest``, which lifts any older format to the current one in memory (step by
step, each step a small function), and refuses a newer format than this mikata reads with one
line saying to upgrade. So the rest of the code reads one shape, and "does this older run have X"
is answered here, not at each reader.

The history:

- ``mikata-run/1`` (and manifests with no ``format`` at all, the very first scans): ``identity``
  may lack ``resize`` (those runs resized the shorter side, ``LEGACY_RESIZE``); no ``data_roots``;
  ``default_layer`` may be absent.
- ``mikata-run/2``: ``identity`` always has every preprocessing field; ``data_roots`` lists the
  folders whose files the run may serve (see ``data.paths.serving_roots``); ``default_layer``
  is always present (``None`` when unknown).

What a migration cannot fill in, because an older *scan* never computed it, stays optional and is
asked for by name: vector kinds (``stats`` and ``thumbs``, the pixel statistics and thumbnails of
dataset issues: ``RunStore.has_vectors``; a resumed scan of such a run keeps its files aligned by
not adding them) and tables (``maps``, ``reviews``, ``fields``: the writer and an annotating reader
create them, plain readers treat them as empty). ``calibration.json`` (``mikata calibrate``'s temperature,
``analysis.temperature``) is optional in every format: a run without it shows its probabilities as
the model gave them.

Example:
    >>> migrate_manifest({"format": "mikata-run/1", "identity": {"classes": ["a"]}, "dataset_root": "/d"})["format"]
    'mikata-run/2'
"""

from __future__ import annotations

import os
from typing import Any, Callable

from mikata.errors import MikataError

PREFIX = "mikata-run/"
CURRENT = 2
FORMAT = f"{PREFIX}{CURRENT}"


class RunFormatError(MikataError):
    """A run written in a format this mikata does not read (newer, or not a mikata run)."""


def format_version(manifest: dict, where: object = "manifest.json") -> int:
    """The format number of a manifest: 1 when it has none (the first scans wrote none)."""
    raw = manifest.get("format", f"{PREFIX}1")
    if not isinstance(raw, str) or not raw.startswith(PREFIX) or not raw[len(PREFIX):].isdigit():
        raise RunFormatError(f"{where}: format {str(raw)[:60]!r} is not a mikata run format ({FORMAT} is current); "
                             "give a run directory made by `mikata scan`")
    n = int(raw[len(PREFIX):])
    if n > CURRENT:
        raise RunFormatError(f"{where}: the run is format {raw}, newer than this mikata reads ({FORMAT}); "
                             "upgrade mikata (pip install -U mikata) to open it")
    if n < 1:
        raise RunFormatError(f"{where}: format {raw!r} is not a mikata run format; give a run made by `mikata scan`")
    return n


def _from_1(m: dict) -> dict:
    from mikata.data.preprocessing import with_defaults

    m["identity"] = with_defaults(m["identity"])  # a run written before a field existed meant its old behaviour
    root = m.get("dataset_root")
    m["data_roots"] = [root] if isinstance(root, str) and root else []
    m.setdefault("default_layer", None)
    return m


# format N -> N + 1, applied in order
_STEPS: dict[int, Callable[[dict], dict]] = {1: _from_1}


def migrate_manifest(manifest: dict[str, Any], where: object = "manifest.json",
                     run_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """A copy of ``manifest`` in the current format (``RunFormatError`` for a newer or foreign one).

    ``where`` names the file in messages. ``identity`` must be a dict (the caller checked)."""
    n = format_version(manifest, where)
    m = {**manifest, "identity": dict(manifest["identity"])}
    while n < CURRENT:
        m = _STEPS[n](m)
        n += 1
    m["format"] = FORMAT
    roots = m.get("data_roots")
    if not isinstance(roots, list) or not all(isinstance(r, str) for r in roots):
        raise RunFormatError(f"{where}: 'data_roots' must be a list of folders; scan again into a new --run "
                             "directory")
    return m
