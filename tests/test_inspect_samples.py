"""Sample grids of a real labeled folder (scikit-learn digits saved as PNG): labels, seeds, histogram counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mikata.errors import MikataError
from mikata.inspect import list_labeled_images, sample_grid

BAR_RGB = np.array([0x3B, 0x6F, 0xB6])  # the histogram's bar color
SIZES = {"zero": 40, "one": 12, "two": 3, "three": 1}


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory) -> Path:
    """Classes of very different sizes; 'two' nests its images in a subfolder; a text file is ignored."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    root = tmp_path_factory.mktemp("digits")
    for label, (name, count) in enumerate(SIZES.items()):
        folder = root / name / ("scans/batch1" if name == "two" else "")
        folder.mkdir(parents=True, exist_ok=True)
        for j, k in enumerate(np.flatnonzero(digits.target == label)[:count]):
            pixels = (digits.images[k] * 255 / 16).astype(np.uint8)   # (8, 8) in 0..16 -> 0..255
            Image.fromarray(pixels, "L").resize((32, 32), Image.NEAREST).save(folder / f"{j:03d}.png")
    (root / "zero" / "README.txt").write_text("not an image")
    (root / "empty").mkdir()
    return root


def _bar_widths(hist: Image.Image) -> list[int]:
    """Pixel length of each histogram bar, top to bottom (rows of bar color grouped into bars)."""
    arr = np.asarray(hist).astype(int)
    mask = (np.abs(arr - BAR_RGB).sum(axis=-1) < 30)            # (H, W)
    rows = mask.sum(axis=1)
    bars, run = [], []
    for r in rows:
        if r > 0:
            run.append(r)
        elif run:
            bars.append(int(np.median(run)))
            run = []
    if run:
        bars.append(int(np.median(run)))
    return bars


def test_histogram_has_the_right_counts(digits_dir):
    s = sample_grid(digits_dir, n=9, seed=0)
    assert s.counts == {"empty": 0, "one": 12, "three": 1, "two": 3, "zero": 40}
    widths = _bar_widths(s.histogram)                            # bars in class order; 'empty' has none
    assert len(widths) == 4
    expected = [12, 1, 3, 40]
    assert np.allclose(np.array(widths) / widths[-1], np.array(expected) / 40, atol=0.02)
    assert s.image.width >= s.grid.width + s.histogram.width


def test_samples_are_seeded_labelled_by_first_level_folder(digits_dir):
    a = sample_grid(digits_dir, n=9, seed=0)
    b = sample_grid(digits_dir, n=9, seed=0)
    c = sample_grid(digits_dir, n=9, seed=1)
    assert a.samples == b.samples and a.samples != c.samples
    assert len(a.samples) == 9 and len(set(p for p, _ in a.samples)) == 9
    for path, cls in a.samples:
        assert Path(path).relative_to(digits_dir).parts[0] == cls
    everything = sample_grid(digits_dir, n=100, seed=3)          # more than there are: all 56 shown
    assert len(everything.samples) == 56
    assert any(cls == "two" for _, cls in everything.samples)    # nested images belong to their class


def test_bad_files_are_skipped_and_reported(digits_dir, tmp_path, photos):
    root = tmp_path / "mixed"
    (root / "cat").mkdir(parents=True)
    (root / "cup").mkdir()
    Image.open(photos["chelsea"]).save(root / "cat" / "chelsea.jpg")
    Image.open(photos["coffee"]).save(root / "cup" / "coffee.png")
    (root / "cup" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (root / "cup" / "empty.jpg").write_bytes(b"")
    s = sample_grid(root, n=9, seed=0)
    assert sorted(cls for _, cls in s.samples) == ["cat", "cup"]
    assert sorted(Path(p).name for p, _ in s.skipped) == ["broken.png", "empty.jpg"]
    assert s.counts == {"cat": 1, "cup": 3}


def test_folders_without_classes_raise(tmp_path):
    with pytest.raises(MikataError, match="not a folder"):
        list_labeled_images(tmp_path / "missing")
    with pytest.raises(MikataError, match="no class subfolders"):
        list_labeled_images(tmp_path)
    (tmp_path / "a").mkdir()
    with pytest.raises(MikataError, match="hold no image files"):
        sample_grid(tmp_path)
