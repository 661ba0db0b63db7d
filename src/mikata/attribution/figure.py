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
from mikata.attribution.result import Attribution
from mikata.models.handle import ModelHandle
from mikata.render import display_map, to_uint8_image


def draw_figure(
    image: np.ndarray,
    attributions: Sequence[Attribution],
    probs: torch.Tensor,
    class_names: Sequence[str],
    index: int = 0,
    top: int = 5,
    cmap: str = "jet",
    alpha: float = 0.5,
    title: str = "",
):
    """A matplotlib Figure for image ``index`` of the batch the attributions were computed on.

    ``image``: ``(H, W, 3)`` uint8 as shown to people; ``probs``: that image's softmax ``(K,)``.
    Rows are target ranks, columns methods; maps are min-max scaled for display only (pixel maps
    also saturate their top 0.5%); the attributions themselves are never changed.
    """
    from matplotlib.figure import Figure

    methods = list(dict.fromkeys(a.method for a in attributions))
    specs = list(dict.fromkeys(a.target_spec for a in attributions))
    cols, rows = 2 + len(methods), max(1, len(specs))
    fig = Figure(figsize=(3.1 * cols, 3.0 * rows + 0.4), dpi=100, layout="constrained")
    axes = np.atleast_2d(fig.subplots(rows, cols, squeeze=False))
    for ax in axes.flat:
        ax.set_axis_off()
    axes[0, 0].imshow(image)
    axes[0, 0].set_title(title or "input", fontsize=9)
    p, ids = probs.topk(min(top, probs.numel()))
    ax = axes[0, 1]
    ax.set_axis_on()
    ax.barh(range(len(p))[::-1], p.tolist(), color="tab:blue")
    ax.set_yticks(range(len(p))[::-1], [class_names[i][:18] for i in ids.tolist()], fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_title("top-%d probability" % len(p), fontsize=9)
    ax.tick_params(axis="x", labelsize=7)
    h, w = image.shape[:2]
    for a in attributions:
        r, c = specs.index(a.target_spec), 2 + methods.index(a.method)
        heat = a.maps[index].detach().float().cpu().numpy()
        if heat.shape != (h, w):
            heat = np.asarray(Image.fromarray(heat.astype(np.float32), mode="F").resize((w, h), Image.BILINEAR))
        ax = axes[r, c]
        ax.imshow(image)
        shown = display_map(heat, saturate=a.raw.dim() == 4)
        im = ax.imshow(shown, cmap=cmap, alpha=alpha, vmin=0, vmax=1)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
        name = class_names[a.targets[index]][:20]
        ax.set_title(f"{a.method}\n{a.target_spec}: {name}", fontsize=8)
    return fig


def explain_figure(
    handle: ModelHandle,
    image: Image.Image | torch.Tensor,
    methods: Sequence[str] = ("gradcam", "guided-gradcam", "smoothgrad"),
    targets="top1",
    layer: str | None = None,
    options: dict | None = None,
    top: int = 5,
    cmap: str = "jet",
    alpha: float = 0.5,
    title: str = "",
):
    """Explain one image (a PIL image, or a preprocessed ``(C, H, W)`` tensor) and return the figure."""
    x = (handle.preprocess([image]) if isinstance(image, Image.Image) else image[None]).to(handle.device)
    attributions = explain(handle, x, methods, targets, layer, options)
    with torch.no_grad():
        probs = handle.model(x).float().softmax(1)[0].cpu()
    shown = to_uint8_image(handle.denormalize(x)[0])
    return draw_figure(shown, attributions, probs, handle.class_names, 0, top, cmap, alpha, title)
