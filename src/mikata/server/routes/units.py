"""Units beside their dataset examples: ``/units`` lists the units ``mikata units`` wrote to
``RUN_DIR/units/`` (each channel's synthetic image and its top scanned images); ``/units/{j}`` shows
one unit with the activation map over each image, and every image links to its own page.

Files are served by index only (``/units/{j}/synthetic.png``, ``/units/{j}/top/{r}.png``), never by
a name read from ``units.json``; ``read_units`` checks the JSON field by field and keeps only files
inside the folder.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from mikata.presentation.media import UnknownImageError
from mikata.analysis.units import read_units
from mikata.server.routes.common import image_response, page, run_state

router = APIRouter()


def _card(request: Request) -> dict:
    got = read_units(run_state(request).run_dir)
    if got is None:
        raise UnknownImageError("no units in this run: make them with `mikata units RUN_DIR --channels 0:8`")
    return got


def _unit(request: Request, j: int) -> dict:
    units = _card(request)["units"]
    if not 0 <= j < len(units):
        raise UnknownImageError(f"no unit {j}")
    return units[j]


@router.get("/units", response_class=HTMLResponse)
def units_page(request: Request):
    return page(request, "units.html", units=read_units(run_state(request).run_dir))


@router.get("/units/{j:int}", response_class=HTMLResponse)
def unit_page(request: Request, j: int):
    from mikata.display import legend_of_kind

    legend = {**legend_of_kind(False), "ticks": [[0.0, "min"], [1.0, "max"]],  # as analysis.units draws them
              "text": "each image's activation map of this channel, from its own min (blue) to its max (red): "
                      "where the channel fires most"}
    return page(request, "unit.html", units=_card(request), unit=_unit(request, j), index=j, map_legend_data=legend)


@router.get("/units/{j:int}/synthetic.png")
def unit_synthetic(request: Request, j: int):
    return image_response(_unit(request, j)["synthetic"].read_bytes(), cacheable=False)


@router.get("/units/{j:int}/top/{r:int}.png")
def unit_example(request: Request, j: int, r: int):
    files = _unit(request, j)["overlays"]
    if not 0 <= r < len(files):
        raise UnknownImageError(f"unit {j} has no image {r}")
    return image_response(files[r].read_bytes(), cacheable=False)
