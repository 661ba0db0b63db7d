"""Pixels for people: normalizing maps, colormaps, overlays and labelled tiled grids (like imtile).

Everything here works on numpy arrays and Pillow images; matplotlib is imported only for its
colormaps, on first use.

How an attribution map is colored has one home here, ``map_scale`` and what uses it: the explain
figure, the report's overlays and the web app's map PNGs and legends all call it, so they agree.

- An unsigned map (Grad-CAM, |gradient|, ...) runs from 0 (or its minimum, if negative) to its
  maximum in a sequential colormap (``SEQUENTIAL``, jet).
- A signed map (Integrated Gradients, Gradient x Input, DeepLIFT, LRP, Occlusion, LIME, ...: the
  registry's ``MethodSpec.signed``) uses a diverging colormap (``DIVERGING``, bwr) with symmetric
  limits ``±max|v|``, so zero is white whatever the map's range: min-max scaling into jet would
  paint a zero background orange.
- Pixel-level maps are heavy-tailed, so their limits sit at the 99.5th percentile (of the value,
  or of ``|v|`` when signed) and brighter pixels are clipped; the legend says so.
- A map that is all zero (e.g. Grad-CAM of a class with no positive evidence) or constant has no
  colors to show: it is drawn as a hatched, faded image and its legend says why, never as a flat
  blue image that looks like "low everywhere".

Example:
    >>> grid = tile([img_a, img_b], labels=["cat", "dog"], thumb=128)     # doctest: +SKIP
    >>> grid.save("grid.png")                                              # doctest: +SKIP
    >>> scale = map_scale(ig_map, signed=True, saturate=True)              # doctest: +SKIP
    >>> rgb = overlay_scaled(view, ig_map, scale)                          # doctest: +SKIP
    >>> scale.legend("tabby")["text"]                                      # doctest: +SKIP
    '−0.012 … 0 … +0.012 — blue: evidence against tabby · white: none · red: evidence for tabby (clipped ...)'
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def normalize_map(m: np.ndarray, signed: bool = False, eps: float = 1e-12) -> np.ndarray:
    """Scale a map for display: to [0, 1] by min/max, or to [-1, 1] by max |value| when ``signed``."""
    m = np.asarray(m, dtype=np.float64)
    if signed:
        return m / max(float(np.abs(m).max()), eps)
    lo, hi = float(m.min()), float(m.max())
    return (m - lo) / max(hi - lo, eps)


def display_map(m: np.ndarray, saturate: bool = False) -> np.ndarray:
    """A map scaled to [0, 1] for an overlay; ``saturate`` clips the top 0.5% first.

    Pixel-level maps (gradients, Guided Backprop, IG, ...) are heavy-tailed: a few pixels would
    take the whole color range, so they are saturated at their 99.5th percentile.
    """
    shown = normalize_map(m)
    if saturate:
        shown = np.clip(shown / max(float(np.percentile(shown, 99.5)), 1e-12), 0, 1)
    return shown


def colorize(m: np.ndarray, cmap: str = "jet", vmin: float = 0.0, vmax: float = 1.0) -> np.ndarray:
    """A 2-D map to ``(H, W, 3)`` uint8 colors with a matplotlib colormap."""
    from matplotlib import colormaps

    x = np.clip((np.asarray(m, dtype=np.float64) - vmin) / max(vmax - vmin, 1e-12), 0, 1)
    return (colormaps[cmap](x)[..., :3] * 255).round().astype(np.uint8)


def to_uint8_image(x) -> np.ndarray:
    """A ``(C, H, W)`` or ``(H, W, C)`` float array in [0, 1] (or torch tensor) to ``(H, W, 3)`` uint8."""
    a = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = a.transpose(1, 2, 0)
    if a.ndim == 2:
        a = a[..., None]
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    if a.dtype != np.uint8:
        a = (np.clip(a, 0, 1) * 255).round().astype(np.uint8)
    return a


def overlay(image: np.ndarray | Image.Image, heat: np.ndarray, cmap: str | None = None, alpha: float = 0.5,
            normalize: bool = True, signed: bool = False, saturate: bool = False) -> Image.Image:
    """Blend a map (any size; resized bilinearly to the image) over an image.

    ``normalize``: color it by ``map_scale`` (``signed`` maps diverge around a white zero, see the
    module docstring); otherwise ``heat`` is already in [0, 1] and goes straight into ``cmap``.
    """
    img = np.asarray(image.convert("RGB")) if isinstance(image, Image.Image) else to_uint8_image(image)
    h, w = img.shape[:2]
    m = np.asarray(heat, dtype=np.float64) if normalize else np.clip(heat, 0, 1)
    if m.shape != (h, w):
        m = np.asarray(Image.fromarray(m.astype(np.float32), mode="F").resize((w, h), Image.BILINEAR))
    if normalize:
        return Image.fromarray(overlay_scaled(img, m, map_scale(m, signed, saturate, cmap), alpha))
    colored = colorize(m, cmap or SEQUENTIAL).astype(np.float64)
    return Image.fromarray((alpha * colored + (1 - alpha) * img).round().astype(np.uint8))


SEQUENTIAL = "jet"   # unsigned maps: low (blue) -> high (red)
DIVERGING = "bwr"    # signed maps: negative (blue) -> 0 (white) -> positive (red)
SATURATE_PERCENTILE = 99.5


def _format_value(v: float) -> str:
    """A legend number: 3 significant digits, a true minus sign."""
    return f"{v:.3g}".replace("-", "\u2212")


@dataclass(frozen=True)
class MapScale:
    """How one map is colored: which colormap, which values its ends stand for, and why it may be empty.

    ``low``/``high``: the map values at the two ends of the color bar (``-limit``/``+limit`` when
    ``signed``); ``clipped``: values beyond them (pixel maps' brightest 0.5%) take the end colors;
    ``peak``: ``max |v|`` of the whole map; ``empty``: ``"all zero"`` or ``"constant"`` when the map has
    nothing to color (then it is drawn hatched, see ``overlay_scaled``), else None.
    """

    signed: bool
    low: float
    high: float
    cmap: str
    clipped: bool = False
    peak: float = 0.0
    empty: str | None = None
    value: float = 0.0  # the constant value of a constant map

    def unit(self, m: np.ndarray) -> np.ndarray:
        """The map's values as positions on the color bar, ``[0, 1]`` (0.5 is zero for a signed map)."""
        m = np.nan_to_num(np.asarray(m, dtype=np.float64))
        return np.clip((m - self.low) / max(self.high - self.low, 1e-30), 0.0, 1.0)

    def colors(self, m: np.ndarray) -> np.ndarray:
        """The map as ``(H, W, 3)`` uint8 colors (an empty map: all the neutral middle color)."""
        x = self.unit(m) if self.empty is None else np.full(np.shape(m), 0.5 if self.signed else 0.0)
        return colorize(x, self.cmap)

    def stops(self, n: int = 9) -> list[str]:
        """``n`` evenly spaced colors of the color bar as ``#rrggbb`` (a CSS gradient for legends)."""
        rgb = colorize(np.linspace(0.0, 1.0, n)[None], self.cmap)[0]
        return ["#%02x%02x%02x" % tuple(int(v) for v in c) for c in rgb]

    def note(self, class_name: str | None = None) -> str | None:
        """Why nothing is drawn, in words, or None: e.g. "no positive evidence for cat: the map is all zero"."""
        of = f" for {class_name}" if class_name else ""
        if self.empty == "all zero":
            return (f"no evidence either way{of}: the map is all zero" if self.signed
                    else f"no positive evidence{of}: the map is all zero")
        if self.empty == "constant":
            return f"the map is constant ({_format_value(self.value)}){of}: nothing stands out"
        return None

    def ticks(self) -> list[tuple[float, str]]:
        """``(position on the bar 0..1, label)`` for a legend or a colorbar: the ends, and zero when signed."""
        if self.signed:
            return [(0.0, _format_value(self.low)), (0.5, "0"), (1.0, "+" + _format_value(self.high))]
        return [(0.0, _format_value(self.low)), (1.0, _format_value(self.high))]

    def meaning(self, class_name: str | None = None) -> str:
        """What the colors mean, e.g. "blue against cat · white none · red for cat"."""
        cls = class_name or "the class"
        if self.signed:
            return f"blue: evidence against {cls} · white: none · red: evidence for {cls}"
        return f"blue: none · red: the most evidence for {cls}" if self.low >= 0 else "blue: lowest · red: highest"

    def legend(self, class_name: str | None = None) -> dict:
        """A JSON-ready legend: ``text`` (one line), ``meaning``, ``ticks``, ``stops``, ``note`` and the numbers."""
        ends = (f"{_format_value(self.low)} … 0 … +{_format_value(self.high)}" if self.signed
                else f"{_format_value(self.low)} … {_format_value(self.high)}")
        how = (f" (clipped at the {SATURATE_PERCENTILE:g}th percentile of {'|v|' if self.signed else 'v'}; "
               f"max |v| {_format_value(self.peak)})" if self.clipped else "")
        note = self.note(class_name)
        text = note if note else f"{ends} \u2014 {self.meaning(class_name)}{how}"
        return {"signed": self.signed, "low": self.low, "high": self.high, "cmap": self.cmap, "clipped": self.clipped,
                "peak": self.peak, "empty": self.empty, "note": note, "text": text,
                "meaning": self.meaning(class_name), "ticks": [[p, t] for p, t in self.ticks()],
                "stops": self.stops()}


def check_colormap(name: str | None, kind: str = "colormap") -> str | None:
    """``name`` if matplotlib knows it (None passes: the default), else ``ChoiceError`` listing them."""
    if name is None:
        return None
    from matplotlib import colormaps

    from mikata.errors import check_choices

    return check_choices(kind, name, sorted(colormaps), hint="e.g. jet, viridis, magma; signed: bwr, RdBu_r, seismic")


def map_scale(m: np.ndarray, signed: bool = False, saturate: bool = False, cmap: str | None = None,
              signed_cmap: str | None = None) -> MapScale:
    """The ``MapScale`` of one map: the one rule every picture of a map follows (see the module docstring).

    ``signed``: the method's sign means something (``attribution.registry.signed_map``); ``saturate``:
    a heavy-tailed pixel-level map, limited at its 99.5th percentile; ``cmap``: the colormap of
    unsigned maps (default ``SEQUENTIAL``), ``signed_cmap``: of signed ones (default ``DIVERGING``).
    """
    m = np.nan_to_num(np.asarray(m, dtype=np.float64))
    a = np.abs(m)
    peak = float(a.max()) if a.size else 0.0
    if signed:
        cm = signed_cmap or DIVERGING
        if peak == 0.0:
            return MapScale(True, -1.0, 1.0, cm, False, 0.0, "all zero")
        limit, clipped = peak, False
        if saturate:
            q = float(np.percentile(a, SATURATE_PERCENTILE))
            if 0.0 < q < peak:
                limit, clipped = q, True
        return MapScale(True, -limit, limit, cm, clipped, peak)
    cm = cmap or SEQUENTIAL
    if peak == 0.0:
        return MapScale(False, 0.0, 1.0, cm, False, 0.0, "all zero")
    lo, top = float(m.min()), float(m.max())
    if lo == top:
        return MapScale(False, lo, lo + 1.0, cm, False, peak, "constant", lo)
    low = min(0.0, lo)
    high, clipped = top, False
    if saturate:
        q = float(np.percentile(m, SATURATE_PERCENTILE))
        if low < q < top:
            high, clipped = q, True
    return MapScale(False, low, high, cm, clipped, peak)


def legend_of_kind(signed: bool, saturate: bool = False, cmap: str | None = None,
                   signed_cmap: str | None = None, what: str = "its class") -> dict:
    """The legend of a page of maps, each scaled to itself (a grid of tiles): ``MapScale.legend``'s
    fields with words for the ends instead of one map's numbers."""
    scale = (MapScale(True, -1.0, 1.0, signed_cmap or DIVERGING) if signed
             else MapScale(False, 0.0, 1.0, cmap or SEQUENTIAL))
    clip = f", clipped at the {SATURATE_PERCENTILE:g}th percentile" if saturate else ""
    if signed:
        ticks = [[0.0, "\u2212max|v|"], [0.5, "0"], [1.0, "+max|v|"]]
        text = f"each map from \u2212max|v| through 0 (white) to +max|v|{clip}: red for {what}, blue against it"
    else:
        ticks = [[0.0, "0"], [1.0, "max"]]
        text = f"each map from 0 (blue) to its own max (red){clip}: where the evidence for {what} is"
    return {"signed": signed, "cmap": scale.cmap, "stops": scale.stops(), "ticks": ticks, "note": None,
            "text": text + "; hatched: the map is all zero (nothing to show)",
            "meaning": scale.meaning(what)}


def hatch(view: np.ndarray, period: int = 4) -> np.ndarray:
    """``view`` faded toward white with gray diagonal stripes: "no map here" at any size (a 28 px view too)."""
    h, w = view.shape[:2]
    faded = 0.35 * view.astype(np.float64) + 0.65 * 255.0
    yy, xx = np.mgrid[0:h, 0:w]
    stripe = ((xx + yy) % max(2, period)) == 0
    faded[stripe] = 185.0
    return faded.round().astype(np.uint8)


def overlay_scaled(view: np.ndarray, m: np.ndarray, scale: MapScale, alpha: float = 0.5) -> np.ndarray:
    """``m`` (at ``view``'s size) colored by ``scale`` and blended over ``view`` ``(H, W, 3)`` uint8;
    an empty map gives the hatched view instead (``hatch``)."""
    view = np.asarray(view)
    if scale.empty is not None:
        return hatch(view)
    return (alpha * scale.colors(m) + (1 - alpha) * view.astype(np.float64)).round().astype(np.uint8)


def colorbar(ax, fig, scale: MapScale, cmap_image=None):
    """A matplotlib colorbar beside ``ax`` labelled with ``scale``'s values (and zero when signed);
    ``cmap_image``: what ``imshow`` returned for ``scale.unit(m)`` (values 0..1), else a bare mappable."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    sm = cmap_image if cmap_image is not None else ScalarMappable(Normalize(0.0, 1.0), colormaps[scale.cmap])
    cb = fig.colorbar(sm, ax=ax, fraction=0.046, pad=0.02)
    ticks = scale.ticks()
    cb.set_ticks([p for p, _ in ticks], labels=[t for _, t in ticks])
    cb.ax.tick_params(labelsize=6)
    return cb


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def tile(
    images: Sequence[np.ndarray | Image.Image],
    labels: Sequence[str] | None = None,
    thumb: int = 128,
    cols: int | None = None,
    pad: int = 4,
    background: tuple[int, int, int] = (255, 255, 255),
) -> Image.Image:
    """A grid of thumbnails (``thumb`` px on the long side), each with its label underneath."""
    if not images:
        raise ValueError("tile() needs at least one image")
    n = len(images)
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    label_h = (thumb // 10 + 6) if labels else 0
    font = _font(max(10, thumb // 10))
    cell_w, cell_h = thumb + pad, thumb + label_h + pad
    canvas = Image.new("RGB", (cols * cell_w + pad, rows * cell_h + pad), background)
    draw = ImageDraw.Draw(canvas)
    for i, im in enumerate(images):
        im = im.convert("RGB") if isinstance(im, Image.Image) else Image.fromarray(to_uint8_image(im))
        scale = thumb / max(im.size)
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.LANCZOS)
        r, c = divmod(i, cols)
        x0, y0 = pad + c * cell_w, pad + r * cell_h
        canvas.paste(im, (x0 + (thumb - im.width) // 2, y0 + (thumb - im.height) // 2))
        if labels:
            text = str(labels[i])
            while len(text) > 3 and draw.textlength(text, font=font) > thumb:
                text = text[:-2] + "…"
            draw.text((x0 + thumb / 2, y0 + thumb + 2), text, fill=(0, 0, 0), font=font, anchor="ma")
    return canvas
