"""The pieces of every rich display in Jupyter: PNGs embedded as base64, escaped tables, legends, galleries.

Why here, at the bottom floor: every result type (an ``Explanation``, a ``TrainResult``, a run's issues,
a gallery of a run's rows) shows itself with ``_repr_html_`` / ``_repr_png_``, and they must look alike and
be safe. Safe: every string that comes from a run or a dataset (file names, class names, manifest
fields) is data a stranger may have written, so it is escaped here, once, before it touches HTML
(``esc``; a ``Raw`` string is HTML this module or its caller built from escaped parts). Alike: one
thumbnail, one table, one legend style.

Pictures are embedded as ``data:image/png;base64`` and figures are rendered to PNG with Agg
(``figure_png``), so a display shows in a fresh kernel without ``%matplotlib inline`` and survives
``nbconvert --to html``. A figure mikata returns is a ``notebook_figure``: a matplotlib ``Figure`` that
shows itself as its PNG, never as ``<Figure size 640x480 with 2 Axes>``.

Example:
    >>> from PIL import Image
    >>> tag = img_tag(Image.new("RGB", (8, 8)), alt="<cat>.png")
    >>> tag.startswith('<img src="data:image/png;base64,') and 'alt="&lt;cat&gt;.png"' in tag
    True
    >>> table_html(["class", "images"], [["<b>", 3]])
    '<table class="mikata"><thead><tr><th>class</th><th>images</th></tr></thead><tbody><tr><td>&lt;b&gt;</td><td>3</td></tr></tbody></table>'
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any, Iterable, Sequence

from PIL import Image

THUMB = 96  # px, the long side of a gallery thumbnail


class Raw(str):
    """HTML built from escaped parts: ``esc`` and the table cells pass it through unchanged."""


def esc(value: object) -> str:
    """``value`` as text safe inside HTML elements and attribute values (a ``Raw`` passes unchanged)."""
    if isinstance(value, Raw):
        return value
    return html.escape(str(value), quote=True)


def fmt(value: object, digits: int = 4) -> str:
    """A table cell's text: floats to ``digits`` significant figures, the rest as ``str``."""
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def data_uri(data: bytes) -> str:
    """A ``data:`` URI for PNG or JPEG bytes (the web app's thumbnails are either)."""
    mime = "image/jpeg" if data[:3] == b"\xff\xd8\xff" else "image/png"
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def thumbnail(image: Image.Image, side: int = THUMB) -> Image.Image:
    """A copy of ``image`` in RGB with its long side ``side`` px (small images are scaled up, pixelated)."""
    im = image.convert("RGB")
    scale = side / max(im.size)
    size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    return im.resize(size, Image.NEAREST if scale > 1 else Image.LANCZOS)


def img_tag(image: Image.Image | bytes, alt: str = "", side: int | None = None, title: str | None = None) -> Raw:
    """An ``<img>`` with the picture (a PIL image, or PNG / JPEG bytes) embedded. ``side``: a PIL image is
    scaled to that long side first; smaller encoded bytes (an 8x8 digit's thumbnail) are drawn that large
    with sharp pixels, so a tiny image is still something to look at."""
    style = ""
    if isinstance(image, Image.Image):
        image = png_bytes(thumbnail(image, side) if side else image)
    elif side:
        with Image.open(io.BytesIO(image)) as probe:
            w, h = probe.size
        if max(w, h) < side:
            scale = side / max(w, h)
            style = f"width:{round(w * scale)}px;height:{round(h * scale)}px;image-rendering:pixelated"
    extra = f' title="{esc(title)}"' if title else ""
    return Raw(f'<img src="{data_uri(image)}" alt="{esc(alt)}"{extra} style="{style}">')


def figure_png(fig: Any, dpi: int | None = None) -> bytes:
    """PNG bytes of a matplotlib ``Figure`` drawn with Agg (no pyplot, no backend state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)  # attaches itself as fig.canvas
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


_FIGURE_CLASS: type | None = None


def notebook_figure(**kwargs: Any):
    """A matplotlib ``Figure(**kwargs)`` that Jupyter shows as its PNG (``_repr_png_``) in any kernel."""
    global _FIGURE_CLASS
    if _FIGURE_CLASS is None:
        from matplotlib.figure import Figure

        class NotebookFigure(Figure):
            """A ``Figure`` that shows itself as a PNG in Jupyter, whatever the matplotlib backend."""

            def _repr_png_(self) -> bytes:
                return figure_png(self)

            def __repr__(self) -> str:
                w, h = self.get_size_inches() * self.dpi
                return f"mikata figure ({w:.0f}x{h:.0f} px, {len(self.axes)} panels)"

        _FIGURE_CLASS = NotebookFigure
    return _FIGURE_CLASS(**kwargs)


STYLE = Raw(
    "<style>.mikata{border-collapse:collapse;font-size:12px;margin:4px 0}"
    ".mikata th,.mikata td{border:1px solid #ddd;padding:2px 6px;text-align:left !important;vertical-align:top}"
    ".mikata th{background:#f4f4f4}.mikata-gallery{display:flex;flex-wrap:wrap;gap:6px}"
    ".mikata-card{width:%dpx;font-size:11px;line-height:1.25;overflow-wrap:anywhere}"
    ".mikata-card .bad{color:#b00}.mikata-legend{font-size:11px;margin:4px 0}</style>" % (THUMB + 8))


def table_html(header: Sequence[str], rows: Iterable[Sequence[object]]) -> Raw:
    """A small table: every header and cell escaped (a ``Raw`` cell is kept), floats to 4 figures."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c) if isinstance(c, Raw) else esc(fmt(c))}</td>" for c in row)
                   + "</tr>" for row in rows)
    return Raw(f'<table class="mikata"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')


def legend_html(legend: dict) -> Raw:
    """A map legend (``display.MapScale.legend``): its colour bar with the end values, and its one line."""
    stops = ",".join(esc(s) for s in legend.get("stops", []))
    ticks = legend.get("ticks") or []
    # the end labels sit inside the bar's ends, the others centred on their position
    labels = "".join(f'<span style="position:absolute;left:{100 * float(p):.0f}%;transform:translateX('
                     f'{-100 * min(max(float(p), 0.0), 1.0):.0f}%)">{esc(t)}</span>' for p, t in ticks)
    bar = (f'<div style="width:180px;height:10px;background:linear-gradient(to right,{stops})"></div>'
           f'<div style="position:relative;width:180px;height:14px">{labels}</div>') if stops else ""
    return Raw(f'<div class="mikata-legend">{bar}<div>{esc(legend.get("text", ""))}</div></div>')


def card_html(image: Raw, lines: Sequence[str | Raw], title: str | None = None) -> Raw:
    """One gallery card: a thumbnail and short escaped lines under it."""
    text = "".join(f"<div>{esc(line)}</div>" for line in lines)
    tip = f' title="{esc(title)}"' if title else ""
    return Raw(f'<div class="mikata-card"{tip}>{image}{text}</div>')


def gallery_html(cards: Sequence[Raw], heading: str = "", footer: Raw | str = "") -> Raw:
    """Cards in a wrapping row under a heading (escaped), with an optional footer (a legend)."""
    head = f"<div><b>{esc(heading)}</b></div>" if heading else ""
    foot = esc(footer) if footer else ""
    return Raw(f'<div>{STYLE}{head}<div class="mikata-gallery">{"".join(cards)}</div>{foot}</div>')


class ImageList(list):
    """A list of PIL images that Jupyter shows as one row of thumbnails, each with its caption."""

    def __init__(self, images: Iterable[Image.Image], captions: Sequence[str] | None = None):
        super().__init__(images)
        self.captions = list(captions) if captions is not None else [f"{i}" for i in range(len(self))]

    def _repr_html_(self) -> str:
        cards = [card_html(img_tag(im, alt=c, side=THUMB), [c]) for im, c in zip(self, self.captions)]
        return gallery_html(cards, f"{len(self)} image(s)")

    def __repr__(self) -> str:
        return f"ImageList({len(self)} image(s): {', '.join(self.captions[:6])}{'...' if len(self) > 6 else ''})"
