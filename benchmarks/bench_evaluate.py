"""Evaluation speed: deletion curves vs the forwards they need, and the cascade / max-sensitivity cost.

Floor for deletion with S steps on N images: the N x S forwards on tensors built beforehand, same
batch size, same channels-last setting, same process (ours builds each perturbed batch on the fly
from a rank map). Also shows what channels-last is worth for that floor, and times the
randomization cascade and max-sensitivity. Numbers on a shared machine are noisy: read the ratios.

    PYTHONPATH=src python benchmarks/bench_evaluate.py                 # 16 images, 100 steps
    PYTHONPATH=src python benchmarks/bench_evaluate.py --images 8 --steps 50
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))


def photos16(handle, n: int) -> torch.Tensor:
    from PIL import ImageOps

    from conftest import _photo_arrays

    imgs = list(_photo_arrays().values())
    imgs += [ImageOps.mirror(im) for im in imgs] + [im.rotate(8) for im in imgs]
    return handle.preprocess(imgs[:n])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from mikata.attribution.batching import chunk_size
    from mikata.evaluation.faithfulness import channels_last, perturbation_curves, step_counts, unit_ranks, default_patch
    from mikata.evaluation.randomization import cascade, compute_maps
    from mikata.evaluation.stability import max_sensitivity
    from mikata.models import load_model

    h = load_model("efficientnet-lite0")
    x = photos16(h, args.images)
    n = x.shape[0]
    with torch.inference_mode():
        logits = h.model(x)
    ids = logits.argmax(1)
    base = torch.softmax(logits, 1).gather(1, ids.view(-1, 1))[:, 0]
    cam = compute_maps(h, x, ["gradcam"], ids, None, None, 1024)["gradcam"]
    bs = chunk_size(x, 1024, with_grad=False, cap=64)
    print(f"efficientnet-lite0, {n} images 224 px, deletion {args.steps} steps = {n * args.steps} forwards, "
          f"batch {bs}, {torch.get_num_threads()} threads")

    # the floor: the same perturbed inputs, built beforehand, forwarded in the same batches
    ranks, units = unit_ranks(cam, default_patch((224, 224)))
    counts = step_counts(units, args.steps)
    blurred = __import__("mikata.evaluation.faithfulness", fromlist=["fill_image"]).fill_image(x, "blur")
    pre = torch.stack([torch.where((ranks[i] < counts[k])[None], blurred[i], x[i])
                       for i in range(n) for k in range(1, args.steps + 1)])

    def floor(cl: bool) -> float:
        t = time.perf_counter()
        with channels_last(h.model, enable=cl), torch.inference_mode():
            for s in range(0, len(pre), bs):
                b = pre[s:s + bs].contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)
                torch.softmax(h.model(b), 1)
        return time.perf_counter() - t

    def ours() -> float:
        t = time.perf_counter()
        perturbation_curves(h, x, cam, ids, steps=args.steps, modes=["deletion"], base_probs=base)
        return time.perf_counter() - t

    floor(True)  # warm-up
    rows = []
    for rep in range(2):
        f_cl, o = floor(True), ours()
        rows.append((o, f_cl))
        print(f"  run {rep + 1}: ours {o:.2f} s, floor (channels-last) {f_cl:.2f} s, ratio {o / f_cl:.2f}")
    best = min(rows, key=lambda r: r[0] / r[1])
    print(f"deletion: ours {best[0]:.2f} s vs floor {best[1]:.2f} s -> ratio {best[0] / best[1]:.2f} (best of 2)")
    f_plain = floor(False)
    print(f"floor without channels-last: {f_plain:.2f} s ({f_plain / best[1]:.2f}x the channels-last floor)")

    methods = ["gradcam", "saliency", "guided-backprop"]
    t = time.perf_counter()
    maps = compute_maps(h, x, methods, ids, None, None, 1024)
    one = time.perf_counter() - t
    t = time.perf_counter()
    cascade(h, x, methods, ids, stages=8, original=maps)
    cas = time.perf_counter() - t
    print(f"cascade, 8 stages, {', '.join(methods)}: {cas:.2f} s ({cas / one:.1f}x one shared explain pass "
          f"of {one:.2f} s; floor 8x)")
    t = time.perf_counter()
    max_sensitivity(h, x, methods, ids, samples=8, original=maps)
    ms = time.perf_counter() - t
    print(f"max-sensitivity, 8 samples: {ms:.2f} s ({ms / one:.1f}x one shared explain pass; floor 8x)")


if __name__ == "__main__":
    main()
