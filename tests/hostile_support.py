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

    from mikata.scanning.scan import scan

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


def tiny_cnn():
    """A small 1x28x28, 10-class CNN (random, seeded) as a ModelHandle; also a package.module:factory spec."""
    import torch
    from torch import nn

    from mikata.models.handle import ModelHandle

    g = torch.random.fork_rng(devices=[])
    with g:
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(),
                            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    return ModelHandle(net=net, class_names=[str(i) for i in range(10)], input_size=(28, 28), mean=(0.13,),
                       std=(0.31,), crop_fraction=1.0, interpolation="bilinear", in_channels=1, default_layer="2",
                       spec="hostile_support:tiny_cnn", metadata={"architecture": "hostile_support:tiny_cnn"})


def tiny_rgb(size: int = 224):
    """A small random 3-channel, 4-class CNN at ``size`` px with ImageNet-style preprocessing (crop 0.875)."""
    import torch
    from torch import nn

    from mikata.models.handle import ModelHandle

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(3, 4, 5, stride=4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                            nn.Linear(4, 4))
    return ModelHandle(net=net, class_names=["a", "b", "c", "d"], input_size=(size, size), default_layer="0",
                       spec="hostile_support:tiny_rgb", metadata={"architecture": "hostile_support:tiny_rgb"})
