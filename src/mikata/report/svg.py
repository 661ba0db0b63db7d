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


def curve_chart(x: Sequence[float], y: Sequence[float], title: str = "", xlabel: str = "", ylabel: str = "",
                markers: Sequence[tuple[float, float, str, str]] = (), diagonal: bool = False,
                baseline: float | None = None, size: int = 300, color: str = "#1f77b4",
                chart_id: str | None = None, legend_left: bool = False) -> str:
    """A curve in the unit square (ROC, precision-recall) with labelled point ``markers``
    ``(x, y, label, color)``; ``diagonal`` draws the chance line y = x, ``baseline`` a chance level
    y = b (a PR curve's prevalence). The legend sits bottom right (``legend_left``: bottom left), where
    a ROC (a PR) curve of a useful classifier leaves room.

    The ``<svg>`` carries its plot box as ``data-left/top/width/height`` (both axes run 0..1), so a
    page's script can move a marker (``circle.moving``, hidden until moved) to any operating point.
    """
    left, right, top, bottom = 46, 12, 30 if title else 10, 38
    pw, ph = size - left - right, size - top - bottom

    def px(v: float) -> float:
        return left + pw * min(max(float(v), 0.0), 1.0)

    def py(v: float) -> float:
        return top + ph * (1 - min(max(float(v), 0.0), 1.0))

    ident = f' id="{escape(chart_id)}"' if chart_id else ""
    parts = [f'<svg{ident} class="chart curve-chart" width="{size}" height="{size}" viewBox="0 0 {size} {size}" '
             f'role="img" aria-label="{escape(title)}" data-left="{left}" data-top="{top}" data-width="{pw}" '
             f'data-height="{ph}">']
    if title:
        parts.append(f'<text x="{left}" y="16" class="chart-title">{escape(title)}</text>')
    for t in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{py(t):.1f}" y2="{py(t):.1f}" class="grid"/>')
        parts.append(f'<text x="{left - 5}" y="{py(t) + 4:.1f}" text-anchor="end" class="tick">{_fmt(t)}</text>')
        parts.append(f'<text x="{px(t):.1f}" y="{top + ph + 14}" text-anchor="middle" class="tick">{_fmt(t)}</text>')
    parts.append(f'<text x="{left + pw / 2:.1f}" y="{size - 6}" text-anchor="middle" class="tick">{escape(xlabel)}</text>')
    parts.append(f'<text transform="translate(12,{top + ph / 2:.1f}) rotate(-90)" text-anchor="middle" '
                 f'class="tick">{escape(ylabel)}</text>')
    parts.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" class="frame"/>')
    if diagonal:
        parts.append(f'<line x1="{px(0)}" y1="{py(0)}" x2="{px(1)}" y2="{py(1)}" stroke="#9aa3b2" '
                     'stroke-dasharray="4 3"><title>chance</title></line>')
    if baseline is not None and math.isfinite(baseline):
        parts.append(f'<line x1="{px(0)}" y1="{py(baseline):.1f}" x2="{px(1)}" y2="{py(baseline):.1f}" '
                     f'stroke="#9aa3b2" stroke-dasharray="4 3"><title>chance (prevalence {baseline:.3f})</title></line>')
    pts = " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in zip(x, y) if math.isfinite(a) and math.isfinite(b))
    parts.append(f'<polyline class="curve" points="{pts}" fill="none" stroke="{color}" stroke-width="2"/>')
    for mx, my, label, mcolor in markers:
        if not (math.isfinite(mx) and math.isfinite(my)):
            continue
        parts.append(f'<circle class="marker" cx="{px(mx):.1f}" cy="{py(my):.1f}" r="5" fill="{mcolor}" '
                     f'stroke="#fff" stroke-width="1.5"><title>{escape(label)}</title></circle>')
    parts.append('<circle class="moving" cx="0" cy="0" r="6" fill="none" stroke="#d62728" stroke-width="2.5" '
                 'visibility="hidden"/>')
    ly = top + ph - 8 - 14 * len(markers)
    lx = left + 10 if legend_left else left + pw - 150
    for i, (_, _, label, mcolor) in enumerate(markers):  # the legend, inside the frame
        y0 = ly + 14 * i
        parts.append(f'<circle cx="{lx}" cy="{y0 + 4}" r="4" fill="{mcolor}"/>'
                     f'<text x="{lx + 8}" y="{y0 + 8}" class="tick">{escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


#: colours of the two fixed operating points on the curves (the moving one is red)
DEFAULT_POINT_COLOR, BEST_POINT_COLOR = "#1d2330", "#2ca02c"


def operating_charts(curves, threshold: float = 0.5, size: int = 300) -> dict[str, str]:
    """The ROC and precision-recall charts of a ``mikata.analysis.binary.Curves``, each marking the
    operating points at ``threshold`` and at the best F1: ``{"roc": svg, "pr": svg}`` (a chart is
    left out when its curve is undefined: no positives, or no negatives for the ROC)."""
    pts = curves.curve_points()
    at, best = curves.at(threshold), curves.best_f1()
    pos = curves.positive_name if len(curves.positive_name) <= 22 else curves.positive_name[:21] + "…"
    out = {}
    if "roc" in pts:
        marks = [(at.fpr, at.recall, f"threshold {threshold:g}", DEFAULT_POINT_COLOR),
                 (best.fpr, best.recall, f"best F1, threshold {best.threshold:.3g}", BEST_POINT_COLOR)]
        out["roc"] = curve_chart(pts["roc"]["fpr"], pts["roc"]["tpr"], title=f"ROC · AUROC {curves.auroc:.3f}",
                                 xlabel="false-positive rate", ylabel=f"recall of {pos} (TPR)",
                                 markers=marks, diagonal=True, size=size, chart_id="roc-chart")
    if "pr" in pts:
        marks = [(at.recall, at.precision, f"threshold {threshold:g}", DEFAULT_POINT_COLOR),
                 (best.recall, best.precision, f"best F1, threshold {best.threshold:.3g}", BEST_POINT_COLOR)]
        out["pr"] = curve_chart(pts["pr"]["recall"], pts["pr"]["precision"],
                                title=f"precision-recall · AP {curves.average_precision:.3f}",
                                xlabel=f"recall of {pos}", ylabel=f"precision of {pos}", markers=marks,
                                baseline=curves.n_pos / max(1, curves.n_pos + curves.n_neg), size=size,
                                chart_id="pr-chart", legend_left=True)
    return out


def reliability_chart(calibration: Mapping, size: int = 300) -> str:
    """The reliability diagram of a ``RunView.calibration()``: accuracy against mean confidence per
    equal-mass bin (a dot per bin, its count in the tooltip), the diagonal a calibrated model follows,
    and, when a temperature is applied, the model's own curve dashed in gray ("before")."""
    curve = calibration["curve"]
    before = (calibration.get("before") or {}).get("curve")
    left, right, top, bottom = 46, 12, 30, 38
    pw, ph = size - left - right, size - top - bottom

    def px(v: float) -> float:
        return left + pw * min(max(float(v), 0.0), 1.0)

    def py(v: float) -> float:
        return top + ph * (1 - min(max(float(v), 0.0), 1.0))

    title = f"reliability · ECE {calibration['ece']:.3f}" if curve["counts"] else "reliability (no images)"
    parts = [f'<svg class="chart reliability-chart" width="{size}" height="{size}" viewBox="0 0 {size} {size}" '
             f'role="img" aria-label="{escape(title)}"><text x="{left}" y="16" class="chart-title">{escape(title)}</text>']
    for t in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{py(t):.1f}" y2="{py(t):.1f}" class="grid"/>'
                     f'<text x="{left - 5}" y="{py(t) + 4:.1f}" text-anchor="end" class="tick">{_fmt(t)}</text>'
                     f'<text x="{px(t):.1f}" y="{top + ph + 14}" text-anchor="middle" class="tick">{_fmt(t)}</text>')
    parts.append(f'<text x="{left + pw / 2:.1f}" y="{size - 6}" text-anchor="middle" class="tick">confidence (top-1 '
                 f'probability)</text><text transform="translate(12,{top + ph / 2:.1f}) rotate(-90)" '
                 f'text-anchor="middle" class="tick">accuracy</text>'
                 f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" class="frame"/>'
                 f'<line x1="{px(0)}" y1="{py(0)}" x2="{px(1)}" y2="{py(1)}" stroke="#9aa3b2" stroke-dasharray="4 3">'
                 '<title>calibrated: accuracy = confidence</title></line>')
    if before and before["counts"]:
        pts = " ".join(f"{px(c):.1f},{py(a):.1f}" for c, a in zip(before["confidence"], before["accuracy"]))
        parts.append(f'<polyline class="before" points="{pts}" fill="none" stroke="#9aa3b2" stroke-width="1.5" '
                     f'stroke-dasharray="5 3"><title>the model\'s own probabilities: ECE '
                     f'{calibration["before"]["ece"]:.3f}</title></polyline>')
    if curve["counts"]:
        pts = " ".join(f"{px(c):.1f},{py(a):.1f}" for c, a in zip(curve["confidence"], curve["accuracy"]))
        parts.append(f'<polyline class="curve" points="{pts}" fill="none" stroke="#1f77b4" stroke-width="2"/>')
        for c, a, n in zip(curve["confidence"], curve["accuracy"], curve["counts"]):
            parts.append(f'<circle class="bin" cx="{px(c):.1f}" cy="{py(a):.1f}" r="3.5" fill="#1f77b4">'
                         f'<title>{n} images: confidence {c:.3f}, accuracy {a:.3f}</title></circle>')
    parts.append("</svg>")
    return "".join(parts)
