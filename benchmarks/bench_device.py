"""Device check: mikata on whatever device is present vs its floor there, and vs the CPU's results.

On the chosen device (``--device auto``: CUDA, else MPS, else the CPU) it runs scan (plain and with
Grad-CAM), predict, explain (gradcam, guided-gradcam, smoothgrad, integrated-gradients, occlusion),
visualize and evaluate (deletion / insertion curves) with the built-in EfficientNet-Lite0 (real
weights), and prints for each: seconds, the floor measured in this process, their ratio, and the
check against the CPU (same top-1; maps' Pearson r >= 0.999 in fp32). Floors: a plain DataLoader +
forward loop for scan and predict; forward + backward (to the layer or to the input, no weight
gradients) for the gradient methods, times their samples; plain batched forwards of the same
perturbed images for occlusion and the curves; forward + backward + an optimizer step for visualize.

When the device *is* the CPU, the CPU check compares two CPU runs (it shows determinism, not device
agreement): say so when quoting the table. Data: Fashion-MNIST PNGs (Debian dataset-fashion-mnist) for
the scan, the photos that scikit-image / scikit-learn / matplotlib ship for the rest.

    PYTHONPATH=src:tests python benchmarks/bench_device.py --images 64 --repeats 1 --quick   # smallest
    PYTHONPATH=src:tests python benchmarks/bench_device.py --device cuda --images 10000 --batch-size 256
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
sys.path.insert(0, os.path.dirname(__file__))
warnings.filterwarnings("ignore")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def timeit(fn, device: torch.device, repeats: int) -> float:
    """Median seconds of ``repeats`` runs after one warm-up (a call slower than 20 s is timed once)."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    first = time.perf_counter() - t0
    if first > 20 or repeats < 1:
        return first
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().flatten().cpu(), b.double().flatten().cpu()
    a, b = a - a.mean(), b - b.mean()
    return float((a @ b) / (a.norm() * b.norm()).clamp_min(1e-30))


# ------------------------------------------------------------------------------------------ floors
def backward_floor(handle, x, layer: str | None):
    """Forward + backward to ``layer`` (or to the input when None), parameters frozen: the floor."""
    from mikata.hooks import _first_tensor, attached, get_layer, preserved

    net = handle.net

    def run():
        grab = {}

        def keep(mod, args, out):
            grab["a"] = _first_tensor(out).detach().requires_grad_(True)
            return grab["a"]

        hooks = [(get_layer(net, layer), "forward", keep)] if layer else []
        with preserved(net), attached(hooks), torch.enable_grad():
            for p in net.parameters():
                p.requires_grad_(False)
            xin = x if layer else x.detach().requires_grad_(True)
            logits = handle.model(xin)
            top = logits.gather(1, logits.argmax(1, keepdim=True)).sum()
            torch.autograd.grad(top, [grab["a"] if layer else xin])

    return run


def forward_floor(handle, x, total: int, batch: int):
    """``total`` plain forwards in batches of ``batch`` (same shape as the perturbation chunks)."""
    xs = x[:1].repeat(batch, 1, 1, 1)

    def run():
        with torch.inference_mode(), handle.autocast():
            for s in range(0, total, batch):
                handle.model(xs[: min(batch, total - s)])

    return run


class PlainFiles(torch.utils.data.Dataset):
    def __init__(self, handle, paths):
        self.handle, self.paths = handle, paths

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        from mikata.data.images import load_image

        return self.handle.preprocess([load_image(self.paths[i], "RGB")])[0]


def plain_loop(handle, paths, batch_size: int, workers: int, gradcam_layer: str | None = None):
    device = handle.device

    def run():
        loader = torch.utils.data.DataLoader(PlainFiles(handle, paths), batch_size=batch_size, num_workers=workers,
                                             prefetch_factor=4 if workers else None, pin_memory=device.type == "cuda")
        for x in loader:
            x = x.to(device, non_blocking=True)
            if gradcam_layer:
                backward_floor(handle, x, gradcam_layer)()
            else:
                with torch.inference_mode(), handle.autocast():
                    handle.model(x).float().softmax(1).cpu()

    return run


# -------------------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                    help="forward-only work (scan, predict, occlusion, curves); gradients stay fp32")
    ap.add_argument("--images", type=int, default=512, help="Fashion-MNIST images to scan (default 512)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--photos", type=int, default=4, help="photos per explain / evaluate batch (default 4)")
    ap.add_argument("--quick", action="store_true", help="fewer samples, steps and windows (a smoke run)")
    args = ap.parse_args()

    from bench_scan import write_fashion_mnist
    from conftest import _photo_arrays

    from mikata.scanning.scan import scan
    from mikata.attribution import explain
    from mikata.data.images import load_image
    from mikata.devices import describe, resolve_device
    from mikata.evaluation.faithfulness import perturbation_curves
    from mikata.featurevis import RenderOptions, visualize_classes
    from mikata.models import load_model
    from mikata.prediction import predict

    device = resolve_device(args.device)
    on_cpu = device.type == "cpu"
    print(f"device: {describe(device)}; precision {args.precision} for forward-only work")
    if on_cpu:
        print("NOTE: the device is the CPU: 'vs CPU' compares two CPU runs (determinism, not device agreement)")
    handle = load_model("efficientnet-lite0", device=device, precision=args.precision)
    ref = load_model("efficientnet-lite0", device="cpu", precision="fp32")
    fp32 = load_model("efficientnet-lite0", device=device, precision="fp32")  # for the fp32 map checks
    layer = handle.default_layer
    tmp = Path(tempfile.mkdtemp(prefix="mikata-bench-device-"))
    photo_dir = tmp / "photos"
    photo_dir.mkdir()
    photo_paths = []
    for name, img in _photo_arrays().items():
        photo_paths.append(photo_dir / f"{name}.png")
        img.save(photo_paths[-1])
    rows: list[tuple[str, float, float, str]] = []  # name, seconds, floor seconds, check

    class Rows(list):
        """Printed as they come, so a run cut short still shows what it measured."""

        def append(self, row):
            super().append(row)
            name, t, f, check = row
            print(f"{name:<30} {t:8.3f} {f:8.3f} {t / f:6.2f}  {check}", flush=True)

    rows = Rows()
    print(f"\n{'work':<30} {'s':>8} {'floor s':>8} {'ratio':>6}  check", flush=True)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    # ---- scan vs the plain loop (same precision), and with Grad-CAM vs the loop + Grad-CAM floor
    data = tmp / "fmnist"
    paths = [str(p) for p in write_fashion_mnist(data, args.images)]
    mapping = {str(i): handle.class_names[i] for i in range(10)}  # folder names "0".."9" -> ImageNet classes
    runs = iter(range(10**6))

    def do_scan(gradcam: bool):
        return lambda: scan(handle, data, tmp / f"run{next(runs)}", batch_size=args.batch_size, workers=args.workers,
                            gradcam=gradcam, class_map=mapping, progress=False)

    loop = timeit(plain_loop(handle, paths, args.batch_size, args.workers), device, args.repeats)
    rows.append(("scan", timeit(do_scan(False), device, args.repeats), loop, "plain DataLoader+forward loop"))
    loop_cam = timeit(plain_loop(handle, paths, args.batch_size, args.workers, layer), device, args.repeats)
    rows.append(("scan --gradcam", timeit(do_scan(True), device, args.repeats), loop,
                 f"vs loop (goal <= 1.5x); loop + backward floor {loop_cam:.2f} s"))
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None

    # ---- predict: top-1 vs the CPU
    p_dev = predict(handle, photo_paths, top=1)
    p_cpu = predict(ref, photo_paths, top=1)
    same = sum(a.top[0][1] == b.top[0][1] for a, b in zip(p_dev, p_cpu))
    dprob = max(abs(a.top[0][2] - b.top[0][2]) for a, b in zip(p_dev, p_cpu))
    pred_t = timeit(lambda: predict(handle, photo_paths, top=5), device, args.repeats)
    pred_floor = timeit(plain_loop(handle, [str(p) for p in photo_paths], 32, 0), device, args.repeats)
    rows.append(("predict", pred_t, pred_floor, f"top-1 same as CPU {same}/{len(photo_paths)}, "
                                                f"max prob diff {dprob:.4f}"))

    # ---- explain: each method vs its floor, maps vs the CPU in fp32
    x_cpu = ref.preprocess([load_image(p, "RGB") for p in photo_paths[:args.photos]])  # (n, 3, 224, 224)
    x = x_cpu.to(device)
    n_smooth, n_ig = (4, 4) if args.quick else (16, 32)
    window = 56 if args.quick else 32
    occ = {"window": window, "stride": window // 2}
    n_windows = (((224 - window) // (window // 2)) + 1) ** 2
    plans = [("gradcam", {}, backward_floor(fp32, x, layer), 1),
             ("guided-gradcam", {}, backward_floor(fp32, x, None), 1),
             ("smoothgrad", {"samples": n_smooth}, backward_floor(fp32, x, None), n_smooth),
             ("integrated-gradients", {"steps": n_ig}, backward_floor(fp32, x, None), n_ig)]
    for method, opts, floor_fn, times in plans:
        t = timeit(lambda: explain(fp32, x, [method], options={method: opts}), device, args.repeats)
        floor = timeit(floor_fn, device, args.repeats) * times
        r = pearson(explain(fp32, x, [method], options={method: opts})[0].maps,
                    explain(ref, x_cpu, [method], options={method: opts})[0].maps)
        rows.append((f"explain {method}", t, floor, f"fp32 maps vs CPU r={r:.5f} {'ok' if r >= 0.999 else 'FAIL'}"))
    t = timeit(lambda: explain(handle, x, ["occlusion"], options={"occlusion": occ}), device, args.repeats)
    floor = timeit(forward_floor(handle, x, n_windows * len(x), 64), device, args.repeats)
    r = pearson(explain(fp32, x, ["occlusion"], options={"occlusion": occ})[0].maps,
                explain(ref, x_cpu, ["occlusion"], options={"occlusion": occ})[0].maps)
    r16 = pearson(explain(handle, x, ["occlusion"], options={"occlusion": occ})[0].maps,
                  explain(ref, x_cpu, ["occlusion"], options={"occlusion": occ})[0].maps)
    rows.append(("explain occlusion", t, floor, f"fp32 r={r:.5f} {'ok' if r >= 0.999 else 'FAIL'}; "
                                                f"{args.precision} r={r16:.5f}"))

    # ---- visualize: class-logit images vs forward+backward+step
    steps = 4 if args.quick else 32
    vis_size = 64 if args.quick else 128
    opts = RenderOptions(size=vis_size, steps=steps, seed=0)
    t = timeit(lambda: visualize_classes(fp32, ["zebra", "castle"], opts), device, 0)
    img = torch.rand(2, 3, vis_size, vis_size, device=device, requires_grad=True)
    optim = torch.optim.Adam([img], lr=0.05)

    def vis_floor():
        for _ in range(steps):
            optim.zero_grad()
            with torch.enable_grad():
                fp32.model(img)[:, 340].sum().backward()
            optim.step()

    a = visualize_classes(fp32, ["zebra", "castle"], opts).images
    b = visualize_classes(ref, ["zebra", "castle"], opts).images
    rows.append(("visualize (2 classes)", t, timeit(vis_floor, device, 0),
                 f"images vs CPU r={pearson(a, b):.4f} (optimization drifts)"))

    # ---- evaluate: deletion + insertion curves of the gradcam maps
    maps = explain(fp32, x, ["gradcam"])[0].maps
    with torch.inference_mode():
        ids = fp32.model(x).argmax(1)
    curve_steps = 8 if args.quick else 50
    t = timeit(lambda: perturbation_curves(handle, x, maps, ids, steps=curve_steps), device, args.repeats)
    floor = timeit(forward_floor(handle, x, 2 * curve_steps * len(x), 64), device, args.repeats)
    c_dev = perturbation_curves(fp32, x, maps, ids, steps=curve_steps)
    c_cpu = perturbation_curves(ref, x_cpu, maps.cpu(), ids.cpu(), steps=curve_steps)
    diff = max(float((c_dev[m] - c_cpu[m]).abs().max()) for m in c_dev)
    rows.append(("evaluate curves", t, floor, f"fp32 curves vs CPU max |diff| {diff:.2e}"))

    print(f"\nscan: {args.images} Fashion-MNIST images at 224 px, batch {args.batch_size}, {args.workers} workers; "
          f"explain: {len(x)} photos at 224 px; smoothgrad n={n_smooth}, IG steps={n_ig}, occlusion {occ}")
    if peak is not None:
        print(f"peak device memory allocated: {peak:.2f} GiB")


if __name__ == "__main__":
    main()
