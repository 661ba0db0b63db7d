"""Pixels for people: normalizing maps, colormaps, overlays and labelled tiled grids (like imtile).

Everything here works on numpy arrays and Pillow images; matplotlib is imported only for its
colormaps, on first use.

Example:
    >>> grid = tile([img_a, img_b], labels=["cat", "dog"], thumb=128)     # doctest: +SKIP
    >>> grid.save("grid.png")                                              # doctest: +SKIP
"""

from __future__ import annotations

import math
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


def overlay(image: np.ndarray | Image.Image, heat: np.ndarray, cmap: str = "jet", alpha: float = 0.5,
            normalize: bool = True) -> Image.Image:
    """Blend a map (any size; resized bilinearly to the image) over an image."""
    img = np.asarray(image.convert("RGB")) if isinstance(image, Image.Image) else to_uint8_image(image)
    h, w = img.shape[:2]
    m = normalize_map(heat) if normalize else np.clip(heat, 0, 1)
    if m.shape != (h, w):
        m = np.asarray(Image.fromarray(m.astype(np.float32), mode="F").resize((w, h), Image.BILINEAR))
    colored = colorize(m, cmap).astype(np.float64)
    return Image.fromarray((alpha * colored + (1 - alpha) * img).round().astype(np.uint8))


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
