"""What every route module uses: the run's state, the page renderer, image responses, id checks."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from mikata.runs.layout import CONCEPT_ATLAS, CONCEPTS, UNITS, UNITS_CARD, RunLayout
from mikata.presentation.media import UnknownImageError, mime_type
from mikata.server.state import RunState

PAGE = 120  # thumbnails per grid page
MAX_CONFUSION = 40  # classes drawn in the dashboard's confusion matrix
MAX_ID = 2**63 - 1


def run_state(request: Request) -> RunState:
    """The ``RunState`` that ``create_app`` put on the app."""
    return request.app.state.run


def page(request: Request, name: str, **ctx) -> HTMLResponse:
    """A template with what every page shows (the overview, class names, which tabs exist)."""
    state = run_state(request)
    ov = state.overview()
    return request.app.state.templates.TemplateResponse(
        request, name, {"ov": ov, "names": ov.class_names, "has_featurevis": bool(state.featurevis_files()),
                        "has_scorecard": state.scorecard() is not None,
                        "has_units": _has_units(state),
                        "has_concepts": _has_file(state, CONCEPTS, CONCEPT_ATLAS),
                        "attachment_notes": state.attachment_notes(),
                        "temperature": state.view.temperature(),
                        "has_compare": state.compare is not None, **ctx})


def image_response(data: bytes, cacheable: bool = True) -> Response:
    return Response(data, media_type=mime_type(data),
                    headers={"cache-control": "private, max-age=3600" if cacheable else "no-store"})


def check_id(image_id: int) -> int:
    """A row id SQLite can hold (anything else is a 404, never an overflow)."""
    if not 0 < image_id <= MAX_ID:
        raise UnknownImageError(f"no image with id {image_id}")
    return image_id


def check_class(state: RunState, c: int) -> int:
    if not 0 <= c < len(state.class_names):
        raise UnknownImageError(f"no class {c}")
    return c


def _has_file(state: RunState, folder_name: str, name: str) -> bool:
    """``RUN_DIR/folder_name/name`` exists in a real folder of the run (a link pointing elsewhere counts as absent)."""
    folder = RunLayout(state.run_dir).folder(folder_name)
    return folder is not None and (folder / name).is_file()


def _has_units(state: RunState) -> bool:
    return _has_file(state, UNITS, UNITS_CARD)
