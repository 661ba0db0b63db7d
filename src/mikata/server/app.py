"""The routes of ``mikata serve``: thin functions from a request to ``RunState`` and a template.

Pages (server-rendered Jinja2): ``/`` dashboard, ``/grid`` images of a confusion cell (or of a
class, or of a prediction), ``/class/{c}`` best and worst of a class, ``/image/{id}`` probabilities
and on-demand maps, ``/reviews`` label-error review, ``/embedding`` the scatter, ``/featurevis``
the gallery, ``/scorecard`` the evaluation, ``/units`` units beside their dataset examples (routes in
``server/units.py``). Images are served by integer id only (``/thumb/{id}``,
``/img/{id}``, ``/map/{id}.png``); a path never reaches the file system from a request. Every
request has passed ``security.Gate`` (token and Host check) before it gets here.

Example:
    >>> app = create_app("runs/fashion", token="secret", port=8765)        # doctest: +SKIP
    >>> TestClient(app, base_url="http://127.0.0.1:8765").get("/?token=secret").status_code  # doctest: +SKIP
    200
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from typing import Optional

from fastapi import FastAPI, Query, Request
from pydantic import BaseModel, ConfigDict, StrictInt, StrictStr, ValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.templating import Jinja2Templates

from mikata import __version__
from mikata.analysis.attachments import scorecard_figure
from mikata.analysis.media import UnknownImageError, mime_type
from mikata.analysis.runstore import REVIEW_VERDICTS, RunStoreError
from mikata.attribution import registry
from mikata.attribution.engine import NotSpatialError
from mikata.data.filenames import shown_in_template
from mikata.errors import ChoiceError, ImageDecodeError, MikataError, ModelLoadError
from mikata.models.handle import ModelHandle
from mikata.server.security import Gate, new_token
from mikata.server import units as units_routes
from mikata.server.state import RunState
from mikata.server.units import has_units

HERE = Path(__file__).resolve().parent
PAGE = 120  # thumbnails per grid page
MAX_CONFUSION = 40  # classes drawn in the dashboard's confusion matrix
GRID_METHODS = registry.names(grid=True)  # fast enough for 120 tiles (the registry says which)
MAX_ID = 2**63 - 1
MAX_REVIEW_BODY = 65536  # bytes; a review is two small fields (deep nesting is the schema's to refuse)


class ReviewBody(BaseModel):
    """A label review as the page sends it. Strict: ``true`` or ``1.9`` is not class 1, extra keys are errors."""

    model_config = ConfigDict(extra="forbid", strict=True)
    verdict: Optional[StrictStr] = None  # "wrong" | "fine" | null (checked against REVIEW_VERDICTS: 400)
    suggested: Optional[StrictInt] = None  # a class id (checked against the run's classes: 400)


def _static_files() -> dict[str, tuple[Path, str]]:
    """The only files /static serves: ours, and plotly.js from the installed plotly wheel (offline)."""
    files = {"app.js": (HERE / "static" / "app.js", "text/javascript; charset=utf-8"),
             "app.css": (HERE / "static" / "app.css", "text/css; charset=utf-8")}
    try:
        import plotly

        files["plotly.min.js"] = (Path(plotly.__file__).parent / "package_data" / "plotly.min.js",
                                  "text/javascript; charset=utf-8")
    except ImportError:  # the embedding page then says plotly is missing
        pass
    return files


def create_app(run_dir: str | os.PathLike, token: str | None = None, host: str = "127.0.0.1",
               port: int | None = None, handle: ModelHandle | None = None, model: str | None = None,
               state: RunState | None = None):
    """The ASGI app for one run, wrapped in the token/Host gate. ``app.state.run`` is the ``RunState``.

    ``port=None`` accepts the allowed host names without a port (for in-process tests only).
    """
    state = state or RunState(run_dir, handle=handle, model=model)
    token = token or new_token()
    app = FastAPI(title="mikata", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.run = state
    app.state.token = token
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals.update(version=__version__, run_name=state.run_dir.name, fmt_pct=_pct)
    templates.env.finalize = shown_in_template  # non-UTF-8 file names print as \xNN, not a 500
    static = _static_files()
    cache: dict[str, bytes] = {}

    def page(request: Request, name: str, **ctx) -> HTMLResponse:
        ov = state.overview()
        return templates.TemplateResponse(request, name, {"ov": ov, "names": ov.class_names,
                                                          "has_featurevis": bool(state.featurevis_files()),
                                                          "has_scorecard": state.scorecard() is not None,
                                                          "has_units": has_units(state.run_dir), **ctx})

    def image_response(data: bytes, cacheable: bool = True) -> Response:
        return Response(data, media_type=mime_type(data),
                        headers={"cache-control": "private, max-age=3600" if cacheable else "no-store"})

    # ------------------------------------------------------------------ errors
    @app.exception_handler(UnknownImageError)
    async def _unknown(request: Request, exc: UnknownImageError):
        return PlainTextResponse("not found", status_code=404)

    @app.exception_handler(ImageDecodeError)
    async def _undecodable(request: Request, exc: ImageDecodeError):  # the file changed since the scan
        return PlainTextResponse("not found (the file can no longer be decoded)", status_code=404)

    @app.exception_handler(ChoiceError)
    async def _choice(request: Request, exc: ChoiceError):
        return PlainTextResponse(str(exc), status_code=400)

    @app.exception_handler(NotSpatialError)
    async def _not_spatial(request: Request, exc: NotSpatialError):  # ?layer= a layer CAMs cannot use
        return PlainTextResponse(str(exc), status_code=400)

    @app.exception_handler(ModelLoadError)
    async def _no_model(request: Request, exc: ModelLoadError):  # refused or missing model: the page still works
        return PlainTextResponse(str(exc), status_code=409)

    @app.exception_handler(MikataError)
    async def _mikata(request: Request, exc: MikataError):
        return PlainTextResponse(str(exc), status_code=400 if isinstance(exc, RunStoreError) else 500)

    def check_id(image_id: int) -> int:
        if not 0 < image_id <= MAX_ID:
            raise UnknownImageError(f"no image with id {image_id}")
        return image_id

    def check_class(c: int) -> int:
        if not 0 <= c < len(state.class_names):
            raise UnknownImageError(f"no class {c}")
        return c

    # ------------------------------------------------------------------- pages
    @app.get("/", response_class=HTMLResponse)
    def dashboard(request: Request):
        ov = state.overview()
        rows, cols = confusion_view(ov.confusion, ov.present)
        return page(request, "dashboard.html", rows=rows, cols=cols, scorecard=state.scorecard(),
                    hist_max=int(ov.histogram.max()) if len(ov.histogram) else 1)

    @app.get("/grid", response_class=HTMLResponse)
    def grid(request: Request, true: int = -1, pred: int = -1, page_no: int = 0,
             map_method: str = Query("", alias="map")):
        ov = state.overview()
        d = ov.data
        if true >= len(ov.class_names) or pred >= len(ov.class_names):
            raise UnknownImageError("no such class")
        ids = state.grid_ids(true, pred, ov)  # this overview: a scan may commit meanwhile
        names = ov.class_names
        title = (f"{names[true]} predicted as {names[pred]}" if true >= 0 and pred >= 0 else
                 ("all images labeled " + names[true] if true >= 0 else "all images")
                 + (f" predicted as {names[pred]}" if pred >= 0 else ""))
        pages = max(1, math.ceil(len(ids) / PAGE))
        page_no = min(max(page_no, 0), pages - 1)
        shown = ids[page_no * PAGE:(page_no + 1) * PAGE]
        tiles = []
        for i in shown.tolist():
            r = ov.row(i)
            tiles.append({"id": i, "label": int(d.labels[r]), "pred": int(d.preds[r]),
                          "prob": float(d.probs[r, d.preds[r]])})
        return page(request, "grid.html", tiles=tiles, title=title, total=len(ids), sel_true=true, sel_pred=pred,
                    map_method=map_method if map_method in GRID_METHODS else "", grid_methods=GRID_METHODS,
                    page_no=page_no, pages=pages)

    @app.get("/class/{c:int}", response_class=HTMLResponse)
    def class_page(request: Request, c: int):
        ov = state.overview()
        check_class(c)
        view = next((v for v in ov.classes if v.index == c), None)
        if view is None:
            raise UnknownImageError(f"no images of class {c}")
        d = ov.data

        def tiles(ids, of_class: bool):  # P(this class), or P(predicted class) for the errors
            return [{"id": i, "label": int(d.labels[r]), "pred": int(d.preds[r]),
                     "prob": float(d.probs[r, c if of_class else d.preds[r]])} for i in ids for r in [ov.row(i)]]

        return page(request, "class.html", view=view, most=tiles(view.most_class_like, True),
                    least=tiles(view.least_class_like, True), errors=tiles(view.confident_errors, False))

    @app.get("/image/{image_id:int}", response_class=HTMLResponse)
    def image_page(request: Request, image_id: int, method: str = "gradcam", cls: str = ""):
        from mikata.analysis.maps import LAYER_MAP_METHODS

        methods = registry.names()  # every registered method, plug-ins included
        row = state.image_row(check_id(image_id))
        state.image_path(image_id)  # 404 for rows whose file is not servable (gone, or outside the data folder)
        names = state.class_names
        probs = row["probs"] or []
        ranked = sorted(range(len(probs)), key=lambda c: -probs[c])[:10]
        prev_id, next_id = state.neighbours(image_id)
        review = state.review(image_id)
        return page(request, "image.html", row=row, probs=probs, ranked=ranked, methods=methods,
                    layer_methods=LAYER_MAP_METHODS, method=method if method in methods else "gradcam",
                    cls=cls, prev_id=prev_id, next_id=next_id, review=review, class_count=len(names))

    @app.get("/reviews", response_class=HTMLResponse)
    def reviews_page(request: Request):
        ov = state.overview()
        done = {r["id"]: r for r in state.reviews()}
        return page(request, "reviews.html", issues=ov.label_issues, done=done,
                    reviewed=sorted(done.values(), key=lambda r: r["updated"], reverse=True),
                    name_index={n: i for i, n in enumerate(ov.class_names)})

    @app.get("/embedding", response_class=HTMLResponse)
    def embedding_page(request: Request):
        return page(request, "embedding.html", has_plotly="plotly.min.js" in static,
                    has_embed=state.has_embeddings())

    @app.get("/featurevis", response_class=HTMLResponse)
    def featurevis_page(request: Request):
        root = state.run_dir / "featurevis"
        files = [str(p.relative_to(root)) for p in state.featurevis_files()]
        return page(request, "featurevis.html", files=files)

    @app.get("/scorecard", response_class=HTMLResponse)
    def scorecard_page(request: Request):
        return page(request, "scorecard.html", scorecard=state.scorecard())

    units_routes.register(app, state, page, image_response)

    # ---------------------------------------------------------- images by id
    @app.get("/thumb/{image_id:int}")
    def thumb(image_id: int, size: int = 96):
        return image_response(state.thumbnail(check_id(image_id), min(max(size, 16), 512)))

    @app.get("/img/{image_id:int}")
    def full_image(image_id: int):
        return image_response(state.full_image(check_id(image_id)))

    @app.get("/view/{image_id:int}.png")
    def model_view(image_id: int):
        return image_response(state.model_view(check_id(image_id)))

    @app.get("/map/{image_id:int}.png")
    def map_png(image_id: int, method: str = "gradcam", cls: str = "", layer: str = ""):
        # an unknown, skipped or unservable id is a 404 before any model is loaded (MapService checks)
        return image_response(state.overlay(check_id(image_id), method, cls or None, layer or None))

    @app.get("/featurevis/{index:int}.png")
    def featurevis_png(index: int):
        return image_response(state.featurevis_png(index))

    @app.get("/scorecard/figure/{index:int}.png")
    def scorecard_figure_png(index: int):
        card = state.scorecard() or {}
        figures = card.get("figures") or []
        if not 0 <= index < len(figures):
            raise UnknownImageError("no such figure")
        path = scorecard_figure(state.run_dir, figures[index])
        if path is None:
            raise UnknownImageError("no such figure")
        return image_response(path.read_bytes(), cacheable=False)

    # -------------------------------------------------------------------- data
    @app.get("/api/overview")
    def api_overview():
        ov = state.overview()
        return {"version": list(ov.version), "images": len(ov.data), "skipped": len(ov.skipped),
                "accuracy": ov.accuracy, "classes": ov.class_names, "confusion": ov.confusion.tolist()}

    @app.get("/api/embedding")
    def api_embedding():
        if not state.has_embeddings():
            raise UnknownImageError("this run has no embeddings")
        return JSONResponse(state.embedding())

    @app.post("/api/review/{image_id:int}")
    async def api_review(request: Request, image_id: int):
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

        await run_in_threadpool(state.set_review, check_id(image_id), verdict, suggested)
        return {"id": image_id, "verdict": verdict, "suggested": suggested}

    @app.get("/reviews.csv")
    def reviews_csv():
        return Response(state.reviews_csv(), media_type="text/csv; charset=utf-8",
                        headers={"content-disposition": f'attachment; filename="{state.run_dir.name}-reviews.csv"'})

    @app.get("/static/{name}")
    def static_file(name: str):
        if name not in static:
            raise UnknownImageError("no such file")
        path, media = static[name]
        if name not in cache:
            cache[name] = path.read_bytes()
        return Response(cache[name], media_type=media, headers={"cache-control": "private, max-age=86400"})

    gate = Gate(app, token=token, host=host, port=port)
    gate.fastapi, gate.run = app, state
    return gate


_REVIEW_SHAPE = '{"verdict": "wrong"|"fine"|null, "suggested": class id (integer)|null}'


def confusion_view(cm, present: list[int], limit: int = MAX_CONFUSION) -> tuple[list[int], list[int]]:
    """Rows and columns of the confusion matrix to draw: every class that has images or predictions, or,
    for many classes (ImageNet), the ``limit`` classes involved in the most errors (the rest is in /grid)."""
    import numpy as np

    used = sorted(set(present) | set(np.nonzero(cm.sum(0))[0].tolist()))
    if len(used) <= limit:
        return list(present), used
    off = cm.copy()
    np.fill_diagonal(off, 0)
    involved = off.sum(0) + off.sum(1)  # (K,) errors as the true or as the predicted class
    top = sorted(np.argsort(-involved, kind="stable")[:limit].tolist())
    return [c for c in top if c in set(present)], top


def _pct(x: float) -> str:
    return "–" if x != x else f"{100 * x:.1f}%"
