"""Feature visualization speed: mikata vs torch-lucent's render_vis, side by side in one process.

Same model (the built-in EfficientNet-Lite0 ``.net``), same 128 px Fourier + decorrelated-color
parameterization, lucent's standard transforms (pad 12, jitter 8, scale ±10 %, rotate ±10°,
jitter 4), Adam lr 0.05, same number of steps. lucent upsamples its transformed image to a fixed
size; it is set to 142 px, the size mikata's transformed image reaches, so both feed the network
the same number of pixels.

1. time per step, one channel, for an early, a middle and a late layer;
2. 36 channels of one layer: one batched mikata run vs 36 separate lucent runs.

3. ``--units-command``: ``mikata units`` for 8 channels of EfficientNet-Lite0's head at the demo's settings (64 px,
   48 steps, top 6) on a run of real photos: the whole call in process and as a fresh ``mikata units``
   process (wall and CPU seconds), against the floor (a plain loop of the renderings' forward and backward,
   8 images x 48 steps at the size the net sees), the ratio, the image steps each ran, and how many
   synthetic images came out flat. Each unit stops at its plateau and leaves the batch; failed ones are
   rendered again from their top image (one batch) or shown as their strongest crop.

Run:  PYTHONPATH=src python benchmarks/bench_featurevis.py [--steps 8] [--threads 2]
      PYTHONPATH=src python benchmarks/bench_featurevis.py --units-command [--threads 2] [--repeats 3] [--keep DIR]
The machine is shared: numbers are noisy; the ratios are measured alternately in one process.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--units", type=int, default=36)
    ap.add_argument("--units-command", action="store_true", help="only the `mikata units` rows (no lucent)")
    ap.add_argument("--keep", default=None, metavar="DIR", help="--units-command: build (or reuse) the run in DIR")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    if args.units_command:
        units_rows(args.threads, args.repeats, args.keep)
        return

    from torchvision_compat import import_torchvision_declaring_ops

    import_torchvision_declaring_ops()  # lucent imports torchvision
    from lucent.optvis import param as lparam, render as lrender, transform as ltransform

    from mikata.featurevis import RenderOptions, channel, render
    from mikata.models import load_model

    handle = load_model("efficientnet-lite0")
    net = handle.net
    size, steps = 128, args.steps
    opts = RenderOptions(size=size, steps=steps, param="fourier", optimizer="adam", lr=0.05)

    def ours(layer: str, channels: list[int]) -> float:
        t = time.perf_counter()
        render(handle, channel(layer, channels), opts)
        return time.perf_counter() - t

    def lucent(layer: str, c: int) -> float:
        np.random.seed(0)
        torch.manual_seed(0)
        t = time.perf_counter()
        lrender.render_vis(net, f"{layer.replace('.', '_')}:{c}", param_f=lambda: lparam.image(size),
                           transforms=list(ltransform.standard_transforms), thresholds=(steps,),
                           show_image=False, progress=False, fixed_image_size=142)
        return time.perf_counter() - t

    for p in net.parameters():  # lucent leaves requires_grad as it finds it: use the model's default
        p.requires_grad_(True)

    print(f"torch {torch.__version__}, {args.threads} threads, {size} px, {steps} steps, "
          f"median of {args.repeats} (alternating)\n")
    print("| case | mikata ms/step | lucent ms/step | mikata / lucent |")
    print("|---|---|---|---|")
    for layer in ["stem.conv", "blocks.8", "head"]:
        ours(layer, [0]), lucent(layer, 0)  # warm-up
        a, b = [], []
        for _ in range(args.repeats):
            a.append(ours(layer, [0]))
            b.append(lucent(layer, 0))
        ma, mb = statistics.median(a) / steps * 1e3, statistics.median(b) / steps * 1e3
        print(f"| 1 channel of {layer} | {ma:.0f} | {mb:.0f} | {ma / mb:.2f}x |")

    layer, n = "blocks.5", args.units
    # the batched run is timed before and after the lucent runs (the machine's load drifts): the mean counts
    t_before = ours(layer, list(range(n)))
    t_lucent = sum(lucent(layer, c) for c in range(n))
    t_ours = (t_before + ours(layer, list(range(n)))) / 2
    print(f"| {n} channels of {layer}: one batched run vs {n} lucent runs (s) | {t_ours:.1f} | {t_lucent:.1f} | "
          f"{t_ours / t_lucent:.2f}x ({t_lucent / t_ours:.1f}x faster) |")


def units_rows(threads: int, repeats: int, keep: str | None = None) -> None:
    """8 head channels at the demo's settings: the whole `mikata units` call (in process and as the command)
    against its floor, a plain loop of the renderings' forward and backward at the same batch and size."""
    import resource
    import subprocess
    import tempfile
    from pathlib import Path

    from conftest import _photo_arrays  # sets torch's threads: set them again below

    from mikata.analysis.units import unit_examples
    from mikata.featurevis import RenderOptions, transforms as T
    from mikata.featurevis.quality import FLAT_STD
    from mikata.models import load_model
    from mikata.scanning.scan import scan

    torch.set_num_threads(threads)
    handle = load_model("efficientnet-lite0")
    n, size, steps = 8, 64, 48
    tmp = Path(keep) if keep else Path(tempfile.mkdtemp())
    folder = tmp / "photos" / handle.class_names[281]  # one class folder (labels do not matter here)
    folder.mkdir(parents=True, exist_ok=True)
    for name, img in _photo_arrays().items():
        img.convert("RGB").save(folder / f"{name}.png")
    run = tmp / "run"
    if not (run / "manifest.json").exists():
        scan(handle, folder.parent, run, batch_size=8, workers=0, progress=False)
    seen = T.apply(T.standard_transforms(), torch.rand(1, 3, size, size), torch.Generator().manual_seed(0)).shape[-1]
    net = handle.net.eval()

    def floor() -> tuple[float, float]:
        """The renderings' compute with nothing around it: 8 images at the transformed size, 48 forward and
        backward passes up to the head, every step (what one batch that never stops costs), the input in
        channels-last memory as `render` gives it on the CPU."""
        for p in net.parameters():
            p.requires_grad_(False)
        x = torch.rand(n, 3, seen, seen).contiguous(memory_format=torch.channels_last).requires_grad_(True)
        w, c = time.perf_counter(), time.process_time()
        for _ in range(steps):
            a = net.head(net.blocks(net.stem(x)))  # (8, 1280, h, w)
            a[torch.arange(n), torch.arange(n)].mean((1, 2)).sum().backward()
            x.grad = None
        return time.perf_counter() - w, time.process_time() - c

    def ours():
        w, c = time.perf_counter(), time.process_time()
        res = unit_examples(run, range(n), k=6, handle=handle, options=RenderOptions(size=size, steps=steps, seed=0),
                            progress=False)
        res.save()
        return time.perf_counter() - w, time.process_time() - c, res

    def command() -> tuple[float, float]:
        """`mikata units` as a user runs it: a fresh process (imports, model load, rendering, files)."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        w = time.perf_counter()
        subprocess.run([sys.executable, "-m", "mikata", "-q", "units", str(run), "--channels", f"0:{n}", "--size",
                        str(size), "--steps", str(steps), "--top", "6"], check=True,
                       env={**os.environ, "OMP_NUM_THREADS": str(threads)}, stdout=subprocess.DEVNULL)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.perf_counter() - w, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime

    floor()  # warm-up
    rows = {"floor": [], "ours": [], "command": []}
    for _ in range(repeats):  # interleaved: the machine's load drifts
        rows["floor"].append(floor())
        w, c, res = ours()
        rows["ours"].append((w, c))
        rows["command"].append(command())
    best = {k: min(v) for k, v in rows.items()}  # best wall of N, with its CPU time
    flat = int((res.synthetic.flatten(1).std(1) < FLAT_STD).sum())
    load = open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else ["?"] * 3
    print(f"torch {torch.__version__}, {threads} thread(s), load avg {' '.join(load)}; mikata units, {n} channels of "
          f"head, {size} px ({seen} px seen by the net), {steps} steps; best wall of {repeats} (interleaved)\n")
    print("| case | wall s | CPU s | image steps | / floor (wall) | / floor (CPU) |")
    print("|---|---|---|---|---|---|")
    f_wall, f_cpu = best["floor"]
    print(f"| floor: plain loop, {n} images x {steps} steps, forward + backward to the head | {f_wall:.1f} | "
          f"{f_cpu:.1f} | {n * steps} | 1.00x | 1.00x |")
    for key, label in (("ours", f"ours: unit_examples + save (in process; rendering {res.seconds:.1f} s)"),
                       ("command", "`mikata units` command (fresh process: imports, model, files)")):
        wall, cpu = best[key]
        print(f"| {label} | {wall:.1f} | {cpu:.1f} | {res.image_steps} | {wall / f_wall:.2f}x | {cpu / f_cpu:.2f}x |")
    notes = [m for m in res.notes if m]
    print(f"\nflat images shown: {flat} of {n}; rendered again from their top image: "
          f"{sum('rendered again' in m for m in notes)}; shown as their strongest crop: {sum('crop' in m for m in notes)}")
    if keep:
        print(f"run kept at {run}")


if __name__ == "__main__":
    main()
