"""Benchmark: ``scan(engine="ray")`` at 2 actors against the local scan, same process, interleaved.

Data: the first ``--images`` Fashion-MNIST images (Debian dataset-fashion-mnist) as 28 px PNGs in a
class folder under ``--cache`` (built once; folders "0".."9" are the label index, as the MNIST CNN's
class names). Model: the real MNIST CNN shipped in digit-recognizer-py (``--model mnist``), or the
built-in efficientnet-lite0 (``--model lite0``, real weights, 224 px: much more compute per image).

The bench starts a local Ray cluster once (``--cpus`` CPUs; its start is timed and printed: a one-off
cost, which ``mikata scan --engine ray`` without ``--address`` pays per command and ``--address auto``
does not). Each repeat then runs the local scan (``--workers`` DataLoader workers) and the Ray scan
(``--actors`` actors on that cluster) into fresh run directories; the best of ``--repeats`` is
compared. The Ray scan's split (``ScanSummary.phases``) says where its time went: actor creation, file
listing (the actors start meanwhile), how long the driver still waited for the actors (start, torch
import, model unpickle), the batches, and what the driver spent waiting for and storing results.
Wall time is noisy on a shared machine: the CPU time of this process and its reaped children and the
load average are printed next to it.

    PYTHONPATH=src:tests python benchmarks/bench_scan_ray.py --images 10000
    PYTHONPATH=src:tests python benchmarks/bench_scan_ray.py --images 1000 --repeats 1   # quick
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT / "tests")]


def cpu_seconds() -> float:
    """User + system CPU of this process and of its reaped children (the local scan's DataLoader workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def load_model(name: str):
    if name == "mnist":
        from test_scan_support import mnist_handle

        return mnist_handle()
    from mikata.models import load_model as load

    return load("efficientnet-lite0")


def one_scan(handle, data: Path, engine: str, args) -> tuple[float, float, object]:
    from mikata.scanning.scan import scan

    run = Path(tempfile.mkdtemp(prefix=f"bench-ray-{engine}-"))
    shutil.rmtree(run)
    kw = dict(engine="ray", actors=args.actors) if engine.startswith("ray") else dict(workers=args.workers)
    c, t = cpu_seconds(), time.perf_counter()
    # lite0's classes are ImageNet's: the folders "0".."9" stand for its first ten (accuracy means nothing here)
    class_map = {str(i): handle.class_names[i] for i in range(10)} if args.model == "lite0" else None
    summary = scan(handle, data, run, batch_size=args.batch_size, progress=False, class_map=class_map, **kw)
    wall, cpu = time.perf_counter() - t, cpu_seconds() - c
    cpu += getattr(summary, "phases", {}).get("actors: CPU seconds (sum, start included)", 0.0)
    assert summary.computed == args.images, summary
    shutil.rmtree(run)
    return wall, cpu, summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--model", choices=["mnist", "lite0"], default="mnist")
    ap.add_argument("--actors", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers of the local scan")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the local scan's process")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    ap.add_argument("--worker-niceness", type=int, default=None,
                    help="nice value of Ray's worker processes (Ray's default: 15, which on a busy shared machine "
                    "starves the actors next to a local scan at nice 0; 0 compares like with like)")
    ap.add_argument("--cold", action="store_true", help="also time a Ray scan that starts its own local instance "
                    "(as `mikata scan --engine ray` without --address)")
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "mikata-bench-fmnist"))
    args = ap.parse_args()
    from bench_scan import write_fashion_mnist

    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")  # no uv lookups when a worker starts
    if args.worker_niceness is not None:  # read by every Ray instance this process starts
        os.environ["RAY_worker_niceness"] = str(args.worker_niceness)
    torch.set_num_threads(args.threads)
    data = Path(args.cache) / f"n{args.images}"
    if not data.exists():  # hard links into the cached images, one folder per size
        for p in write_fashion_mnist(Path(args.cache) / "all", args.images):
            q = data / p.parent.name / p.name
            q.parent.mkdir(parents=True, exist_ok=True)
            os.link(p, q)
    handle = load_model(args.model)
    import ray

    load0 = os.getloadavg()
    t = time.perf_counter()
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    cluster_s = time.perf_counter() - t
    runs: dict[str, list[tuple[float, float, object]]] = {"local": [], "ray": [], "ray cold": []}
    try:
        for _ in range(args.repeats):
            for engine in ("local", "ray"):
                runs[engine].append(one_scan(handle, data, engine, args))
            if args.cold:  # the scan starts and stops its own instance, as the CLI without --address
                ray.shutdown()
                runs["ray cold"].append(one_scan(handle, data, "ray cold", args))
                ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    finally:
        ray.shutdown()
    load1 = os.getloadavg()
    best = {k: min(v, key=lambda r: r[0]) for k, v in runs.items() if v}
    n = args.images
    print(f"\n{n} Fashion-MNIST PNGs (28 px), model {args.model}, batch {args.batch_size}; local: {args.workers} "
          f"workers, {args.threads} torch thread(s); ray: {args.actors} actors on a local {args.cpus}-CPU cluster; "
          f"worker niceness {args.worker_niceness if args.worker_niceness is not None else 'Ray default (15)'}; "
          f"best of {args.repeats}; load average {load0[0]:.1f} before, {load1[0]:.1f} after, {os.cpu_count()} CPUs")
    print("| engine | wall s | CPU s (driver + workers or actors) | images/s | vs local | goal |")
    print("|---|---|---|---|---|---|")
    names = {"local": "local", "ray": "ray, joining the running cluster",
             "ray cold": "ray, starting its own local instance (CLI without --address)"}
    for k in best:
        wall, cpu, _ = best[k]
        print(f"| {names[k]} | {wall:.2f} | {cpu:.1f} | {n / wall:.0f} | {wall / best['local'][0]:.2f}x | "
              f"{'<= 1.25x' if k == 'ray' else ''} |")
    print(f"(the bench's cluster start, ray.init of a {args.cpus}-CPU local instance: {cluster_s:.2f} s)")
    for k in ("ray", "ray cold"):
        phases = getattr(best[k][2], "phases", None) if k in best else None
        if phases:
            print(f"\n| {names[k]}: phase | seconds |")
            print("|---|---|")
            for name, sec in phases.items():
                print(f"| {name} | {sec:.2f} |")
    print("all walls:", {k: [round(r[0], 2) for r in v] for k, v in runs.items()})


if __name__ == "__main__":
    main()
