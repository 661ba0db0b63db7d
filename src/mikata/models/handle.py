"""``ModelHandle``: a classifier together with everything needed to feed it and read it."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from mikata.errors import ChoiceError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class LogitsModel(nn.Module):
    """Wraps a user's network so that calling it always returns pre-softmax logits ``(N, K)``.

    Handles outputs that are tuples, dicts or objects with ``.logits``, and networks whose last
    layer is a softmax module (its input is returned instead, so gradients never target a softmax).
    """

    def __init__(self, net: nn.Module, softmax_layer: str | None = None, log_of_probs: bool = False):
        super().__init__()
        self.net = net
        self.softmax_layer = softmax_layer
        self.log_of_probs = log_of_probs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.softmax_layer is not None:
            from mikata.hooks import capture

            with capture(self.net, [self.softmax_layer], inputs=True, detach=False) as rec:
                self.net(x)
            return rec.inputs[self.softmax_layer]
        out = extract_logits(self.net(x))
        return out.clamp_min(1e-30).log() if self.log_of_probs else out


def extract_logits(output: object) -> torch.Tensor:
    """The class-score tensor inside whatever a classifier's forward returned."""
    if isinstance(output, torch.Tensor):
        return output
    if hasattr(output, "logits") and isinstance(output.logits, torch.Tensor):
        return output.logits
    if isinstance(output, dict):
        for key in ("logits", "out", "output", "scores"):
            if isinstance(output.get(key), torch.Tensor):
                return output[key]
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        for item in output:
            if isinstance(item, torch.Tensor) and item.dim() == 2:
                return item
    raise TypeError(f"cannot find class scores in a model output of type {type(output).__name__}; "
                    "return a (N, classes) tensor, a tuple/dict holding one, or an object with .logits")


@dataclass
class ModelHandle:
    """A loaded classifier. ``model`` returns logits; ``net`` is the network as it was given.

    Layer names (for hooks, Grad-CAM, feature visualization) are names inside ``net``.
    """

    net: nn.Module
    class_names: list[str]
    input_size: tuple[int, int] = (224, 224)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    crop_fraction: float = 0.875
    interpolation: str = "bicubic"
    in_channels: int = 3
    default_layer: str | None = None
    spec: str = ""
    metadata: dict = field(default_factory=dict)
    # forward-only work (predict, scan, perturbation forwards) runs at this precision; see mikata.devices
    precision: str = "auto"
    model: LogitsModel = field(init=False)

    def __post_init__(self) -> None:
        self.net.eval()
        softmax_layer, log_of_probs, outputs = _probe(self.net, self.in_channels, self.input_size)
        if outputs is not None and outputs != len(self.class_names):
            from mikata.errors import ModelLoadError

            raise ModelLoadError(f"{self.spec or type(self.net).__name__}: the model has {outputs} outputs but "
                                 f"{len(self.class_names)} class names")
        self.model = LogitsModel(self.net, softmax_layer, log_of_probs).eval()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    # ------------------------------------------------------------------ device
    @property
    def device(self) -> torch.device:
        """Where the network's weights live; inputs go there once, results come back small."""
        from mikata.devices import module_device

        return module_device(self.net)

    def to(self, device: str | torch.device | None) -> "ModelHandle":
        """Move the network to ``device`` (``"auto"``, ``"cpu"``, ``"cuda:1"``, ...) and return ``self``."""
        from mikata.devices import resolve_device

        self.net.to(resolve_device(device))
        return self

    def autocast(self, gradients: bool = False):
        """The precision context for forwards on this handle: bf16 autocast on a capable CUDA GPU
        under ``precision="auto"``, plain fp32 on a CPU and for gradient work unless asked."""
        from mikata.devices import autocast

        return autocast(self.device, self.precision, gradients)

    # ------------------------------------------------------------------ inputs
    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Resize (shorter side to size / crop_fraction), center-crop, normalize: ``(N, C, H, W)``."""
        return torch.stack([self._one(img) for img in images])

    def _one(self, img: Image.Image) -> torch.Tensor:
        mode = "L" if self.in_channels == 1 else "RGB"
        if img.mode != mode:
            from mikata.data.images import to_8bit

            img = to_8bit(img, mode)
        h, w = self.input_size
        scale = max(h, w) / self.crop_fraction / min(img.size)
        resample = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST}[self.interpolation]
        img = img.resize((max(w, round(img.width * scale)), max(h, round(img.height * scale))), resample)
        left, top = (img.width - w) // 2, (img.height - h) // 2
        img = img.crop((left, top, left + w, top + h))
        arr = np.asarray(img, dtype=np.float32) / 255.0
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)  # (C, H, W)
        x = torch.from_numpy(np.ascontiguousarray(arr))
        mean = torch.tensor(self.mean, dtype=torch.float32).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(-1, 1, 1)
        return (x - mean) / std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Back to [0, 1] pixels: ``(N, C, H, W)``."""
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return (x * std + mean).clamp(0, 1)

    # ----------------------------------------------------------------- classes
    def class_index(self, target: int | str) -> int:
        """A class id from an id, a numeric string, or a class name (case-insensitive)."""
        if isinstance(target, (int, np.integer)) or (isinstance(target, str) and target.strip().isdigit()):
            i = int(target)
            if 0 <= i < self.num_classes:
                return i
            raise ChoiceError("class id", i, [f"0..{self.num_classes - 1}"])
        lowered = {n.lower(): i for i, n in enumerate(self.class_names)}
        key = str(target).strip().lower()
        if key in lowered:
            return lowered[key]
        raise ChoiceError("class", target, self.class_names)


def _probe(net: nn.Module, in_channels: int, input_size: tuple[int, int]) -> tuple[str | None, bool, int | None]:
    """One dummy forward: a trailing softmax module? probabilities returned? how many outputs?

    Returns ``(softmax layer name, output is probabilities, number of outputs)``; the count is
    None when the model cannot take the probe (the real call reports that later).
    """
    from mikata.hooks import attached

    order: list[tuple[str, nn.Module]] = []
    leaves = [(n, m) for n, m in net.named_modules() if n and not list(m.children())]
    hooks = [(m, "forward", lambda mod, a, o, n=n: order.append((n, mod))) for n, m in leaves]
    from mikata.devices import module_device

    x = torch.zeros(1, in_channels, *input_size, device=module_device(net))
    try:
        with torch.inference_mode(), attached(hooks):
            out = extract_logits(net(x))
    except Exception:  # a model that cannot take this probe is reported later, by the real call
        return None, False, None
    outputs = int(out.shape[-1])
    if order and isinstance(order[-1][1], (nn.Softmax, nn.LogSoftmax)):
        return order[-1][0], False, outputs
    if out.dim() == 2 and out.shape[1] > 1 and bool((out >= 0).all()) and torch.allclose(out.sum(1), torch.ones(1, device=out.device)):
        warnings.warn("this model seems to return probabilities from a functional softmax; mikata uses their "
                      "log as logits (equal up to a per-image constant). Return logits for exact gradients.",
                      stacklevel=3)
        return None, True, outputs
    return None, False, outputs
