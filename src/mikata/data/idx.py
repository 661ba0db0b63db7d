"""IDX files (the MNIST family's format) and the installed Fashion-MNIST, as a class-folder dataset.

``read_idx`` parses any unsigned-byte IDX file (optionally gzipped) with numpy. The Debian package
``dataset-fashion-mnist`` installs the four original IDX files under
``/usr/share/datasets/fashion-mnist``; ``write_fashion_mnist`` writes a seeded subset, ``N`` images
per class, as PNG files in one folder per class: the layout ``mikata train`` and ``mikata scan``
read (no torchvision, no download). The demo and the benchmarks use it.

Example:
    >>> root = write_fashion_mnist("demo/fashion-mnist", per_class=300, seed=0)   # doctest: +SKIP
    >>> sorted(p.name for p in root.iterdir())[:3]                               # doctest: +SKIP
    ['Ankle_boot', 'Bag', 'Coat']
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from mikata.errors import MikataError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ("T-shirt_top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle_boot")
PARTS = {"train": "train", "test": "t10k"}


class DataMissingError(MikataError):
    """The installed data set a command needs is not there; the message says how to install it."""


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Parse an IDX file (optionally gzipped): ``(N,)`` labels or ``(N, 28, 28)`` uint8 images."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise MikataError(f"{path}: not an unsigned-byte IDX file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise MikataError(f"{path}: truncated IDX file ({data.size} values, header says {dims})")
    return data.reshape(dims)


def load_fashion_mnist(part: str = "train",
                       root: str | os.PathLike = FASHION_MNIST_DIR) -> tuple[np.ndarray, np.ndarray]:
    """``(images (N, 28, 28) uint8, labels (N,) uint8)`` of the ``train`` (60k) or ``test`` (10k) part."""
    if part not in PARTS:
        raise ValueError(f"part must be 'train' or 'test', not {part!r}")
    root = Path(root)
    images = root / f"{PARTS[part]}-images-idx3-ubyte.gz"
    labels = root / f"{PARTS[part]}-labels-idx1-ubyte.gz"
    if not images.is_file() or not labels.is_file():
        raise DataMissingError(
            f"Fashion-MNIST is not installed ({images} is missing); install it with "
            "`sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or pass root= a folder holding the "
            "four *-ubyte.gz files")
    x, y = read_idx(images), read_idx(labels)
    if len(x) != len(y):
        raise MikataError(f"{root}: {len(x)} images but {len(y)} labels")
    return x, y


def write_fashion_mnist(out_dir: str | os.PathLike, per_class: int = 300, seed: int = 0, part: str = "train",
                        root: str | os.PathLike = FASHION_MNIST_DIR) -> Path:
    """Write ``per_class`` seeded-random images of each class as ``out_dir/CLASS/part_INDEX.png``.

    Existing files are kept (a second call with the same arguments writes nothing new).
    """
    from PIL import Image

    x, y = load_fashion_mnist(part, root)
    rng = np.random.default_rng(seed)
    out = Path(out_dir)
    for label, name in enumerate(FASHION_MNIST_CLASSES):
        indices = np.flatnonzero(y == label)
        if per_class > len(indices):
            raise ValueError(f"per_class={per_class} but the {part} part has only {len(indices)} {name} images")
        chosen = np.sort(rng.choice(indices, size=per_class, replace=False))
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in chosen:
            path = folder / f"{part}_{i:05d}.png"
            if not path.exists():
                Image.fromarray(x[i]).save(path)
    return out
