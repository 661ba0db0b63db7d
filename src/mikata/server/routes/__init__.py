"""The web app's routes, one module per kind: ``pages`` (HTML), ``images`` (PNG/JPEG by id, static
files), ``data`` (JSON and CSV, the review POST). Each is a FastAPI ``APIRouter`` of thin functions:
read the request, call one ``RunState`` method, render. ``create_app`` includes them all.
"""

from mikata.server.routes import data, images, pages

ROUTERS = (pages.router, images.router, data.router)

__all__ = ["ROUTERS"]
