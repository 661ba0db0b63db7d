"""HTML pages: dashboard, confusion-cell grids, a class's best and worst, an image, reviews,
the embedding scatter, the feature-visualization gallery, the scorecard."""

from __future__ import annotations

import math

import numpy as np

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from mikata.analysis.audit import describe_label_issue, label_issue_evidence
from mikata.presentation.media import UnknownImageError
from mikata.presentation.sections import confusion_view
from mikata.attribution import registry
from mikata.server.routes.common import MAX_CONFUSION, PAGE, check_class, check_id, page, run_state

router = APIRouter()
GRID_METHODS = registry.names(grid=True)  # fast enough for 120 tiles (the registry says which)
REVIEW_PAGE = 100  # suspected label errors per review page (the headline always gives the total)


def tiles_legend(method: str) -> dict | None:
    """The legend of a page of map tiles of ``method`` (each tile scaled to its own map), or None."""
    if not method:
        return None
    from mikata.presentation.maps import LAYER_MAP_METHODS
    from mikata.display import legend_of_kind

    return legend_of_kind(registry.signed_map(method), saturate=method not in LAYER_MAP_METHODS,
                          what="the predicted class")


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request):
    state = run_state(request)
    ov = state.overview()
    rows, cols = confusion_view(ov.confusion, ov.present, MAX_CONFUSION)
    curves, binary = state.curves()
    charts = None
    if curves is not None:
        from mikata.report.svg import operating_charts  # the report's own charts: the same curves in both

        charts = operating_charts(curves)
    from mikata.report.svg import reliability_chart

    calibration = state.view.calibration()
    return page(request, "dashboard.html", rows=rows, cols=cols, scorecard=state.scorecard(), binary=binary,
                charts=charts, calibration=calibration, reliability=reliability_chart(calibration), positive_named=state.positive is not None,
                hist_max=int(ov.histogram.max()) if len(ov.histogram) else 1, field_groups=state.field_groups(ov))


@router.get("/grid", response_class=HTMLResponse)
def grid(request: Request, true: int = -1, pred: int = -1, page_no: int = 0,
         map_method: str = Query("", alias="map"), where: str = ""):
    state = run_state(request)
    ov = state.overview()
    d = ov.data
    if true >= len(ov.class_names) or pred >= len(ov.class_names):
        raise UnknownImageError("no such class")
    ids = state.grid_ids(true, pred, ov, where)  # this overview: a scan may commit meanwhile
    _, where_text = state.field_mask(where, ov)
    names = ov.class_names
    title = (f"{names[true]} predicted as {names[pred]}" if true >= 0 and pred >= 0 else
             ("all images labeled " + names[true] if true >= 0 else "all images")
             + (f" predicted as {names[pred]}" if pred >= 0 else ""))
    pages = max(1, math.ceil(len(ids) / PAGE))
    page_no = min(max(page_no, 0), pages - 1)
    shown = ids[page_no * PAGE:(page_no + 1) * PAGE]
    tiles = []
    rows = [ov.row(i) for i in shown.tolist()]
    fields = state.row_fields(rows)
    for i, r in zip(shown.tolist(), rows):
        tiles.append({"id": i, "label": int(d.labels[r]), "pred": int(d.preds[r]),
                      "prob": float(d.probs[r, d.preds[r]]), "fields": fields.get(r, "")})
    return page(request, "grid.html", tiles=tiles, title=title, total=len(ids), sel_true=true, sel_pred=pred,
                map_method=map_method if map_method in GRID_METHODS else "", grid_methods=GRID_METHODS,
                page_no=page_no, pages=pages, where=where, where_text=where_text, fields=state.field_choices(),
                map_legend_data=tiles_legend(map_method if map_method in GRID_METHODS else ""))


@router.get("/class/{c:int}", response_class=HTMLResponse)
def class_page(request: Request, c: int):
    state = run_state(request)
    ov = state.overview()
    check_class(state, c)
    view = next((v for v in ov.classes if v.index == c), None)
    if view is None:
        raise UnknownImageError(f"no images of class {c}")
    d = ov.data

    def tiles(ids, of_class: bool):  # P(this class), or P(predicted class) for the errors
        fields = state.row_fields([ov.row(i) for i in ids])
        return [{"id": i, "label": int(d.labels[r]), "pred": int(d.preds[r]), "fields": fields.get(r, ""),
                 "prob": float(d.probs[r, c if of_class else d.preds[r]])} for i in ids for r in [ov.row(i)]]

    return page(request, "class.html", view=view, most=tiles(view.most_class_like, True),
                least=tiles(view.least_class_like, True), errors=tiles(view.confident_errors, False))


@router.get("/image/{image_id:int}", response_class=HTMLResponse)
def image_page(request: Request, image_id: int, method: str = "gradcam", cls: str = ""):
    from mikata.presentation.maps import LAYER_MAP_METHODS

    state = run_state(request)
    methods = registry.names()  # every registered method, plug-ins included
    row = state.image_row(check_id(image_id))
    state.image_path(image_id)  # 404 for rows whose file is not servable (gone, or outside the data folder)
    names = state.class_names
    probs = row["probs"] or []
    ranked = sorted(range(len(probs)), key=lambda c: -probs[c])[:10]
    prev_id, next_id = state.neighbours(image_id)
    review = state.review(image_id)
    compared = {} if state.compare is None else {"compare_side": state.compare.side(image_id),
                                                 "compare_run": state.compare.run_dir}
    return page(request, "image.html", row=row, probs=probs, ranked=ranked, methods=methods,
                layer_methods=LAYER_MAP_METHODS, method=method if method in methods else "gradcam",
                cls=cls, prev_id=prev_id, next_id=next_id, review=review, class_count=len(names),
                fields=state.image_fields(image_id), **compared)


@router.get("/reviews", response_class=HTMLResponse)
def reviews_page(request: Request, start: int = 0):
    """The review queue: the suspected label errors in the overview's order, REVIEW_PAGE at a time,
    each with the evidence (label and model probabilities, issue score, split) and a big thumbnail;
    j/k move, w / f give a verdict and move on (``app.js``)."""
    state = run_state(request)
    ov = state.overview()
    total = ov.label_issues_total
    start = min(max(start, 0), max(total - 1, 0))
    items = ov.label_issue_page(start, REVIEW_PAGE)
    done = {r["id"]: r for r in state.reviews()}
    files = state.file_names([i["id"] for i in items])
    fields = state.row_fields([i["row"] for i in items])
    return page(request, "reviews.html", issues=[{**i, "name": files.get(i["id"], ""), "fields": fields.get(i["row"], ""),
                                                  "evidence": label_issue_evidence(i)} for i in items],
                done=done, total=total, start=start, page_size=REVIEW_PAGE, scope_note=ov.label_scope_note,
                reviewed=sorted(done.values(), key=lambda r: r["updated"], reverse=True),
                name_index={n: i for i, n in enumerate(ov.class_names)})


@router.get("/embedding", response_class=HTMLResponse)
def embedding_page(request: Request):
    state = run_state(request)
    return page(request, "embedding.html", has_plotly="plotly.min.js" in request.app.state.static,
                has_embed=state.has_embeddings(), fields=state.field_names(),
                points=state.embedding_points())


@router.get("/featurevis", response_class=HTMLResponse)
def featurevis_page(request: Request):
    state = run_state(request)
    return page(request, "featurevis.html", entries=state.featurevis_gallery())


@router.get("/scorecard", response_class=HTMLResponse)
def scorecard_page(request: Request):
    return page(request, "scorecard.html", scorecard=run_state(request).scorecard())


@router.get("/issues", response_class=HTMLResponse)
def issues_page(request: Request, type: str = "", cls: int = -1, page_no: int = 0, where: str = ""):
    """Dataset issues: a count per type, and the flagged images of one type (of one class, of one field
    value), worst first; for label issues, outliers and weak groups each tile shows the Grad-CAM of its
    prediction."""
    from mikata.analysis.issue_registry import issue_type
    from mikata.analysis.issues import issue_rows

    state = run_state(request)
    ov = state.overview()
    found = state.issues()
    summary = found.summary()
    if not type:
        type = next((t["type"] for t in summary if t["flagged"]), summary[0]["type"])
    if cls != -1:
        check_class(state, cls)
    rows = issue_rows(found, type, None if cls < 0 else cls)  # ChoiceError (400) for an unknown type
    mask, where_text = state.field_mask(where, ov)
    if mask is not None:
        rows = rows[mask[rows]]
    pages = max(1, math.ceil(len(rows) / PAGE))
    page_no = min(max(page_no, 0), pages - 1)
    d, score = ov.data, found.types[type].score
    shown = rows[page_no * PAGE:(page_no + 1) * PAGE].tolist()
    files = state.file_names([int(d.ids[r]) for r in shown])
    if type == "label":
        from mikata.analysis.audit import label_issues

        captions = {it["row"]: describe_label_issue(it)
                    for it in label_issues(d, ranked=np.asarray(shown, np.int64))}
    else:
        captions = {r: f"{type} score {score[r]:.3f}" for r in shown}
    from mikata.analysis.issues import pair_measure, pair_partners

    partners = pair_partners(found, type)  # duplicate types: the partner beside the image, and what was measured
    fields = state.row_fields(shown)
    tiles = [{"id": int(d.ids[r]), "label": int(d.labels[r]), "pred": int(d.preds[r]), "prob": float(score[r]),
              "caption": captions[r], "name": files.get(int(d.ids[r]), ""), "fields": fields.get(r, ""),
              "partner": partners.get(int(d.ids[r]))} for r in shown]
    spec = issue_type(type)
    pairs = [p for p in found.pairs if spec.pairs and (type != "leak" or p[4])][:60]
    map_method = "gradcam" if spec.explained_by_maps and "gradcam" in GRID_METHODS else ""
    return page(request, "issues.html", summary=summary, type=type, sel_cls=cls, tiles=tiles, total=len(rows),
                page_no=page_no, pages=pages, threshold=found.types[type].threshold,
                map_method=map_method, map_legend_data=tiles_legend(map_method),
                pairs=[(int(found.pair_data.ids[i]), int(found.pair_data.ids[j]), sim, kind, across)
                       for i, j, sim, kind, across in pairs],
                pair_measure=pair_measure,
                groups=[g for g in found.groups if g["flagged"]] if type == "underperforming_group" else [],
                notes=found.notes, where=where, where_text=where_text, fields=state.field_choices(),
                flagged_total=int(found.types[type].flag.sum()))
