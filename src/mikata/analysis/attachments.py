"""Files other commands leave in a run directory for the report and the web app to show.

- ``RUN_DIR/featurevis/**.png``: feature-visualization images (``mikata visualize ... --out
  RUN_DIR/featurevis/NAME``; the demo writes the fine-tuned classes there). A folder that holds a
  ``grid.png`` (what ``mikata visualize`` writes beside one PNG per unit) is shown by its grid alone.
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
