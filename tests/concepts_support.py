"""A tiny model whose activations are known mixtures, and a run of images made for it.

Images (16x16 RGB) are made of 4x4 cells, each pure red, green, blue or black. The layer ``mix``
(after a 4x4 average pool) maps each cell's colour fractions through a known non-negative matrix
``MIX`` (3 colours x 8 channels): its activation at a cell is ``Σ_colour fraction · MIX[colour]``, so
the directions a factorization should find are exactly the rows of ``MIX``. A linear head after a
global average pool makes gradient × activation equal the logit minus its bias.
Class "warm": red and green cells; class "cool": blue and green cells.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
MIX = torch.tensor([[1.0, 0.8, 0.0, 0.0, 0.3, 0.0, 0.0, 0.1],
                    [0.0, 0.2, 1.0, 0.7, 0.0, 0.0, 0.1, 0.0],
                    [0.0, 0.0, 0.0, 0.2, 0.0, 1.0, 0.9, 0.4]])


def mix_net() -> nn.Module:
    net = nn.Sequential(OrderedDict([
        ("pool", nn.AvgPool2d(4)), ("mix", nn.Conv2d(3, 8, 1, bias=False)),
        ("gap", nn.AdaptiveAvgPool2d(1)), ("flat", nn.Flatten()), ("head", nn.Linear(8, 2))]))
    with torch.no_grad():
        net.mix.weight.copy_(MIX.T[:, :, None, None])  # (8, 3, 1, 1): channel c = Σ colour · MIX[colour, c]
        net.head.weight.copy_(torch.stack([MIX[0] - MIX[2], MIX[2] - MIX[0]]))  # warm likes red, cool likes blue
        net.head.bias.copy_(torch.tensor([0.05, -0.05]))
    return net.eval()


def mix_handle():
    from mikata.models.handle import ModelHandle

    return ModelHandle(net=mix_net(), class_names=["warm", "cool"], input_size=(16, 16), mean=(0.0, 0.0, 0.0),
                       std=(1.0, 1.0, 1.0), crop_fraction=1.0, interpolation="nearest", in_channels=3,
                       default_layer="mix", spec="concepts_support:mix_handle")


def mix_image(rng: np.random.Generator, cls: int) -> Image.Image:
    colours = (0, 1) if cls == 0 else (2, 1)
    a = np.zeros((16, 16, 3), np.uint8)
    for y in range(4):
        for x in range(4):
            r = rng.random()
            if r < 0.35:
                a[4 * y:4 * y + 4, 4 * x:4 * x + 4] = COLOURS[colours[0]]
            elif r < 0.7:
                a[4 * y:4 * y + 4, 4 * x:4 * x + 4] = COLOURS[colours[1]]
    return Image.fromarray(a)


def mix_run(base: Path, per_class: int = 30, seed: int = 0) -> Path:
    """A folder dataset of ``per_class`` images of each class, scanned with ``mix_handle``: the run's path."""
    from mikata.scanning.scan import scan

    rng = np.random.default_rng(seed)
    for cls, name in enumerate(["warm", "cool"]):
        (base / "data" / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            mix_image(rng, cls).save(base / "data" / name / f"{i:03d}.png")
    scan(mix_handle(), base / "data", base / "run", batch_size=32, workers=0, progress=False)
    return base / "run"
