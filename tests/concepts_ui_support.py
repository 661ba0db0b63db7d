"""A real concept atlas over a real scan for the report's and the app's tests: 120 digits from scikit-learn
scanned with the MNIST CNN, then ``compute_atlas`` with 3 concepts per class (a few seconds), and
optionally one concept defined by examples ("loops": digits 0, 6 and 8)."""

from __future__ import annotations

from pathlib import Path

from test_scan_support import digit_images, mnist_handle, write_folder

HOSTILE = '<script>alert("x")</script> & </textarea>'


def concept_run(base: Path, n: int = 120, per_class: int = 3, define: bool = False) -> dict:
    """``{"run", "handle", "atlas"}``: the scanned run with its atlas computed and stored (``define``: with the
    "loops" concept, which adds TCAV's random vectors to the time)."""
    from mikata.analysis.scan import scan
    from mikata.concepts import compute_atlas

    images, labels = digit_images(n)
    write_folder(base / "digits", images, labels)
    handle = mnist_handle()
    scan(handle, base / "digits", base / "run", batch_size=60, workers=0, progress=False)
    defines = None
    if define:  # a concept defined by examples (TCAV): digits with a closed loop
        defined = base / "loops"
        defined.mkdir()
        for j in [k for k, y in enumerate(labels) if y in (0, 6, 8)][:12]:
            images[j].save(defined / f"{j}.png")
        defines = {"loops": str(defined)}
    atlas = compute_atlas(base / "run", per_class=per_class, sample=40, model=handle, progress=False,
                          deletion_images=8, defines=defines)
    return {"run": base / "run", "handle": handle, "atlas": atlas}
