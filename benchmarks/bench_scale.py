"""Benchmark: big runs (70k and 1M rows) stay usable; merge cost; Ray scan vs local scan vs a plain loop.

The runs: a REAL scan of the first ``--base`` Fashion-MNIST images (Debian dataset-fashion-mnist, as
PNGs) with the real MNIST CNN of digit-recognizer-py is the source of every row. A run of N rows
gives row i the image file ``fashion/<label>/<i>.png`` — one of the 70,000 real images, hard-linked
under a new name past 70,000 — and the prediction, probabilities, top-k, embedding and channel
vectors of a randomly chosen base row with the same label. So the rows are synthetic in one respect
(their vectors are copied), while the files, the labels and the store's size are those of a real
N-image scan: the audit, the report and the server do the work they would do on one.

Measured (wall clock, this shared 2-core machine; noisy):
- the first overview build of an N-row run (the persisted aggregates: ``overview_cache``) and the
  next build from the cache, in a fresh process state (what `mikata serve` / `audit` pay on start);
- `mikata audit` (the library call) and `mikata report` (capped) end to end;
- dashboard / grid / class / image page p50 / p95 through the full ASGI stack (TestClient);
- merge cost: ``merge_runs`` of K shards per million rows;
- ``--steps compare``: two N-row runs over the same files (B's rows copy other base rows of the same label,
  so about a third of the predictions differ), compared: ``compare()``'s first build (no stored
  comparison), ``compare()`` again (the comparison stored in run A: ``analysis.compare_cache``), the
  app's first comparison, ``/compare/issues``' first build (both runs' dataset issues scored, none
  stored: ``analysis.issues_cache``) and its first request in a new app (the stored issues read back),
  and the comparison pages' p50 / p95 (``mikata serve RUN_A --compare RUN_B``);
- wall times with the CPU time of this process next to them (the load average printed: on a shared
  machine the wall times grow with it, the CPU times do not);
- with ``--scan N``: the same N files scanned by a plain DataLoader loop, by ``scan`` (local) and by
  ``scan(engine="ray")`` with 2 actors.

    PYTHONPATH=src:tests python benchmarks/bench_scale.py --work /tmp/bench-scale --sizes 70000,1000000
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))
TOKEN = "bench-token"
FASHION = 70000


def base_run(work: Path, n: int) -> Path:
    """A real scan of the first ``n`` Fashion-MNIST images with the MNIST CNN (cached)."""
    from bench_scan import write_fashion_mnist
    from test_scan_support import mnist_handle

    from mikata.runs.store import RunStore
    from mikata.scanning.scan import scan

    write_fashion_mnist(work / "fashion", FASHION)
    run = work / f"base{n}"
    if (run / "run.sqlite").exists():
        with RunStore.open(run) as store:
            if store.count() == n:
                return run
        shutil.rmtree(run)
    sub = work / f"base{n}-files"
    if not sub.exists():
        src = write_fashion_mnist(work / "fashion", FASHION)[:n]
        for p in src:
            q = sub / p.parent.name / p.name
            q.parent.mkdir(parents=True, exist_ok=True)
            os.link(p, q)
    t = time.perf_counter()
    scan(mnist_handle(), sub, run, batch_size=256, workers=1, progress=False)
    print(f"base: a real scan of {n} images in {time.perf_counter() - t:.1f} s", flush=True)
    return run


def build_run(work: Path, base: Path, n: int, seed: int = 0, name: str | None = None) -> Path:
    """An ``n``-row run whose rows copy the base scan's results by label (see the module doc); ``seed``
    picks which base row each row copies, ``name`` the run's folder (default ``run{n}``)."""
    from bench_scan import write_fashion_mnist

    from mikata.runs.data import load_run
    from mikata.runs.store import Row, RunStore

    run = work / (name or f"run{n}")
    if (run / "run.sqlite").exists():
        with RunStore.open(run) as store:
            if store.count() == n:
                return run
        shutil.rmtree(run)
    files = write_fashion_mnist(work / "fashion", FASHION)
    root = work / "big"
    demo = load_run(base)
    with RunStore.open(base) as src:
        manifest = src.manifest
        vecs = {k: np.asarray(src.vectors(k)) for k in src.dims()}
        topks = {i: src.image(int(i))["topk"] for i in demo.ids}
    manifest = dict(manifest, dataset_root=str(root), data_roots=[str(root)],  # its images are served from there
                    note="benchmark run: real images, rows copied from a real scan by label")
    by_label = {c: np.nonzero(demo.labels == c)[0] for c in range(demo.num_classes)}
    rng = np.random.default_rng(seed)
    store = RunStore.create_or_resume(run, manifest)
    t0 = time.perf_counter()
    chunk = 10000
    for s in range(0, n, chunk):
        rows, picks = [], []
        for i in range(s, min(n, s + chunk)):
            src_file = files[i % FASHION]
            label = int(src_file.parent.name)
            path = root / src_file.parent.name / f"{i:07d}.png"
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                os.link(src_file, path)
            k = int(rng.choice(by_label[label]))
            st = path.stat()
            rows.append(Row(path=str(path), hash=None, size=st.st_size, mtime_ns=st.st_mtime_ns, label=label,
                            split="test" if i % 5 == 0 else "train", pred=int(demo.preds[k]),
                            pred_prob=float(demo.probs[k, demo.preds[k]]), label_prob=float(demo.probs[k, label]),
                            topk=topks[demo.ids[k]]))
            picks.append(demo.vec_rows[k])
        store.append(rows, {kind: v[picks] for kind, v in vecs.items()}, replace=False)
    store.close()
    print(f"built {run}: {n} rows in {time.perf_counter() - t0:.1f} s", flush=True)
    return run


def percentiles(ms: list[float], cpu_ms: list[float] | None = None) -> tuple[float, ...]:
    """(p50, p95) of the wall times, then (p50, p95) of the CPU times when given (ms)."""
    out = []
    for v in (ms, cpu_ms):
        if v is not None:
            a = np.asarray(v)
            out += [float(np.percentile(a, 50)), float(np.percentile(a, 95))]
    return tuple(out)


class Timer:
    """Wall and CPU seconds of a block: the CPU time (this process, every thread: the app's routes run in
    TestClient's threads here) is what a loaded shared machine does not inflate."""

    def __enter__(self) -> "Timer":
        self.t, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.t, time.process_time() - self.c


def load() -> str:
    """The 1-minute load average (the machine's other work: wall times grow with it, CPU times do not)."""
    return open("/proc/loadavg").read().split()[0]


def get_timed(client, path: str, wall: list[float], cpu: list[float]):
    with Timer() as t:
        r = client.get(path)
    wall.append(1000 * t.wall)
    cpu.append(1000 * t.cpu)
    return r


def bench_overview(run: Path) -> dict[str, float]:
    """First build (no cache) and a build from the persisted cache, in seconds."""
    from mikata.analysis import overview_cache
    from mikata.analysis.overview import overview

    overview_cache.clear(run)
    with Timer() as first:
        ov = overview(run)
    with Timer() as cached:
        ov2 = overview(run)
    assert ov2.accuracy == ov.accuracy and (ov2.confusion == ov.confusion).all()
    from mikata.runs.store import RunStore

    rng = np.random.default_rng(0)
    with RunStore.open(run) as store:  # the paths of one page of images (grid, issues, review): best of 5
        times = []
        for _ in range(5):
            ids = ov.data.ids[rng.choice(len(ov.data), min(120, len(ov.data)), replace=False)].tolist()
            with Timer() as t:
                store.paths(ids)
            times.append(t.wall)
    return {"first build s": first.wall, "first build CPU s": first.cpu, "cached build s": cached.wall,
            "cached build CPU s": cached.cpu, "RunStore.paths(120 ids) ms": 1000 * min(times),
            "load average": float(load())}


def bench_audit_report(run: Path, work: Path, full_audit: bool) -> dict[str, float]:
    """`mikata audit` without and (``full_audit``) with the dataset issues (k-NN over every embedding:
    ``benchmarks/bench_issues.py`` measures that part), and `mikata report` without maps."""
    from mikata.analysis.audit_summary import audit
    from mikata.report import write_report

    out = {}
    t = time.perf_counter()
    audit(run, dataset_issues=False)
    out["audit (no dataset issues) s"] = time.perf_counter() - t
    if full_audit:
        t = time.perf_counter()
        audit(run)
        out["audit (with dataset issues) s"] = time.perf_counter() - t
    t = time.perf_counter()
    r = write_report(run, work / f"{run.name}.html", maps=False)
    out["report (no maps) s"] = time.perf_counter() - t
    out["report MB"] = r.bytes / 1e6 if hasattr(r, "bytes") else (work / f"{run.name}.html").stat().st_size / 1e6
    return out


def bench_pages(run: Path, requests: int) -> dict[str, tuple[float, float]]:
    from fastapi.testclient import TestClient

    from mikata.server import create_app

    app = create_app(run, token=TOKEN, port=8765)
    client = TestClient(app, base_url="http://127.0.0.1:8765", headers={"authorization": f"token {TOKEN}"})
    t = time.perf_counter()
    ov = app.run.overview()
    print(f"  server start: overview ready in {time.perf_counter() - t:.2f} s", flush=True)
    cm = ov.confusion
    big = int(np.argmax(np.diag(cm)))
    off = cm.copy()
    np.fill_diagonal(off, 0)
    t_, p_ = np.unravel_index(np.argmax(off), off.shape)
    some = int(ov.data.ids[len(ov.data) // 2])
    paths = {"dashboard": "/", f"grid diagonal ({cm[big, big]})": f"/grid?true={big}&pred={big}",
             f"grid off-diagonal ({cm[t_, p_]})": f"/grid?true={t_}&pred={p_}",
             "grid all, page 20": "/grid?true=-1&pred=-1&page_no=20", "class page": f"/class/{big}",
             "image page": f"/image/{some}", "api/embedding": "/api/embedding"}
    out = {}
    rng = np.random.default_rng(0)
    for name, path in paths.items():
        r = client.get(path)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
        times, cpu = [], []
        for k in range(requests):
            p = path
            if name == "image page":  # a different image every time: nothing per-image cached
                p = f"/image/{int(ov.data.ids[rng.integers(len(ov.data))])}"
            r = get_timed(client, p, times, cpu)
            assert r.status_code == 200
        out[name] = percentiles(times, cpu)
    return out


def bench_compare(work: Path, base: Path, run: Path, n: int, requests: int) -> dict[str, object]:
    """``run`` against a second ``n``-row run of the same files (other base rows copied, seed 1): the library
    call, the app's first build, then each comparison page's (p50, p95) in ms over ``requests`` requests."""
    from fastapi.testclient import TestClient

    from mikata.analysis import issues_cache
    from mikata.analysis.compare import compare
    from mikata.server import create_app

    run_b = build_run(work, base, n, seed=1, name=f"run{n}-b")
    for old in (run / "cache").glob("compare-*.npz"):  # the first build is measured: no stored comparison
        old.unlink()
    out: dict[str, object] = {"load average at start": float(load())}
    with Timer() as t:
        c = compare(run, run_b)
    out["compare() first build s"], out["compare() first build CPU s"] = t.wall, t.cpu
    with Timer() as t:
        again = compare(run, run_b)  # fresh views: what `mikata compare` pays the next time
    out["compare() again (stored) s"], out["compare() again CPU s"] = t.wall, t.cpu
    assert again.to_dict(issues=False)["metrics"] == c.to_dict(issues=False)["metrics"]
    out["shared images"] = c.images["shared"]
    out["fixed / broken"] = f"{len(c.flipped_rows('fixed'))} / {len(c.flipped_rows('broken'))}"
    app = create_app(run, token=TOKEN, port=8765, compare=run_b)
    client = TestClient(app, base_url="http://127.0.0.1:8765", headers={"authorization": f"token {TOKEN}"})
    with Timer() as t:
        app.run.overview()
    out["app: run A's overview s"] = t.wall
    with Timer() as t:
        app.run.compare.comparison()
    out["app: first comparison s"], out["app: first comparison CPU s"] = t.wall, t.cpu  # the stored one
    for r in (run, run_b):  # the first build is measured: no stored issues in either run
        issues_cache.path_for(r).unlink(missing_ok=True)
    with Timer() as t:
        r = client.get("/compare/issues")
    assert r.status_code == 200, (r.status_code, r.text[:300])
    out["/compare/issues first build s"], out["/compare/issues first build CPU s"] = t.wall, t.cpu
    out["issues stored"] = all(issues_cache.path_for(r).is_file() for r in (run, run_b))
    fixed = c.paired.ids_a[c.flipped_rows("fixed")]
    pages = max(1, len(fixed) // 120)
    paths = {"/compare": "/compare", "/compare/flipped fixed, page 1": "/compare/flipped?kind=fixed",
             f"/compare/flipped broken, page {min(21, pages)}": f"/compare/flipped?kind=broken&page_no={min(20, pages - 1)}",
             "image page with B's panel": "/image/{id}", "/compare/issues": "/compare/issues"}
    rng = np.random.default_rng(0)
    for name, path in paths.items():
        r = client.get(path.format(id=int(fixed[0])))
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
        times, cpu = [], []
        for _ in range(requests):
            p = path.format(id=int(fixed[rng.integers(len(fixed))]))  # another fixed image each time
            r = get_timed(client, p, times, cpu)
            assert r.status_code == 200
        out[name] = percentiles(times, cpu)
    out["comparison builds"] = app.run.compare.builds  # 1: the pages reused the first build
    app.run.close()
    again_app = create_app(run, token=TOKEN, port=8765, compare=run_b)  # a second `serve --compare` start
    client = TestClient(again_app, base_url="http://127.0.0.1:8765", headers={"authorization": f"token {TOKEN}"})
    again_app.run.overview()
    again_app.run.compare.comparison()
    with Timer() as t:
        r = client.get("/compare/issues")  # each run's stored issues read back
    assert r.status_code == 200, (r.status_code, r.text[:300])
    out["/compare/issues in a new app (stored) s"], out["/compare/issues in a new app CPU s"] = t.wall, t.cpu
    out["load average at end"] = float(load())
    again_app.run.close()
    return out


def bench_merge(work: Path, run: Path, shards: int) -> dict[str, float]:
    """Split ``run`` into ``shards`` runs (untimed), then time ``merge_runs`` of them into a new run."""
    from mikata.runs.merge import merge_runs, split_run

    parts = split_run(run, work / f"{run.name}-shards", shards)
    out = work / f"{run.name}-merged"
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    merged = merge_runs(out, parts)
    s = time.perf_counter() - t
    return {"merge s": s, "rows": merged.rows, "s per million rows": s / merged.rows * 1e6,
            "bytes per row": merged.bytes / max(merged.rows, 1)}


def bench_engines(work: Path, n: int, batch_size: int = 64) -> dict[str, float]:
    """Seconds to scan the same ``n`` files: a plain DataLoader loop, ``scan`` (local), ``scan(engine="ray")``
    with 2 actors on a local Ray instance started by the call (its start-up included, as a user pays it)."""
    import torch
    from bench_scan import plain_loop
    from test_scan_support import mnist_handle

    from mikata.scanning.scan import scan

    files = work / f"base{n}-files"
    base_run(work, n)  # writes the files
    paths = sorted(str(p) for p in files.glob("*/*.png"))
    handle = mnist_handle()
    out = {"plain loop s": plain_loop(handle, paths, batch_size, 1)}
    for name, kwargs in (("local scan s", {"workers": 1}), ("ray scan (2 actors) s", {"engine": "ray", "actors": 2})):
        run = work / f"engine-{name.split()[0]}"
        shutil.rmtree(run, ignore_errors=True)
        threads = torch.get_num_threads()
        t = time.perf_counter()
        scan(handle, files, run, batch_size=batch_size, progress=False, **kwargs)
        out[name] = time.perf_counter() - t
        torch.set_num_threads(threads)
    out["ray / local"] = out["ray scan (2 actors) s"] / out["local scan s"]
    return out


def page_times(v: tuple[float, ...]) -> str:
    return f"p50 {v[0]:7.1f} ms   p95 {v[1]:7.1f} ms   (CPU p50 {v[2]:6.1f} ms   p95 {v[3]:6.1f} ms)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-scale"))
    ap.add_argument("--base", type=int, default=2000, help="images in the real base scan")
    ap.add_argument("--sizes", default="70000,1000000")
    ap.add_argument("--requests", type=int, default=30)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--no-report", action="store_true")
    ap.add_argument("--steps", default="overview,audit,pages,merge",
                    help="which measurements, comma-separated (also: compare)")
    ap.add_argument("--full-audit", action="store_true", help="also time `mikata audit` with its dataset issues")
    ap.add_argument("--merge-sizes", default="70000", help="run sizes whose merge is timed (splitting a 1M run "
                    "into shards first takes minutes)")
    ap.add_argument("--engines", type=int, default=0, metavar="N",
                    help="also time a plain loop, the local scan and the Ray scan on N real files")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    base = base_run(args.work, args.base)
    for n in [int(s) for s in args.sizes.split(",")]:
        run = build_run(args.work, base, n)
        print(f"\n== {n:,} rows ({run})", flush=True)
        steps = args.steps.split(",")
        if "overview" in steps:
            for k, v in bench_overview(run).items():
                print(f"  {k:28s} {v:8.2f}", flush=True)
        if "audit" in steps and not args.no_report:
            for k, v in bench_audit_report(run, args.work, args.full_audit).items():
                print(f"  {k:28s} {v:8.2f}", flush=True)
        for k, v in (bench_pages(run, args.requests) if "pages" in steps else {}).items():
            print(f"  {k:28s} {page_times(v)}", flush=True)
        for k, v in (bench_compare(args.work, base, run, n, args.requests) if "compare" in steps else {}).items():
            if isinstance(v, tuple):
                print(f"  {k:34s} {page_times(v)}", flush=True)
            else:
                print(f"  {k:34s} {v:8.2f}" if isinstance(v, float) else f"  {k:34s} {v}", flush=True)
        if str(n) not in args.merge_sizes.split(",") or "merge" not in steps:
            continue
        m = bench_merge(args.work, run, args.shards)
        print(f"  merge of {args.shards} shards: {m['merge s']:.1f} s for {m['rows']:,} rows = "
              f"{m['s per million rows']:.1f} s per million rows; {m['bytes per row']:.0f} bytes per row on disk",
              flush=True)


    if args.engines:
        print(f"\n== scanning {args.engines} real files, batch 64", flush=True)
        for k, v in bench_engines(args.work, args.engines).items():
            print(f"  {k:28s} {v:8.2f}", flush=True)


if __name__ == "__main__":
    main()
