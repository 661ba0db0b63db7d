"""How to view a layer's output as a map ``(N, C, h, w)``: the feature-layout adapter.

CNN layers give ``(N, C, h, w)``. Transformers do not: a ViT block gives tokens ``(N, 1 + R + h*w, C)``
(a class token, R register or distillation tokens, then the patches in row-major order), a Swin stage
or a ConvNeXt block's inner norm gives channels-last ``(N, h, w, C)``. ``FeatureLayout.to_nchw`` turns
each into ``(N, C, h, w)``, with the extra tokens set aside; it is a differentiable view (slice,
reshape, permute), so the gradient of an output viewed through it is the gradient viewed the same way.

``detect_layouts`` decides each layer's layout from one dummy forward (shape and module type):

- per image ``(a, b, c)``: channels-first when ``(b, c)`` is a grid of the input and ``(a, b)`` is not,
  channels-last in the opposite case (both grids: the module decides: a ``Linear``/``LayerNorm``
  acts on the last dimension, anything else is read channels-first); a 2-d module (conv, batch norm,
  pooling) is always channels-first; ``(heads, T, T)`` with T a token count is an attention matrix,
  not a map;
- per image ``(T, C)``: tokens when ``T - p`` (p = 0..8 leading extra tokens) is the cell count of a
  grid that the forward produced before (the patch embedding's convolution, a channels-last stage)
  or, failing that, of a grid with the input's aspect ratio.

A "grid of the input" is ``(h, w)`` with ``1 <= h <= H``, ``1 <= w <= W``, ``h * w > 1`` and strides
``H/h`` and ``W/w`` within a factor 1.5 of each other.

Example:
    >>> FeatureLayout("tokens", (14, 14), prefix=1).to_nchw(torch.zeros(2, 197, 192)).shape
    torch.Size([2, 192, 14, 14])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from mikata.errors import MikataError

MAX_PREFIX = 8  # class + distillation + register tokens a token layout may set aside
_LAST_DIM = (nn.Linear, nn.LayerNorm)  # modules that act on the last dimension: its size is channels


@dataclass(frozen=True)
class FeatureLayout:
    """``kind``: "nchw", "nhwc", "tokens" or "none" (not a map); ``grid``: ``(h, w)`` at the probed input
    size; ``prefix``: tokens before the patches (class, distillation, registers), tokens only."""

    kind: str = "nchw"
    grid: tuple[int, int] | None = None
    prefix: int = 0

    @property
    def spatial(self) -> bool:
        return self.kind != "none" and self.grid is not None and self.grid[0] * self.grid[1] > 1

    def describe(self) -> str:
        """``"14x14 (tokens 1+196)"``, ``"7x7 (channels-last)"``, ``"7x7"``, or ``"-"`` when not a map."""
        if not self.spatial:
            return "-"
        h, w = self.grid  # type: ignore[misc]
        extra = {"nhwc": " (channels-last)", "tokens": f" (tokens {self.prefix}+{h * w})", "nchw": ""}[self.kind]
        return f"{h}x{w}{extra}"

    def to_nchw(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` as ``(N, C, h, w)`` (a view or a differentiable copy); a non-map layout raises."""
        if self.kind == "nchw":
            return t
        if self.kind == "nhwc":
            if t.dim() != 4:
                raise MikataError(f"a channels-last layer should give (N, H, W, C), got shape {tuple(t.shape)}")
            return t.permute(0, 3, 1, 2)
        if self.kind == "tokens":
            if t.dim() != 3:
                raise MikataError(f"a token layer should give (N, tokens, C), got shape {tuple(t.shape)}")
            n, count, c = t.shape
            h, w = self._grid_for(count - self.prefix)
            return t[:, self.prefix:self.prefix + h * w].reshape(n, h, w, c).permute(0, 3, 1, 2)
        raise MikataError("this layer's output is not a spatial map (see `mikata layers MODEL` for the layers "
                          "that give one)")

    def add_nchw(self, out: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """``out`` (the layer's own layout) plus ``delta`` ``(N, C, h, w)`` placed back into that layout:
        for a forward hook that edits a map (class and register tokens are left as they are)."""
        if self.kind == "nchw":
            return out + delta
        if self.kind == "nhwc":
            return out + delta.permute(0, 2, 3, 1)
        if self.kind == "tokens":
            n, c, h, w = delta.shape
            extra = torch.zeros(n, self.prefix, c, dtype=delta.dtype, device=delta.device)
            tail = torch.zeros(n, out.shape[1] - self.prefix - h * w, c, dtype=delta.dtype, device=delta.device)
            return out + torch.cat([extra, delta.flatten(2).transpose(1, 2), tail], dim=1)
        raise MikataError("this layer's output is not a spatial map (see `mikata layers MODEL` for the layers "
                          "that give one)")

    def _grid_for(self, cells: int) -> tuple[int, int]:
        """The grid for ``cells`` patch tokens: the probed one, or, at another input size, the grid with
        the probed aspect ratio that has that many cells."""
        assert self.grid is not None
        h, w = self.grid
        if h * w == cells:
            return h, w
        for hh in range(1, cells + 1):
            if cells % hh == 0 and abs(hh / (cells // hh) - h / w) < 1e-6:
                return hh, cells // hh
        raise MikataError(f"{cells} patch tokens do not form a grid with the aspect ratio {h}:{w} of the probed "
                          "input; feed images at the model's input size")


NCHW = FeatureLayout("nchw")
NONE = FeatureLayout("none")


def is_grid(h: int, w: int, input_size: tuple[int, int]) -> bool:
    """Whether ``(h, w)`` can be a downsampled map of an ``input_size`` image (see the module doc)."""
    big_h, big_w = input_size
    if not (1 <= h <= big_h and 1 <= w <= big_w) or h * w <= 1:
        return False
    sh, sw = big_h / h, big_w / w
    return max(sh, sw) / min(sh, sw) < 1.5


def _two_d(module: nn.Module) -> bool:
    return isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AvgPool2d,
                               nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.InstanceNorm2d, nn.Dropout2d))


def classify(shape: tuple[int, ...], module: nn.Module, input_size: tuple[int, int],
             grids: list[tuple[int, int]], token_counts: set[int]) -> FeatureLayout:
    """The layout of one output with per-image ``shape``; ``grids``: grids seen earlier in the forward
    (latest last), ``token_counts``: token counts of token layers seen earlier."""
    if len(shape) == 3:
        a, b, c = shape
        if _two_d(module):
            return FeatureLayout("nchw", (b, c)) if b * c > 1 else NONE
        if b == c and b in token_counts:  # (heads, T, T): attention probabilities
            return NONE
        first, last = is_grid(a, b, input_size), is_grid(b, c, input_size)
        if first and (not last or isinstance(module, _LAST_DIM)):
            return FeatureLayout("nhwc", (a, b))
        return FeatureLayout("nchw", (b, c)) if last else NONE
    if len(shape) == 2:
        count = shape[0]
        for h, w in reversed(grids):
            if 0 <= count - h * w <= MAX_PREFIX and h * w > 1:
                return FeatureLayout("tokens", (h, w), count - h * w)
        for prefix in range(MAX_PREFIX + 1):
            cells = count - prefix
            h = round(math.sqrt(cells * input_size[0] / input_size[1])) if cells > 1 else 0
            if h > 0 and cells % h == 0 and is_grid(h, cells // h, input_size) and \
                    abs(h / (cells // h) - input_size[0] / input_size[1]) < 1e-6:
                return FeatureLayout("tokens", (h, cells // h), prefix)
    return NONE


def detect_layouts(records: list[tuple[str, nn.Module, tuple[int, ...], bool]],
                   input_size: tuple[int, int]) -> dict[str, FeatureLayout]:
    """Layouts for ``(name, module, per-image shape, batch dim == probe batch)`` in the order the layers
    finished in one forward. Layers whose batch dimension is not the images' (Swin's windows) are not maps."""
    grids: list[tuple[int, int]] = []
    tokens: set[int] = set()
    out: dict[str, FeatureLayout] = {}
    for name, module, shape, per_image in records:
        layout = classify(shape, module, input_size, grids, tokens) if per_image else NONE
        out[name] = layout
        if layout.kind in ("nchw", "nhwc") and layout.grid and layout.grid not in grids[-1:]:
            grids.append(layout.grid)
        elif layout.kind == "tokens":
            tokens.add(shape[0])
    return out
