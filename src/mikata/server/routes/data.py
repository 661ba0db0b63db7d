"""JSON and CSV: the overview numbers, the embedding scatter, label reviews (the one POST)."""

from __future__ import annotations

from typing import Optional

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, StrictInt, StrictStr, ValidationError

from mikata.presentation.media import UnknownImageError
from mikata.runs.store import REVIEW_VERDICTS
from mikata.server.routes.common import check_id, run_state

router = APIRouter()
MAX_REVIEW_BODY = 65536  # bytes; a review is two small fields (deep nesting is the schema's to refuse)
_REVIEW_SHAPE = '{"verdict": "wrong"|"fine"|null, "suggested": class id (integer)|null}'


class ReviewBody(BaseModel):
    """A label review as the page sends it. Strict: ``true`` or ``1.9`` is not class 1, extra keys are errors."""

    model_config = ConfigDict(extra="forbid", strict=True)
    verdict: Optional[StrictStr] = None  # "wrong" | "fine" | null (checked against REVIEW_VERDICTS: 400)
    suggested: Optional[StrictInt] = None  # a class id (checked against the run's classes: 400)


@router.get("/api/overview")
def api_overview(request: Request):
    ov = run_state(request).overview()
    return {"version": list(ov.version), "images": len(ov.data), "skipped": len(ov.skipped),
            "accuracy": ov.accuracy, "classes": ov.class_names, "confusion": ov.confusion.tolist()}


@router.get("/api/curves")
def api_curves(request: Request):
    """The positive class's curves and the counts at 1,001 thresholds (the dashboard's slider reads them)."""
    _, data = run_state(request).curves()
    if data is None:
        raise UnknownImageError("no curves: this run has more than two classes and no --positive class")
    return data


@router.get("/api/embedding")
def api_embedding(request: Request):
    state = run_state(request)
    if not state.has_embeddings():
        raise UnknownImageError("this run has no embeddings")
    return Response(state.embedding_json(), media_type="application/json")


@router.post("/api/review/{image_id:int}")
async def api_review(request: Request, image_id: int):
    state = run_state(request)
    if not request.headers.get("content-type", "").startswith("application/json"):
        return PlainTextResponse("send JSON: {\"verdict\": \"wrong\"|\"fine\"|null, \"suggested\": class id}",
                                 status_code=415)
    raw = await request.body()
    if len(raw) > MAX_REVIEW_BODY:
        return PlainTextResponse(f"the body is over {MAX_REVIEW_BODY} bytes", status_code=413)
    try:
        review = ReviewBody.model_validate_json(raw)
    except ValidationError as e:
        problems = [{"field": ".".join(map(str, err["loc"])) or "body", "problem": err["msg"]} for err in e.errors()]
        return JSONResponse({"detail": problems, "expected": _REVIEW_SHAPE}, status_code=422)
    verdict, suggested = review.verdict, review.suggested
    if verdict not in (*REVIEW_VERDICTS, None):
        return PlainTextResponse(f"verdict must be one of {', '.join(REVIEW_VERDICTS)} or null, not {verdict!r}",
                                 status_code=400)
    if suggested is not None and not 0 <= suggested < len(state.class_names):
        return PlainTextResponse(f"suggested must be a class id 0..{len(state.class_names) - 1}", status_code=400)
    from starlette.concurrency import run_in_threadpool

    if verdict != "wrong":  # "fine" keeps the given label: no suggested class is stored or echoed
        suggested = None
    await run_in_threadpool(state.set_review, check_id(image_id), verdict, suggested)
    return {"id": image_id, "verdict": verdict, "suggested": suggested}


@router.get("/reviews.csv")
def reviews_csv(request: Request):
    state = run_state(request)
    return Response(state.reviews_csv(), media_type="text/csv; charset=utf-8",
                    headers={"content-disposition": f'attachment; filename="{state.run_dir.name}-reviews.csv"'})
