"""``ModelHandle``: a classifier together with everything needed to feed it and read it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from PIL import Image
from torch import nn

from mikata.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from mikata.models.layout import NCHW, FeatureLayout
from mikata.models.outputs import extract_logits
from mikata.models.probe import Probe, probe_model


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


@dataclass(init=False)
class ModelHandle:
    """A loaded classifier. ``model`` returns logits; ``net`` is the network as it was given.

    Layer names (for hooks, Grad-CAM, feature visualization) are names inside ``net``. What the
    rest of mikata would otherwise guess again and again is resolved once, here: the pixels
    (``preprocessing``), the default CAM layer (``default_layer``, chosen by the loader), and the
    head (``head_layer``: the last ``nn.Linear`` a forward calls; its input is the embedding).
    ``input_size``, ``mean``, ... and ``preprocess``/``denormalize`` are the preprocessing's own.

    Example:
        >>> handle.input_size, handle.device.type
        ((224, 224), 'cpu')
        >>> x = handle.preprocessing.preprocess([mikata.load_image("chelsea.png")])   # (1, 3, 224, 224)
        >>> handle.model(x).shape                                                      # logits
        torch.Size([1, 1000])
    """

    net: nn.Module
    class_names: list[str]
    preprocessing: Preprocessing
    default_layer: str | None
    spec: str
    metadata: dict
    # forward-only work (predict, scan, perturbation forwards) runs at this precision; see mikata.devices
    precision: str
    model: LogitsModel = field(init=False, repr=False, compare=False)
    head_layer: str | None = field(init=False, compare=False)

    def __init__(self, net: nn.Module, class_names: Sequence[str], input_size: tuple[int, int] = (224, 224),
                 mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD,
                 crop_fraction: float = 0.875, interpolation: str = "bicubic", in_channels: int = 3,
                 default_layer: str | None = None, spec: str = "", metadata: dict | None = None,
                 preprocessing: Preprocessing | None = None, precision: str = "auto", resize: str = "shorter",
                 probe: Probe | None = None):
        """``preprocessing`` wins over the seven loose fields (kept so that callers can pass them).
        ``probe``: what one dummy forward of ``net`` at this input size found (``probe_model``, or
        ``mikata.models.layers.trace_and_probe``), when the caller already made it; None: made here."""
        self.net = net
        self.class_names = list(class_names)
        from mikata.models.checkpoint_meta import check_input_size

        pre = preprocessing or Preprocessing(tuple(input_size), tuple(mean), tuple(std), crop_fraction,
                                             interpolation, in_channels, resize)
        # before the probe forward below: a claimed 100000x100000 input would allocate ~120 GB
        check_input_size(pre.input_size, f"{spec or 'model'} input_size")
        self.preprocessing = pre
        self.default_layer = default_layer
        self.spec = spec
        self.metadata = metadata if metadata is not None else {}
        self.precision = precision
        self.net.eval()
        if probe is None:
            probe = probe_model(self.net, self.in_channels, self.input_size)
        if probe.outputs is not None and probe.outputs != len(self.class_names):
            from mikata.errors import ModelLoadError

            raise ModelLoadError(f"{self.spec or type(self.net).__name__}: the model has {probe.outputs} outputs "
                                 f"but {len(self.class_names)} class names")
        self.head_layer = probe.head
        self._conv_head = probe.conv_head
        self._layouts: dict[str, FeatureLayout] | None = None
        self.model = LogitsModel(self.net, probe.softmax_layer, probe.log_of_probs).eval()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __repr__(self) -> str:
        """One line a person can read in a notebook: not the whole network (``handle.net`` prints that)."""
        names = ", ".join(self.class_names[:3]) + (", …" if self.num_classes > 3 else "")
        return (f"ModelHandle({self.spec or type(self.net).__name__!r}, {self.num_classes} classes ({names}), "
                f"input {describe_preprocessing(self.preprocessing)}, default layer {self.default_layer!r}, "
                f"device {self.device})")

    def _repr_html_(self) -> str:
        """A small table in a notebook: what the model is, what it sees, where it runs (names escaped)."""
        from mikata.notebook import STYLE, table_html

        names = ", ".join(self.class_names[:8]) + (", …" if self.num_classes > 8 else "")
        rows = [["model", self.spec or type(self.net).__name__], ["classes", f"{self.num_classes}: {names}"],
                ["input", describe_preprocessing(self.preprocessing)], ["default layer", self.default_layer],
                ["device", str(self.device)], ["precision", self.precision]]
        return f"<div>{STYLE}{table_html(['ModelHandle', ''], rows)}</div>"

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

    @property
    def embedding_layer(self) -> str | None:
        """The layer whose input is the penultimate embedding.

        That is the head, or for a network that classifies with a convolution (SqueezeNet) that
        convolution (its input, pooled, is the embedding); None when neither exists."""
        return self.head_layer or getattr(self, "_conv_head", None)

    # ------------------------------------------------------------------ feature layout
    def layout(self, layer: str) -> FeatureLayout:
        """How ``layer``'s output reads as ``(N, C, h, w)``: tokens (class/register tokens set aside),
        channels-last, or as it is. Decided once per handle from one dummy forward (see
        ``mikata.models.layout``); a layer the trace did not see is taken as it comes."""
        return self.layouts().get(layer, NCHW)

    def layouts(self) -> dict[str, FeatureLayout]:
        """Every traced layer's layout (``set_layout`` overrides one)."""
        if self._layouts is None:
            from mikata.models.layers import trace_layers

            try:
                traced = trace_layers(self.net, self.in_channels, self.input_size, choose_default=False)
            except Exception:  # TorchScript or a model the probe cannot run: outputs are taken as they come
                traced = []
            self._layouts = {l.name: l.layout for l in traced}
        return self._layouts

    def set_layout(self, layer: str, layout: FeatureLayout) -> None:
        """Override the detected layout of ``layer`` (a custom model the shape rules read wrongly)."""
        self.layouts()[layer] = layout

    def layouts_for(self, layers: Sequence[str]) -> dict[str, FeatureLayout]:
        """The layouts to pass to ``hooks.capture(..., layouts=...)`` for ``layers``: only those that are
        not already ``(N, C, h, w)``."""
        return {n: self.layout(n) for n in layers if self.layout(n).kind in ("nhwc", "tokens")}

    # ------------------------------------------------------------------ inputs
    @property
    def input_size(self) -> tuple[int, int]:
        return self.preprocessing.input_size

    @property
    def mean(self) -> tuple[float, ...]:
        return self.preprocessing.mean

    @property
    def std(self) -> tuple[float, ...]:
        return self.preprocessing.std

    @property
    def crop_fraction(self) -> float:
        return self.preprocessing.crop_fraction

    @property
    def interpolation(self) -> str:
        return self.preprocessing.interpolation

    @property
    def in_channels(self) -> int:
        return self.preprocessing.in_channels

    @property
    def mode(self) -> str:
        """The PIL mode images are decoded in, ``"L"`` or ``"RGB"``."""
        return self.preprocessing.mode

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Resize (shorter side, or each side stretched, to size / crop_fraction), center-crop, normalize:
        ``(N, C, H, W)``."""
        return self.preprocessing.preprocess(images)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Back to [0, 1] pixels: ``(N, C, H, W)``, on ``x``'s device and dtype."""
        return self.preprocessing.denormalize(x)

    # ----------------------------------------------------------------- classes
    def class_index(self, target: int | str) -> int:
        """A class id from an id or a class name (``models.classes``: a matching name wins over digits)."""
        from mikata.models.classes import class_index

        return class_index(self.class_names, target)


def describe_preprocessing(pre: Preprocessing) -> str:
    """``"224x224 RGB, resize + center crop 0.875, bicubic, mean (0.485, ...) std (...)"``: how pixels reach the model."""
    h, w = pre.input_size
    crop = "resize (no crop)" if pre.crop_fraction >= 1.0 else f"resize + center crop {pre.crop_fraction:g}"
    stats = "ImageNet mean/std" if (tuple(pre.mean), tuple(pre.std)) == (IMAGENET_MEAN, IMAGENET_STD) else \
        f"mean {tuple(round(m, 4) for m in pre.mean)} std {tuple(round(s, 4) for s in pre.std)}"
    return f"{h}x{w} {'grayscale' if pre.mode == 'L' else 'RGB'}, {crop}, {pre.interpolation}, {stats}"
