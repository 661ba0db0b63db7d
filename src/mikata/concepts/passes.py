"""The model passes concepts need: the run's images decoded with the run's preprocessing, and the layer's
activations (with the class logit's gradients) through ``attribution.passes.gradient_pass`` (hooks from
``mikata.hooks``, parameters frozen, nothing below the layer differentiated), on the model's device."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from mikata.concepts import describe as D
from mikata.errors import ImageDecodeError, MikataError

log = logging.getLogger(__name__)
BATCH = 32


def decode_images(service, ids: Sequence[int], paths: dict[int, Path] | None = None):
    """The run's preprocessing of these images: ``(n, C, H, W)``, their original sizes ``(n, 2)`` and the ids
    kept (an image that cannot be decoded any more is left out with a warning)."""
    from mikata.analysis.media import image_files
    from mikata.data.images import load_image

    pre = service.preprocessing
    files = paths if paths is not None else image_files(service.store, ids)
    images, sizes, kept = [], [], []
    for i in ids:
        f = files.get(int(i))
        if f is None:
            log.warning("concepts: image %s is no longer inside the dataset root; left out", i)
            continue
        try:
            img = load_image(f, pre.mode)
            images.append(pre.preprocess([img])[0])
        except ImageDecodeError as e:
            log.warning("concepts: %s; left out", e)
            continue
        sizes.append((img.width, img.height))
        kept.append(int(i))
    if not images:
        return None, np.zeros((0, 2), np.int64), []
    return torch.stack(images), np.array(sizes, np.int64), kept


def geometries(pre, sizes: np.ndarray) -> list[D.Geometry]:
    h, w = pre.input_size
    out = []
    for width, height in sizes:
        rw, rh, left, top = pre.geometry(int(width), int(height))
        out.append(D.Geometry(int(width), int(height), rw, rh, left, top, w, h))
    return out


def layer_pass(service, ids: Sequence[int], cls: int, layer: str, grads: bool = True, advance=None):
    """Activations ``(n, h, w, C)``, gradients of the class logit (or None), P(class) ``(n,)``, the live
    predictions ``(n,)``, original sizes and the ids kept, batch by batch on the model's device
    (``advance(images)`` after each batch: a progress bar's ``update``)."""
    from mikata.attribution.passes import gradient_pass

    h = service.handle
    acts, gs, probs, live, sizes, kept = [], [], [], [], [], []
    for s in range(0, len(ids), BATCH):
        x, sz, k = decode_images(service, ids[s:s + BATCH])
        if advance is not None:
            advance(len(ids[s:s + BATCH]))
        if x is None:
            continue
        x = x.to(h.device)
        target = torch.full((x.shape[0], 1), int(cls), dtype=torch.long, device=x.device)
        p = gradient_pass(h, x, target, layer=layer, modes={"plain": ("layer",)} if grads else {})
        a = p.activation
        if a is None or a.dim() != 4:
            raise MikataError(f"layer {layer} gives shape {None if a is None else tuple(a.shape)}, not a (C, h, w) "
                              "map per image; pick a convolutional layer (`mikata layers MODEL` lists them)")
        acts.append(a.float().permute(0, 2, 3, 1).cpu())  # (n, h, w, C)
        if grads:
            gs.append(p.layer_grads["plain"][0].float().permute(0, 2, 3, 1).cpu())
        pr = torch.softmax(p.logits.float(), 1)
        probs.append(pr[:, cls].cpu())
        live.append(pr.argmax(1).cpu())
        sizes.append(sz)
        kept += k
    if not kept:
        return None
    return (torch.cat(acts), torch.cat(gs) if grads else None, torch.cat(probs).numpy(), torch.cat(live).numpy(),
            np.concatenate(sizes), np.array(kept, np.int64))
