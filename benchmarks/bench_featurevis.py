"""Feature visualization speed: mikata vs torch-lucent's render_vis, side by side in one process.

Same model (the built-in EfficientNet-Lite0 ``.net``), same 128 px Fourier + decorrelated-color
parameterization, lucent's standard transforms (pad 12, jitter 8, scale ±10 %, rotate ±10°,
jitter 4), Adam lr 0.05, same number of steps. lucent upsamples its transformed image to a fixed
size; it is set to 142 px, the size mikata's transformed image reaches, so both feed the network
the same number of pixels.

1. time per step, one channel, for an early, a middle and a late layer;
2. 36 channels of one layer: one batched mikata run vs 36 separate lucent runs.

Run:  PYTHONPATH=src python benchmarks/bench_featurevis.py [--steps 8] [--threads 2]
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
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")

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


if __name__ == "__main__":
    main()
