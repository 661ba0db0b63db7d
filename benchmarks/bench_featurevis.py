"""Feature visualization speed: mikata vs torch-lucent's render_vis, side by side in one process.

Same model (the built-in EfficientNet-Lite0 ``.net``), same 128 px Fourier + decorrelated-color
parameterization, lucent's standard transforms (pad 12, jitter 8, scale ±10 %, rotate ±10°,
jitter 4), Adam lr 0.05, same number of steps. lucent upsamples its transformed image to a fixed
size; it is set to 142 px, the size mikata's transformed image reaches, so both feed the network
the same number of pixels.

1. time per step, one channel, for an early, a middle and a late layer;
2. 36 channels of one layer: one batched mikata run vs 36 separate lucent runs.

3. ``--units-command``: ``mikata units`` for 8 channels of EfficientNet-Lite0's head at the demo's settings (64 px,
   48 steps) on a run of real photos, before (every step, failed renderings kept) and after (stop at
   the plateau, failed ones rendered again from their top image or shown as their strongest crop):
   seconds, the ratio, and how many synthetic images came out flat.

Run:  PYTHONPATH=src python benchmarks/bench_featurevis.py [--steps 8] [--threads 2]
      PYTHONPATH=src python benchmarks/bench_featurevis.py --units-command [--threads 2]
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
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    if args.units_command:
        units_rows(args.threads)
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


def units_rows(threads: int) -> None:
    """8 head channels at the demo's settings: every step (before) vs plateau stop + retry (after)."""
    import tempfile
    from pathlib import Path

    from conftest import _photo_arrays

    from mikata.scanning.scan import scan
    from mikata.analysis.units import unit_examples
    from mikata.featurevis import RenderOptions
    from mikata.featurevis.quality import FLAT_STD
    from mikata.models import load_model

    handle = load_model("efficientnet-lite0")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos" / handle.class_names[281]  # one class folder (labels do not matter here)
        folder.mkdir(parents=True)
        for name, img in _photo_arrays().items():
            img.convert("RGB").save(folder / f"{name}.png")
        scan(handle, folder.parent, Path(tmp) / "run", batch_size=8, workers=0, progress=False)
        print("  scanned", flush=True)
        from mikata.featurevis import visualize_channels

        rows = []
        # before: what `mikata units` rendered until now, every step and no check of the result
        t = time.perf_counter()
        plain = visualize_channels(handle, handle.default_layer, list(range(8)),
                                   RenderOptions(size=64, steps=48, seed=0, plateau=0))
        took = time.perf_counter() - t
        flat = int((plain.images.flatten(1).std(1) < FLAT_STD).sum())
        rows.append(("before: every step, no check", took, plain.seconds, flat, 0))
        print(f"  before: {took:.1f} s, {flat} flat", flush=True)
        t = time.perf_counter()
        res = unit_examples(Path(tmp) / "run", range(8), k=3, handle=handle,
                            options=RenderOptions(size=64, steps=48, seed=0))
        took = time.perf_counter() - t
        flat = int((res.synthetic.flatten(1).std(1) < FLAT_STD).sum())
        rows.append(("after: plateau stop + retry (whole `units` call)", took, res.seconds, flat,
                     sum(n is not None for n in res.notes)))
    print(f"torch {torch.__version__}, {threads} threads; mikata units, 8 channels of head, 64 px, 48 steps\n")
    print("| case | total s | rendering s | flat images shown | units rendered again / cropped |")
    print("|---|---|---|---|---|")
    for label, took, secs, flat, notes in rows:
        print(f"| {label} | {took:.1f} | {secs:.1f} | {flat} of 8 | {notes} |")
    print(f"| after / before (total) | {rows[1][1] / rows[0][1]:.2f}x | {rows[1][2] / rows[0][2]:.2f}x | | |")


if __name__ == "__main__":
    main()
