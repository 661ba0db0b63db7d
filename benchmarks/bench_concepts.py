"""How fast is ``compute_atlas``, against the passes it cannot avoid, and is its memory bounded on 1M rows?

Speed: the demo's Fashion-MNIST model (efficientnet-lite0 fine-tuned at 64 px, ``train_demo_model``
with the demo's settings; reused when already trained) scans all of its 10 classes x 500 images
(``--split all``); then, in this process, side by side:

- ``forward``: every image decoded, preprocessed and run forward (inference mode), batches of 64;
- ``forward+backward``: the same plus the gradient of each image's label logit at the concept layer
  (the backward stops at the layer: nothing below it needs a gradient) — the floor of a concept atlas
  with gradient x coefficient importance, which needs each image's activations and gradient at the layer;
- ``compute_atlas(run, sample=500)`` from scratch (its stored atlas deleted first).

Reported: wall-clock and CPU seconds of each (CPU seconds of this process: on a loaded machine they are
what the work costs, the wall clock is what the user waits), and the ratios atlas / forward and
atlas / forward+backward (goal: < 60 s in total on this 2-core CPU and <= 2x the passes). With one torch
thread (``OMP_NUM_THREADS=1``) the CPU seconds are the wall seconds of an idle core.

Memory (``--rows 1000000``): a synthetic run of that many rows is built with the RunStore API (rows copied
cyclically from the real 5,000-row scan, each with its own hard link to the real image file, as
benchmarks/bench_scale.py does), then ``compute_atlas`` runs in a fresh subprocess on it and on the 5,000-row
run; each reports its peak RSS (``resource.getrusage``) and its peak of Python allocations (``tracemalloc``).
Bounded memory: the 1M-row peak stays close to the 5k-row one (the atlas samples ``sample`` images per class;
it must never hold a row per image of the run beyond small per-row columns).

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/bench_concepts.py --work /tmp/planted/speed [--rows 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch


def demo_run(work: Path, device: str) -> tuple[Path, Path]:
    """The demo model (trained with the demo's settings) and a scan of all its 5,000 images."""
    from mikata.demo.training import demo_paths, train_demo_model

    ckpt, accuracy, seconds = train_demo_model(work / "demo", progress=False, device=device)
    print(f"demo model {ckpt} (test accuracy {accuracy:.3f}, {seconds:.0f} s)", flush=True)
    data, _ = demo_paths(work / "demo")
    run = work / "run5000"
    if not (run / "manifest.json").exists():
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        subprocess.run([sys.executable, "-m", "mikata", "scan", str(ckpt), str(data), "--run", str(run),
                        "--split", "all", "--device", device, "--workers", "0"], env=env, check=True)
    return ckpt, run


def _paths_and_labels(run: Path) -> tuple[list[str], list[int]]:
    from mikata.runs.store import RunStore

    with RunStore.open(run) as store:
        rows = store.rows(status="ok", columns=("path", "label"), tuples=True)
    return [r[0] for r in rows], [int(r[1]) for r in rows]


def passes(ckpt: Path, paths: list[str], labels: list[int], layer: str, device: str,
           batch: int = 64) -> dict[str, tuple[float, float]]:
    """(wall, CPU) seconds of a forward over every image, and of a forward + backward of the label logit to
    ``layer``."""
    from mikata.hooks import attached, get_layer, preserved
    from mikata.models.loading import load_model

    handle = load_model(str(ckpt), device=device)
    net = handle.net.eval()
    pre = handle.preprocessing
    out: dict[str, float] = {}

    start, cpu = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        for s in range(0, len(paths), batch):
            net(pre.load(paths[s:s + batch]).to(device))
    out["forward"] = (time.perf_counter() - start, time.process_time() - cpu)

    held: dict[str, torch.Tensor] = {}

    def grad_from_here(module, args, output):  # the layer's output becomes a leaf: the backward stops here
        leaf = output.detach().requires_grad_(True)
        held["a"] = leaf
        return leaf

    start, cpu = time.perf_counter(), time.process_time()
    with preserved(net):
        for p in net.parameters():
            p.requires_grad_(False)
        with attached([(get_layer(net, layer), "forward", grad_from_here)]):
            for s in range(0, len(paths), batch):
                x = pre.load(paths[s:s + batch]).to(device)
                logits = net(x)
                y = torch.as_tensor(labels[s:s + batch], device=device)
                torch.autograd.grad(logits.gather(1, y[:, None]).sum(), held["a"])
    out["forward+backward"] = (time.perf_counter() - start, time.process_time() - cpu)
    return out


def time_atlas(run: Path, device: str, sample: int) -> tuple[tuple[float, float], dict]:
    """(wall, CPU) seconds of ``compute_atlas`` from scratch, and its document."""
    from mikata.concepts import compute_atlas

    shutil.rmtree(run / "concepts", ignore_errors=True)
    start, cpu = time.perf_counter(), time.process_time()
    atlas = compute_atlas(run, sample=sample, device=device, progress=False)
    return (time.perf_counter() - start, time.process_time() - cpu), atlas.to_json()


# ---------------------------------------------------------------- memory on a synthetic 1M-row run

def build_big_run(work: Path, base: Path, n: int) -> Path:
    """An ``n``-row run whose row i copies base row ``i % len(base)`` (its vectors, prediction and label),
    with its own hard link to that row's image file (paths are unique in a run)."""
    from mikata.runs.store import Row, RunStore

    run = work / f"run{n}"
    if (run / "run.sqlite").exists():
        with RunStore.open(run) as store:
            if store.count() == n:
                return run
        shutil.rmtree(run)
    links = work / f"files{n}"
    with RunStore.open(base) as src:
        manifest = dict(src.manifest, dataset_root=str(links),
                        note="benchmark run: real images hard-linked under new names, rows copied from a real scan")
        vecs = {k: np.asarray(src.vectors(k)) for k in src.dims()}
        base_rows = [src.image(int(i)) for i in src.ids()]
    start = time.perf_counter()
    store = RunStore.create_or_resume(run, manifest)
    chunk = 10000
    m = len(base_rows)
    for s in range(0, n, chunk):
        rows, picks = [], []
        for i in range(s, min(n, s + chunk)):
            b = base_rows[i % m]
            src_path = Path(b["path"])
            path = links / src_path.parent.name / f"{i:07d}{src_path.suffix}"
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                os.link(src_path, path)
            st = path.stat()
            rows.append(Row(path=str(path), hash=None, size=st.st_size, mtime_ns=st.st_mtime_ns, label=b["label"],
                            split=b.get("split") or "test", pred=b["pred"], pred_prob=b["pred_prob"],
                            label_prob=b["label_prob"], topk=b["topk"]))
            picks.append(b["vec_row"])
        store.append(rows, {kind: v[picks] for kind, v in vecs.items()}, replace=False)
    store.close()
    print(f"built {run}: {n} rows in {time.perf_counter() - start:.0f} s", flush=True)
    return run


MEASURE = """
import json, resource, sys, time, tracemalloc
tracemalloc.start()
from mikata.concepts import compute_atlas
start = time.perf_counter()
compute_atlas(sys.argv[1], sample=int(sys.argv[2]), device=sys.argv[3], progress=False)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "tracemalloc_peak_mb": tracemalloc.get_traced_memory()[1] / 2**20}))
"""


def measure_memory(run: Path, sample: int, device: str) -> dict:
    shutil.rmtree(run / "concepts", ignore_errors=True)
    out = subprocess.run([sys.executable, "-c", MEASURE, str(run), str(sample), device], text=True,
                         capture_output=True, check=False, env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
    if out.returncode != 0:
        raise SystemExit(f"compute_atlas on {run} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/planted/speed"))
    parser.add_argument("--sample", type=int, default=500)
    parser.add_argument("--rows", type=int, default=0, help="also measure memory on a synthetic run of this many rows")
    parser.add_argument("--memory-sample", type=int, default=100,
                        help="images per class for the memory runs (the same on both runs; default 100)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    args.work.mkdir(parents=True, exist_ok=True)
    ckpt, run = demo_run(args.work, args.device)
    if not args.skip_speed:
        seconds, atlas = time_atlas(run, args.device, args.sample)
        paths, labels = _paths_and_labels(run)
        floor = passes(ckpt, paths, labels, atlas["layer"], args.device)
        print(f"images {len(paths)}, layer {atlas['layer']}, threads {torch.get_num_threads()}, "
              f"load average {os.getloadavg()[0]:.1f}")
        print(f"{'step':<18} {'wall s':>7} {'CPU s':>7} {'atlas/step wall':>15} {'atlas/step CPU':>14}")
        for name, (wall, cpu) in floor.items():
            print(f"{name:<18} {wall:>7.1f} {cpu:>7.1f} {seconds[0] / wall:>15.2f} {seconds[1] / cpu:>14.2f}")
        print(f"{'compute_atlas':<18} {seconds[0]:>7.1f} {seconds[1]:>7.1f}")
    if args.rows:
        big = build_big_run(args.work, run, args.rows)
        small = measure_memory(run, args.memory_sample, args.device)
        large = measure_memory(big, args.memory_sample, args.device)
        print(f"memory: compute_atlas(sample={args.memory_sample}) in a fresh process")
        print(f"{'run rows':>9} {'atlas s':>8} {'peak RSS MB':>12} {'tracemalloc MB':>15}")
        for n, m in ((5000, small), (args.rows, large)):
            print(f"{n:>9} {m['seconds']:>8.1f} {m['peak_rss_mb']:>12.0f} {m['tracemalloc_peak_mb']:>15.1f}")


if __name__ == "__main__":
    main()
