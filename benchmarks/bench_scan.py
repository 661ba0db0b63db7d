"""Benchmark: mikata scan vs a plain DataLoader + forward loop; Grad-CAM cost; peak RSS; confusion on 1M rows.

Model: the real MNIST CNN shipped in digit-recognizer-py (1x28x28), on real Fashion-MNIST images
(Debian dataset-fashion-mnist) written once as PNGs into a class folder (folders "0".."9" = the
Fashion-MNIST label index, so the folder names match the CNN's class names; accuracy is
meaningless here, only throughput and memory are measured).

The machine is shared (2 cores, other jobs running): numbers are noisy; ratios are measured side by
side in one process, alternating, best of ``--repeats``.

    PYTHONPATH=src:tests python benchmarks/bench_scan.py --images 6000 --rss-images 2000,6000
"""

from __future__ import annotations

import argparse
import gzip
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
FMNIST = Path("/usr/share/datasets/fashion-mnist")


def write_fashion_mnist(out: Path, n: int) -> list[Path]:
    """The first ``n`` of the 70,000 images (train then t10k) as PNGs under out/<label>/ (cached)."""
    from PIL import Image

    marker = out / f".done-{n}"
    images, labels = [], []
    for part in ("train", "t10k"):
        with gzip.open(FMNIST / f"{part}-images-idx3-ubyte.gz") as f:
            images.append(np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28))
        with gzip.open(FMNIST / f"{part}-labels-idx1-ubyte.gz") as f:
            labels.append(np.frombuffer(f.read(), np.uint8, offset=8))
    images, labels = np.concatenate(images)[:n], np.concatenate(labels)[:n]
    paths = [out / str(int(y)) / f"{i:05d}.png" for i, y in enumerate(labels)]
    if not marker.exists():
        for d in range(10):
            (out / str(d)).mkdir(parents=True, exist_ok=True)
        for p, a in zip(paths, images):
            if not p.exists():
                Image.fromarray(a, "L").save(p)
        marker.touch()
    return paths


class PlainFiles(torch.utils.data.Dataset):
    """What anyone would write: decode with mikata.data.load_image, preprocess, nothing stored."""

    def __init__(self, handle, paths):
        self.handle, self.paths = handle, paths

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        from mikata.data.images import load_image

        return self.handle.preprocess([load_image(self.paths[i], "L")])[0]


def plain_loop(handle, paths, batch_size, workers) -> float:
    t = time.perf_counter()
    loader = torch.utils.data.DataLoader(PlainFiles(handle, paths), batch_size=batch_size, num_workers=workers,
                                         prefetch_factor=4 if workers else None)
    with torch.inference_mode():
        for x in loader:
            handle.model(x).softmax(1)
    return time.perf_counter() - t


def mikata_scan(handle, data, batch_size, workers, gradcam) -> float:
    from mikata.scanning.scan import scan

    run = Path(tempfile.mkdtemp(prefix="bench-run-"))
    shutil.rmtree(run)
    t = time.perf_counter()
    scan(handle, data, run, batch_size=batch_size, workers=workers, gradcam=gradcam, progress=False)
    dt = time.perf_counter() - t
    shutil.rmtree(run)
    return dt


RSS_CHILD = """
import resource, sys, tempfile, shutil
sys.path[:0] = [sys.argv[4], sys.argv[5]]
import torch
torch.set_num_threads(int(sys.argv[3]))
from test_scan_support import mnist_handle
from mikata.scanning.scan import scan
run = tempfile.mkdtemp(prefix="bench-rss-"); shutil.rmtree(run)
s = scan(mnist_handle(), sys.argv[1], run, batch_size=int(sys.argv[2]), workers=2, progress=False)
shutil.rmtree(run)
print(s.computed, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def peak_rss(data: Path, batch_size: int, threads: int) -> tuple[int, float, float]:
    out = subprocess.run([sys.executable, "-c", RSS_CHILD, str(data), str(batch_size), str(threads),
                          str(ROOT / "src"), str(ROOT / "tests")], capture_output=True, text=True, check=True)
    n, main_kb, worker_kb = out.stdout.split()
    return int(n), int(main_kb) / 1024, int(worker_kb) / 1024


def confusion_1m(rows: int = 1_000_000, k: int = 100) -> tuple[float, float, float]:
    """Seconds for the SQL GROUP BY confusion and the numpy bincount one on a synthetic store."""
    from mikata.analysis.audit import confusion_counts, confusion_matrix
    from mikata.runs.store import RunStore

    run = Path(tempfile.mkdtemp(prefix="bench-1m-")) / "run"
    manifest = {"format": "mikata-run/1", "identity": {"classes": [str(i) for i in range(k)]}}
    rng = np.random.default_rng(0)
    labels = rng.integers(0, k, rows)
    preds = np.where(rng.random(rows) < 0.8, labels, rng.integers(0, k, rows))
    t = time.perf_counter()
    with RunStore.create_or_resume(run, manifest) as store:
        store.db.execute("BEGIN")
        store.db.executemany("INSERT INTO images (path, label, pred, status) VALUES (?, ?, ?, 'ok')",
                             ((f"/synthetic/{i}.png", int(y), int(p)) for i, (y, p) in enumerate(zip(labels, preds))))
        store.db.execute("COMMIT")
    build = time.perf_counter() - t
    t = time.perf_counter()
    cm_sql = confusion_counts(run)
    sql_s = time.perf_counter() - t
    t = time.perf_counter()
    cm_np = confusion_matrix(labels, preds, k)
    np_s = time.perf_counter() - t
    assert (cm_sql == cm_np).all() and cm_np.sum() == rows
    shutil.rmtree(run.parent)
    return sql_s, np_s, build


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=6000, help="Fashion-MNIST images for the throughput runs")
    ap.add_argument("--rss-images", default="2000,6000", help="sizes for the peak-RSS runs (extrapolated to 70,000)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: less noise on a busy machine)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "mikata-bench-fmnist"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(ROOT / "tests"))
    from test_scan_support import mnist_handle

    sizes = [int(s) for s in args.rss_images.split(",") if s.strip()]
    n_max = max([args.images] + sizes)
    write_fashion_mnist(Path(args.cache) / "all", n_max)
    data = {}
    for n in set([args.images] + sizes):  # a folder per size: hard links into the cached images
        d = Path(args.cache) / f"n{n}"
        if not d.exists():
            for p in write_fashion_mnist(Path(args.cache) / "all", n):
                q = d / p.parent.name / p.name
                q.parent.mkdir(parents=True, exist_ok=True)
                os.link(p, q)
        data[n] = d
    handle = mnist_handle()
    paths = sorted(str(p) for p in data[args.images].rglob("*.png"))
    times = {"plain": [], "scan": [], "scan_gradcam": []}
    for _ in range(args.repeats):
        times["plain"].append(plain_loop(handle, paths, args.batch_size, args.workers))
        times["scan"].append(mikata_scan(handle, data[args.images], args.batch_size, args.workers, False))
        times["scan_gradcam"].append(mikata_scan(handle, data[args.images], args.batch_size, args.workers, True))
    best = {k: min(v) for k, v in times.items()}
    n = len(paths)
    print(f"\nFashion-MNIST, {n} images, MNIST CNN (digit-recognizer-py), batch {args.batch_size}, "
          f"{args.workers} workers, {args.threads} torch thread(s), best of {args.repeats}")
    print("| run | seconds | images/s | throughput vs plain loop | time vs plain loop | goal |")
    print("|---|---|---|---|---|---|")
    for k, goal in (("plain", ""), ("scan", "throughput >= 0.9x"), ("scan_gradcam", "time <= 1.6x")):
        print(f"| {k} | {best[k]:.2f} | {n / best[k]:.0f} | {best['plain'] / best[k]:.2f}x | "
              f"{best[k] / best['plain']:.2f}x | {goal} |")
    rss = [(s, *peak_rss(data[s], args.batch_size, args.threads)) for s in sizes]
    if rss:
        print("\n| images scanned | peak RSS main process (MB) | peak RSS largest worker (MB) |")
        print("|---|---|---|")
    for s, computed, main_mb, worker_mb in rss:
        print(f"| {computed} | {main_mb:.0f} | {worker_mb:.0f} |")
    if len(rss) >= 2 and rss[-1][1] < 70000:
        (s0, _, m0, _), (s1, _, m1, _) = rss[0], rss[-1]
        slope = (m1 - m0) / (s1 - s0)
        print(f"| 70000 (linear extrapolation, {slope * 1024:.2f} KB/image) | {m1 + slope * (70000 - s1):.0f} | |")
    sql_s, np_s, build = confusion_1m()
    print("\n| confusion counts, 1,000,000 rows, 100 classes | seconds | goal |")
    print("|---|---|---|")
    print(f"| SQL GROUP BY on the store (confusion_counts) | {sql_s:.3f} | < 1 s |")
    print(f"| numpy bincount on label/pred arrays (confusion_matrix) | {np_s:.3f} | < 1 s |")
    print(f"(building the synthetic store took {build:.1f} s)")


if __name__ == "__main__":
    main()
