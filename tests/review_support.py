"""A scanned run from a CSV manifest with extra columns, for the label-review and field tests.

300 real digits (scikit-learn) scanned with the real MNIST CNN from ``data.csv`` with the columns
``path,label,cell_type,site``: ``cell_type`` is ``plain`` or ``inverted`` (the inverted digits are the
subtype the model misses), ``site`` holds a value that is HTML on purpose, and 20 labels are flipped
(so there are suspected label errors). Split 60/20/20, so every row has a split.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import ImageOps

from test_scan_support import digit_images, mnist_handle

HOSTILE = '<img src=x onerror="window.pwned=1">&amp;'
_CACHE: dict[str, dict] = {}


def cells_run(base: Path, n: int = 300) -> dict:
    """Scan once per session; returns the run dir, the manifest, the handle and the truth per path."""
    if "cells" in _CACHE:
        return _CACHE["cells"]
    from mikata.scanning.scan import scan

    images, truth = digit_images(n)
    rng = np.random.default_rng(1)
    inverted = set(rng.choice(n, n // 4, replace=False).tolist())
    flipped = set(rng.choice(sorted(set(range(n)) - inverted), 20, replace=False).tolist())
    data = base / "cells"
    data.mkdir(parents=True)
    rows, given = [], {}
    for i, img in enumerate(images):
        if i in inverted:
            img = ImageOps.invert(img)
        name = f"img_{i:04d}.png"
        img.save(data / name)
        label = int(truth[i]) if i not in flipped else int((truth[i] + 1 + rng.integers(0, 9)) % 10)
        given[str((data / name).resolve())] = label
        rows.append([name, str(label), "inverted" if i in inverted else "plain",
                     HOSTILE if i % 7 == 0 else ("north" if i % 2 else "south")])
    manifest = data / "data.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "cell_type", "site"])
        w.writerows(rows)
    handle = mnist_handle()
    run = base / "run"
    scan(handle, manifest, run, batch_size=64, workers=0, progress=False, fractions=(0.6, 0.2, 0.2))
    _CACHE["cells"] = {"run": run, "manifest": manifest, "handle": handle, "given": given,
                       "inverted": {str((data / f"img_{i:04d}.png").resolve()) for i in inverted}}
    return _CACHE["cells"]
