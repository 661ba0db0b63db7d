"""Compiled Jinja templates kept in memory for the process, for the report and the web app.

Compiling a template (parse, generate Python, ``compile``) costs far more than rendering it: the report's
page takes about 0.1 s. The report builds a fresh ``jinja2.Environment`` for each page and the app one per
``create_app``, so without a shared cache each page or app compiles its templates again. A
``MemoryBytecodeCache`` keeps each template's code object keyed by its file and checked against a checksum
of its source (Jinja's own bucket check): an edited template compiles again, an unchanged one is reused.

Compiled code depends on the environment's settings (autoescape, finalize, filters), so each kind of
environment has its own cache (``bytecode_cache(kind)``), never shared between differently set up ones.
"""

from __future__ import annotations

import threading

from jinja2 import BytecodeCache
from jinja2.bccache import Bucket


class MemoryBytecodeCache(BytecodeCache):
    """Jinja bytecode in a dict: one entry per template file (a changed source replaces its entry)."""

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def load_bytecode(self, bucket: Bucket) -> None:
        with self._lock:
            data = self._code.get(bucket.key)
        if data is not None:
            bucket.bytecode_from_string(data)  # resets the bucket when the source's checksum differs

    def dump_bytecode(self, bucket: Bucket) -> None:
        data = bucket.bytecode_to_string()
        with self._lock:
            self._code[bucket.key] = data

    def clear(self) -> None:
        with self._lock:
            self._code.clear()


_CACHES: dict[str, MemoryBytecodeCache] = {}
_CACHES_LOCK = threading.Lock()


def bytecode_cache(kind: str) -> MemoryBytecodeCache:
    """The process's bytecode cache for environments set up as ``kind`` (e.g. ``"report"``, ``"app"``)."""
    with _CACHES_LOCK:
        return _CACHES.setdefault(kind, MemoryBytecodeCache())
