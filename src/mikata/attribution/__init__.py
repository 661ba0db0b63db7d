"""Attribution maps: where a CNN looks for an image and a class. One interface for every method.

``METHODS`` is the registry's list of method names when read (``registry.names()``), so a method
registered after import is listed too.

Example:
    >>> from mikata.attribution import explain                                   # doctest: +SKIP
    >>> maps = explain(handle, x, ["gradcam", "smoothgrad"], targets="top3")     # doctest: +SKIP
"""

from mikata.attribution import catalog  # noqa: F401 - registers the built-in methods
from mikata.attribution import registry as _registry
from mikata.attribution.engine import NotSpatialError, explain
from mikata.attribution.result import Attribution

__all__ = ["METHODS", "Attribution", "NotSpatialError", "explain"]


def __getattr__(name: str) -> tuple[str, ...]:
    if name == "METHODS":  # asked of the registry at each read, never a copy made at import
        return _registry.names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
