"""``explain_images``: attribution maps for image files, PIL images or a batch, as an ``Explanation``.

The notebook face of ``explain``: it takes what a person has at hand (a path, a PIL image, a list of
them, or an already preprocessed ``(N, C, H, W)`` batch), runs every method in one shared pass, and
returns an ``Explanation`` that is a list of ``Attribution`` (one per method and target rank) and
draws itself in Jupyter as one explanation figure per image (image | top-k bars | one overlay per method).
The first call on a model says which layer the CAM maps come from and what part of each image the
model sees, as the command line does (``mikata.progress.notice``).

Example:
    >>> ex = mikata.explain(handle, "chelsea.png", ["gradcam", "guided-gradcam"], targets="top2")
    >>> len(ex), tuple(ex[0].maps.shape)          # 2 methods x 2 target ranks; (N, H, W) maps
    (4, (1, 224, 224))
    >>> ex.figure().savefig("chelsea_explained.png")   # a new file beside the input, never over it
"""

from __future__ import annotations

import os
from typing import Sequence

import torch
from PIL import Image

from mikata.attribution.engine import explain
from mikata.attribution.result import Attribution
from mikata.models.handle import ModelHandle

ImageInput = str | os.PathLike | Image.Image
MAX_SHOWN = 16  # images drawn in a notebook display; figure(i) draws any


class Explanation(list):
    """The attributions of one call (a ``list`` of ``Attribution``) with what is needed to draw them.

    Example:
        >>> ex = mikata.explain(handle, "chelsea.png", ["gradcam"], targets="top2")
        >>> ex                                                    # a list of Attribution; draws itself in Jupyter
        Explanation(1 image(s), methods=['gradcam'], 2 maps)
        >>> [(a.target_spec, handle.class_names[a.targets[0]]) for a in ex]
        [('top1', 'tiger cat'), ('top2', 'Egyptian cat')]
    """

    def __init__(self, attributions: Sequence[Attribution], handle: ModelHandle, x: torch.Tensor,
                 probs: torch.Tensor, titles: Sequence[str]):
        super().__init__(attributions)
        self.handle = handle
        self.x = x          # (N, C, H, W) the preprocessed batch
        self.probs = probs  # (N, K) softmax, on the CPU
        self.titles = list(titles)

    def figure(self, index: int = 0, top: int = 5, cmap: str | None = None, alpha: float = 0.5):
        """The matplotlib figure of image ``index``: input, top-k probabilities, one overlay per method."""
        from mikata.attribution.figure import draw_figure
        from mikata.display import to_uint8_image

        shown = to_uint8_image(self.handle.denormalize(self.x[index:index + 1])[0])
        return draw_figure(shown, list(self), self.probs[index], self.handle.class_names, index, top, cmap, alpha,
                           self.titles[index])

    def _png(self, index: int) -> bytes:
        """Image ``index``'s figure as PNG, drawn once: Jupyter asks for every representation of a result."""
        from mikata.notebook import figure_png

        cache = self.__dict__.setdefault("_pngs", {})
        if index not in cache:
            cache[index] = figure_png(self.figure(index))
        return cache[index]

    def _repr_png_(self) -> bytes:
        """The first image's figure (a front end that shows no HTML)."""
        return self._png(0)

    def _repr_html_(self) -> str:
        """One row per image: its figure, under its (escaped) title."""
        from mikata.notebook import STYLE, esc, img_tag

        rows = [f"<div><div><b>{esc(title)}</b></div>{img_tag(self._png(i), alt=title)}</div>"
                for i, title in enumerate(self.titles[:MAX_SHOWN])]
        more = (f"<div>... and {len(self.x) - MAX_SHOWN} more image(s): <code>explanation.figure(i)</code></div>"
                if len(self.x) > MAX_SHOWN else "")
        methods = ", ".join(dict.fromkeys(a.method for a in self))
        return (f"<div>{STYLE}<div>Explanation: {len(self.x)} image(s), {esc(methods)}</div>"
                f"{''.join(rows)}{more}</div>")

    def __repr__(self) -> str:
        methods = list(dict.fromkeys(a.method for a in self))
        return f"Explanation({len(self.x)} image(s), methods={methods}, {len(self)} maps)"


def _as_batch(handle: ModelHandle, images) -> tuple[torch.Tensor, list[str]]:
    from mikata.data.images import load_image

    if isinstance(images, torch.Tensor):
        x = images if images.dim() == 4 else images[None]  # (N, C, H, W)
        return x, [f"image {i}" for i in range(len(x))]
    items = [images] if isinstance(images, (str, os.PathLike, Image.Image)) else list(images)
    mode = handle.mode
    pils, titles = [], []
    for item in items:
        if isinstance(item, Image.Image):
            pils.append(item)
            titles.append(f"image {len(titles)}")
        else:
            pils.append(load_image(item, mode))
            titles.append(os.path.basename(os.fspath(item)))
    return handle.preprocess(pils), titles


def explain_images(
    handle: ModelHandle,
    images: ImageInput | Sequence[ImageInput] | torch.Tensor,
    methods: Sequence[str] = ("gradcam",),
    targets="top1",
    layer: str | None = None,
    options: dict[str, dict] | None = None,
) -> Explanation:
    """Explain ``images`` with ``methods`` for ``targets`` ("top1", "top3", a class id or name, or a list).

    See ``mikata.attribution.explain`` for ``layer`` and per-method ``options``; an unreadable file
    raises ``ImageDecodeError`` naming it.

    Example:
        >>> ex = mikata.explain(handle, ["chelsea.png", "coffee.png"], ["gradcam", "guided-gradcam"])
        >>> [a.method for a in ex], tuple(ex[0].maps.shape)      # one Attribution per method, a map per image
        (['gradcam', 'guided-gradcam'], (2, 224, 224))
        >>> [handle.class_names[t] for t in ex[0].targets]        # "top1": each image's predicted class
        ['tiger cat', 'espresso']
        >>> ex.figure(1).savefig("coffee_explained.png")          # beside the input, never over it
    """
    from mikata.progress import notice

    x, titles = _as_batch(handle, images)
    notice("preprocessing: %s", handle.preprocessing.describe(), once=handle.preprocessing)
    attributions = explain(handle, x, methods, targets, layer, options, progress=None)
    cam = next((a for a in attributions if a.layer is not None and a.raw.dim() == 3), None)
    if cam is not None and layer is None:  # the layer was chosen for the user: say which, once per model
        from mikata.models.layers import describe_cam_layer

        notice(describe_cam_layer(cam.layer, tuple(cam.raw.shape[1:])), once=handle)
    with torch.no_grad():
        probs = handle.model(x.to(handle.device)).float().softmax(1).cpu()  # (N, K); maps come back on x's device
    return Explanation(attributions, handle, x, probs, titles)
