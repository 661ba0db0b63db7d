"""Concept maps and decompositions of one image, on demand.

For an image the atlas sampled, the concept's map is the factorization's own coefficients ``U`` on the
layer grid (no model needed); for any other image of the run, its activations are projected onto the
class's concept directions by non-negative least squares (``nmf.nnls_project``), which needs one forward.
Maps are returned over the ORIGINAL image: the grid is upsampled to the model's input, placed where the
center crop took it from, and resized to the original size (zero where the crop cut the image).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from mikata.concepts.atlas import Atlas, load_atlas
from mikata.errors import MikataError


def _atlas(run_dir) -> Atlas:
    atlas = load_atlas(run_dir)
    if atlas is None:
        raise MikataError(f"{run_dir} has no current concepts (none computed, or the run changed since); "
                          f"run `mikata concepts {run_dir}` first")
    return atlas


def _service(run_dir, model, device):
    from mikata.presentation.maps import MapService

    handle = model if model is not None and not isinstance(model, str) else None
    return MapService(run_dir, handle=handle, model=model if isinstance(model, str) else None, device=device or "cpu")


def _grid_coefficients(atlas: Atlas, c: int, image_id: int, service, grads: bool = False):
    """``U`` ``(h, w, k)`` of one image for class ``c``'s concepts (and its contributions ``(k,)`` when
    ``grads``), plus its original size: stored when the atlas sampled it, else projected."""
    from mikata.concepts.passes import layer_pass
    from mikata.concepts.importance import contributions
    from mikata.concepts.nmf import nnls_project, split_gradient, split_sign

    a = atlas.arrays(c)
    where = np.nonzero(a["ids"] == int(image_id))[0]
    if where.size:
        i = int(where[0])
        return a["U"][i], (a["contrib"][i] if grads else None), tuple(int(v) for v in a["sizes"][i])
    if service is None:
        return None
    got = layer_pass(service, [int(image_id)], c, atlas.layer, grads=grads)
    if got is None:
        raise MikataError(f"image {image_id} cannot be decoded any more")
    A, G, _, _, sizes, _ = got  # (1, h, w, C)
    W = torch.from_numpy(a["W"])
    if W.shape[1] == 2 * A.shape[-1]:  # the class was factorized sign-split (nmf.split_sign)
        A, G = split_sign(A), (split_gradient(G) if G is not None else None)
    _, gh, gw, C = A.shape
    U = nnls_project(A.reshape(-1, C), W).reshape(1, gh * gw, -1)  # (1, s, k)
    per = contributions(U, W, G.reshape(1, -1, C), A.reshape(1, -1, C))[0][0].numpy() if grads else None
    return U.reshape(gh, gw, -1).numpy(), per, (int(sizes[0][0]), int(sizes[0][1]))


def to_original(grid: np.ndarray, pre, size: tuple[int, int]) -> np.ndarray:
    """A layer-grid map ``(h, w)`` over the ORIGINAL ``size`` = (width, height) image ``(height, width)``."""
    import torch.nn.functional as F

    width, height = size
    H, W = pre.input_size
    rw, rh, left, top = pre.geometry(width, height)
    t = torch.from_numpy(np.ascontiguousarray(grid, np.float32))[None, None]
    crop = F.interpolate(t, size=(H, W), mode="bilinear", align_corners=False)[0, 0]  # (H, W) over the crop
    canvas = torch.zeros(rh, rw)
    canvas[top:top + H, left:left + W] = crop[: max(0, min(H, rh - top)), : max(0, min(W, rw - left))]
    return F.interpolate(canvas[None, None], size=(height, width), mode="bilinear",
                         align_corners=False)[0, 0].numpy().astype(np.float32)


def concept_heatmap(run_dir: str | os.PathLike, image_id: int, concept: str, *, model=None,
                    device: str | None = "cpu") -> np.ndarray:
    """Where ``concept`` ("Coat/2") is in image ``image_id``: ``(H, W)`` float32 over the original image, in the
    layer's units (the concept's coefficient). ``model``: a loaded ``ModelHandle`` or a spec, for images
    the atlas did not sample (they need one forward)."""
    atlas = _atlas(run_dir)
    c, k, _ = atlas.concept(concept)
    with _service(run_dir, model, device) as service:
        service._row(int(image_id))  # an unknown id is an UnknownImageError
        U, _, size = _grid_coefficients(atlas, c, int(image_id), service)
        return to_original(U[:, :, k], service.preprocessing, size)


def image_decomposition(run_dir: str | os.PathLike, image_id: int, *, model=None,
                        device: str | None = "cpu") -> list[tuple[str, float]]:
    """The image's predicted class explained by that class's concepts: ``[("Coat/2", share), ...]``, largest
    first, shares of the positive concept evidence summing to 1 (``importance.shares``). An empty list when
    the predicted class has no concepts in the atlas."""
    from mikata.concepts.importance import shares

    atlas = _atlas(run_dir)
    with _service(run_dir, model, device) as service:
        row = service._row(int(image_id))
        pred = service.identity["classes"][int(row["pred"])]
        if pred not in atlas.doc["classes"]:
            return []
        c = atlas.class_id(pred)
        _, per, _ = _grid_coefficients(atlas, c, int(image_id), service, grads=True)
    s = shares(torch.from_numpy(np.asarray(per, np.float32))[None])[0].numpy()
    names = [e["concept"] for e in atlas.doc["classes"][pred]]
    return sorted(((n, float(v)) for n, v in zip(names, s)), key=lambda t: -t[1])


def concept_images(run_dir: str | os.PathLike, concept: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The class's sampled images by the concept's strength, strongest first: ids ``(n,)`` int64, strength
    ``(n,)`` float32 (its largest coefficient in the image) and ``present`` ``(n,)`` bool (the rule errors
    and slices use: ``describe.present``)."""
    atlas = _atlas(run_dir)
    c, k, _ = atlas.concept(concept)
    a = atlas.arrays(c)
    order = np.argsort(-a["strength"][:, k], kind="stable")
    return a["ids"][order], a["strength"][order, k].astype(np.float32), atlas.present(c)[order, k]


def concept_location_map(run_dir: str | os.PathLike, concept: str) -> np.ndarray:
    """``(h, w)`` in [0, 1] on the layer grid: where the concept sits on average in the images that have it."""
    from mikata.concepts.describe import location_map

    atlas = _atlas(run_dir)
    c, k, _ = atlas.concept(concept)
    return location_map(atlas.arrays(c)["U"], k, atlas.present(c)[:, k])
