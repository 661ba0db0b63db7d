"""Benchmark: `mikata report` on a 10,000-image run — time to write it, file size, time to open it in Chromium.

The run is real: the 10,000 Fashion-MNIST test images (Debian dataset-fashion-mnist) written once as
PNGs into class folders and scanned with a small model — by default the demo's fine-tuned
efficientnet-lite0 checkpoint (64 px) when it exists, else the MNIST CNN of digit-recognizer-py
(accuracy is meaningless then; only size and speed are measured). The scan is cached between runs
(it is not what is measured here).

Measured, best of ``--repeats``: ``write_report`` with the map cache emptied first ("cold": the
Grad-CAM and Guided Grad-CAM maps are computed) and again with the maps cached ("warm"); then the
file opened in Debian's Chromium through Playwright: the ``load`` event, and the moment the page's
script finished drawing (``window.mikataRenderMs``, from navigation start), plus the wall time from
``goto`` until that flag is seen. Goals: written in < 60 s, opened in < 3 s.

    PYTHONPATH=src:tests python benchmarks/bench_report.py
    PYTHONPATH=src:tests python benchmarks/bench_report.py --model test_scan_support:mnist_handle
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO_CKPT = Path(os.environ.get("MIKATA_DEMO_DIR", "mikata-demo")) / "fashion-mnist-lite0.safetensors"  # `mikata demo` output


def make_run(cache: Path, model: str, threads: int, per_class: int = 1000) -> tuple[Path, float | None]:
    """``per_class`` x 10 test images scanned once (cached by model name and size); returns the run and
    the scan seconds."""
    import torch

    from mikata.scanning.scan import scan
    from mikata.data.idx import FASHION_MNIST_CLASSES, write_fashion_mnist
    from mikata.models import load_model

    data = cache / ("fmnist-test" if per_class == 1000 else f"fmnist-test-{per_class}")
    marker = data / ".done"
    if not marker.exists():
        write_fashion_mnist(data, per_class=per_class, part="test")
        marker.touch()
    tag = "".join(c if c.isalnum() else "_" for c in Path(model).name)
    run = cache / (f"run-{tag}" if per_class == 1000 else f"run-{tag}-{per_class}")
    if (run / ".done").exists():
        return run, None
    torch.set_num_threads(threads)
    handle = load_model(model)
    class_map = None
    if set(handle.class_names) != set(FASHION_MNIST_CLASSES):  # the MNIST CNN: folder i-th class -> "i"
        class_map = {name: handle.class_names[i] for i, name in enumerate(FASHION_MNIST_CLASSES)}
    t = time.perf_counter()
    scan(handle, data, run, batch_size=128, workers=2, class_map=class_map, progress=True)
    took = time.perf_counter() - t
    (run / ".done").touch()
    return run, took


def clear_maps(run: Path) -> int:
    db = sqlite3.connect(str(run / "run.sqlite"))
    try:
        n = db.execute("SELECT COUNT(*) FROM maps").fetchone()[0]
        db.execute("DELETE FROM maps")
        db.commit()
        return n
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


def open_in_chromium(path: Path, repeats: int) -> list[dict]:
    sys.path.insert(0, str(ROOT / "tests"))
    from playwright.sync_api import sync_playwright

    from browser_support import launch, new_page

    out = []
    with sync_playwright() as p:
        browser = launch(p)
        for _ in range(repeats):
            page = new_page(browser)
            t = time.perf_counter()
            page.goto(path.as_uri(), wait_until="load", timeout=60000)
            loaded_wall = time.perf_counter() - t
            page.wait_for_function("document.documentElement.dataset.ready === '1'", timeout=60000)
            ready_wall = time.perf_counter() - t
            nav = page.evaluate("() => { const n = performance.getEntriesByType('navigation')[0];"
                                " return [n.domContentLoadedEventEnd, n.loadEventEnd, window.mikataRenderMs]; }")
            out.append({"load_event_s": nav[1] / 1000, "js_rendered_s": nav[2] / 1000, "goto_to_load_s": loaded_wall,
                        "goto_to_ready_s": ready_wall, "problems": list(page.problems)})
            page.context.close()
        browser.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(DEMO_CKPT) if DEMO_CKPT.exists() else "test_scan_support:mnist_handle")
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "mikata-bench-report"))
    ap.add_argument("--repeats", type=int, default=2, help="report writes per condition (best is shown)")
    ap.add_argument("--opens", type=int, default=3, help="Chromium page loads (median and best shown)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--thumb", type=int, default=64)
    ap.add_argument("--per-class", type=int, default=1000,
                    help="test images per class (1000: the whole test set; fewer for a quick before/after)")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    import torch

    from mikata.report import write_report

    torch.set_num_threads(args.threads)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    run, scan_s = make_run(cache, args.model, args.threads, args.per_class)
    out = cache / "report.html"
    results = {"cold": [], "warm": []}
    for _ in range(args.repeats):
        clear_maps(run)
        results["cold"].append(write_report(run, out, thumb=args.thumb))
        results["warm"].append(write_report(run, out, thumb=args.thumb))
    opened = open_in_chromium(out, args.opens) if args.opens else []

    first = results["cold"][0]
    print(f"\nmikata report, Fashion-MNIST test set: {first.images:,} images, model {args.model}, "
          f"{args.threads} torch threads, thumbnails {args.thumb} px"
          + (f" (scan took {scan_s:.1f} s, not counted)" if scan_s else " (scan cached)"))
    print(f"file {out}: {first.bytes / 1e6:.2f} MB, {first.thumbnails:,} thumbnails, {first.maps} maps\n")
    print("| write_report | best s | all runs (s) | goal |")
    print("|---|---|---|---|")
    for k, label in (("cold", "maps computed (cache emptied)"), ("warm", "maps cached")):
        ts = [r.timings["total"] for r in results[k]]
        print(f"| {label} | {min(ts):.2f} | {', '.join(f'{t:.2f}' for t in ts)} | < 60 s |")
    best = min(results["cold"], key=lambda r: r.timings["total"])
    print("\nstages of the best cold run (s): " + ", ".join(f"{k} {v:.2f}" for k, v in best.timings.items()))
    print("\n| Chromium (Playwright, file://) | median s | best s | goal |")
    print("|---|---|---|---|")
    for key, label in (("load_event_s", "`load` event (navigation start)"),
                       ("js_rendered_s", "script finished rendering (navigation start)"),
                       ("goto_to_ready_s", "wall: goto() until the ready flag is seen")):
        vs = [o[key] for o in opened]
        if not vs:
            continue
        print(f"| {label} | {statistics.median(vs):.2f} | {min(vs):.2f} | < 3 s |")
    problems = [p for o in opened for p in o["problems"]]
    print(f"\nconsole errors: {problems or 'none'}")


if __name__ == "__main__":
    main()
