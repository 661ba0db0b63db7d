"""The explanation figure: original | top-k probabilities | one overlay per method (and target).

Example (in a notebook):
    >>> fig = explain_figure(handle, load_image("chelsea.png"), ["gradcam", "guided-gradcam"])   # doctest: +SKIP
    >>> fig.savefig("chelsea_explained.png")                                                     # doctest: +SKIP
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image

from mikata.attribution.engine import explain
from mikata.attribution.rectifiers import hybrid_note
from mikata.attribution.result import Attribution
from mikata.models.handle import ModelHandle
from mikata.display import colorbar, hatch, map_scale, to_uint8_image


#: Panels per row before the figure wraps: 6 panels of 3.1 in stay readable on a laptop screen and
#: in a report; 20 methods would otherwise make one 6,800 px row.
MAX_COLUMNS = 6


def figure_layout(n_methods: int, n_targets: int, max_columns: int = MAX_COLUMNS) -> tuple[int, int, dict]:
    """``(rows, cols, cells)`` of the explanation figure; ``cells[(target, method)] = (row, col)``.

    Small figures keep one row per target (input, probabilities, then the methods), as before.
    Larger ones wrap: the input and the probabilities open the first row alone, and every target
    starts a fresh block of rows holding its methods ``cols`` to a row, so a column is always one
    method of one target and a reader scans a target's methods left to right, top to bottom.
    """
    n_targets = max(1, n_targets)
    if 2 + n_methods <= max_columns:
        cells = {(t, m): (t, 2 + m) for t in range(n_targets) for m in range(n_methods)}
        return n_targets, 2 + n_methods, cells
    cols = max(2, max_columns)
    per_target = -(-n_methods // cols)
    cells = {(t, m): (1 + t * per_target + m // cols, m % cols)
             for t in range(n_targets) for m in range(n_methods)}
    return 1 + n_targets * per_target, cols, cells


def draw_figure(
    image: np.ndarray,
    attributions: Sequence[Attribution],
    probs: torch.Tensor,
    class_names: Sequence[str],
    index: int = 0,
    top: int = 5,
    cmap: str | None = None,
    alpha: float = 0.5,
    title: str = "",
    max_columns: int = MAX_COLUMNS,
    signed_cmap: str | None = None,
):
    """A matplotlib Figure for image ``index`` of the batch the attributions were computed on.

    ``image``: ``(H, W, 3)`` uint8 as shown to people; ``probs``: that image's softmax ``(K,)``.
    Panels wrap into rows of at most ``max_columns`` (see ``figure_layout``). Each map is colored by
    ``mikata.display.map_scale``, as the report and the web app color it: unsigned maps from 0 to their
    max in ``cmap`` (default jet), signed ones (``Attribution.signed``) in ``signed_cmap`` (default bwr)
    from ``-max|v|`` through a white 0 to ``+max|v|``; pixel maps clip their top 0.5%; the colorbar's
    ticks are the map's own values. An all-zero map is drawn hatched with a note saying so (e.g. "no
    positive evidence for cat: the map is all zero"). The attributions are never changed. Only the
    panels drawn get axes, so ``fig.axes`` is: input, bars, then each overlay and its colorbar.
    """
    from mikata.notebook import notebook_figure

    methods = list(dict.fromkeys(a.method for a in attributions))
    specs = list(dict.fromkeys(a.target_spec for a in attributions))
    rows, cols, cells = figure_layout(len(methods), len(specs), max_columns)
    fig = notebook_figure(figsize=(3.1 * cols, 3.0 * rows + 0.4), dpi=100, layout="constrained")  # shows as PNG
    grid = fig.add_gridspec(rows, cols)
    ax = fig.add_subplot(grid[0, 0])
    ax.set_axis_off()
    ax.imshow(image)
    ax.set_title(title or "input", fontsize=9)
    p, ids = probs.topk(min(top, probs.numel()))
    ax = fig.add_subplot(grid[0, 1])
    bars = ax.barh(range(len(p))[::-1], p.tolist(), color="tab:blue")
    ax.bar_label(bars, labels=[f"{v:.3f}" if v < 0.9995 else "1.000" for v in p.tolist()], padding=2, fontsize=7)
    ax.set_yticks(range(len(p))[::-1], [class_names[i][:18] for i in ids.tolist()], fontsize=8)
    ax.set_xlim(0, 1.25)  # room for the value right of a bar near 1
    ax.set_xticks([0, 0.5, 1])
    ax.set_title("top-%d probability" % len(p) if len(p) < probs.numel() else "probabilities", fontsize=9)
    ax.tick_params(axis="x", labelsize=7)
    h, w = image.shape[:2]
    for a in attributions:
        r, c = cells[(specs.index(a.target_spec), methods.index(a.method))]
        heat = a.maps[index].detach().float().cpu().numpy()
        if heat.shape != (h, w):
            heat = np.asarray(Image.fromarray(heat.astype(np.float32), mode="F").resize((w, h), Image.BILINEAR))
        ax = fig.add_subplot(grid[r, c])
        ax.set_axis_off()
        scale = map_scale(heat, a.signed, saturate=a.raw.dim() == 4, cmap=cmap, signed_cmap=signed_cmap)
        name = class_names[a.targets[index]][:20]
        if scale.empty is not None:  # nothing to color: say so instead of a flat blue image
            ax.imshow(hatch(image))
            ax.text(0.5, 0.5, "\n".join(_wrap(scale.note(name) or "", 22)), transform=ax.transAxes, ha="center",
                    va="center", fontsize=7, bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "gray"})
            colorbar(ax, fig, scale).ax.set_visible(False)  # keeps the axes order: overlay, colorbar
        else:
            ax.imshow(image)
            im = ax.imshow(scale.unit(heat), cmap=scale.cmap, alpha=alpha, vmin=0, vmax=1)
            colorbar(ax, fig, scale, im)
        hybrid = "\nhybrid: plain at " + str(a.info["other_activations"])[:40] if hybrid_note(a.method, a.info) else ""
        base = f", baseline {a.info['baseline']}"[:40] if a.info.get("baseline") else ""
        ax.set_title(f"{a.method}{' (signed)' if a.signed else ''}{base}\n{target_label(a.target_spec, name)}{hybrid}",
                     fontsize=8)
    return fig


def target_label(spec: str, name: str) -> str:
    """What a panel explains: ``top1: cat`` for a ranked target, ``class cat`` for a class asked for by name
    or number (never ``cat: cat``)."""
    spec = str(spec)
    if spec.lower() == name.lower() or spec.isdigit() or (len(name) >= 20 and spec.startswith(name)):
        return f"class {name}"
    return f"{spec}: {name}"


def _wrap(text: str, width: int) -> list[str]:
    """``text`` in lines of about ``width`` characters, broken at spaces (a note inside a panel)."""
    import textwrap

    return textwrap.wrap(text, width) or [text]


def explain_figure(
    handle: ModelHandle,
    image: Image.Image | torch.Tensor,
    methods: Sequence[str] = ("gradcam", "guided-gradcam", "smoothgrad"),
    targets="top1",
    layer: str | None = None,
    options: dict | None = None,
    top: int = 5,
    cmap: str | None = None,
    alpha: float = 0.5,
    title: str = "",
):
    """Explain one image (a PIL image, or a preprocessed ``(C, H, W)`` tensor) and return the figure.

    Example:
        >>> fig = mikata.explain_figure(handle, mikata.load_image("chelsea.png"), ["gradcam", "guided-gradcam"], top=3)
        >>> len(fig.axes) >= 4                                    # image, top-3 bars, one overlay per method
        True
        >>> fig.savefig("chelsea_figure.png")
    """
    x = (handle.preprocess([image]) if isinstance(image, Image.Image) else image[None]).to(handle.device)
    attributions = explain(handle, x, methods, targets, layer, options)
    with torch.no_grad():
        probs = handle.model(x).float().softmax(1)[0].cpu()
    shown = to_uint8_image(handle.denormalize(x)[0])
    return draw_figure(shown, attributions, probs, handle.class_names, 0, top, cmap, alpha, title)
