"""mikata — see what a CNN image classifier has learned and why it gets images wrong.

Importing mikata is light: torch and friends load when a function that needs them is called.

Example:
    >>> import mikata
    >>> handle = mikata.load_model("efficientnet-lite0")          # doctest: +SKIP
    >>> mikata.predict(handle, ["chelsea.png"], top=5)            # doctest: +SKIP
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "load_model": "mikata.models",
    "ModelHandle": "mikata.models",
    "save_checkpoint": "mikata.models",
    "list_layers": "mikata.models",
    "load_image": "mikata.data",
    "capture": "mikata.hooks",
    "predict": "mikata.predict",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mikata' has no attribute {name!r}")
