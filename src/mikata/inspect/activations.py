"""Feature maps: what one layer's channels produce for one image, drawn as a labelled grid.

Looking at the activations of a layer for a real image is the first look inside a network: early
layers show edges and colors still aligned with the picture, late layers a few coarse blobs. The
activations are captured with ``mikata.hooks.capture`` during one forward pass of ``handle.model``.

Example:
    >>> handle = load_model("efficientnet-lite0")                                   # doctest: +SKIP
    >>> grid = activation_grid(handle, "chelsea.png", "blocks.3", top=16, overlay=True)  # doctest: +SKIP
    >>> grid.channels[:3], grid.values.shape                                        # doctest: +SKIP
    ([0, 4, 5], (16, 28, 28))
    >>> grid.save("blocks.3.png")                                                   # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from mikata.data.images import load_image
from mikata.errors import ChoiceError, MikataError
from mikata.hooks import capture
from mikata.inspect.figure import PNGRepr, captioned, figure_to_image
from mikata.models.handle import ModelHandle
from mikata.display import colorize, overlay as overlay_map, tile, to_uint8_image

log = logging.getLogger(__name__)

DEFAULT_MAX_CHANNELS = 64  # channels drawn when neither ``channels`` nor ``top`` is given


@dataclass
class ActivationGrid(PNGRepr):
    """A drawn activation grid and the numbers behind it.

    ``values`` are the layer's raw outputs for the drawn channels, in tile order: ``(k, h, w)`` for
    a map-producing layer, ``(k,)`` for a vector layer (drawn as a bar chart). ``display`` is what was
    colored: each map scaled to [0, 1] (per channel, or by the shared ``scale``), or the bar heights.
    """

    image: Image.Image                # the captioned figure
    grid: Image.Image                 # the tiled grid (or bar chart) without the caption
    layer: str
    shape: tuple[int, ...]            # the layer's output per image, e.g. (C, h, w)
    channels: list[int]               # drawn channels, in tile order
    values: np.ndarray                # (k, h, w) or (k,) raw activations
    display: np.ndarray               # (k, h, w) in [0, 1], or (k,) bar heights
    scores: np.ndarray                # (k,) mean activation of each drawn channel
    scale: tuple[float, float] | None  # (vmin, vmax) of a shared scale; None when per channel


def parse_channels(spec: str | int | range | Sequence[int] | None, count: int) -> list[int]:
    """Channel indices from ``"0:64"``, ``"0:64:2"``, ``"3,5,9"``, ``"0:4,10"``, a range or a list.

    Ranges are clipped to the layer's ``count`` channels (like Python slices); a single index outside
    it raises ``ChoiceError``. ``None`` means every channel.
    """
    if spec is None:
        return list(range(count))
    if isinstance(spec, range):
        return list(range(count))[slice(spec.start, spec.stop, spec.step)]
    if isinstance(spec, (int, np.integer)):
        spec = [int(spec)]
    if isinstance(spec, str):
        out: list[int] = []
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                continue
            try:
                if ":" in part:
                    bits = [int(b) if b.strip() else None for b in part.split(":")]
                    if len(bits) > 3:
                        raise ValueError(part)
                    out.extend(range(count)[slice(*bits)])
                else:
                    out.append(int(part))
            except ValueError:
                raise ChoiceError("channel spec", part, ["START:STOP", "START:STOP:STEP", "N", "N,M,..."],
                                  hint="for example --channels 0:64 or --channels 3,17,40") from None
        spec = out
    chosen = [int(c) for c in spec]
    for c in chosen:
        if not 0 <= c < count:
            raise ChoiceError("channel", c, [f"0..{count - 1}"])
    if not chosen:
        raise ChoiceError("channel selection", spec, [f"0..{count - 1}"], hint="the selection is empty")
    return list(dict.fromkeys(chosen))


def _as_image(handle: ModelHandle, image: str | os.PathLike | Image.Image) -> Image.Image:
    if isinstance(image, Image.Image):
        return image
    return load_image(image, mode=handle.mode)


def layer_output(handle: ModelHandle, x: torch.Tensor, layer: str) -> torch.Tensor:
    """The output of ``layer`` for the batch ``x`` (N, C, H, W), from one hooked forward pass on
    ``handle.device`` (the output stays there)."""
    with torch.inference_mode(), capture(handle.net, [layer], layouts=handle.layouts_for([layer])) as rec:
        handle.model(x.to(handle.device))
    if layer not in rec.activations:
        raise MikataError(f"layer {layer!r} produced no tensor in a forward pass (it is defined but never "
                          "called, or returns no tensor); pick a layer with an output shape in `mikata layers`")
    return rec.activations[layer]


def activation_grid(
    handle: ModelHandle,
    image: str | os.PathLike | Image.Image,
    layer: str,
    channels: str | int | range | Sequence[int] | None = None,
    top: int | None = None,
    shared_scale: bool = False,
    overlay: bool = False,
    thumb: int = 96,
    cmap: str = "viridis",
    max_channels: int = DEFAULT_MAX_CHANNELS,
) -> ActivationGrid:
    """The activation maps of ``layer`` for ``image`` as a labelled grid, one tile per channel.

    ``channels`` picks channels (default: the first ``max_channels``); ``top=k`` keeps the ``k``
    strongest of them by mean activation, strongest first. Each map is scaled to its own min..max,
    or with ``shared_scale`` to one range over all drawn maps (so strengths compare across tiles).
    ``overlay`` upsamples each map onto the network's input crop. Vector layers (``(C,)`` or
    ``(C, 1, 1)`` outputs, e.g. after global pooling) are drawn as a bar chart of channel values.
    Tiles are labelled ``channel · mean``.

    Example:
        >>> grid = mikata.activations(handle, "chelsea.png", "head", top=4)   # the 4 most active channels
        >>> len(grid.channels), grid.image.mode
        (4, 'RGB')
        >>> grid.save("chelsea_head.png")
    """
    pil = _as_image(handle, image)
    x = handle.preprocess([pil])                                   # (1, C, H, W)
    act = layer_output(handle, x, layer)[0].float().cpu().numpy()  # (C, h, w) or (C,)
    shape = tuple(act.shape)
    if act.ndim == 3 and act.shape[1] * act.shape[2] == 1:
        act = act.reshape(act.shape[0])                            # (C,) pooled vector
    if act.ndim not in (1, 3):
        raise MikataError(f"layer {layer!r} outputs shape {'x'.join(map(str, shape))} per image; activations "
                          "draws (C, h, w) maps or (C,) vectors — pick a convolutional or pooled layer")
    count = act.shape[0]
    chosen = parse_channels(channels, count)
    scores_all = act.reshape(count, -1).mean(axis=1)               # (C,)
    if top is not None:
        if top < 1:
            raise ValueError(f"top must be at least 1, not {top}")
        chosen = sorted(chosen, key=lambda c: -scores_all[c])[:top]
    elif channels is None and count > max_channels:
        log.info("showing channels 0:%d of %d; use channels=/--channels or top=/--top for others",
                 max_channels, count)
        chosen = chosen[:max_channels]
    values = act[chosen]                                           # (k, h, w) or (k,)
    scores = scores_all[chosen]                                    # (k,)
    title = f"{handle.spec or type(handle.net).__name__} · {layer} · output {'x'.join(map(str, shape))}"
    order = f"top {len(chosen)} by mean activation" if top is not None else f"{len(chosen)} channels"

    if values.ndim == 1:
        grid = _bar_chart(values, chosen, layer)
        return ActivationGrid(captioned(grid, f"{title}\n{order}; a vector layer, drawn as bars"), grid,
                              layer, shape, chosen, values, values.copy(), scores, None)

    if shared_scale:
        lo, hi = float(values.min()), float(values.max())
        display = (values - lo) / max(hi - lo, 1e-12)
        scale: tuple[float, float] | None = (lo, hi)
        how = f"one shared scale {lo:.3g} .. {hi:.3g}"
    else:
        lo_c = values.min(axis=(1, 2), keepdims=True)
        hi_c = values.max(axis=(1, 2), keepdims=True)
        display = (values - lo_c) / np.maximum(hi_c - lo_c, 1e-12)
        scale, how = None, "each channel scaled to its own min..max"
    if overlay:
        base = to_uint8_image(handle.denormalize(x)[0])           # (H, W, 3) the crop the network saw
        tiles = [overlay_map(base, d, cmap="jet", alpha=0.5, normalize=False) for d in display]
        how += ", overlaid on the input crop"
    else:
        tiles = [_upsample_nearest(colorize(d, cmap), thumb) for d in display]
    labels = [f"{c} · {s:.2g}" for c, s in zip(chosen, scores)]
    grid = tile(tiles, labels=labels, thumb=thumb)
    caption = f"{title}\n{order}; {how}\nlabel: channel · mean activation"
    return ActivationGrid(captioned(grid, caption), grid, layer, shape, chosen, values, display, scores, scale)


def _upsample_nearest(rgb: np.ndarray, thumb: int) -> Image.Image:
    """A small colored map (h, w, 3) enlarged with visible cells, long side ``thumb`` px."""
    h, w = rgb.shape[:2]
    s = thumb / max(h, w)
    return Image.fromarray(rgb).resize((max(1, round(w * s)), max(1, round(h * s))), Image.NEAREST)


def _bar_chart(values: np.ndarray, channels: list[int], layer: str) -> Image.Image:
    from matplotlib.figure import Figure

    k = len(values)
    fig = Figure(figsize=(min(16.0, max(4.0, 0.25 * k + 1.5)), 3.2), dpi=100)
    ax = fig.add_subplot()
    ax.bar(range(k), values, color=["#3b6fb6" if v >= 0 else "#c0392b" for v in values])
    ax.axhline(0, color="black", linewidth=0.6)
    if k <= 64:
        ax.set_xticks(range(k), [str(c) for c in channels], rotation=90, fontsize=7)
    ax.set_xlabel("channel")
    ax.set_ylabel("activation")
    ax.set_title(f"{layer}: {k} channels", fontsize=9)
    fig.tight_layout()
    return figure_to_image(fig)
