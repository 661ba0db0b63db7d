"""Benchmark: what the readers of a run cost — overview, dataset issues, report, dashboard — whole run and one split.

A run of real digits (scikit-learn, repeated with small shifts to reach ``--images``) scanned once with
the real MNIST CNN (digit-recognizer-py), split 50/50. Measured, best of ``--repeats``, each reader
from a cold process-level start (the run's on-disk overview cache is kept, as in use):
``overview`` (whole run and ``--split val``), ``find_issues`` (the same two), ``write_report`` without
maps (the same two) and the web app's dashboard request (in-process ASGI).

Run it once per source tree to compare two versions on the same machine, back to back:
    PYTHONPATH=/path/to/old/src:tests python benchmarks/bench_views.py --images 3000
    PYTHONPATH=src:tests python benchmarks/bench_views.py --images 3000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def _run(base: Path, n: int) -> Path:
    from PIL import Image

    from mikata.scanning.scan import scan
    from test_scan_support import digit_images, mnist_handle

    run = base / f"run{n}"
    if (run / "run.sqlite").exists():
        return run
    images, labels = digit_images(None)
    root = base / f"digits{n}"
    for i in range(n):
        img = np.roll(np.asarray(images[i % len(images)]), i // len(images), axis=1)
        p = root / str(int(labels[i % len(labels)])) / f"{i:05d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(p)
    scan(mnist_handle(), root, run, batch_size=128, workers=0, progress=False, fractions=(0.5, 0.5), seed=0)
    return run


def _best(fn, repeats: int) -> float | str:
    """The best wall time of ``repeats`` calls, or the error a call ended in (an older version's bug)."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - reported, not hidden: the comparison names it
            return f"failed: {type(e).__name__}: {e}"[:120]
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "mikata-bench-views")
    args = ap.parse_args()
    import mikata
    from mikata.analysis.issues import find_issues
    from mikata.analysis.overview import overview
    from mikata.report import write_report

    args.work.mkdir(parents=True, exist_ok=True)
    run = _run(args.work, args.images)
    out: dict[str, float | str] = {}
    for split in (None, "val"):
        tag = "whole" if split is None else "split"
        out[f"overview {tag}"] = _best(lambda: overview(run, split=split), args.repeats)
        out[f"find_issues {tag}"] = _best(lambda: find_issues(run, split=split), args.repeats)
        out[f"report {tag}"] = _best(lambda: write_report(run, args.work / "r.html", split=split, maps=False),
                                     args.repeats)
    from fastapi.testclient import TestClient

    from mikata.server import create_app
    from test_scan_support import mnist_handle

    def dashboard() -> None:
        app = create_app(run, token="t0123456789abcdef", port=8799, handle=mnist_handle())
        client = TestClient(app, base_url="http://127.0.0.1:8799")
        assert client.get("/?token=t0123456789abcdef").status_code == 200
        assert client.get("/issues").status_code == 200

    out["app dashboard + issues (new app)"] = _best(dashboard, args.repeats)
    print(json.dumps({"mikata": os.path.dirname(mikata.__file__), "images": args.images,
                      "seconds": {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}}, indent=1))


if __name__ == "__main__":
    main()
