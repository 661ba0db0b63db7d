"""Concepts (``mikata concepts``): ``/concepts`` the classes and their suspected shortcuts, slices and
confused pairs; ``/concepts/{c}`` one class's concepts and strategies; ``/concepts/{c}/{k}`` one concept
(exemplars with heatmaps, where it sits on average, accuracy with and without it, its images, a review
verdict). Concepts are addressed by class index and concept number, images by id only.

Pictures that need the model live under ``/map/`` (``security.COMPUTING_PREFIXES``: only our own pages
may ask for them): ``/map/concepts/{c}/{k}/exemplar/{j}.png`` (crop + heatmap),
``/map/concepts/{c}/{k}/image/{id}.png`` (heatmap over a whole image), ``/map/concepts/decomposition/{id}``
(JSON: the image's prediction split over its class's concepts). Crops and the location heat need none.
"""

from __future__ import annotations

import math

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, StrictStr, ValidationError

from mikata.presentation.media import UnknownImageError
from mikata.server.concept_state import concept_pages
from mikata.server.routes.common import (
    PAGE,
    check_class,
    check_id,
    image_response,
    page,
    run_state,
)

router = APIRouter()
MAX_REVIEW_BODY = 4096


class ConceptReviewBody(BaseModel):
    """A concept's review as the page sends it: ``{"verdict": "object" | "artefact" | null}``; nothing else."""

    model_config = ConfigDict(extra="forbid", strict=True)
    verdict: StrictStr | None = None


def _pages(request: Request):
    return concept_pages(run_state(request))


@router.get("/concepts", response_class=HTMLResponse)
def concepts_page(request: Request):
    pages = _pages(request)
    view = pages.view()
    return page(request, "concepts.html", atlas=view, reviews=pages.reviews() if view else {})


@router.get("/concepts/{c:int}", response_class=HTMLResponse)
def concept_class_page(request: Request, c: int):
    from mikata.report.concepts import (
        importance_chart,  # the report's chart: the same bars in both
    )

    pages = _pages(request)
    check_class(run_state(request), c)
    cls = next((x for x in pages.require()["classes"] if x["index"] == c), None)
    if cls is None:
        raise UnknownImageError(f"no concepts of class {c} in this run's atlas")
    return page(request, "concept_class.html", cls=cls, atlas=pages.view(), reviews=pages.reviews(),
                chart=importance_chart(cls["concepts"], f"{cls['name']}: importance of each concept"))


@router.get("/concepts/{c:int}/{k:int}", response_class=HTMLResponse)
def concept_page(request: Request, c: int, k: int, page_no: int = 0):
    state = run_state(request)
    pages = _pages(request)
    cls, concept = pages.concept(check_class(state, c), k)
    ids, presence = pages.concept_images(c, k)
    total = len(ids)
    n_pages = max(1, math.ceil(total / PAGE))
    page_no = min(max(page_no, 0), n_pages - 1)
    ov = state.overview()
    d = ov.data
    tiles = []
    for i, p in zip(ids[page_no * PAGE:(page_no + 1) * PAGE].tolist(), presence[page_no * PAGE:(page_no + 1) * PAGE].tolist()):
        try:
            r = ov.row(i)
        except KeyError:  # a row of another split (serve --split) or gone since the atlas
            continue
        tiles.append({"id": i, "label": int(d.labels[r]), "pred": int(d.preds[r]), "prob": float(p),
                      "caption": f"presence {p:.2f}"})
    review = pages.reviews().get(concept["concept"])
    return page(request, "concept.html", cls=cls, concept=concept, tiles=tiles, total=total, page_no=page_no,
                pages=n_pages, review=review, atlas=pages.view())


@router.get("/concepts/{c:int}/{k:int}/location.png")
def concept_location(request: Request, c: int, k: int):
    return image_response(_pages(request).location_png(c, k), cacheable=False)


@router.get("/concepts/{c:int}/{k:int}/crop/{j:int}.png")
def concept_crop(request: Request, c: int, k: int, j: int):
    return image_response(_pages(request).exemplar_png(c, k, j, heat=False), cacheable=False)


@router.get("/map/concepts/{c:int}/{k:int}/exemplar/{j:int}.png")
def concept_exemplar_heat(request: Request, c: int, k: int, j: int):
    return image_response(_pages(request).exemplar_png(c, k, j, heat=True), cacheable=False)


@router.get("/map/concepts/{c:int}/{k:int}/image/{image_id:int}.png")
def concept_image_heat(request: Request, c: int, k: int, image_id: int):
    return image_response(_pages(request).heatmap_png(c, k, check_id(image_id)), cacheable=False)


@router.get("/map/concepts/decomposition/{image_id:int}")
def concept_decomposition(request: Request, image_id: int):
    return _pages(request).decomposition(check_id(image_id))


@router.post("/api/concept-review/{c:int}/{k:int}")
async def concept_review(request: Request, c: int, k: int):
    from mikata.concepts.surface import CONCEPT_VERDICTS

    if not request.headers.get("content-type", "").startswith("application/json"):
        return PlainTextResponse('send JSON: {"verdict": "object"|"artefact"|null}', status_code=415)
    raw = await request.body()
    if len(raw) > MAX_REVIEW_BODY:
        return PlainTextResponse(f"the body is over {MAX_REVIEW_BODY} bytes", status_code=413)
    try:
        verdict = ConceptReviewBody.model_validate_json(raw).verdict
    except ValidationError as e:
        problems = [{"field": ".".join(map(str, err["loc"])) or "body", "problem": err["msg"]} for err in e.errors()]
        return JSONResponse({"detail": problems, "expected": '{"verdict": "object"|"artefact"|null}'}, status_code=422)
    if verdict not in (*CONCEPT_VERDICTS, None):
        return PlainTextResponse(f"verdict must be one of {', '.join(CONCEPT_VERDICTS)} or null, not {verdict!r}",
                                 status_code=400)
    from starlette.concurrency import run_in_threadpool

    pages = _pages(request)
    _, concept = pages.concept(c, k)  # 404 before anything is written
    await run_in_threadpool(pages.set_review, c, k, verdict)
    return {"concept": concept["concept"], "verdict": verdict}
