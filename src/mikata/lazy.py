"""A package's public names imported on first use (PEP 562), so importing the package costs nothing.

``mikata``, ``mikata.models``, ``mikata.data`` and ``mikata.concepts`` list their names in a table of strings;
a command that needs none of a package's heavy names (a run read without torch) never imports them.

Example:
    >>> __getattr__, __dir__ = lazy_names("mikata.data", {"load_image": "mikata.data.images"})
    >>> __getattr__("load_image").__name__
    'load_image'
"""

from __future__ import annotations

import importlib
import sys
from typing import Callable, Mapping


def lazy_names(package: str, names: Mapping[str, str | tuple[str, str]]) -> tuple[Callable, Callable]:
    """``(__getattr__, __dir__)`` for ``package``: ``names`` maps a public name to the module that defines it,
    or to ``(module, attribute)`` where the attribute has another name.

    A name is looked up in its module at every access (an import already done costs a dict look-up), never
    copied onto the package: a copy taken while the module's attribute is replaced (``monkeypatch``, a
    debugger) would outlive the replacement."""

    def __getattr__(name: str):
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        target = names[name]
        module, attribute = target if isinstance(target, tuple) else (target, name)
        return getattr(importlib.import_module(module), attribute)

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(names))

    return __getattr__, __dir__
