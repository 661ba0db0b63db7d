"""Integrated Gradients on dark defects, one row per baseline: does the map see the defect?

The inspector's case in small: Fashion-MNIST shirts and T-shirts (classes 6 and 0, 28 px, grey), half
of them with a planted dark defect (a 6 x 6 patch of brightness ``--level``, default 0 = black, placed
on the garment, where the cloth is bright); a small ReLU CNN learns "defective" vs "good" (a few epochs, seconds). On the
defective test images the model calls defective, per baseline of Integrated Gradients:

- the share of the map's absolute mass on the defect (the defect covers ~4.6% of the image);
- the deletion AUC of the defect class's probability (regions removed in the map's order, filled with
  each image's mean colour) against a random order's: lower is better, ``vs random`` < 0 beats chance.

Run:  PYTHONPATH=src python benchmarks/bench_baselines.py [--images 32] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

MEAN, STD = (0.286,), (0.353,)
DEFECT = 6


def planted(n: int, seed: int, part: str, level: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` shirts / T-shirts as pixels ``(n, 1, 28, 28)`` in [0, 1], labels (1 = defective) and defect masks."""
    from mikata.data.idx import load_fashion_mnist

    x, y = load_fashion_mnist(part)
    pick = np.flatnonzero((y == 0) | (y == 6))
    rng = np.random.default_rng(seed)
    pick = rng.choice(pick, n, replace=False)
    pixels = torch.from_numpy(x[pick]).float()[:, None] / 255  # (n, 1, 28, 28)
    labels = torch.from_numpy(rng.integers(0, 2, n))
    masks = torch.zeros(n, 28, 28, dtype=torch.bool)
    for i in np.flatnonzero(labels.numpy()):
        cloth = np.argwhere(pixels[i, 0].numpy()[: 28 - DEFECT, : 28 - DEFECT] > 0.3)  # top-left corners on cloth
        r, c = cloth[rng.integers(len(cloth))] if len(cloth) else (11, 11)
        pixels[i, :, r:r + DEFECT, c:c + DEFECT] = level
        masks[i, r:r + DEFECT, c:c + DEFECT] = True
    return pixels, labels, masks


def train_model(x: torch.Tensor, y: torch.Tensor, epochs: int = 6, seed: int = 0):
    from mikata.models.handle import ModelHandle

    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1, stride=2),
                        nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveMaxPool2d(1), nn.Flatten(),
                        nn.Linear(32, 2))
    handle = ModelHandle(net, ["good", "defective"], input_size=(28, 28), mean=MEAN, std=STD, in_channels=1,
                         crop_fraction=1.0, interpolation="bilinear", default_layer="4")
    z = (x - MEAN[0]) / STD[0]
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(z), generator=gen).split(64):
            opt.zero_grad()
            F.cross_entropy(net(z[idx]), y[idx]).backward()
            opt.step()
    net.eval()
    return handle


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--train", type=int, default=3000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=32, help="IG steps")
    ap.add_argument("--level", type=float, default=0.0, help="the defect's brightness in [0, 1] (default 0: black)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from mikata.attribution import explain
    from mikata.evaluation.faithfulness import auc, perturbation_curves

    t = time.perf_counter()
    xtr, ytr, _ = planted(args.train, 0, "train", args.level)
    handle = train_model(xtr, ytr)
    xte, yte, mte = planted(4 * args.images, 1, "test", args.level)
    z = (xte - MEAN[0]) / STD[0]
    with torch.no_grad():
        pred = handle.model(z).argmax(1)
    acc = float((pred == yte).float().mean())
    keep = torch.nonzero((yte == 1) & (pred == 1)).view(-1)[: args.images]
    z, masks = z[keep], mte[keep]
    ids = torch.ones(len(keep), dtype=torch.long)
    print(f"defect brightness {args.level:g}; defective vs good on planted Fashion-MNIST shirts: test accuracy {acc:.3f} on {len(yte)} images; "
          f"{len(keep)} defective images called defective (trained in {time.perf_counter() - t:.0f} s)\n")
    random_maps = torch.rand(len(keep), 28, 28, generator=torch.Generator().manual_seed(0))
    rc = perturbation_curves(handle, z, random_maps, ids, steps=20, fill="mean", modes=("deletion",), patch=2)
    rand = float(auc(rc["deletion"]).mean())
    area = float(masks.float().mean())
    print(f"| IG baseline | share of |map| on the defect (area {area:.1%}) | deletion AUC | vs random ({rand:.3f}) |"
          " completeness |delta| / |f(x) - f(x0)| |")
    print("|---|---|---|---|---|")
    for baseline in ("black", "white", "mean", "zero", "blur", "uniform-noise", "expected"):
        a = explain(handle, z, ["integrated-gradients"], targets=ids.view(-1, 1),
                    options={"integrated-gradients": {"steps": args.steps, "baseline": baseline}})[0]
        m = a.maps.abs()
        share = float((m * masks).sum((1, 2)).div(m.sum((1, 2)).clamp_min(1e-12)).mean())
        c = perturbation_curves(handle, z, a.maps, ids, steps=20, fill="mean", modes=("deletion",), patch=2)
        d = float(auc(c["deletion"]).mean())
        delta = torch.tensor(a.info["completeness_delta"]).abs()
        gap = (a.raw.sum((1, 2, 3)) - torch.tensor(a.info["completeness_delta"])).abs()
        print(f"| {a.info['baseline']} | {share:.3f} | {d:.3f} | {d - rand:+.3f} | "
              f"{float((delta / gap.clamp_min(1e-6)).median()):.3f} |")


if __name__ == "__main__":
    main()
