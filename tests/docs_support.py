"""The folder the documentation's examples run in: real photos, a class folder of them, and a run.

``make_docs_folder(root, handle)`` writes ``chelsea.png`` and ``coffee.png`` (scikit-image's photos),
``photos/CLASS/NAME_I.png`` (three crops each of four real photos, in four ImageNet classes),
``photos.csv`` (those files as a manifest with a ``crop`` field) and ``runs/a`` (the manifest scanned
with ``handle``, the built-in model, plus a small concept atlas) and ``runs/small`` (the same model
at 160 pixels, a run to compare and calibrate). The README's Python blocks, the
guides' blocks and every docstring example of the public API run there (``tests/test_docs.py``,
``tests/test_reference.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

PHOTO_CLASSES = (("chelsea", "tiger cat"), ("coffee", "espresso"), ("flower", "daisy"), ("china", "palace"))
CROPS = ((0, 0, 0.9, 0.9), (0.1, 0.1, 1, 1), (0.05, 0, 0.95, 0.9))


def make_docs_folder(root: Path, handle, photos: dict[str, Path]) -> Path:
    from PIL import Image

    import mikata

    root.mkdir(parents=True, exist_ok=True)
    for name in ("chelsea", "coffee"):
        Image.open(photos[name]).save(root / f"{name}.png")
    from mikata.concepts import compute_atlas

    lines = ["path,label,crop"]
    for name, cls in PHOTO_CLASSES:
        img = Image.open(photos[name])
        w, h = img.size
        (root / "photos" / cls).mkdir(parents=True, exist_ok=True)
        for i, box in enumerate(CROPS):
            img.crop((int(box[0] * w), int(box[1] * h), int(box[2] * w), int(box[3] * h))).save(
                root / "photos" / cls / f"{name}_{i}.png")
            lines.append(f"photos/{cls}/{name}_{i}.png,{cls},{'whole' if i == 1 else 'cropped'}")
    (root / "photos.csv").write_text("\n".join(lines) + "\n")
    mikata.scan(handle, root / "photos.csv", root / "runs" / "a", workers=0, progress=False)
    compute_atlas(root / "runs" / "a", model=handle, per_class=2, sample=3, progress=False)
    small = mikata.load_model(handle.spec, input_size=160)  # the same model seeing smaller images: runs to compare
    mikata.scan(small, root / "photos.csv", root / "runs" / "small", workers=0, progress=False)
    return root


def child_env() -> dict[str, str]:
    """The environment of a process that runs the documentation (a Jupyter kernel, a README block): one torch
    thread, as the tests' other child processes. Two OpenMP threads in a child, beside the waiting test
    worker and pytest-xdist's other worker on two cores, spin at every barrier while a peer is descheduled:
    several times the CPU for the same cells."""
    return {**os.environ, "OMP_NUM_THREADS": "1"}
