"""Files other commands leave in a run directory for the report and the web app to show.

- ``RUN_DIR/featurevis/**.png``: feature-visualization images (``mikata visualize ... --out
  RUN_DIR/featurevis/NAME``; the demo writes the fine-tuned classes there). A folder that holds a
  ``grid.png`` (what ``mikata visualize`` writes beside one PNG per unit; its text chunks carry the
  units' labels and the optimization log) is shown by its grid alone in the report (``featurevis_images``); the web
  app's gallery shows each unit's image with its label, and the log (``featurevis_gallery``).
- ``RUN_DIR/evaluate/scorecard.json`` and its figures (``mikata evaluate RUN_DIR``).

Each folder counts only if it is a real folder inside the run (``RunLayout.folder``: a link named
``featurevis`` or ``evaluate`` pointing elsewhere is treated as absent), and every path returned lies
inside its folder after resolving links, so a symlink planted in a run cannot make the report or the
server read a file elsewhere.

Example:
    >>> featurevis_images("runs/fashion")                 # doctest: +SKIP
    [PosixPath('runs/fashion/featurevis/classes/grid.png')]
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from mikata.analysis.layout import EVALUATE, FEATUREVIS, SCORECARD, RunLayout

log = logging.getLogger(__name__)


def _inside(root: Path | None, path: Path) -> bool:
    if root is None:
        return False
    real_root, real = os.path.realpath(root), os.path.realpath(path)
    return os.path.commonpath([real_root, real]) == real_root and os.path.isfile(real)


def run_folder(run_dir: str | os.PathLike, name: str) -> Path | None:
    """``RUN_DIR/name`` if it is a real folder inside the run (not a link, not resolving elsewhere), else None."""
    return RunLayout(run_dir).folder(name)


def featurevis_images(run_dir: str | os.PathLike) -> list[Path]:
    """The PNGs under ``RUN_DIR/featurevis/`` to show, sorted (a folder with a ``grid.png``: just the grid)."""
    root = run_folder(run_dir, FEATUREVIS)
    if root is None:
        return []
    pngs = sorted(p for p in root.rglob("*.png") if _inside(root, p))
    gridded = {p.parent for p in pngs if p.name == "grid.png"}
    return [p for p in pngs if p.parent not in gridded or p.name == "grid.png"]


def featurevis_pngs(run_dir: str | os.PathLike) -> list[Path]:
    """Every PNG under ``RUN_DIR/featurevis/`` (grids and unit images), sorted: what the web app serves by index."""
    root = run_folder(run_dir, FEATUREVIS)
    if root is None:
        return []
    return sorted(p for p in root.rglob("*.png") if _inside(root, p))


MAX_LOG_CHARS = 200_000  # a log shown in a page: the first 200 kB (64 steps x 3 octaves is ~15 kB)


def _png_text(path: Path, key: str) -> str | None:
    """One text chunk of a PNG (written before its pixels, so the pixels are not decoded), or None."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            value = img.info.get(key)
    except (OSError, ValueError) as e:  # a damaged PNG: the gallery still shows the rest
        log.warning("cannot read %s: %s", path, e)
        return None
    return value if isinstance(value, str) else None


def _rendering(grid: Path) -> tuple[dict[str, str], str | None]:
    """file name -> unit label, and the log, from ``grid.png``'s chunks (``Rendering.save``); data only:
    strings are taken, anything else ignored."""
    labels: dict[str, str] = {}
    raw = _png_text(grid, "mikata-rendering")
    try:
        card = json.loads(raw) if raw else {}
    except ValueError:
        card = {}
    units = card.get("units") if isinstance(card, dict) else None
    for u in units if isinstance(units, list) else []:
        if isinstance(u, dict) and isinstance(u.get("file"), str) and isinstance(u.get("label"), str):
            labels[u["file"]] = u["label"]
    text = _png_text(grid, "mikata-log")
    return labels, (text[:MAX_LOG_CHARS] if text else None)


def featurevis_gallery(run_dir: str | os.PathLike) -> list[dict]:
    """The web app's feature-visualization gallery, one entry per folder (and one per loose PNG).

    Each entry: ``title`` (the folder, relative), ``grid`` (its ``grid.png`` or None), ``units``
    (``[(png, label)]``: each unit's image with its label, from the grid's ``mikata-rendering`` chunk,
    the unit PNG's ``mikata-label``, or its file name) and ``log`` (the grid's ``mikata-log`` text, or
    None). Index the PNGs with ``featurevis_pngs``.
    """
    root = RunLayout(run_dir).featurevis
    pngs = featurevis_pngs(run_dir)
    folders: dict[Path, list[Path]] = {}
    for p in pngs:
        folders.setdefault(p.parent, []).append(p)
    out = []
    for folder, files in folders.items():
        grid = next((p for p in files if p.name == "grid.png"), None)
        if grid is None:  # loose images: each its own entry, as before
            out += [{"title": str(p.relative_to(root)), "grid": None, "units": [(p, p.stem)], "log": None}
                    for p in files]
            continue
        labels, text = _rendering(grid)
        out.append({"title": str(folder.relative_to(root)) if folder != root else ".", "grid": grid,
                    "units": [(p, labels.get(p.name) or _png_text(p, "mikata-label") or p.stem)
                              for p in files if p.name != "grid.png"],
                    "log": text})
    return out


def read_scorecard(run_dir: str | os.PathLike) -> dict | None:
    """``RUN_DIR/evaluate/scorecard.json`` as a dict; None when absent or unreadable (with a warning)."""
    root = run_folder(run_dir, EVALUATE)
    path = RunLayout(run_dir).scorecard
    if not _inside(root, path):
        return None
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        log.warning("ignoring unreadable scorecard %s: %s", path, e)
        return None
    return card if isinstance(card, dict) else None


def scorecard_figure(run_dir: str | os.PathLike, name: str) -> Path | None:
    """One of the scorecard's ``figures`` (a PNG path relative to ``RUN_DIR/evaluate``), if it is there."""
    root = run_folder(run_dir, EVALUATE)
    if root is None:
        return None
    path = root / str(name)
    return path if str(name).endswith(".png") and _inside(root, path) else None
