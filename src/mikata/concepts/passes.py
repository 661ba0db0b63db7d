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


def is_crossval(service) -> bool:
    """Whether each row's prediction came from its own fold model: a cross-validation run and no model given."""
    return not service.source.given and isinstance(service.store.manifest.get("crossval"), dict)


def shared_handle(service):
    """The model for what every row shares (layers, device): the run's, or a cross-validation run's first fold's."""
    return service.handle_for() if is_crossval(service) else service.handle


def row_models(service, ids: Sequence[int]) -> list[tuple[object, np.ndarray]]:
    """``[(model, positions in ids), ...]``: the model that made each row's prediction. One group (the run's
    model, or the one the user gave) except on a cross-validation run, where each row goes to the fold model
    that never trained on it (``MapService.handle_for``: the row's split names its fold)."""
    if not is_crossval(service):
        return [(service.handle, np.arange(len(ids)))]
    folds: dict[str, list[int]] = {}
    for j, i in enumerate(ids):
        row = service.store.image(int(i))
        folds.setdefault(str((row or {}).get("split") or ""), []).append(j)
    return [(service.handle_for({"split": name, "id": int(ids[pos[0]])}), np.array(pos)) for name, pos in folds.items()]


def predict(service, x: torch.Tensor, ids: Sequence[int], layer: str | None = None,
            delta: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax ``(n, K)`` of the images ``x`` of rows ``ids``, each by the model that made its prediction
    (``row_models``), in inference mode; ``delta`` ``(n, C, h, w)``: taken off ``layer``'s output first (the
    direction-removal deletion)."""
    from mikata.hooks import attached, get_layer

    out = torch.empty(0)
    for h, pos in row_models(service, ids):
        idx = torch.from_numpy(pos)
        hooks = [] if delta is None else [(get_layer(h.net, layer), "forward",
                                           subtract_hook(delta[idx], h.layout(layer)))]
        with attached(hooks), torch.inference_mode():
            p = torch.softmax(h.model(x[idx].to(h.device)).float(), 1).cpu()
        if out.numel() == 0:
            out = torch.empty(len(ids), p.shape[1])
        out[idx] = p
    return out


def subtract_hook(delta: torch.Tensor, layout):
    """A forward hook that takes ``delta`` ``(b, C, h, w)`` off the layer's output in the output's own layout
    (``FeatureLayout``: channels-first, channels-last, or tokens with a prefix of class/register tokens)."""

    def hook(mod, args, out):
        d = delta.to(out.device, out.dtype)
        if layout.kind == "nhwc":
            return out - d.permute(0, 2, 3, 1)
        if layout.kind == "tokens":  # (b, tokens, C): the patch tokens follow the prefix in row-major order
            out = out.clone()
            cells = d.shape[2] * d.shape[3]
            out[:, layout.prefix:layout.prefix + cells] -= d.flatten(2).transpose(1, 2)
            return out
        return out - d

    return hook


def decode_images(service, ids: Sequence[int], paths: dict[int, Path] | None = None):
    """The run's preprocessing of these images: ``(n, C, H, W)``, their original sizes ``(n, 2)`` and the ids
    kept (an image that cannot be decoded any more is left out with a warning)."""
    from mikata.presentation.media import image_files
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
    predictions ``(n,)``, original sizes and the ids kept (in the order of ``ids``), batch by batch on the
    model's device, each row through the model that made its prediction (``row_models``: a cross-validation
    run's fold models); ``advance(images)`` after each batch: a progress bar's ``update``."""
    groups = row_models(service, ids)
    if len(groups) == 1:
        return _layer_pass(service, groups[0][0], ids, cls, layer, grads, advance)
    parts = [_layer_pass(service, h, [ids[j] for j in pos], cls, layer, grads, advance) for h, pos in groups]
    parts = [p for p in parts if p is not None]
    if not parts:
        return None
    kept = np.concatenate([p[5] for p in parts])
    order = np.argsort(np.array([{int(i): j for j, i in enumerate(ids)}[int(k)] for k in kept]), kind="stable")
    cat = [torch.cat([p[0] for p in parts])[order], torch.cat([p[1] for p in parts])[order] if grads else None]
    return (*cat, *(np.concatenate([p[n] for p in parts])[order] for n in (2, 3, 4, 5)))


def _layer_pass(service, h, ids: Sequence[int], cls: int, layer: str, grads: bool, advance):
    from mikata.attribution.passes import gradient_pass

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
