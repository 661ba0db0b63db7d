"""Small pieces the inspect views share: a caption strip, side-by-side panels, matplotlib to Pillow.

The tiled grids themselves come from ``mikata.display.tile``; these helpers only frame them.

Example:
    >>> framed = captioned(grid, "efficientnet-lite0 · head · top 16 channels")   # doctest: +SKIP
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def captioned(image: Image.Image, text: str, size: int = 14, pad: int = 6) -> Image.Image:
    """``image`` with ``text`` (one or more lines) written in a white strip above it.

    Why: a saved grid must say what it shows (model, layer, scale) without the command that made it.
    """
    font = _font(size)
    lines = text.splitlines() or [""]
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    width = max(int(probe.textlength(line, font=font)) for line in lines) + 2 * pad
    strip_h = len(lines) * (size + 4) + pad
    canvas = Image.new("RGB", (max(image.width, width), image.height + strip_h), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        draw.text((pad, pad // 2 + i * (size + 4)), line, fill=(0, 0, 0), font=font)
    canvas.paste(image.convert("RGB"), (0, strip_h))
    return canvas


def side_by_side(left: Image.Image, right: Image.Image, gap: int = 8) -> Image.Image:
    """Two panels next to each other, top-aligned, on white."""
    canvas = Image.new("RGB", (left.width + gap + right.width, max(left.height, right.height)), (255, 255, 255))
    canvas.paste(left.convert("RGB"), (0, 0))
    canvas.paste(right.convert("RGB"), (left.width + gap, 0))
    return canvas


def figure_to_image(fig) -> Image.Image:
    """Render a ``matplotlib.figure.Figure`` (made without pyplot, so no global state) to RGB Pillow."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3].copy())


class PNGRepr:
    """Mixin: a result with an ``image`` attribute shows itself in Jupyter and saves as PNG."""

    image: Image.Image

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.image.save(buf, format="PNG")
        return buf.getvalue()

    def save(self, path) -> None:
        """Write the labelled figure (PNG unless the suffix says otherwise)."""
        self.image.save(path)
