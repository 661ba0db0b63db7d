"""Layer listing (like MATLAB's analyzeNetwork) and the choice of a default Grad-CAM layer."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from mikata.hooks import _first_tensor, attached


@dataclass
class LayerInfo:
    name: str
    type: str
    output_shape: tuple[int, ...] | None  # per image, without the batch dimension; None if never called
    parameters: int  # including those of submodules
    depth: int
    calls: int  # how often the module ran in one forward (a reused module runs more than once)
    is_default: bool = False

    def to_dict(self) -> dict:
        d = asdict(self)
        d["output_shape"] = list(self.output_shape) if self.output_shape is not None else None
        return d


def trace_layers(net: nn.Module, in_channels: int, input_size: tuple[int, int]) -> list[LayerInfo]:
    """Every named submodule with its output shape from one dummy forward, in definition order."""
    if isinstance(net, torch.jit.ScriptModule):
        from mikata.errors import ModelLoadError

        raise ModelLoadError("TorchScript models cannot be hooked, so their layers cannot be traced; load the "
                             "model as an nn.Module (a mikata checkpoint or package.module:factory) for this")
    shapes: dict[str, tuple[int, ...]] = {}
    calls: dict[str, int] = {}
    finished: list[str] = []
    named = [(n, m) for n, m in net.named_modules() if n]

    def make(name):
        def hook(mod, args, out):
            t = _first_tensor(out)
            if t is not None:
                shapes[name] = tuple(t.shape[1:])
            calls[name] = calls.get(name, 0) + 1
            finished.append(name)
        return hook

    was_training = net.training
    net.eval()
    try:
        with torch.inference_mode(), attached([(m, "forward", make(n)) for n, m in named]):
            from mikata.devices import module_device

            net(torch.zeros(1, in_channels, *input_size, device=module_device(net)))
    finally:
        net.train(was_training)
    default = _default_from_trace(finished, shapes)
    return [
        LayerInfo(
            name=n, type=type(m).__name__, output_shape=shapes.get(n),
            parameters=sum(p.numel() for p in m.parameters()), depth=n.count("."),
            calls=calls.get(n, 0), is_default=(n == default),
        )
        for n, m in named
    ]


def _default_from_trace(finished: list[str], shapes: dict[str, tuple[int, ...]]) -> str | None:
    """The last layer to finish whose output is a spatial map larger than 1x1."""
    for name in reversed(finished):
        s = shapes.get(name)
        if s is not None and len(s) == 3 and s[1] * s[2] > 1:
            return name
    return None


def spatial_layers(layers: list[LayerInfo]) -> list[str]:
    """Names of layers whose output is a (C, h, w) map with h*w > 1: the ones CAM methods can use."""
    return [l.name for l in layers if l.output_shape and len(l.output_shape) == 3
            and l.output_shape[1] * l.output_shape[2] > 1]


def format_layer_table(layers: list[LayerInfo], max_depth: int | None = None) -> str:
    rows = [l for l in layers if max_depth is None or l.depth <= max_depth]
    header = ("layer", "type", "output", "params", "")
    body = [(
        "  " * l.depth + l.name, l.type,
        "x".join(map(str, l.output_shape)) if l.output_shape else "-",
        f"{l.parameters:,}", "<- default target layer" if l.is_default else ("" if l.calls <= 1 else f"called {l.calls}x"),
    ) for l in rows]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(4)]
    lines = []
    for r in [header, *body]:
        lines.append(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]:>{widths[3]}}  {r[4]}".rstrip())
    return "\n".join(lines)
