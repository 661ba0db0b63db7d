"""Helpers for the hostile-input tests: crafted checkpoints, a module that records being imported, small runs."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

SRC = Path(__file__).resolve().parents[1] / "src"
TESTS = Path(__file__).resolve().parent

HOSTILE_MODULE = '''
import pathlib
pathlib.Path({marker!r}).write_text("imported")

def make():
    pathlib.Path({marker!r}).write_text("called")
    raise SystemExit(99)
'''


def plant_module(folder: Path, name: str = "hostile_mod") -> Path:
    """A module ``name`` in ``folder`` that writes ``folder/MARKER`` when imported or called; returns the marker."""
    marker = folder / "MARKER"
    (folder / f"{name}.py").write_text(HOSTILE_MODULE.format(marker=str(marker)))
    return marker


def mnist_checkpoint(path: Path) -> Path:
    """A valid mikata checkpoint of the real MNIST CNN (its architecture is a factory: typed, not read)."""
    from test_scan_support import mnist_handle

    from mikata.models.loading import save_checkpoint

    h = mnist_handle()
    h.metadata["architecture"] = "test_scan_support:mnist_handle"
    return save_checkpoint(h, path)


def rewrite_metadata(src: Path, dst: Path, raw: str | None = None, **changes) -> Path:
    """Copy the checkpoint ``src`` to ``dst`` with its ``mikata`` metadata replaced by ``raw`` or edited."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(src), framework="pt") as f:
        meta = json.loads(f.metadata()["mikata"])
    for k, v in changes.items():
        if v is _DELETE:
            meta.pop(k, None)
        else:
            meta[k] = v
    save_file(load_file(str(src)), str(dst), metadata={"mikata": raw if raw is not None else json.dumps(meta)})
    return dst


_DELETE = object()
DELETE = _DELETE


def small_run(base: Path, n: int = 24) -> Path:
    """``n`` real digits scanned with the MNIST CNN into ``base/run``; returns the run directory."""
    from test_scan_support import digit_images, mnist_handle, write_folder

    from mikata.analysis.scan import scan

    images, labels = digit_images(n)
    write_folder(base / "digits", images, labels)
    scan(mnist_handle(), base / "digits", base / "run", batch_size=16, workers=0, progress=False)
    return base / "run"


def set_manifest(run: Path, **identity) -> None:
    m = json.loads((run / "manifest.json").read_text())
    m["identity"].update(identity)
    (run / "manifest.json").write_text(json.dumps(m))


def cli_env(extra_path: Path | None = None) -> dict:
    paths = [str(SRC), str(TESTS)] + ([str(extra_path)] if extra_path else [])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "OMP_NUM_THREADS": "1"}


def mikata_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "mikata", "-q", *args]


def digit_png(path: Path) -> Path:
    from PIL import Image

    Image.fromarray((np.arange(28 * 28).reshape(28, 28) % 255).astype(np.uint8), "L").save(path)
    return path
