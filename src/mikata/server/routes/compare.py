"""``mikata serve RUN_A --compare RUN_B``: the comparison pages and model B's maps of A's images.

``/compare``: the image counts, every metric (A, B, B - A, interval, McNemar's p) and the first
fixed and broken images; ``/compare/flipped?kind=fixed``: one of those lists, page by page;
``/compare/issues``: the dataset-issue counts side by side (each run's issue search, stored in the run);
``/compare/map/{id}.png``: model B's map of A's image ``id`` (the image page shows it beside A's).
Without ``--compare`` every one of them is a 404.
"""

from __future__ import annotations

import json
import math

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from mikata.analysis.compare import interval_text, p_text, signed_pct
from mikata.presentation.media import UnknownImageError
from mikata.server.compare_state import CompareState
from mikata.server.routes.common import PAGE, check_id, image_response, page, run_state

router = APIRouter()
FIRST = 24  # flipped images of each kind on the summary page


def compare_state(request: Request) -> CompareState:
    cmp = getattr(run_state(request), "compare", None)
    if cmp is None:
        raise UnknownImageError("no comparison: start the app with `mikata serve RUN_A --compare RUN_B`")
    return cmp


def _tiles(c, kind: str, start: int, count: int) -> list[dict]:
    names = c.class_names
    index = {n: i for i, n in enumerate(names)}
    return [{"id": it["id_a"], "label": index[it["label"]], "pred": index[it["pred_a"]], "prob": it["prob_a"],
             "pred_b": index[it["pred_b"]], "prob_b": it["prob_b"], "id_b": it["id_b"]}
            for it in c.flipped_items(kind, start, count)]


def _formatters() -> dict:
    return {"signed": signed_pct, "interval": interval_text, "ptext": p_text}


@router.get("/compare", response_class=HTMLResponse)
def compare_page(request: Request):
    cmp = compare_state(request)
    c = cmp.comparison()
    return page(request, "compare.html", c=c, run_b=cmp.run_dir, fixed=_tiles(c, "fixed", 0, FIRST),
                broken=_tiles(c, "broken", 0, FIRST), counts={k: len(c.flipped_rows(k)) for k in ("fixed", "broken")},
                notes=c.notes(), confidence=int(round(c.settings.confidence * 100)), **_formatters())


@router.get("/compare/flipped", response_class=HTMLResponse)
def flipped_page(request: Request, kind: str = "fixed", page_no: int = 0):
    cmp = compare_state(request)
    c = cmp.comparison()
    total = len(c.flipped_rows(kind))  # ChoiceError (400) for another kind
    pages = max(1, math.ceil(total / PAGE))
    page_no = min(max(page_no, 0), pages - 1)
    return page(request, "compare_flipped.html", c=c, kind=kind, total=total, page_no=page_no, pages=pages,
                tiles=_tiles(c, kind, page_no * PAGE, PAGE), run_b=cmp.run_dir)


@router.get("/compare/issues", response_class=HTMLResponse)
def issues_page(request: Request):
    cmp = compare_state(request)
    c = cmp.comparison()
    return page(request, "compare_issues.html", c=c, issues=c.issue_counts(), run_b=cmp.run_dir)


@router.get("/compare/map/{image_id:int}.png")
def map_b(request: Request, image_id: int, method: str = "gradcam", cls: int = -1):
    """Model B's map of A's image ``image_id`` for class ``cls`` (A's class id; -1: B's prediction)."""
    state = run_state(request)
    cmp = compare_state(request)
    if cls >= len(state.class_names):
        raise UnknownImageError(f"no class {cls}")
    state._in_split(check_id(image_id))  # an A image outside the app's split is a 404, as on every page
    png, legend = cmp.overlay(image_id, method, None if cls < 0 else cls)
    response = image_response(png)
    response.headers["x-map-legend"] = json.dumps(legend, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return response
