"""Shared helpers for the scan/audit/runstore tests: the real MNIST CNN and real digit images.

The CNN is the one shipped in the PyPI package ``digit-recognizer-py`` (trained on MNIST). Its
package ``__init__`` imports torchvision, which cannot load on this CPU torch, so the
architecture file is loaded on its own. ``mnist_handle`` doubles as a ``package.module:factory``
model spec for the command line: ``PYTHONPATH=tests mikata scan test_scan_support:mnist_handle ...``.
"""

from __future__ import annotations

import importlib.util
import sysconfig
from pathlib import Path

import numpy as np
import torch
from PIL import Image

PKG = Path(sysconfig.get_paths()["purelib"]) / "digit_recognizer"


def mnist_handle():
    """The real MNIST CNN as a ModelHandle (classes "0".."9", 1x28x28, MNIST mean/std as its recognizer)."""
    from mikata.models.handle import ModelHandle

    spec = importlib.util.spec_from_file_location("digit_recognizer_model", PKG / "model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    net = mod.CNN()
    net.load_state_dict(torch.load(PKG / "models" / "handwriting_model.pth", map_location="cpu", weights_only=True))
    return ModelHandle(net=net, class_names=[str(i) for i in range(10)], input_size=(28, 28), mean=(0.1307,),
                       std=(0.3081,), crop_fraction=1.0, interpolation="bilinear", in_channels=1,
                       default_layer="conv_layers.6", spec="test_scan_support:mnist_handle")


def digit_images(n: int | None = None) -> tuple[list[Image.Image], np.ndarray]:
    """Real handwritten digits from scikit-learn (8x8, 0..16), upscaled to 28x28 MNIST-like images."""
    from sklearn.datasets import load_digits

    d = load_digits()
    imgs = d.images if n is None else d.images[:n]
    out = []
    for a in imgs:
        small = Image.fromarray((a * (255 / 16)).astype(np.uint8), "L").resize((20, 20), Image.BILINEAR)
        canvas = Image.new("L", (28, 28), 0)  # MNIST: white digit on black, 20x20 box centred in 28x28
        canvas.paste(small, (4, 4))
        out.append(canvas)
    return out, d.target[: len(out)].copy()


def write_folder(root: Path, images: list[Image.Image], labels: np.ndarray) -> list[Path]:
    """One subfolder per class ("0".."9"), PNG files named by index."""
    paths = []
    for i, (img, y) in enumerate(zip(images, labels)):
        p = root / str(int(y)) / f"{i:05d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        img.save(p)
        paths.append(p)
    return paths


_CACHE: dict[str, object] = {}


def planted_run(base: Path, n: int = 600, flips: int = 30, seed: int = 0) -> dict:
    """Scan ``n`` real digits once per session: ``flips`` of them in a wrong class folder, plus four bad files.

    Returns the paths, the true and the planted labels, the run dir and the scan summary.
    """
    if "planted" in _CACHE:
        return _CACHE["planted"]
    from mikata.scanning.scan import scan

    images, truth = digit_images(n)
    rng = np.random.default_rng(seed)
    flipped = rng.choice(n, flips, replace=False)
    given = truth.copy()
    given[flipped] = (truth[flipped] + rng.integers(1, 10, flips)) % 10  # always a different class
    data = base / "digits"
    paths = write_folder(data, images, given)
    bad = {"zero": data / "3" / "zero.png", "text": data / "3" / "notes.jpg",
           "truncated": data / "4" / "truncated.png", "garbage": data / "5" / "garbage.png"}
    bad["zero"].write_bytes(b"")
    bad["text"].write_text("this is not an image\n")
    full = paths[0].read_bytes()
    bad["truncated"].write_bytes(full[: len(full) // 2])
    bad["garbage"].write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(rng.integers(0, 256, 300, dtype=np.uint8)))
    handle = mnist_handle()
    summary = scan(handle, data, base / "run", batch_size=64, workers=0, gradcam=True, progress=False)
    _CACHE["planted"] = {"handle": handle, "data": data, "run": base / "run", "paths": [str(p) for p in paths],
                         "truth": truth, "given": given, "flipped": set(flipped.tolist()), "bad": bad,
                         "summary": summary, "images": images}
    return _CACHE["planted"]
