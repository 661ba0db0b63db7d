"""Images by integer id only (``/thumb/{id}``, ``/img/{id}``, ``/view/{id}.png``, ``/map/{id}.png``),
the feature-visualization and scorecard figures by index, and our static files by name: a path
from a request never reaches the file system."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.responses import Response

from mikata.runs.attachments import scorecard_figure
from mikata.presentation.media import UnknownImageError
from mikata.server.routes.common import check_id, image_response, run_state

router = APIRouter()


@router.get("/thumb/{image_id:int}")
def thumb(request: Request, image_id: int, size: int = 96):
    return image_response(run_state(request).thumbnail(check_id(image_id), min(max(size, 16), 512)))


@router.get("/img/{image_id:int}")
def full_image(request: Request, image_id: int):
    return image_response(run_state(request).full_image(check_id(image_id)))


@router.get("/view/{image_id:int}.png")
def model_view(request: Request, image_id: int):
    return image_response(run_state(request).model_view(check_id(image_id)))


@router.get("/map/{image_id:int}.png")
def map_png(request: Request, image_id: int, method: str = "gradcam", cls: str = "", layer: str = ""):
    """The overlay; its legend (``display.MapScale.legend``: colors, values, meaning, or why the map is
    empty) rides along as JSON in the ``X-Map-Legend`` header, so the page's legend is this map's."""
    # an unknown, skipped or unservable id is a 404 before any model is loaded (MapService checks)
    png, legend = run_state(request).overlay_with_legend(check_id(image_id), method, cls or None, layer or None)
    response = image_response(png)
    response.headers["x-map-legend"] = json.dumps(legend, ensure_ascii=True, allow_nan=False,
                                                  separators=(",", ":"))
    return response


@router.get("/api/map-estimate/{image_id:int}")
def map_estimate(request: Request, image_id: int, method: str = "gradcam", cls: str = "", layer: str = ""):
    """What /map/{id}.png will cost: cached or not, the median seconds of this method's earlier maps,
    whether the model loads first — so the page says more than "computing…" while it waits."""
    return run_state(request).map_estimate(check_id(image_id), method, cls or None, layer or None)


@router.get("/featurevis/{index:int}.png")
def featurevis_png(request: Request, index: int):
    return image_response(run_state(request).featurevis_png(index))


@router.get("/scorecard/figure/{index:int}.png")
def scorecard_figure_png(request: Request, index: int):
    state = run_state(request)
    card = state.scorecard() or {}
    figures = card.get("figures") or []
    if not 0 <= index < len(figures):
        raise UnknownImageError("no such figure")
    path = scorecard_figure(state.run_dir, figures[index])
    if path is None:
        raise UnknownImageError("no such figure")
    return image_response(path.read_bytes(), cacheable=False)


@router.get("/static/{name}")
def static_file(request: Request, name: str):
    static, cache = request.app.state.static, request.app.state.static_cache
    if name not in static:
        raise UnknownImageError("no such file")
    path, media = static[name]
    if name not in cache:
        cache[name] = path.read_bytes()
    return Response(cache[name], media_type=media, headers={"cache-control": "private, max-age=86400"})
