"""Files other commands leave in a run directory for the report and the web app to show.

- ``RUN_DIR/featurevis/**.png``: feature-visualization images (``mikata visualize ... --out
  RUN_DIR/featurevis/NAME``; the demo writes the fine-tuned classes there). A folder that holds a
  ``grid.png`` (what ``mikata visualize`` writes beside one PNG per unit, its ``rendering.json`` of
  labels and ``log.txt``) is shown by its grid alone in the report (``featurevis_images``); the web
  app's gallery shows each unit's image with its label, and the log (``featurevis_gallery``).
- ``RUN_DIR/evaluate/scorecard.json`` and its figures (``mikata evaluate RUN_DIR``).

Every path returned lies inside its folder after resolving links, so a symlink planted in a run
cannot make the report or the server read a file elsewhere.

Example:
    >>> featurevis_images("runs/fashion")                 # doctest: +SKIP
    [PosixPath('runs/fashion/featurevis/classes/grid.png')]
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def _inside(root: Path, path: Path) -> bool:
    real_root, real = os.path.realpath(root), os.path.realpath(path)
    return os.path.commonpath([real_root, real]) == real_root and os.path.isfile(real)


def featurevis_images(run_dir: str | os.PathLike) -> list[Path]:
    """The PNGs under ``RUN_DIR/featurevis/`` to show, sorted (a folder with a ``grid.png``: just the grid)."""
    root = Path(run_dir) / "featurevis"
    if not root.is_dir():
        return []
    pngs = sorted(p for p in root.rglob("*.png") if _inside(root, p))
    gridded = {p.parent for p in pngs if p.name == "grid.png"}
    return [p for p in pngs if p.parent not in gridded or p.name == "grid.png"]


def featurevis_pngs(run_dir: str | os.PathLike) -> list[Path]:
    """Every PNG under ``RUN_DIR/featurevis/`` (grids and unit images), sorted: what the web app serves by index."""
    root = Path(run_dir) / "featurevis"
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*.png") if _inside(root, p))


def _rendering_labels(folder: Path) -> dict[str, str]:
    """file name -> unit label from ``folder/rendering.json`` (data: only strings are taken); {} if absent."""
    path = folder / "rendering.json"
    if not _inside(folder, path):
        return {}
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        log.warning("ignoring unreadable %s: %s", path, e)
        return {}
    units = card.get("units") if isinstance(card, dict) else None
    return {u["file"]: u["label"] for u in units or [] if isinstance(u, dict)
            and isinstance(u.get("file"), str) and isinstance(u.get("label"), str)}


MAX_LOG_CHARS = 200_000  # a log shown in a page: the first 200 kB (64 steps x 3 octaves is ~15 kB)


def featurevis_gallery(run_dir: str | os.PathLike) -> list[dict]:
    """The web app's feature-visualization gallery, one entry per folder (and one per loose PNG).

    Each entry: ``title`` (the folder, relative), ``grid`` (its ``grid.png`` or None), ``units``
    (``[(png, label)]``: each unit's image with its label, from ``rendering.json`` or the file's
    name) and ``log`` (``log.txt``'s text, or None). Index the PNGs with ``featurevis_pngs``.
    """
    root = Path(run_dir) / "featurevis"
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
        labels = _rendering_labels(folder)
        log_path = folder / "log.txt"
        text = None
        if _inside(folder, log_path):
            with open(log_path, encoding="utf-8", errors="replace") as f:
                text = f.read(MAX_LOG_CHARS)
        out.append({"title": str(folder.relative_to(root)) if folder != root else ".", "grid": grid,
                    "units": [(p, labels.get(p.name, p.stem)) for p in files if p.name != "grid.png"],
                    "log": text})
    return out


def read_scorecard(run_dir: str | os.PathLike) -> dict | None:
    """``RUN_DIR/evaluate/scorecard.json`` as a dict; None when absent or unreadable (with a warning)."""
    path = Path(run_dir) / "evaluate" / "scorecard.json"
    if not path.is_file():
        return None
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        log.warning("ignoring unreadable scorecard %s: %s", path, e)
        return None
    return card if isinstance(card, dict) else None


def scorecard_figure(run_dir: str | os.PathLike, name: str) -> Path | None:
    """One of the scorecard's ``figures`` (a PNG path relative to ``RUN_DIR/evaluate``), if it is there."""
    root = Path(run_dir) / "evaluate"
    path = root / str(name)
    return path if str(name).endswith(".png") and _inside(root, path) else None
