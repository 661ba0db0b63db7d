"""Attribution maps: where a CNN looks for an image and a class. One interface for every method.

Example:
    >>> from mikata.attribution import explain                                   # doctest: +SKIP
    >>> maps = explain(handle, x, ["gradcam", "smoothgrad"], targets="top3")     # doctest: +SKIP
"""

from mikata.attribution import catalog  # noqa: F401 - registers the built-in methods, before the engine reads them
from mikata.attribution.engine import METHODS, NotSpatialError, explain
from mikata.attribution.result import Attribution

__all__ = ["METHODS", "Attribution", "NotSpatialError", "explain"]
