"""A real two-class run for the binary-curve tests: the MNIST CNN read as a "3 or 8?" classifier.

The network is the real MNIST CNN of ``test_scan_support``; its two-class head keeps the logits of
3 and 8 (a softmax over those two), so the probabilities are a real model's, with real errors and
near-ties. The data are real handwritten digits under seeded sensor-like noise (so the two classes
overlap, as an inspection task's do: AUROC about 0.97 instead of 1.0): every 3 of scikit-learn's set and
a third of the 8s, so "8" is the minority class (the default positive class), as a defect class would be.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from test_scan_support import digit_images, mnist_handle


class TwoDigits(nn.Module):
    """The logits of two digits of a 10-class network: a real two-class classifier."""

    def __init__(self, net: nn.Module, keep: tuple[int, int] = (3, 8)):
        super().__init__()
        self.net = net
        self.register_buffer("keep", torch.tensor(keep), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[:, self.keep]  # (N, 2)


def two_class_handle():
    """The MNIST CNN as a 3-or-8 ModelHandle (classes "3", "8"); also a ``module:factory`` spec."""
    from mikata.models.handle import ModelHandle

    base = mnist_handle()
    return ModelHandle(net=TwoDigits(base.net), class_names=["3", "8"], preprocessing=base.preprocessing,
                       default_layer="net.conv_layers.6", spec="binary_support:two_class_handle")


def write_two_class_folder(root: Path, eights_every: int = 3, noise: float = 90.0, seed: int = 0) -> tuple[int, int]:
    """Real digits with Gaussian noise (std ``noise`` grey levels) into ``root/3`` and ``root/8`` (every
    ``eights_every``-th 8); returns (threes, eights)."""
    from PIL import Image

    images, labels = digit_images()
    rng = np.random.default_rng(seed)
    n = {3: 0, 8: 0}
    for i, (img, y) in enumerate(zip(images, labels)):
        y = int(y)
        if y not in n or (y == 8 and i % eights_every):
            continue
        a = np.asarray(img, np.float64) + rng.normal(0.0, noise, (img.height, img.width))  # (28, 28)
        p = root / str(y) / f"{i:05d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "L").save(p)
        n[y] += 1
    return n[3], n[8]


def two_class_run(base: Path) -> Path:
    """Scan the folder with the two-class model into ``base/run``."""
    from mikata.scanning.scan import scan

    data = base / "digits38"
    write_two_class_folder(data)
    scan(two_class_handle(), data, base / "run", batch_size=64, workers=0, progress=False)
    return base / "run"
