"""Small charts as inline SVG strings: no JavaScript library, no network, a few kilobytes each.

The report draws its bar charts (class histogram) and line charts (training curves) here, in
Python, so the HTML file stays small and opens offline. Inline SVG inside HTML needs no
``xmlns`` attribute, so the output holds no URL at all.

Example:
    >>> svg = bar_chart(["cat", "dog"], [120, 80], title="images per class")
    >>> svg.startswith("<svg") and "cat" in svg
    True
"""

from __future__ import annotations

import math
from html import escape
from typing import Mapping, Sequence

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf"]


def class_colors(k: int) -> list[str]:
    """``k`` distinguishable colors: the tab10 palette, then evenly spaced hues."""
    if k <= len(PALETTE):
        return PALETTE[:k]
    return [f"hsl({round(360 * i / k)}, 65%, 45%)" for i in range(k)]


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not math.isfinite(lo) or not math.isfinite(hi) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks, t = [], first
    while t <= hi + 1e-9 * step:
        ticks.append(round(t, 10))
        t += step
    return ticks


def _fmt(v: float) -> str:
    if abs(v) >= 1000 or v == int(v):
        return f"{v:,.0f}"
    return f"{v:.3g}"


def bar_chart(labels: Sequence[str], values: Sequence[float], title: str = "", width: int = 520,
              bar_height: int = 18, color: str | Sequence[str] = "#4c78a8", value_format: str = "{:,}") -> str:
    """Horizontal bars, one per label, with the value written at the end of each bar."""
    n = len(labels)
    label_w = min(220, 12 + 7 * max((len(str(l)) for l in labels), default=4))
    top = 26 if title else 6
    height = top + n * (bar_height + 4) + 8
    vmax = max([float(v) for v in values] + [1e-12])
    plot_w = width - label_w - 70
    colors = [color] * n if isinstance(color, str) else list(color)
    parts = [f'<svg class="chart bar-chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
             f'role="img" aria-label="{escape(title)}">']
    if title:
        parts.append(f'<text x="4" y="16" class="chart-title">{escape(title)}</text>')
    for i, (label, v) in enumerate(zip(labels, values)):
        y = top + i * (bar_height + 4)
        w = max(0.0, plot_w * float(v) / vmax)
        parts.append(f'<text x="{label_w - 6}" y="{y + bar_height * 0.72:.1f}" text-anchor="end">'
                     f'{escape(str(label))}</text>')
        parts.append(f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_height}" fill="{colors[i]}">'
                     f'<title>{escape(str(label))}: {escape(value_format.format(v))}</title></rect>')
        parts.append(f'<text x="{label_w + w + 4:.1f}" y="{y + bar_height * 0.72:.1f}">'
                     f'{escape(value_format.format(v))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def line_chart(series: Mapping[str, Sequence[float]], title: str = "", xlabel: str = "epoch",
               width: int = 440, height: int = 260, colors: Sequence[str] | None = None,
               x_start: int = 1, mark: int | None = None, mark_label: str = "") -> str:
    """Lines (with point markers) over a shared x axis ``x_start, x_start + 1, ...``; legend on top.

    ``mark``: an x value (e.g. the kept epoch) drawn as a dashed vertical line labelled ``mark_label``."""
    series = {k: [float(v) for v in vs] for k, vs in series.items() if len(vs)}
    colors = list(colors or PALETTE)
    left, right, top, bottom = 48, 12, 44 if title else 26, 34
    pw, ph = width - left - right, height - top - bottom
    values = [v for vs in series.values() for v in vs if math.isfinite(v)]
    n = max((len(vs) for vs in series.values()), default=1)
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    pad = 0.05 * (hi - lo)
    lo, hi = lo - pad, hi + pad

    def px(i: int) -> float:
        return left + (pw * i / (n - 1) if n > 1 else pw / 2)

    def py(v: float) -> float:
        return top + ph * (1 - (v - lo) / (hi - lo))

    parts = [f'<svg class="chart line-chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
             f'role="img" aria-label="{escape(title)}">']
    if title:
        parts.append(f'<text x="{left}" y="16" class="chart-title">{escape(title)}</text>')
    for t in _nice_ticks(lo, hi):
        y = py(t)
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{left - 5}" y="{y + 4:.1f}" text-anchor="end" class="tick">{_fmt(t)}</text>')
    step = max(1, math.ceil(n / 10))
    for i in range(0, n, step):
        parts.append(f'<text x="{px(i):.1f}" y="{top + ph + 16}" text-anchor="middle" class="tick">{i + x_start}</text>')
    parts.append(f'<text x="{left + pw / 2:.1f}" y="{height - 4}" text-anchor="middle" class="tick">'
                 f'{escape(xlabel)}</text>')
    parts.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" class="frame"/>')
    lx = left
    for j, (name, vs) in enumerate(series.items()):
        c = colors[j % len(colors)]
        pts = " ".join(f"{px(i):.1f},{py(v):.1f}" for i, v in enumerate(vs) if math.isfinite(v))
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{c}" stroke-width="2"/>')
        for i, v in enumerate(vs):
            if math.isfinite(v):
                parts.append(f'<circle cx="{px(i):.1f}" cy="{py(v):.1f}" r="3" fill="{c}">'
                             f'<title>{escape(name)}, {escape(xlabel)} {i + x_start}: {v:.4g}</title></circle>')
        ly = top - 10
        parts.append(f'<rect x="{lx}" y="{ly - 8}" width="12" height="4" fill="{c}"/>'
                     f'<text x="{lx + 16}" y="{ly - 3}" class="tick">{escape(name)}</text>')
        lx += 28 + 7 * len(name)
    if mark is not None and 0 <= mark - x_start < n:
        x = px(mark - x_start)
        parts.append(f'<g class="mark"><line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + ph}" stroke="#2ca02c" '
                     f'stroke-width="1.5" stroke-dasharray="4 3"/><text x="{x + 4:.1f}" y="{top + 12}" class="tick" '
                     f'fill="#2ca02c">{escape(mark_label)}</text></g>')
    parts.append("</svg>")
    return "".join(parts)
