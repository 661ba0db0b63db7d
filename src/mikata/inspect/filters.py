"""Learned convolution filters drawn as small images: edge, color and texture detectors.

A first layer with 3 input channels is drawn in color: filter ``w`` (3, k, k) becomes the RGB
image ``0.5 + 0.5 * w / max|w|``, so zero is mid gray and the sign of each weight stays visible
(a filter that *subtracts* red looks cyan). Other layers are drawn per input channel in grayscale
on the same symmetric scale (black = most negative, white = most positive, gray = 0); each tile
is one output filter, its input-channel slices arranged in a small block. Depthwise convolutions
(weight ``(C, 1, k, k)``) give one slice per tile; grouped convolutions show, per filter, the input
channels of its group.

Example:
    >>> handle = load_model("torchvision:resnet18")             # doctest: +SKIP
    >>> grid = filter_grid(handle)      # first conv: conv1, RGB   # doctest: +SKIP
    >>> grid.mode, grid.weights.shape                           # doctest: +SKIP
    ('rgb', (64, 3, 7, 7))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image
from torch import nn

from mikata.errors import ChoiceError, MikataError
from mikata.inspect.figure import PNGRepr, captioned
from mikata.models.handle import ModelHandle
from mikata.display import tile

GAP_COLOR = (70, 90, 150)  # between input-channel slices: clearly not a weight value on the gray scale


@dataclass
class FilterGrid(PNGRepr):
    """A drawn filter grid and the weights behind it, in tile order.

    ``weights``: ``(n, I', kh, kw)`` raw weights of the drawn filters, ``I'`` = input channels shown
    per filter. ``display``: what was drawn, in [0, 1] with 0.5 = zero weight: ``(n, kh, kw, 3)`` for
    ``mode="rgb"``, ``(n, I', kh, kw)`` for ``mode="gray"``. ``inputs[i]``: the input channels of
    filter ``filters[i]`` that were drawn (for grouped convolutions, those of its group).
    """

    image: Image.Image
    grid: Image.Image
    layer: str
    weight_shape: tuple[int, ...]
    groups: int
    mode: str                 # "rgb" or "gray"
    filters: list[int]
    inputs: list[list[int]]
    weights: np.ndarray
    display: np.ndarray
    thumb: int                # tile size used, for callers that locate tiles in ``grid``
    cell: int                 # pixels per weight in a tile (nearest-neighbour enlargement)


def conv_layers(net: nn.Module) -> list[str]:
    """Names of the ``nn.Conv2d`` modules (subclasses included) in definition order."""
    return [n for n, m in net.named_modules() if n and isinstance(m, nn.Conv2d)]


def _conv(net: nn.Module, layer: str | None) -> tuple[str, nn.Conv2d]:
    convs = conv_layers(net)
    if not convs:
        raise MikataError("this model has no nn.Conv2d layer, so there are no convolution filters to draw")
    if layer is None:
        layer = convs[0]
    modules = dict(net.named_modules())
    if layer not in modules or not isinstance(modules[layer], nn.Conv2d):
        if layer in modules:
            inside = [c for c in convs if c.startswith(layer + ".")][:5]
            hint = f"{layer!r} is a {type(modules[layer]).__name__}, not a convolution" + (
                f"; the convolutions inside it: {', '.join(inside)}" if inside else "")
        else:
            hint = "`mikata layers MODEL` lists all layers"
        raise ChoiceError("convolution layer", layer, convs, hint=hint)
    return layer, modules[layer]


def filter_grid(
    handle: ModelHandle | nn.Module,
    layer: str | None = None,
    max_filters: int = 64,
    max_inputs: int = 16,
    target_thumb: int = 64,
) -> FilterGrid:
    """The weights of convolution ``layer`` (default: the first ``nn.Conv2d``) as a labelled grid.

    Each filter is scaled by its own largest ``|w|`` (over all its drawn slices), symmetric around 0.
    At most ``max_filters`` output filters and ``max_inputs`` input slices per filter are drawn.
    Tiles are labelled with the output filter index.

    Example:
        >>> grid = mikata.filters(handle)                          # the first convolution's weights
        >>> grid.layer, grid.weight_shape
        ('stem.conv', (32, 3, 3, 3))
    """
    net = handle.net if isinstance(handle, ModelHandle) else handle
    layer, conv = _conv(net, layer)
    w = conv.weight.detach().float().cpu().numpy()                # (O, I/g, kh, kw)
    out_ch, in_per_group, kh, kw = w.shape
    groups = conv.groups
    per_group_out = out_ch // groups
    filters = list(range(min(out_ch, max_filters)))
    rgb = in_per_group == 3 and groups == 1
    shown_in = 3 if rgb else min(in_per_group, max_inputs)
    weights = w[filters, :shown_in]                                # (n, I', kh, kw)
    inputs = [[(o // per_group_out) * in_per_group + j for j in range(shown_in)] for o in filters]
    peak = np.abs(weights).reshape(len(filters), -1).max(axis=1)  # (n,) per-filter symmetric scale
    display = 0.5 + 0.5 * weights / np.maximum(peak, 1e-12)[:, None, None, None]  # (n, I', kh, kw) in [0, 1]

    if rgb:
        display = display.transpose(0, 2, 3, 1)                    # (n, kh, kw, 3)
        blocks = [(d * 255).round().astype(np.uint8) for d in display]
        mode = "rgb"
    else:
        blocks = [_slice_block(d) for d in display]
        mode = "gray"
    bh, bw = blocks[0].shape[:2]
    cell = max(1, round(target_thumb / max(bh, bw)))
    thumb = cell * max(bh, bw)
    tiles = [Image.fromarray(b).resize((bw * cell, bh * cell), Image.NEAREST) for b in blocks]
    labels = [f"#{o}" for o in filters]
    grid = tile(tiles, labels=labels, thumb=thumb)

    kind = "depthwise" if groups > 1 and in_per_group == 1 else f"grouped (groups={groups})" if groups > 1 else ""
    lines = [f"{getattr(handle, 'spec', '') or type(net).__name__} · {layer} · {type(conv).__name__} "
             f"{kind} weights {'x'.join(map(str, w.shape))}".replace("  ", " ")]
    if rgb:
        lines.append("RGB: each filter scaled by its own max |w|; gray = 0, a color's complement = negative")
    else:
        extra = f" (first {shown_in} of {in_per_group})" if shown_in < in_per_group else ""
        lines.append(f"per input channel{extra}, gray = 0, white +, black -; each filter scaled by its own max |w|")
    if len(filters) < out_ch:
        lines.append(f"first {len(filters)} of {out_ch} filters")
    return FilterGrid(captioned(grid, "\n".join(lines)), grid, layer, tuple(w.shape), groups, mode, filters,
                      inputs, weights, display, thumb, cell)


def _slice_block(d: np.ndarray) -> np.ndarray:
    """Input-channel slices ``(I', kh, kw)`` in [0, 1] arranged in a near-square block, uint8 RGB.

    Slices are separated by a one-weight gap in ``GAP_COLOR`` (not a gray level, so never read as a weight).
    """
    n, kh, kw = d.shape
    gap = 1 if kh * kw > 1 else 0  # 1x1 kernels: a plain mosaic of the filter's input weights
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    block = np.empty((rows * (kh + gap) - gap, cols * (kw + gap) - gap, 3), dtype=np.uint8)
    block[:] = GAP_COLOR  # also marks unused cells of the last row
    gray = (d * 255).round().astype(np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        y, x = r * (kh + gap), c * (kw + gap)
        block[y:y + kh, x:x + kw] = gray[i][..., None]
    return block
