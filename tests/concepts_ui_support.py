"""A real concept atlas over a real scan for the report's and the app's tests: 120 digits from scikit-learn
scanned with the MNIST CNN, then ``compute_atlas`` with 3 concepts per class (a few seconds). Built once
per session (``conftest.concept_run_template``); each test module works on its own copy of the run
(``copy_concept_run``), so reviews or reports one module writes are not seen by another."""

from __future__ import annotations

import shutil
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


def copy_concept_run(template: dict, base: Path) -> dict:
    """A private copy of ``concept_run``'s run under ``base`` (the images stay in the template's folder; the run
    reads them by path), with the atlas read back from the copy: ``{"run", "handle", "atlas"}``."""
    from mikata.concepts.atlas import load_atlas

    run = base / "run"
    shutil.copytree(template["run"], run)
    atlas = load_atlas(run)
    assert atlas is not None and atlas.to_json() == template["atlas"].to_json(), "the copied run lost its atlas"
    return {"run": run, "handle": template["handle"], "atlas": atlas}
