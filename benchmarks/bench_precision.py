"""How close bf16 (and fp16) autocast predictions are to fp32 on the built-in models.

Images: the real photos that scikit-image / scikit-learn / matplotlib ship, and Fashion-MNIST images
(Debian dataset-fashion-mnist, grayscale turned RGB). Prints per model and precision: top-1 agreement
with fp32, the largest absolute difference of any class probability, and of the top-1 probability.
Runs on ``--device`` (default cpu: torch's CPU autocast supports bf16; fp16 on a CPU is slow).

    PYTHONPATH=src:tests python benchmarks/bench_precision.py --fashion 256
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from pathlib import Path

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
sys.path.insert(0, os.path.dirname(__file__))
warnings.filterwarnings("ignore")


def probabilities(handle, x: torch.Tensor, precision: str, batch: int = 32) -> torch.Tensor:
    handle.precision = precision
    out = []
    with torch.inference_mode(), handle.autocast():
        for s in range(0, len(x), batch):
            out.append(handle.model(x[s:s + batch].to(handle.device)).float().softmax(1).cpu())
    return torch.cat(out)  # (N, K)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="efficientnet-lite0")
    ap.add_argument("--fashion", type=int, default=256, help="Fashion-MNIST images (default 256)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precisions", default="bf16")
    args = ap.parse_args()

    from bench_scan import write_fashion_mnist
    from conftest import _photo_arrays

    from mikata.data.images import load_image
    from mikata.models import load_model

    photos = list(_photo_arrays().values())
    fashion = [str(p) for p in write_fashion_mnist(Path(tempfile.gettempdir()) / "mikata-fmnist", args.fashion)]
    print(f"{'model':<20} {'precision':<9} {'images':>7} {'top-1 agree':>12} {'max |dp|':>9} {'max |dp top1|':>13}")
    for spec in args.models.split(","):
        handle = load_model(spec, device=args.device)
        sets = {"photos": handle.preprocess(photos),
                "fashion-mnist": handle.preprocess([load_image(p, "RGB") for p in fashion])}
        for name, x in sets.items():
            ref = probabilities(handle, x, "fp32")
            for precision in args.precisions.split(","):
                p = probabilities(handle, x, precision)
                agree = (p.argmax(1) == ref.argmax(1)).float().mean().item()
                top = ref.argmax(1, keepdim=True)
                d_all = (p - ref).abs().max().item()
                d_top = (p.gather(1, top) - ref.gather(1, top)).abs().max().item()
                print(f"{spec:<20} {precision:<9} {len(x):>7} {agree:>11.1%} {d_all:>9.4f} {d_top:>13.4f}  ({name})")


if __name__ == "__main__":
    main()
