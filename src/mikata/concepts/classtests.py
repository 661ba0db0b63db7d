"""Class-level shortcut tests: does a class rest on its images' context, or on their intensity statistics?

A concept test needs the artefact to be one compact concept. Two kinds of artefact are not: one spread
around the object (a frame, a background: NMF splits it over positions into concepts that each carry
little) and one over every pixel (a brightness or contrast shift of another camera: no place at all).
These two tests need no concept. Each edits up to ``limit`` of the class's sampled images that the model
predicts as the class, and measures how often the prediction flips away and how much P(class) drops:

- ``context``: the image's context (the pixels where the OTHER classes' images hardly vary: an empty
  background, the image's edges; ``compute._reference_data``) filled with the other classes' typical image
  (their per-pixel median: a mean over garments of other shapes paints grey where only some reach).
  On a clean image the context already looks like that reference, so little changes; a frame or a
  background that only this class has is wiped out.
- ``photometric``: each image's intensities mapped by one affine map per image so that its low and high
  quantiles (``QUANTILE`` and 1 - ``QUANTILE`` over all its pixels and channels) become the other classes'
  typical ones (the median over their images). Shapes and textures stay; a dimmer, flatter image becomes
  as bright and contrasted as the others.

A test is a finding when the model needs what it removed: the same thresholds as a concept's deletion test
(``shortcuts.USED_FLIP`` or ``shortcuts.USED_DROP``). The context finding names the concepts whose maps sit
most on the context (what to open first). As for concepts, this is evidence for a person to judge.
"""

from __future__ import annotations

import numpy as np
import torch

from mikata.concepts.shortcuts import USED_DROP, USED_FLIP

QUANTILE = 0.01
TESTS = ("context", "photometric")


def quantiles(x: torch.Tensor) -> torch.Tensor:
    """``(n, 2)``: each image's low and high intensity quantiles over all its pixels and channels."""
    flat = x.flatten(1).float()
    return torch.stack([flat.quantile(QUANTILE, 1), flat.quantile(1 - QUANTILE, 1)], 1)


def photometric(x: torch.Tensor, target: tuple[float, float]) -> torch.Tensor:
    """``x`` ``(n, C, H, W)`` with each image's low/high quantiles mapped onto ``target`` (one affine map per
    image; a flat image only shifts)."""
    q = quantiles(x)
    lo, hi = q[:, 0, None, None, None], q[:, 1, None, None, None]
    scale = (target[1] - target[0]) / (hi - lo)
    scale = torch.where(hi - lo > 1e-6, scale, torch.ones_like(scale))
    return (target[0] + (x - lo) * scale).to(x.dtype)


def context_fill(x: torch.Tensor, mean: np.ndarray, context: np.ndarray) -> torch.Tensor:
    """``x`` with the context pixels (``context`` (H, W) in {0, 1}) replaced by ``mean`` (C, H, W)."""
    m = torch.from_numpy(context).to(x.dtype)[None, None]
    return x * (1 - m) + torch.from_numpy(mean).to(x.dtype)[None] * m


def context_shares(U: np.ndarray, context: np.ndarray, size: tuple[int, int], has: np.ndarray) -> np.ndarray:
    """``(k,)``: per concept, the mean share of its (upsampled, normalized) map's mass on the context, over the
    images that have it (0 for a concept no image has)."""
    from mikata.concepts.describe import upsample

    k = U.shape[-1]
    out = np.zeros(k)
    for j in range(k):
        rows = np.flatnonzero(has[:, j])[:64]
        if not rows.size:
            continue
        maps = np.stack([upsample(U[i, :, :, j], size) for i in rows])
        mass = maps.reshape(len(rows), -1).sum(1).clip(min=1e-12)
        out[j] = float(((maps * context[None]).reshape(len(rows), -1).sum(1) / mass).mean())
    return out


def run_tests(probs, x: torch.Tensor, prob: np.ndarray, live: np.ndarray, c: int, ref: dict) -> dict[str, dict]:
    """Both tests on the images ``x`` (all predicted as class ``c``; ``prob`` their P(c) before, ``live`` their
    predictions); ``probs(x, positions) -> (n, K)`` runs the model (``positions``: a slice of the images, for
    a run whose rows each have their own model). ``ref``: ``{"mean", "context", "range"}``."""
    out = {}
    edits = {"context": lambda b: context_fill(b, ref["mean"], ref["context"]),
             "photometric": lambda b: photometric(b, ref["range"])}
    for name in TESTS:
        if name == "photometric" and ref.get("range") is None:
            continue
        after = torch.cat([probs(edits[name](x[s:s + 32]), slice(s, s + 32)) for s in range(0, len(x), 32)]).numpy()
        was = live == c
        flips = was & (after.argmax(1) != c)
        out[name] = {"flip_rate": float(flips.sum() / was.sum()) if was.any() else 0.0,
                     "mean_drop": float((prob - after[:, c]).mean()), "images": int(len(x))}
    return out


def findings(results: dict[str, dict], cls: str, context_area: float, on_context: list[tuple[str, float]]
             ) -> list[dict]:
    """The entries of ``class_findings`` for one class: per test its deletion numbers, whether it is a finding,
    and the sentence."""
    out = []
    for name, d in results.items():
        used = d["images"] > 0 and (d["flip_rate"] >= USED_FLIP or d["mean_drop"] >= USED_DROP)
        done = (f"on {d['images']} of its images predicted as {cls} flips {round(100 * d['flip_rate'])}% of the "
                f"predictions and drops P({cls}) by {d['mean_drop']:.2f}")
        if name == "context":
            text = (f"{cls} and its context: filling the image's context (the {round(100 * context_area)}% of the "
                    f"image where the other classes' images are alike: its edges, an empty background) with the "
                    f"other classes' typical image (per-pixel median) {done}.")
            named = [n for n, _ in on_context[:2]]
            if on_context:
                text += " Most on the context: " + ", ".join(
                    f"{n} ({round(100 * s)}% of its map)" for n, s in on_context[:2]) + "."
            if used:
                text += (f" Suspected shortcut: {cls} rests on its context; look at the edges and background of "
                         "its images (a frame, a background, a mark) and judge.")
        else:
            text = (f"{cls} and its intensities: mapping each image's darkest and brightest "
                    f"{round(100 * QUANTILE)}% onto the other classes' typical levels (one brightness and contrast "
                    f"change per image, shapes kept) {done}.")
            named = []
            if used:
                text += (f" Suspected shortcut: {cls} rests on brightness or contrast; look for a lighting, "
                         "exposure or camera difference and judge.")
        out.append({"test": name, "deletion": d, "shortcut": bool(used), "concepts": named, "evidence": text})
    return out
