"""A real concept atlas over a real scan for the report's and the app's tests: 120 digits from scikit-learn
scanned with the MNIST CNN, then ``compute_atlas`` with 3 concepts per class (a few seconds)."""

from __future__ import annotations

from pathlib import Path

from test_scan_support import digit_images, mnist_handle, write_folder

HOSTILE = '<script>alert("x")</script> & </textarea>'


def concept_run(base: Path, n: int = 120, per_class: int = 3) -> dict:
    """``{"run", "handle", "atlas"}``: the scanned run with its atlas computed and stored."""
    from mikata.scanning.scan import scan
    from mikata.concepts import compute_atlas

    images, labels = digit_images(n)
    write_folder(base / "digits", images, labels)
    handle = mnist_handle()
    scan(handle, base / "digits", base / "run", batch_size=60, workers=0, progress=False)
    atlas = compute_atlas(base / "run", per_class=per_class, sample=40, model=handle, progress=False,
                          deletion_images=8)
    return {"run": base / "run", "handle": handle, "atlas": atlas}
