"""The web app's units pages: ``/units`` lists the units ``mikata units`` wrote to ``RUN_DIR/units/``
(each channel's synthetic image and its top scanned images); ``/units/{j}`` shows one unit with the
activation map over each image, and every image links to its own page.

Files are served by index only (``/units/{j}/synthetic.png``, ``/units/{j}/top/{r}.png``), never by
a name read from ``units.json``; ``read_units`` checks the JSON field by field and keeps only files
inside the folder.
"""

from __future__ import annotations

from typing import Callable

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from mikata.analysis.media import UnknownImageError
from mikata.analysis.units import read_units


def has_units(run_dir) -> bool:
    return (run_dir / "units" / "units.json").is_file()


def register(app: FastAPI, state, page: Callable[..., HTMLResponse], image_response: Callable) -> None:
    """Add the units routes to ``app`` (``page`` renders a template with the common context)."""

    def card() -> dict:
        got = read_units(state.run_dir)
        if got is None:
            raise UnknownImageError("no units in this run: make them with `mikata units RUN_DIR --channels 0:8`")
        return got

    def unit(j: int) -> dict:
        units = card()["units"]
        if not 0 <= j < len(units):
            raise UnknownImageError(f"no unit {j}")
        return units[j]

    @app.get("/units", response_class=HTMLResponse)
    def units_page(request: Request):
        got = read_units(state.run_dir)
        return page(request, "units.html", units=got)

    @app.get("/units/{j:int}", response_class=HTMLResponse)
    def unit_page(request: Request, j: int):
        got = card()
        return page(request, "unit.html", units=got, unit=unit(j), index=j)

    @app.get("/units/{j:int}/synthetic.png")
    def unit_synthetic(j: int):
        return image_response(unit(j)["synthetic"].read_bytes(), cacheable=False)

    @app.get("/units/{j:int}/top/{r:int}.png")
    def unit_example(j: int, r: int):
        files = unit(j)["overlays"]
        if not 0 <= r < len(files):
            raise UnknownImageError(f"unit {j} has no image {r}")
        return image_response(files[r].read_bytes(), cacheable=False)
