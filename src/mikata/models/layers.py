"""Layer listing (like MATLAB's analyzeNetwork) and the choice of a default Grad-CAM layer."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from mikata.hooks import _first_tensor, attached
from mikata.models.layout import NONE, FeatureLayout, detect_layouts
from mikata.models.probe import Probe, probe_from_forward


@dataclass
class LayerInfo:
    name: str
    type: str
    output_shape: tuple[int, ...] | None  # per image, without the batch dimension; None if never called
    parameters: int  # including those of submodules
    depth: int
    calls: int  # how often the module ran in one forward (a reused module runs more than once)
    is_default: bool = False
    layout: FeatureLayout = NONE  # how its output reads as a (C, h, w) map, if it is one

    @property
    def map_size(self) -> tuple[int, int] | None:
        """``(h, w)`` of the map this layer gives (tokens and channels-last included), None if none."""
        return self.layout.grid if self.layout.spatial else None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["output_shape"] = list(self.output_shape) if self.output_shape is not None else None
        d["layout"] = self.layout.kind
        d["map"] = list(self.map_size) if self.map_size else None
        d["prefix_tokens"] = self.layout.prefix
        return d


def trace_layers(net: nn.Module, in_channels: int, input_size: tuple[int, int],
                 choose_default: bool = True) -> list[LayerInfo]:
    """Every named submodule with its output shape and layout from one dummy forward, in definition
    order; with ``choose_default`` the default CAM layer is marked (a token model costs one more
    forward and backward for that)."""
    return _trace(net, in_channels, input_size, choose_default)[0]


def trace_and_probe(net: nn.Module, in_channels: int, input_size: tuple[int, int]) -> tuple[list[LayerInfo], Probe]:
    """``trace_layers`` (default layer marked) and the ``Probe`` a ``ModelHandle`` needs, from the same
    dummy forward: a loader that needs both pays for one forward instead of two."""
    layers, output, leaves = _trace(net, in_channels, input_size, True)
    return layers, probe_from_forward(net, leaves, output)


def _trace(net: nn.Module, in_channels: int, input_size: tuple[int, int],
           choose_default: bool) -> tuple[list[LayerInfo], object, list[tuple[str, nn.Module]]]:
    """``trace_layers``'s list, the forward's output, and its leaf modules in the order they finished."""
    if isinstance(net, torch.jit.ScriptModule):
        from mikata.errors import ModelLoadError

        raise ModelLoadError("TorchScript models cannot be hooked, so their layers cannot be traced; load the "
                             "model as an nn.Module (a mikata checkpoint or package.module:factory) for this")
    shapes: dict[str, tuple[int, ...]] = {}
    per_image: dict[str, bool] = {}
    in_cells: dict[str, int] = {}  # h * w of a 4-D input: a pool whose output has more cells upsamples
    calls: dict[str, int] = {}
    finished: list[str] = []
    named = [(n, m) for n, m in net.named_modules() if n]

    def make(name):
        def hook(mod, args, out):
            t = _first_tensor(out)
            if t is not None:
                shapes[name] = tuple(t.shape[1:])
                per_image[name] = t.dim() > 0 and t.shape[0] == 1  # not Swin's (windows, ...) batches
            i = _first_tensor(args)
            if i is not None and i.dim() == 4:
                in_cells[name] = i.shape[-2] * i.shape[-1]
            calls[name] = calls.get(name, 0) + 1
            finished.append(name)
        return hook

    was_training = net.training
    net.eval()
    try:
        with torch.inference_mode(), attached([(m, "forward", make(n)) for n, m in named]):
            from mikata.devices import module_device

            output = net(torch.zeros(1, in_channels, *input_size, device=module_device(net)))
    finally:
        net.train(was_training)
    modules = dict(named)
    order = list(dict.fromkeys(reversed(finished)))[::-1]  # each layer once, at its last call
    layouts = detect_layouts([(n, modules[n], shapes[n], per_image[n]) for n in order if n in shapes],
                             input_size)
    containers = {n for n, m in net.named_modules() if isinstance(m, (nn.Sequential, nn.ModuleList, nn.ModuleDict))}
    small = min(input_size) < SMALL_INPUT
    grids = {n: l.grid for n, l in layouts.items() if l.spatial and l.grid is not None
             and not _upsamples(modules[n], l.grid, in_cells.get(n))}
    default = _default_from_trace(finished, grids, containers | {""}, MIN_MAP_CELLS if small else 1) \
        if choose_default else None
    if default is not None and layouts[default].kind != "nchw":
        from mikata.models.transformer_default import transformer_default

        default = transformer_default(net, in_channels, input_size, finished, layouts, modules) or default
    layers = [
        LayerInfo(
            name=n, type=type(m).__name__, output_shape=shapes.get(n),
            parameters=sum(p.numel() for p in m.parameters()), depth=n.count("."),
            calls=calls.get(n, 0), is_default=(n == default), layout=layouts.get(n, NONE),
        )
        for n, m in named
    ]
    leaves = {n for n, m in named if not list(m.children())}
    return layers, output, [(n, modules[n]) for n in finished if n in leaves]


_RESAMPLERS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Upsample)


def _upsamples(module: nn.Module, grid: tuple[int, int], in_cells: int | None) -> bool:
    """A pool or resize that makes more cells than it reads (VGG's ``AdaptiveAvgPool2d(7)`` on a 3x3 map at
    112 px) repeats its input: a CAM there claims a resolution the network does not have, so it is never
    the default layer (the layer before it is)."""
    return isinstance(module, _RESAMPLERS) and in_cells is not None and grid[0] * grid[1] > in_cells


#: A CAM map needs at least this many cells per side to say *where*: at 2x2 every map is one of a
#: few blobs of four cells (the demo's 64 px lite0 head), and its deletion/insertion curves lose to a
#: random order. Small inputs therefore take an earlier, finer layer.
MIN_MAP_CELLS = 4
#: Inputs at least this large are what the networks were designed for: there the last spatial layer
#: stays the choice whatever its size (a network may pool to 2x2 on purpose); below, maps shrink with
#: the input and the rule above applies.
SMALL_INPUT = 224


def _default_from_trace(finished: list[str], grids: dict[str, tuple[int, int]],
                        containers: set[str] | frozenset[str] = frozenset(),
                        min_cells: int = MIN_MAP_CELLS) -> str | None:
    """The default CAM layer: the last layer to finish whose output is a spatial map larger than 1x1,
    unless that map is smaller than ``min_cells`` x ``min_cells`` (``trace_layers`` asks for 4 below
    ``SMALL_INPUT`` px, 1 otherwise): then the last layer
    to finish with at least that many cells per side, preferring a whole stage of the network, i.e. a
    layer all of whose ancestors are the model or containers (``nn.Sequential`` ...): ``blocks.10``,
    not the expansion convolution inside the next, downsampling block. ``containers``: the names of
    the container modules, "" being the model itself."""
    last = next((n for n in reversed(finished) if n in grids), None)
    if last is None or min(grids[last]) >= min_cells:
        return last
    fine = [n for n in finished if n in grids and min(grids[n]) >= min_cells]

    def in_stage(name: str) -> bool:  # every ancestor is the model or a container
        parts = name.split(".")
        return all(".".join(parts[:i]) in containers for i in range(len(parts)))

    staged = [n for n in fine if in_stage(n)]
    return (staged or fine or [last])[-1]


def map_size(layers: list[LayerInfo], name: str | None) -> tuple[int, int] | None:
    """``(h, w)`` of layer ``name``'s map in a trace, or None if it has no spatial output."""
    for l in layers:
        if l.name == name:
            return l.map_size
    return None


def spatial_layers(layers: list[LayerInfo]) -> list[str]:
    """Names of layers whose output is a (C, h, w) map with h*w > 1: the ones CAM methods can use."""
    return [l.name for l in layers if l.map_size is not None]


def format_layer_table(layers: list[LayerInfo], max_depth: int | None = None) -> str:
    """The table ``mikata layers`` prints; the "map" column is the (h x w) grid a CAM method gets from the
    layer, with the layout it is read from (tokens: extra tokens + patches; channels-last), "-" if none."""
    rows = [l for l in layers if max_depth is None or l.depth <= max_depth]
    header = ("layer", "type", "output", "map", "params", "")
    body = [(
        "  " * l.depth + l.name, l.type,
        "x".join(map(str, l.output_shape)) if l.output_shape else "-", l.layout.describe(),
        f"{l.parameters:,}", "<- default target layer" if l.is_default else ("" if l.calls <= 1 else f"called {l.calls}x"),
    ) for l in rows]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(5)]
    lines = []
    for r in [header, *body]:
        lines.append(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]:<{widths[3]}}  "
                     f"{r[4]:>{widths[4]}}  {r[5]}".rstrip())
    return "\n".join(lines)


def cam_layer_size(net: nn.Module, in_channels: int, input_size: tuple[int, int],
                   layer: str) -> tuple[int, int] | None:
    """``(h, w)`` of ``layer``'s map at ``input_size`` (one dummy forward), so a command can say how
    coarse its CAM maps are: "blocks.10 (4x4 map)"; None when the layer has no spatial output."""
    if isinstance(net, torch.jit.ScriptModule):
        return None
    return map_size(trace_layers(net, in_channels, input_size), layer)


def describe_cam_layer(layer: str | None, size: tuple[int, int] | None) -> str:
    """One line for a user: which layer the CAM maps come from and how many cells they have."""
    if layer is None:
        return "CAM layer: none (the model has no spatial layer; CAM methods cannot run)"
    if size is None:
        return f"CAM layer: {layer}"
    coarse = " - coarse: pass --layer with a finer one (see `mikata layers`)" if min(size) < MIN_MAP_CELLS else ""
    return f"CAM layer: {layer} ({size[0]}x{size[1]} map){coarse}"
