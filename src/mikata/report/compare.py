"""``write_comparison_report``: one self-contained HTML page of a ``Comparison`` (``mikata compare --out``).

The page shows what ``mikata compare`` prints — the image counts, every metric as A, B and B - A with
its interval and McNemar's p, the dataset-issue counts side by side — and the first flipped images
(fixed, broken) as cards: the thumbnail, the label, each model's prediction and, when maps are asked
for, each model's Grad-CAM of its own prediction side by side (computed by each run's ``MapService``
on ``device``: the maps are cached in each run as the web app caches them). Opens offline: images are
``data:`` URIs, styles are the report's own.

Example:
    >>> c = compare("runs/a", "runs/b", split="test")                      # doctest: +SKIP
    >>> write_comparison_report(c, "compare.html", maps=False).path        # doctest: +SKIP
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mikata.analysis.compare import Comparison, interval_text, p_text, signed_pct
from mikata.runs.layout import RunLayout, write_output
from mikata.errors import MikataError
from mikata.formatting import percent
from mikata.report.build import TEMPLATES, ReportError

if TYPE_CHECKING:
    from mikata.models.source import ModelSource

log = logging.getLogger(__name__)
MAP_METHOD = "gradcam"


@dataclass
class ComparisonReport:
    path: Path
    bytes: int
    flipped: int                  # flipped images shown (both lists)
    maps: int                     # maps drawn (both models)
    seconds: float
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {"path": str(self.path), "bytes": self.bytes, "flipped_shown": self.flipped, "maps": self.maps,
                "seconds": round(self.seconds, 3), "notes": self.notes}


def _thumbs(run_dir: Path, ids: list[int], size: int) -> dict[int, str]:
    """id -> data URI of the image's thumbnail (images that cannot be read any more are left out)."""
    from mikata.presentation.media import data_uri, image_files, thumbnail
    from mikata.runs.store import RunStore

    with RunStore.open(run_dir) as store:
        files = image_files(store, ids)
    out = {}
    for i, f in files.items():
        try:
            out[i] = data_uri(thumbnail(f, size))
        except (OSError, MikataError) as e:
            log.warning("no thumbnail for image %s: %s", i, e)
    return out


def _maps(run_dir: Path, ids: list[int], source) -> dict[int, str]:
    """id -> data URI of the run's model's Grad-CAM of its predicted class over the model's view."""
    from mikata.presentation.maps import MapService, map_scale_of
    from mikata.presentation.media import data_uri, encode
    from mikata.display import overlay_scaled

    if not ids:
        return {}
    service = MapService(run_dir, source=source)
    try:
        got = service.maps(ids, [MAP_METHOD], None)
        views = service.model_views(ids)
        out = {}
        for (i, _, _), a in got.items():
            out[i] = data_uri(encode(overlay_scaled(views[i], a, map_scale_of(a, MAP_METHOD))))
        return out
    finally:
        service.close()


def write_comparison_report(c: Comparison, out: str | os.PathLike, *, flipped: int = 24, maps: bool = False,
                            device: str | None = "cpu", model_a: str | None = None, model_b: str | None = None,
                            thumb: int = 96, source_a: "ModelSource | None" = None,
                            source_b: "ModelSource | None" = None) -> ComparisonReport:
    """Write the comparison page to ``out``; ``flipped``: cards per flipped list; ``maps``: each model's
    Grad-CAM beside each card (the models are found as ``mikata report`` finds them, or ``model_a`` /
    ``model_b``, specs the user typed, or ``source_a`` / ``source_b``), computed on ``device``."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    from mikata.models.source import ModelSource

    t0 = time.perf_counter()
    out_path = Path(out).expanduser()
    if out_path.is_dir() and not out_path.is_symlink():
        raise ReportError(f"--out {out_path} is a directory; give a file name such as {out_path / 'compare.html'}")
    RunLayout(out_path.parent).check_file(out_path.parent.resolve() / out_path.name,
                                          "remove it, or pass --out with another file")
    notes = list(c.notes())
    lists = {kind: c.flipped_items(kind, 0, flipped) for kind in ("fixed", "broken")}
    ids_a = sorted({it["id_a"] for items in lists.values() for it in items})
    ids_b = sorted({it["id_b"] for items in lists.values() for it in items})
    thumbs = _thumbs(c.view_a.run_dir, ids_a, thumb)
    maps_a: dict[int, str] = {}
    maps_b: dict[int, str] = {}
    if maps:
        for side, run_dir, ids, source, target in (
                ("A", c.view_a.run_dir, ids_a, source_a or ModelSource(spec=model_a, device=device), maps_a),
                ("B", c.view_b.run_dir, ids_b, source_b or ModelSource(spec=model_b, device=device), maps_b)):
            try:
                target.update(_maps(run_dir, ids, source))
            except MikataError as e:
                notes.append(f"model {side}'s maps left out: {e}")
    issues = c.issue_counts()
    from mikata.presentation.templates import bytecode_cache

    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html", "j2"]),
                      bytecode_cache=bytecode_cache("compare-report"))  # compiled once per process
    from mikata.data.filenames import shown_in_template

    env.finalize = shown_in_template
    html = env.get_template("compare.html.j2").render(
        c=c, css=(TEMPLATES / "report.css").read_text(encoding="utf-8"), lists=lists, thumbs=thumbs,
        maps_a=maps_a, maps_b=maps_b, issues=issues, notes=notes, pct=lambda v: percent(v, 2),
        signed=signed_pct, interval=interval_text, ptext=p_text, counts={k: len(c.flipped_rows(k)) for k in lists},
        created=_dt.datetime.now().strftime("%Y-%m-%d %H:%M"), confidence=int(round(c.settings.confidence * 100)))
    path = write_output(out_path, html)
    return ComparisonReport(path, path.stat().st_size, sum(len(v) for v in lists.values()),
                            len(maps_a) + len(maps_b), time.perf_counter() - t0, notes)
