"""Two real runs of the same digits for the comparison's app and browser tests: the MNIST CNN with seeded
noise on its weights (A, "before the fix") and the real network (B), so that predictions flip both ways."""

from __future__ import annotations

from pathlib import Path

import torch

from test_scan_support import digit_images, mnist_handle, write_folder


def noisy_handle(scale: float = 0.35, seed: int = 0):
    """The MNIST CNN with Gaussian noise (``scale`` x each tensor's std) on every weight: another model."""
    h = mnist_handle()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in h.net.parameters():
            p.add_(torch.randn(p.shape, generator=g) * p.std() * scale if p.numel() > 1 else torch.zeros_like(p))
    return h


def two_runs(base: Path, n: int = 90, b_rows: int | None = None) -> tuple[Path, Path, object, object]:
    """Scan ``n`` real digits with A and the first ``b_rows`` of them (all by default, else from a CSV
    manifest) with B; returns both runs and both handles."""
    from mikata.scanning.scan import scan

    images, labels = digit_images(n)
    write_folder(base / "digits", images, labels)
    a, b = noisy_handle(), mnist_handle()  # A: the worse model (before the fix), B: the real one
    scan(a, base / "digits", base / "run_a", batch_size=32, workers=0, progress=False)
    data_b = base / "digits"
    if b_rows is not None:
        data_b = base / "digits_b.csv"
        rows = sorted((base / "digits").glob("*/*.png"))[:b_rows]
        data_b.write_text("path,label\n" + "".join(f"{p},{p.parent.name}\n" for p in rows))
    scan(b, data_b, base / "run_b", batch_size=32, workers=0, progress=False)
    return base / "run_a", base / "run_b", a, b
