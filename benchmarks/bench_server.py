"""Benchmark: `mikata serve` on a 70,000-image run — page latency (p50/p95) and on-demand Grad-CAM vs its floor.

The run: all 70,000 real Fashion-MNIST images (Debian dataset-fashion-mnist: train + t10k) written
once as PNGs, in a RunStore cloned from the real demo run (model: the fine-tuned efficientnet-lite0
checkpoint mikata-demo/fashion-mnist-lite0.safetensors, or under $MIKATA_DEMO_DIR). Scanning 70k images with that
model takes ~10 min on this 2-core machine, so the rows are SYNTHETIC in one respect: each image
gets the prediction, probabilities, embedding and channel vectors of a randomly chosen demo row
with the same label (the demo's 750 rows are real scan results). Paths, labels and image files are
real, so thumbnails and on-demand maps run the real model on the real image. The server only sees
a RunStore: its work per request is what it would be on a real 70k scan.

Measured:
- the first overview build (``overview()`` over 70k rows, cleanlab label issues included);
- p50 / p95 of the dashboard, grid (a 7,000-image diagonal cell and a small off-diagonal cell,
  120 thumbnails a page), class, image pages and a cached thumbnail, through the full ASGI stack
  (token gate, FastAPI, Jinja2) in-process, and again over real HTTP against `mikata serve` in a
  subprocess;
- on-demand Grad-CAM through ``/map/{id}.png`` (uncached ids: decode, preprocess, explain, cache,
  overlay PNG) vs its floor, the same ``explain()`` call on the already preprocessed tensor, in
  the same process, alternating, on the same images.

    PYTHONPATH=src python benchmarks/bench_server.py --work /tmp/bench70k
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

DEMO_DIR = Path(os.environ.get("MIKATA_DEMO_DIR", "mikata-demo"))  # where `mikata demo` wrote its outputs
DEMO_RUN = DEMO_DIR / "run"
CHECKPOINT = DEMO_DIR / "fashion-mnist-lite0.safetensors"
TOKEN = "bench-token"


def write_images(out: Path) -> list[tuple[Path, int]]:
    """All 70,000 Fashion-MNIST images as out/CLASS/part_INDEX.png (cached); (path, label) pairs."""
    from PIL import Image

    from mikata.data.idx import FASHION_MNIST_CLASSES, load_fashion_mnist

    files = []
    for part in ("train", "test"):
        x, y = load_fashion_mnist(part)
        for c in FASHION_MNIST_CLASSES:
            (out / c).mkdir(parents=True, exist_ok=True)
        for i in range(len(x)):
            p = out / FASHION_MNIST_CLASSES[y[i]] / f"{part}_{i:05d}.png"
            if not p.exists():
                Image.fromarray(x[i]).save(p)
            files.append((p, FASHION_MNIST_CLASSES[y[i]]))
    return files


def build_run(work: Path, n: int, seed: int = 0) -> Path:
    """A RunStore of ``n`` real images whose rows reuse the demo run's scan results (see the module doc)."""
    from mikata.runs.data import load_run
    from mikata.runs.store import Row, RunStore

    run = work / f"run{n}"
    if (run / "run.sqlite").exists():
        with RunStore.open(run) as store:
            if store.count() == n:
                return run
        shutil.rmtree(run)
    files = write_images(work / "fashion")[:n]
    demo = load_run(DEMO_RUN)
    with RunStore.open(DEMO_RUN) as src:
        manifest = src.manifest
        vecs = {k: np.asarray(src.vectors(k)) for k in src.dims()}
        topks = {i: src.image(int(i))["topk"] for i in demo.ids}
    manifest = dict(manifest, dataset_root=str(work / "fashion"),
                    note="benchmark run: real images, rows copied from the demo scan by label")
    classes = manifest["identity"]["classes"]
    by_label = {c: np.nonzero(demo.labels == c)[0] for c in range(len(classes))}
    rng = np.random.default_rng(seed)
    store = RunStore.create_or_resume(run, manifest)
    t0 = time.perf_counter()
    for s in range(0, len(files), 5000):
        rows, picks = [], []
        for path, name in files[s:s + 5000]:
            label = classes.index(name)
            k = int(rng.choice(by_label[label]))
            st = path.stat()
            rows.append(Row(path=str(path), hash=None, size=st.st_size, mtime_ns=st.st_mtime_ns, label=label,
                            split="test" if "test_" in path.name else "train", pred=int(demo.preds[k]),
                            pred_prob=float(demo.probs[k, demo.preds[k]]), label_prob=float(demo.probs[k, label]),
                            topk=topks[demo.ids[k]]))
            picks.append(demo.vec_rows[k])
        store.append(rows, {kind: v[picks] for kind, v in vecs.items()}, replace=False)
    store.close()
    print(f"built {run}: {n} rows in {time.perf_counter() - t0:.1f} s", flush=True)
    return run


def percentiles(ms: list[float]) -> str:
    a = np.asarray(ms)
    return f"p50 {np.percentile(a, 50):7.1f} ms   p95 {np.percentile(a, 95):7.1f} ms   max {a.max():7.1f} ms"


def endpoints(run: Path) -> dict[str, str]:
    from mikata.analysis.overview import overview

    ov = overview(run, top_issues=5)
    cm = ov.confusion.copy()
    big = int(np.argmax(np.diag(cm)))
    np.fill_diagonal(cm, 0)
    t, p = np.unravel_index(np.argmax(cm), cm.shape)
    small = [(a, b) for a in range(10) for b in range(10) if a != b and 0 < ov.confusion[a, b] <= 200]
    st, sp = small[0] if small else (t, p)
    some = int(ov.data.ids[len(ov.data) // 2])
    return {"dashboard /": "/",
            f"grid diagonal ({ov.confusion[big, big]} imgs)": f"/grid?true={big}&pred={big}",
            f"grid off-diag ({ov.confusion[t, p]} imgs)": f"/grid?true={t}&pred={p}",
            f"grid small ({ov.confusion[st, sp]} imgs)": f"/grid?true={st}&pred={sp}",
            "grid page 20 of all": "/grid?true=-1&pred=-1&page_no=20",
            "class page": f"/class/{big}",
            "image page": f"/image/{some}",
            "thumbnail (cached)": f"/thumb/{some}",
            "api/overview": "/api/overview"}


def bench_pages(get, paths: dict[str, str], n: int) -> None:
    for name, path in paths.items():
        r = get(path)
        assert r.status_code == 200, (path, r.status_code)
        times = []
        for _ in range(n):
            t = time.perf_counter()
            r = get(path)
            times.append(1000 * (time.perf_counter() - t))
            assert r.status_code == 200
        print(f"  {name:32s} {percentiles(times)}   {len(r.content) / 1024:6.1f} KiB", flush=True)


def bench_gradcam(app, run: Path, n: int) -> None:
    """On-demand Grad-CAM, uncached, three ways, alternating on distinct images of the same kind:

    floor    ``explain()`` on the already preprocessed tensor (one forward + backward to the layer);
    library  ``RunState.overlay``: id -> file, decode, preprocess, explain, cache the map, overlay PNG;
    endpoint ``GET /map/ID.png`` through the token gate and FastAPI (TestClient, in-process).
    """
    import torch
    from fastapi.testclient import TestClient

    from mikata.presentation.media import image_file
    from mikata.runs.store import RunStore
    from mikata.attribution import explain
    from mikata.data.images import load_image

    state = app.run
    h = state.maps.handle
    client = TestClient(app, base_url="http://127.0.0.1:8765", headers={"authorization": f"token {TOKEN}"})
    with RunStore.open(run) as store:
        ids = [int(i) for i, in store.db.execute("SELECT id FROM images WHERE id NOT IN (SELECT image_id FROM maps) "
                                                  "ORDER BY random() LIMIT ?", (3 * n + 9,))]
        paths = {i: image_file(store, i) for i in ids}
    x_of = {i: h.preprocess([load_image(paths[i], "RGB")]) for i in ids}
    cls = 3
    # the floor and the library call run in a worker thread, as the server's routes do: on this machine
    # OpenMP in the main thread is several times slower under load than in a worker thread
    pool = ThreadPoolExecutor(1)

    def timed(f, *a) -> float:
        t = time.perf_counter()
        f(*a)
        return 1000 * (time.perf_counter() - t)

    def floor_call(i):
        explain(h, x_of[i], ["gradcam"], targets=[cls])

    def endpoint_call(i):
        r = client.get(f"/map/{i}.png?method=gradcam&cls={cls}")
        assert r.status_code == 200 and r.content[:4] == b"\x89PNG"

    times = {"floor": [], "library": [], "endpoint": []}
    for k in range(n + 3):
        a, b, c = ids[3 * k:3 * k + 3]
        f = pool.submit(timed, floor_call, a).result()
        lib = pool.submit(timed, state.overlay, b, "gradcam", cls).result()
        end = timed(endpoint_call, c)
        if k >= 3:  # the first three are warm-up
            times["floor"].append(f)
            times["library"].append(lib)
            times["endpoint"].append(end)
    for name, label in (("floor", "floor explain() on tensor"), ("library", "RunState.overlay (library)"),
                        ("endpoint", "GET /map/ID.png (uncached)")):
        print(f"  {label:30s} {percentiles(times[name])}")
    med = {k: float(np.median(v)) for k, v in times.items()}
    print(f"  over the floor (medians): library +{med['library'] - med['floor']:.1f} ms, "
          f"endpoint +{med['endpoint'] - med['floor']:.1f} ms   (budget: floor + 50 ms; "
          f"{n} images each; torch threads {torch.get_num_threads()})")
    cached = [timed(endpoint_call, ids[3 * k + 2]) for k in range(3, n + 3)]
    print(f"  GET /map/ID.png (cached)       {percentiles(cached)}")


def bench_http(run: Path, paths: dict[str, str], n: int) -> None:
    """The same pages over real HTTP against `mikata serve` in a subprocess (httpx, keep-alive)."""
    import httpx

    code = (f"from mikata.server.launch import serve; serve({str(run)!r}, port=8876, token={TOKEN!r}, "
            f"model={str(CHECKPOINT)!r})")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src"),
                                                      os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        while "token=" not in line:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                raise SystemExit("the server did not start")
        port = int(line.split(":")[2].split("/")[0])
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"authorization": f"token {TOKEN}"},
                          timeout=60) as c:
            # wait for the model the server loads in the background at start, so it does not compete
            some = paths["image page"].rsplit("/", 1)[1]
            assert c.get(f"/map/{some}.png?method=gradcam&cls=1").status_code == 200
            print(f"real HTTP against `mikata serve` in a subprocess (port {port}):")
            bench_pages(c.get, paths, n)
    finally:
        proc.terminate()
        proc.wait(10)



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench70k"))
    ap.add_argument("--images", type=int, default=70000)
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--maps", type=int, default=20)
    ap.add_argument("--no-http", action="store_true", help="skip the real-HTTP pass")
    ap.add_argument("--only-http", action="store_true", help="only the real-HTTP pass")
    args = ap.parse_args()
    from fastapi.testclient import TestClient

    from mikata.server import create_app

    run = build_run(args.work, args.images)
    for extra in ("maps", "reviews"):  # start from an empty cache every time
        import sqlite3

        with sqlite3.connect(run / "run.sqlite") as db:
            db.execute(f"DELETE FROM {extra}")
    if args.only_http:
        return bench_http(run, endpoints(run), args.requests)
    app = create_app(run, token=TOKEN, port=8765, model=str(CHECKPOINT))
    t = time.perf_counter()
    ov = app.run.overview()
    print(f"run {run}: {len(ov.data)} images; first overview build {time.perf_counter() - t:.2f} s", flush=True)
    paths = endpoints(run)
    client = TestClient(app, base_url="http://127.0.0.1:8765", headers={"authorization": f"token {TOKEN}"})
    t = time.perf_counter()
    client.get("/api/embedding")
    print(f"first /api/embedding (PCA of 20,000 sampled embeddings) {time.perf_counter() - t:.2f} s")
    print(f"in-process (TestClient, full ASGI stack), {args.requests} requests each after one warm-up:")
    bench_pages(client.get, paths, args.requests)
    fresh = [int(i) for i in ov.data.ids[np.random.default_rng(1).choice(len(ov.data), args.requests, replace=False)]]
    times = []
    for i in fresh:
        t = time.perf_counter()
        assert client.get(f"/thumb/{i}").status_code == 200
        times.append(1000 * (time.perf_counter() - t))
    print(f"  {'thumbnail (uncached)':32s} {percentiles(times)}")
    print("on-demand Grad-CAM (in-process):")
    bench_gradcam(app, run, args.maps)
    if not args.no_http:
        bench_http(run, paths, args.requests)


if __name__ == "__main__":
    main()
