"""``create_app``: the ASGI app of ``mikata serve`` — its routes (``server/routes/``), error pages and gate.

Pages (server-rendered Jinja2): ``/`` dashboard, ``/grid`` images of a confusion cell (or of a
class, or of a prediction), ``/class/{c}`` best and worst of a class, ``/image/{id}`` probabilities
and on-demand maps, ``/reviews`` label-error review, ``/embedding`` the scatter, ``/featurevis``
the gallery, ``/scorecard`` the evaluation. Images are served by integer id only (``/thumb/{id}``,
``/img/{id}``, ``/map/{id}.png``); a path never reaches the file system from a request. Every
request has passed ``security.Gate`` (token and Host check) before it reaches a route. The routes
are thin functions in ``routes/pages.py``, ``routes/images.py``, ``routes/data.py``,
``routes/units.py`` (``/units``: units beside their dataset examples) and ``routes/concepts.py``
(``/concepts`` → class → concept, and the image page's concept decomposition); what they
share with the HTML report (confusion trimming, cell order, the scorecard table, thumbnails)
comes from ``mikata.presentation.sections`` and ``mikata.presentation.media``.

Example:
    >>> app = create_app("runs/fashion", token="secret", port=8765)        # doctest: +SKIP
    >>> TestClient(app, base_url="http://127.0.0.1:8765").get("/?token=secret").status_code  # doctest: +SKIP
    200
"""

from __future__ import annotations

import os
import shlex
import sqlite3
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse
from fastapi.templating import Jinja2Templates

from mikata import __version__
from mikata.presentation.media import UnknownImageError
from mikata.presentation.templates import bytecode_cache
from mikata.runs.store import ReadOnlyRunError, RunStoreError
from mikata.attribution.engine import NotSpatialError
from mikata.data.filenames import shown_in_template
from mikata.formatting import percent
from mikata.errors import ChoiceError, ImageDecodeError, MikataError, ModelLoadError
from mikata.models.handle import ModelHandle
from mikata.models.source import ModelSource
from mikata.server.routes import ROUTERS
from mikata.server.routes.pages import GRID_METHODS  # noqa: F401 - the grid's methods, named here before
from mikata.server.security import Gate, new_token
from mikata.server.state import RunState

HERE = Path(__file__).resolve().parent


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
               state: RunState | None = None, device: str | None = "cpu", positive: int | str | None = None,
               split: str | None = None, source: ModelSource | None = None, compare: str | os.PathLike | None = None,
               compare_source: ModelSource | None = None):
    """The ASGI app for one run, wrapped in the token/Host gate. ``app.state.run`` is the ``RunState``
    (``split``: its pages show only that split's rows; ``source``: the model for maps, a ``ModelSource``,
    else built from ``handle``/``model``/``device``).

    ``compare``: a second run B shown against this one (``/compare``, and B's maps on the image page;
    ``compare_source``: B's model, default the one recorded beside B, on ``device``).

    ``port=None`` accepts the allowed host names without a port (for in-process tests only).
    """
    state = state or RunState(run_dir, positive=positive, split=split,
                              source=source or ModelSource(handle=handle, spec=model, device=device))
    if compare is not None:
        from mikata.server.compare_state import CompareState

        state.compare = CompareState(state.view, compare, compare_source or ModelSource(device=device))
    token = token or new_token()
    app = FastAPI(title="mikata", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.run = state
    app.state.token = token
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    # run_arg: the run as a command-line argument (its path, quoted), for the commands a page suggests
    templates.env.globals.update(version=__version__, run_name=state.run_dir.name, fmt_pct=_pct, fmt_area=_area, zip=zip,
                                 run_arg=shlex.quote(str(state.run_dir)), shell_quote=shlex.quote)
    templates.env.finalize = shown_in_template  # non-UTF-8 file names print as \xNN, not a 500
    templates.env.bytecode_cache = bytecode_cache("app")  # each template compiled once per process, not per app
    app.state.templates = templates
    app.state.static = _static_files()
    app.state.static_cache = {}
    _error_pages(app)
    for router in ROUTERS:
        app.include_router(router)
    gate = Gate(app, token=token, host=host, port=port)
    gate.fastapi, gate.run = app, state
    return gate


def _error_pages(app: FastAPI) -> None:
    """Library errors as HTTP answers: unknown ids 404, bad choices 400, a model that cannot be used 409."""

    @app.exception_handler(UnknownImageError)
    async def _unknown(request: Request, exc: UnknownImageError):
        return PlainTextResponse("not found", status_code=404)

    @app.exception_handler(ImageDecodeError)
    async def _undecodable(request: Request, exc: ImageDecodeError):  # the file changed since the scan
        return PlainTextResponse("not found (the file can no longer be decoded)", status_code=404)

    @app.exception_handler(ChoiceError)
    async def _choice(request: Request, exc: ChoiceError):
        return PlainTextResponse(str(exc), status_code=400)

    @app.exception_handler(sqlite3.DatabaseError)
    async def _database(request: Request, exc: sqlite3.DatabaseError):  # damaged, or a full / read-only disk
        return PlainTextResponse(f"the run's database refused this ({exc}); `mikata check {app.state.run.run_dir}` "
                                 "says what is wrong", status_code=503)

    @app.exception_handler(NotSpatialError)
    async def _not_spatial(request: Request, exc: NotSpatialError):  # ?layer= a layer CAMs cannot use
        return PlainTextResponse(str(exc), status_code=400)

    @app.exception_handler(ModelLoadError)
    async def _no_model(request: Request, exc: ModelLoadError):  # refused or missing model: the page still works
        return PlainTextResponse(str(exc), status_code=409)

    @app.exception_handler(ReadOnlyRunError)
    async def _read_only(request: Request, exc: ReadOnlyRunError):  # a review on a read-only run: a conflict
        return PlainTextResponse(str(exc), status_code=409)

    @app.exception_handler(MikataError)
    async def _mikata(request: Request, exc: MikataError):
        return PlainTextResponse(str(exc), status_code=400 if isinstance(exc, RunStoreError) else 500)


def _pct(x: float) -> str:
    """The app's percents: one decimal (compact cards), rounded as the audit and report round (``percent``)."""
    return percent(x, 1)


def _area(x: float | None) -> str:
    """An AUROC or an average precision (None when undefined, e.g. no images of one class)."""
    return "–" if x is None or x != x else f"{x:.3f}"
