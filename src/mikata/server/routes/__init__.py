"""The web app's routes, one module per kind: ``pages`` (HTML), ``images`` (PNG/JPEG by id, static
files), ``data`` (JSON and CSV, the review POST), ``units`` (units beside their dataset examples), ``concepts`` (the run's concept atlas). Each is a FastAPI ``APIRouter`` of thin functions:
read the request, call one ``RunState`` method, render. ``create_app`` includes them all.
"""

from mikata.server.routes import compare, concepts, data, images, pages, units

ROUTERS = (pages.router, images.router, data.router, units.router, concepts.router, compare.router)

__all__ = ["ROUTERS"]
