"""The report's Concepts section: per class, the concepts of the run's atlas (``mikata concepts``).

Per class: the concepts' importance as an SVG bar chart (suspected shortcuts in red), each concept's
exemplar crops with its heatmap over them (``data:`` images), where it sits on average, its accuracy
with and without it, its deletion evidence and evidence sentence; the class's strategies and its
worst concept-defined slices. The numbers come from ``concepts.surface.atlas_view`` (the app shows the
same); the heatmaps from ``concepts.concept_heatmap`` with the run's model (``handle``, or the model
``MapService`` loads as for the maps). Without a model the crops are shown alone, with a note.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mikata.models.source import ModelSource

log = logging.getLogger(__name__)
SHORTCUT_COLOR, CONCEPT_COLOR = "#d62728", "#4c78a8"


def _uri(a, max_side: int = 128) -> str:
    from PIL import Image

    from mikata.presentation.media import data_uri, encode

    img = Image.fromarray(a)
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    elif max(img.size) < 64:  # a small crop, scaled up so its pixels can be seen
        f = max(1, 64 // max(img.size))
        img = img.resize((img.width * f, img.height * f), Image.Resampling.NEAREST)
    return data_uri(encode(img, "PNG" if img.width * img.height <= 128 * 128 else "JPEG", quality=85))


def importance_chart(concepts: Sequence[dict], title: str) -> str:
    """The class's concepts as horizontal bars of their importance, shortcuts in red."""
    from mikata.report.svg import bar_chart

    labels = [f"concept {c['k']}" + (" (shortcut?)" if c["shortcut"] else "") for c in concepts]
    return bar_chart(labels, [c["importance"] for c in concepts], title=title, width=460,  # a negative one: no bar
                     color=[SHORTCUT_COLOR if c["shortcut"] else CONCEPT_COLOR for c in concepts],
                     value_format="{:.3f}")


def concepts_section(run_dir: str | os.PathLike, class_names: Sequence[str], *, source: ModelSource | None = None,
                     handle=None, model: str | None = None, device: str | None = "cpu",
                     exemplars: int = 4, split: str | None = None) -> tuple[dict | None, list[str]]:
    """``(section, notes)``: the template's data, or None when the run has no current atlas. The heatmaps'
    model: ``source`` (the report's ``ModelSource``), else one built from ``handle``/``model``/``device``.
    ``split``: the split the report shows; the section says which images the concepts were computed on, and
    plainly when that is not this split."""
    from mikata.models.source import ModelSource

    source = source or ModelSource(handle=handle, spec=model, device=device)
    from mikata.presentation.media import UnknownImageError
    from mikata.concepts.surface import (
        atlas_view,
        crop_box,
        exemplar_overlay,
        location_image,
        original_image,
        scope_text,
    )
    from mikata.errors import MikataError

    view = atlas_view(run_dir, class_names)
    if view is None:
        return None, []
    notes: list[str] = []
    view["scope"], view["scope_mismatch"] = scope_text(view["split"], split)
    if view["scope_mismatch"]:
        notes.append(view["scope"])
    net, heat_error = source.handle, None
    if net is None:
        from mikata.presentation.maps import MapService

        try:
            with MapService(run_dir, source=source) as service:
                net = service.handle_for()
        except MikataError as e:
            heat_error = str(e)
    lost = 0
    for cls in view["classes"]:
        cls["chart"] = importance_chart(cls["concepts"], f"{cls['name']}: importance of each concept")
        for c in cls["concepts"]:
            try:
                c["location_uri"] = _uri(location_image(run_dir, c["concept"]))
            except MikataError as err:
                c["location_uri"] = None
                log.warning("no location map of %s: %s", c["concept"], err)
            figures = []
            for ex in c["exemplars"][:exemplars]:
                try:
                    if heat_error is None:
                        crop, over = exemplar_overlay(run_dir, ex["id"], c["concept"], ex["box"], model=net,
                                                     device=source.device)
                    else:
                        img = original_image(run_dir, ex["id"])
                        x0, y0, x1, y1 = crop_box(img.shape, ex["box"])
                        crop, over = img[y0:y1, x0:x1], None
                except UnknownImageError:
                    lost += 1
                    continue
                except MikataError as err:
                    heat_error = heat_error or str(err)
                    continue
                figures.append({"id": ex["id"], "crop": _uri(crop), "overlay": _uri(over) if over is not None else None})
            c["figures"] = figures
    if heat_error:
        notes.append(f"concept heatmaps left out: {heat_error}")
    if lost:
        notes.append(f"{lost} concept exemplars could not be read any more (moved or deleted since the scan)")
    return view, notes
