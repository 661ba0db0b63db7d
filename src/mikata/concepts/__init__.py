"""Concepts of a scanned run (issue 28): the atlas stored under ``RUN/concepts/``.

This branch only reads a stored atlas (``load_atlas``); computing one is branch ``concepts``'s
``compute_atlas``. ``surface`` shapes the atlas for the report, the web app and the demo.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


class Atlas:
    """A stored atlas: ``to_json()`` is the stable JSON of ``mikata concepts --json``."""

    def __init__(self, data: dict):
        self._data = data

    def to_json(self) -> dict:
        return self._data


def load_atlas(run_dir: str | os.PathLike) -> Atlas | None:
    """The atlas in ``RUN/concepts/atlas.json``, or None when there is none (or it is not a JSON object)."""
    path = Path(run_dir) / "concepts" / "atlas.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return Atlas(data) if isinstance(data, dict) and isinstance(data.get("classes"), dict) else None


__all__ = ["Atlas", "load_atlas"]
