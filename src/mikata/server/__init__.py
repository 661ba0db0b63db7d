"""``mikata serve``: a local web app over one run (dashboard, confusion grid, maps on demand, reviews).

Example:
    >>> from mikata.server import create_app                       # doctest: +SKIP
    >>> app = create_app("runs/fashion", token="secret", port=8765)  # doctest: +SKIP
"""

from __future__ import annotations

from mikata.server.app import create_app

__all__ = ["create_app"]
