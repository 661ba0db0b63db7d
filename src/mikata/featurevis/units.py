"""One call per kind of unit: channels, neurons and classes of a model, and DeepDream on a photo.

These resolve names (class names, channel ranges) against the model, so mistakes surface as
``ChoiceError`` listing what is valid, then call ``render`` once for all units together.

Example:
    >>> res = visualize_classes(handle, ["zebra", "castle", "strawberry"])    # doctest: +SKIP
    >>> res.save("out/")                                                       # doctest: +SKIP
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from mikata.featurevis import objectives as O
from mikata.featurevis.optimize import Rendering, RenderOptions, render
from mikata.hooks import get_layer
from mikata.models.handle import ModelHandle
from mikata.progress import one_line


def visualize_channels(handle: ModelHandle, layer: str, channels: Sequence[int],
                       options: RenderOptions | None = None, rectify: bool = False,
                       start: torch.Tensor | None = None) -> Rendering:
    """Image ``i`` maximizes the mean activation of channel ``channels[i]`` of ``layer``.

    For a first conv use ``rectify=True`` and ``param="pixel"``: edge and color textures.
    """
    get_layer(handle.net, layer)
    return render(handle, O.channel(layer, list(channels), rectify), options, start=start)


def visualize_neurons(handle: ModelHandle, layer: str, channels: Sequence[int], y: int | None = None,
                      x: int | None = None, options: RenderOptions | None = None) -> Rendering:
    """Image ``i`` maximizes channel ``channels[i]`` at position ``(y, x)`` (center if omitted)."""
    get_layer(handle.net, layer)
    return render(handle, O.neuron(layer, list(channels), y, x), options)


def visualize_classes(handle: ModelHandle, classes: Sequence[int | str], options: RenderOptions | None = None,
                      layer: str | None = None) -> Rendering:
    """Image ``i`` maximizes the pre-softmax logit of ``classes[i]`` (names or ids).

    With ``layer``, the classes are read as channels of that layer instead (e.g. a final ``fc``).
    """
    ids = [handle.class_index(c) for c in classes]
    names = [handle.class_names[i] for i in ids]
    if layer is not None:
        get_layer(handle.net, layer)
        objective = O.channel(layer, ids)
    else:
        objective = O.class_logit(ids, names)
    return render(handle, objective, options, labels=names)


def load_start_image(handle: ModelHandle, image: str | os.PathLike | Image.Image) -> torch.Tensor:
    """A file or PIL image as ``(1, C, H, W)`` in [0, 1], decoded with mikata's robust loader."""
    if not isinstance(image, Image.Image):
        from mikata.data import load_image

        image = load_image(image, mode=handle.mode)
    arr = np.asarray(image, dtype=np.float32) / 255.0
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)  # (C, H, W)
    return torch.from_numpy(np.ascontiguousarray(arr))[None]


def deepdream(handle: ModelHandle, layer: str, image: str | os.PathLike | Image.Image | None = None,
              options: RenderOptions | None = None) -> Rendering:
    """DeepDream: amplify everything ``layer`` sees (mean squared activation), from a photo or noise."""
    get_layer(handle.net, layer)
    start = load_start_image(handle, image) if image is not None else None
    return render(handle, O.layer_energy(layer), options, n=1, start=start, labels=[f"deepdream-{layer}"])


@one_line  # in a notebook, every step of the call on one line
def visualize(
    handle: ModelHandle,
    layer: str | None = None,
    channels: Sequence[int] | None = None,
    classes: Sequence[int | str] | None = None,
    neuron: tuple[int, int, int] | None = None,
    deepdream: bool = False,
    image: str | os.PathLike | Image.Image | None = None,
    options: RenderOptions | None = None,
    rectify: bool = False,
) -> Rendering:
    """What a unit responds to: exactly one of ``classes`` (pre-softmax logits; with ``layer``, channels
    of that layer), ``channels`` of ``layer``, one ``neuron=(c, y, x)`` of ``layer``, or ``deepdream``
    (the whole ``layer`` amplified). ``image`` starts from a photo instead of noise. The result is a
    ``Rendering``: ``.grid()``, ``.save(folder)``, and in Jupyter it shows its grid.

    Example:
        >>> r = mikata.visualize(handle, classes=["espresso"], options=mikata.RenderOptions(size=64, steps=4))
        >>> r.labels, tuple(r.images.shape)
        (['espresso'], (1, 3, 64, 64))
        >>> [f.name for f in r.save("vis/")]                      # the grid, and one PNG per unit
        ['grid.png', 'espresso.png']
        >>> start = mikata.visualize(handle, layer="blocks.3", channels=range(2), image="chelsea.png",
        ...                          options=mikata.RenderOptions(size=64, steps=4))   # from a photo
    """
    from mikata.errors import MikataError

    asked = [n for n, v in (("classes", classes), ("channels", channels), ("neuron", neuron)) if v is not None]
    asked += ["deepdream"] if deepdream else []
    if len(asked) != 1:
        raise MikataError(f"visualize needs exactly one of classes, channels, neuron or deepdream (got {asked or 'none'})")
    if classes is not None:
        return visualize_classes(handle, list(classes), options, layer=layer)
    if layer is None:
        raise MikataError(f"{asked[0]} needs a layer; `mikata layers MODEL` lists them")
    if deepdream:
        return _deepdream(handle, layer, image, options)
    start = load_start_image(handle, image) if image is not None else None
    if channels is not None:
        return visualize_channels(handle, layer, list(channels), options, rectify, start=start)
    get_layer(handle.net, layer)
    return render(handle, O.neuron(layer, [neuron[0]], neuron[1], neuron[2]), options, start=start)


_deepdream = deepdream  # ``visualize``'s ``deepdream`` flag shadows the function's name inside it
