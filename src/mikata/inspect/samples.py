"""A first look at a labeled image folder: random images with their class names, and the class histogram.

Before any analysis, look at the data: are the labels what you think, are the images what the model
expects, are the classes balanced? The folder has one subfolder per class; images may sit in nested
folders below it (the class is always the first-level subfolder). Files whose names do not look like
images are ignored; files that look like images but cannot be decoded are skipped and reported.

Example:
    >>> s = sample_grid("data/food", n=9, seed=0)       # doctest: +SKIP
    >>> s.counts                                          # doctest: +SKIP
    {'apple_pie': 120, 'sushi': 20}
    >>> s.save("samples.png")                             # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from mikata.data.images import is_image_file, load_image
from mikata.errors import ImageDecodeError, MikataError
from mikata.inspect.figure import PNGRepr, captioned, figure_to_image, side_by_side
from mikata.display import tile

log = logging.getLogger(__name__)


def list_labeled_images(root: str | os.PathLike) -> dict[str, list[Path]]:
    """Class name -> sorted image paths, for a folder with one subfolder per class or a ``path,label`` CSV
    manifest (the one ``train`` and ``scan`` take).

    Hidden files and folders (starting with ".") are ignored, and so are files directly in ``root``.
    A class folder with no images is kept with an empty list, so the histogram shows it.
    """
    root = Path(root)
    if str(root).lower().endswith(".csv"):
        from mikata.data.datasets import manifest_dataset

        ds = manifest_dataset(root)  # a DatasetError naming the CSV for a missing or malformed one
        by_class: dict[str, list[Path]] = {c: [] for c in ds.classes}
        for sample in ds.samples:
            by_class[ds.classes[sample.label]].append(Path(sample.path))
        return {c: sorted(files) for c, files in by_class.items()}
    if not root.is_dir():
        raise MikataError(f"{root}: not a folder; give a folder with one subfolder per class, or a CSV manifest "
                          "path,label")
    classes: dict[str, list[Path]] = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = []
        for dirpath, dirnames, filenames in os.walk(sub):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            files += [Path(dirpath) / f for f in filenames if not f.startswith(".") and is_image_file(f)]
        classes[sub.name] = sorted(files)
    if not classes:
        raise MikataError(f"{root}: no class subfolders; a labeled folder has one subfolder per class "
                          f"(e.g. {root}/cat/*.jpg, {root}/dog/*.jpg)")
    if not any(classes.values()):
        raise MikataError(f"{root}: the class folders {', '.join(classes)} hold no image files")
    return classes


@dataclass
class SampleGrid(PNGRepr):
    """Random labelled images beside the class histogram.

    ``samples`` are ``(path, class)`` pairs in tile order; ``counts`` are image files per class (by file
    name; the sampled ones were decoded); ``skipped`` are ``(path, reason)`` for sampled files that
    could not be decoded and were replaced by the next random draw.
    """

    image: Image.Image
    grid: Image.Image
    histogram: Image.Image
    counts: dict[str, int]
    samples: list[tuple[str, str]]
    skipped: list[tuple[str, str]] = field(default_factory=list)


def sample_grid(data_dir: str | os.PathLike, n: int = 9, seed: int = 0, thumb: int = 128) -> SampleGrid:
    """``n`` random images (seeded, without replacement) labelled with their class, plus the histogram.

    Draws follow one ``numpy.random.Generator(seed)`` permutation of all image files, so the same seed
    on the same folder gives the same images; a bad file is skipped and the next one in the permutation
    taken. Fewer than ``n`` decodable images: all of them are shown.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, not {n}")
    classes = list_labeled_images(data_dir)
    counts = {c: len(files) for c, files in classes.items()}
    pool = [(p, c) for c, files in classes.items() for p in files]
    rng = np.random.default_rng(seed)
    samples: list[tuple[str, str]] = []
    images: list[Image.Image] = []
    skipped: list[tuple[str, str]] = []
    for i in rng.permutation(len(pool)):
        path, cls = pool[i]
        try:
            img = load_image(path)
        except ImageDecodeError as e:
            log.warning("skipping %s: %s", path, e.reason)
            skipped.append((str(path), e.reason))
            continue
        img.thumbnail((thumb, thumb), Image.LANCZOS)  # keep memory at thumbnail size for large n
        images.append(img)
        samples.append((str(path), cls))
        if len(samples) == n:
            break
    if not samples:
        raise MikataError(f"{data_dir}: none of the {len(pool)} image files could be decoded")
    if len(samples) < n:
        log.info("only %d decodable images; showing all of them", len(samples))
    grid = tile(images, labels=[c for _, c in samples], thumb=thumb)
    total = sum(counts.values())
    grid = captioned(grid, f"{len(samples)} random images (seed {seed}) of {total} in {len(counts)} classes"
                     + (f"; {len(skipped)} unreadable skipped" if skipped else ""))
    histogram = class_histogram(counts, height_px=grid.height)
    return SampleGrid(side_by_side(grid, histogram), grid, histogram, counts, samples, skipped)


def class_histogram(counts: dict[str, int], height_px: int = 400) -> Image.Image:
    """Horizontal bars of images per class, each bar labelled with its count (matplotlib, no pyplot)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    names = list(counts)
    k = len(names)
    height = max(height_px / 100, 0.25 * k + 1.2)
    fig = Figure(figsize=(5.0, height), dpi=100)
    ax = fig.add_subplot()
    y = np.arange(k)
    values = [counts[c] for c in names]
    ax.barh(y, values, color="#3b6fb6")
    ax.set_yticks(y, names, fontsize=8 if k <= 30 else 5)
    ax.invert_yaxis()
    top = max(values) if values else 1
    for yi, v in zip(y, values):
        ax.text(v + top * 0.01, yi, str(v), va="center", fontsize=8)
    ax.set_xlim(0, top * 1.15 + 1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("images")
    ax.set_title(f"class histogram: {sum(values)} images, {k} classes", fontsize=9)
    fig.tight_layout()
    return figure_to_image(fig)
