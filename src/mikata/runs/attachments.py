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

import logging
import os
from pathlib import Path

from mikata.runs.layout import EVALUATE, FEATUREVIS, SCORECARD, UNITS, UNITS_CARD, RunLayout
from mikata.runs.schema import MapOf, Opt, Req, SchemaError, check_value, parse_json, read_json

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


MAX_LABEL_CHARS = 200  # a unit's label as shown; longer text in a chunk is cut


def _label(text: str | None) -> str | None:
    """A label from a PNG chunk for a page: control characters dropped, at most ``MAX_LABEL_CHARS``."""
    if not text:
        return None
    clean = "".join(ch for ch in text[:MAX_LABEL_CHARS] if ch.isprintable())
    return clean or None


def _rendering(grid: Path) -> tuple[dict[str, str], str | None, str | None]:
    """file name -> unit label, the log, and a note when the ``mikata-rendering`` chunk was refused, from
    ``grid.png``'s chunks (``Rendering.save``); the chunk is checked against ``RENDERING_SCHEMA`` first."""
    labels: dict[str, str] = {}
    raw = _png_text(grid, "mikata-rendering")
    note = None
    card: dict = {}
    if raw:
        try:
            card = check_value(parse_json(raw, f"{grid.name} (mikata-rendering)"), RENDERING_SCHEMA,
                               f"{grid.name} (mikata-rendering)")  # type: ignore[assignment]
        except SchemaError as e:
            note = f"featurevis/{grid.parent.name}/{e}: the unit labels are left out (file names shown)"
            card = {}
    for u in card.get("units") or []:
        label = _label(u.get("label"))
        if isinstance(u.get("file"), str) and label:
            labels[u["file"]] = label
    text = _png_text(grid, "mikata-log")
    return labels, (text[:MAX_LOG_CHARS] if text else None), note


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
            out += [{"title": str(p.relative_to(root)), "grid": None, "units": [(p, p.stem)], "log": None,
                     "note": None} for p in files]
            continue
        labels, text, note = _rendering(grid)
        out.append({"title": str(folder.relative_to(root)) if folder != root else ".", "grid": grid,
                    "units": [(p, labels.get(p.name) or _label(_png_text(p, "mikata-label")) or p.stem)
                              for p in files if p.name != "grid.png"],
                    "log": text, "note": note})
    return out


# What the report and the app read of each attachment (``schema`` explains the notation); other keys pass.
SCORECARD_SCHEMA = {
    "model": Opt("str"), "images": Opt("int"), "target": Opt("str"), "created": Opt("str"),
    "methods": ["str"],
    "metrics": [{"name": Req("str"), "better": Opt("str"), "description": Opt("str")}],
    "table": MapOf(Opt(MapOf(Opt("number")))),
    "passes": MapOf(Opt(MapOf(Opt("bool")))),
    "figures": ["str"],
    "baseline": Opt(MapOf(Opt("number"))),
    "baselines": Opt(MapOf(Opt("str"))),
}
UNITS_SCHEMA = {
    "layer": Req("str"), "source": Opt("str"), "map_size": ["int"],
    "units": Req([{"channel": Req("int"),
                   "top": Req([{"id": Req("int"), "activation": Req("number"), "label": Req("any"),
                                "pred": Req("any")}])}]),
}
RENDERING_SCHEMA = {
    "units": [{"file": Req("str"), "label": Req("str"), "score": Opt("number")}],
    "seconds": Opt("number"), "options": Opt(MapOf("any")),
}


def load_scorecard(run_dir: str | os.PathLike) -> tuple[dict | None, str | None]:
    """``RUN_DIR/evaluate/scorecard.json`` checked against ``SCORECARD_SCHEMA``: ``(card, None)``;
    ``(None, note)`` when it is there but refused (the note names the place and what to do);
    ``(None, None)`` when there is none."""
    root = run_folder(run_dir, EVALUATE)  # a link named evaluate/ pointing elsewhere counts as absent
    path = RunLayout(run_dir).dir / EVALUATE / SCORECARD
    if not _inside(root, path):
        return None, None
    try:
        card = read_json(path, SCORECARD_SCHEMA)
    except SchemaError as e:
        log.warning("ignoring the unreadable scorecard %s: %s", path, e)
        return None, (f"evaluate/{e}: the attribution scorecard is left out; run `mikata evaluate` on the run "
                      "again to rewrite it")
    if not isinstance(card, dict):
        return None, ("evaluate/scorecard.json: the top level is not an object: the attribution scorecard is left "
                      "out; run `mikata evaluate` on the run again to rewrite it")
    return card, None


def read_scorecard(run_dir: str | os.PathLike) -> dict | None:
    """``RUN_DIR/evaluate/scorecard.json`` as a dict; None when absent or refused (``load_scorecard``)."""
    return load_scorecard(run_dir)[0]


def load_units_json(root: Path | None) -> tuple[dict | None, str | None]:
    """``root/units.json`` checked against ``UNITS_SCHEMA``, as ``load_scorecard`` returns it (``root``: the
    run's units folder from ``run_folder``; None when it is absent or not a real folder of the run)."""
    path = (root or Path("/nonexistent")) / UNITS_CARD
    if not _inside(root, path):
        return None, None
    try:
        raw = read_json(path, UNITS_SCHEMA)
    except SchemaError as e:
        log.warning("ignoring %s: %s", path, e)
        return None, f"units/{e}: the units section is left out; run `mikata units` on the run again to rewrite it"
    if not isinstance(raw, dict):
        return None, ("units/units.json: the top level is not an object: the units section is left out; run "
                      "`mikata units` on the run again to rewrite it")
    return raw, None


def attachment_notes(run_dir: str | os.PathLike) -> list[str]:
    """One line per attachment that is there but was refused (its section is left out, or shown without its
    labels); empty when every attachment is fine or absent."""
    notes = [n for n in (load_scorecard(run_dir)[1], load_units_json(run_folder(run_dir, UNITS))[1]) if n]
    notes += [e["note"] for e in featurevis_gallery(run_dir) if e.get("note")]
    return notes


def scorecard_figure(run_dir: str | os.PathLike, name: str) -> Path | None:
    """One of the scorecard's ``figures`` (a PNG path relative to ``RUN_DIR/evaluate``), if it is there."""
    root = run_folder(run_dir, EVALUATE)
    if root is None:
        return None
    path = root / str(name)
    return path if str(name).endswith(".png") and _inside(root, path) else None
