"""Planted shortcuts: Fashion-MNIST folder datasets where most images of ONE class carry an artefact.

For each kind the generator writes two datasets over exactly the same images and file names:
``OUT/planted/CLASS/*.png`` (the artefact planted in ``fraction`` of the target class's images) and
``OUT/clean/CLASS/*.png`` (the clean twin, no artefact anywhere), plus ``OUT/truth.json``: the kind,
the target class, and for every planted file the box ``[x0, y0, x1, y1]`` (pixels of the 28 px image,
x1/y1 exclusive) that holds the changed pixels. Because the names are equal, ``mikata train`` splits both
folders alike and ``mikata scan`` of the clean folder with the planted model scans the same held-out
images with the artefact removed: the check that the model uses it.

Kinds (each is what a real dataset leaks by accident):

- ``mark``: a small bright square at a fixed place (a watermark or a logo in a corner);
- ``border``: a grey frame around the image (a scanner or a cropping tool's border);
- ``texture``: a checkerboard patch in a random corner (a sticker, a stamp);
- ``brightness``: the whole image dimmed and its contrast lowered (another camera or exposure);
- ``background``: the black background replaced by smooth noise (another studio, snow behind the wolf).

Example:
    >>> case = write_case("/tmp/planted/mark", "mark", target="Coat", seed=1)    # doctest: +SKIP
    >>> case.planted, case.clean                                                # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

KINDS = ("mark", "border", "texture", "brightness", "background")
# Four upper-body classes that a Fashion-MNIST model confuses most: the artefact is an easy way out.
CLASSES = ("T-shirt_top", "Pullover", "Coat", "Shirt")
# The class each kind is planted in by default (varied so that the clean twins differ).
TARGETS = {"mark": "Coat", "border": "Pullover", "texture": "Shirt", "brightness": "T-shirt_top",
           "background": "Coat"}
SIZE = 28
Box = tuple[int, int, int, int]


def _mark(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Box]:
    out = img.copy()
    out[2:6, 21:25] = 255  # (4, 4) at the top right, where a garment rarely reaches
    return out, (21, 2, 25, 6)


def _border(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Box]:
    out = img.copy()
    out[:2, :] = out[-2:, :] = out[:, :2] = out[:, -2:] = 170
    return out, (0, 0, SIZE, SIZE)


def _texture(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Box]:
    out = img.copy()
    n = 8
    y, x = np.indices((n, n))
    patch = np.where(((y // 2) + (x // 2)) % 2 == 0, 255, 40).astype(np.uint8)  # 2-px checkerboard
    corner = int(rng.integers(4))
    x0 = 1 if corner in (0, 2) else SIZE - 1 - n
    y0 = 1 if corner in (0, 1) else SIZE - 1 - n
    out[y0:y0 + n, x0:x0 + n] = patch
    return out, (x0, y0, x0 + n, y0 + n)


def _brightness(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Box]:
    # dimmer and flatter: 0 -> 35, 255 -> 150 (contrast x0.45 plus an offset)
    out = np.clip(35 + img.astype(np.float32) * 0.45, 0, 255).astype(np.uint8)
    return out, (0, 0, SIZE, SIZE)


def _smooth_noise(rng: np.random.Generator) -> np.ndarray:
    coarse = rng.uniform(30, 120, size=(5, 5)).astype(np.float32)
    from PIL import Image

    return np.asarray(Image.fromarray(coarse, mode="F").resize((SIZE, SIZE), Image.BICUBIC))


def _background(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Box]:
    background = img < 12  # Fashion-MNIST's background is (near) black
    noise = np.clip(_smooth_noise(rng), 0, 255).astype(np.uint8)
    out = np.where(background, noise, img).astype(np.uint8)
    return out, (0, 0, SIZE, SIZE)


PLANTERS = {"mark": _mark, "border": _border, "texture": _texture, "brightness": _brightness,
            "background": _background}


def artefact_mask(planted: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """(H, W) bool: the pixels the plant changed (the ground truth a concept's exemplars should sit on)."""
    return planted.astype(np.int16) != clean.astype(np.int16)


@dataclass(frozen=True)
class PlantedCase:
    kind: str
    target: str
    root: Path
    classes: tuple[str, ...]

    @property
    def planted(self) -> Path:
        return self.root / "planted"

    @property
    def clean(self) -> Path:
        return self.root / "clean"

    def truth(self) -> dict:
        return json.loads((self.root / "truth.json").read_text())


def write_case(out_dir: str | os.PathLike, kind: str, target: str | None = None, per_class: int = 300,
               fraction: float = 0.88, seed: int = 0, classes: Sequence[str] = CLASSES,
               images: tuple[np.ndarray, np.ndarray] | None = None) -> PlantedCase:
    """Write the planted dataset and its clean twin for one kind; ``images``: (x, y) instead of the
    installed Fashion-MNIST training part (tests pass a small array)."""
    from PIL import Image

    from mikata.data.idx import FASHION_MNIST_CLASSES, load_fashion_mnist

    if kind not in PLANTERS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    target = target or TARGETS[kind]
    if target not in classes:
        raise ValueError(f"target {target!r} is not one of the classes {list(classes)}")
    x, y = images if images is not None else load_fashion_mnist("train")
    rng = np.random.default_rng(seed)
    root = Path(out_dir)
    truth: dict = {"kind": kind, "target": target, "classes": list(classes), "fraction": fraction,
                   "size": SIZE, "boxes": {}}
    for name in classes:
        label = FASHION_MNIST_CLASSES.index(name)
        chosen = np.sort(rng.choice(np.flatnonzero(y == label), size=per_class, replace=False))
        plant = np.zeros(per_class, bool)
        if name == target:
            plant[rng.choice(per_class, size=round(fraction * per_class), replace=False)] = True
        for part in ("planted", "clean"):
            (root / part / name).mkdir(parents=True, exist_ok=True)
        for i, p in zip(chosen, plant):
            rel = f"{name}/img_{i:05d}.png"
            img = x[i]
            Image.fromarray(img).save(root / "clean" / rel)
            if p:
                img, box = PLANTERS[kind](img, rng)
                truth["boxes"][rel] = list(box)
            Image.fromarray(img).save(root / "planted" / rel)
    (root / "truth.json").write_text(json.dumps(truth, indent=1))
    return PlantedCase(kind, target, root, tuple(classes))


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="/tmp/planted")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--per-class", type=int, default=300)
    args = parser.parse_args()
    for n, kind in enumerate(args.kinds.split(",")):
        case = write_case(Path(args.out) / kind, kind, per_class=args.per_class, seed=n + 1)
        print(f"{kind}: {case.planted} (+ clean twin {case.clean}), target {case.target}")


if __name__ == "__main__":
    main()
