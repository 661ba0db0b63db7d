"""Baselines (reference inputs) for Integrated Gradients, DeepLIFT and occlusion, in model input space.

An attribution relative to a baseline is blind wherever the image equals the baseline: IG, DeepLIFT
and occlusion all weigh a pixel by ``x - x0``, so a black baseline gives zero attribution to black
pixels (a dark defect), a white one to white pixels. The names, each made in the model's input
space (after the transform's normalization), so "black" is black pixels, not a zero tensor:

- ``black`` / ``white``: pixel value 0 / 1 in every channel, normalized as the model's inputs are;
- ``mean``: each image's own per-channel mean colour (the default, see below);
- ``zero``: a zero tensor, which is the normalization's mean colour (ImageNet's for most models);
- ``blur``: a Gaussian blur of the image (sigma 10 px at 224 px, scaled with the input size);
- ``uniform-noise``: uniform random pixels in [0, 1], seeded (``noise`` is accepted for it);
- a FILE: an image (decoded and preprocessed exactly as the inputs) or a ``.npy`` array of pixel
  values in [0, 1], shaped ``(H, W)``, ``(C, H, W)`` or ``(H, W, C)`` at the model's input size;
- several, comma-separated, or ``expected`` (= ``black,white,mean,blur,uniform-noise``): the
  attribution is the mean over the baselines, as expected gradients averages over references
  (Erion et al. 2021), so no single colour hides a region; ``draws`` > 1 draws that many seeds of each
  random baseline (``uniform-noise``).

Default (``auto``): the image's own mean colour. It is chosen from the data because it sits inside
the image's range of tones: pixels darker than the image's average (a dark crack) and brighter ones
(a glare) both lie away from it, so neither kind of defect is blind, as one of them always is with
black or white.

Example:
    >>> parse_baselines("expected")
    ['black', 'white', 'mean', 'blur', 'uniform-noise']
    >>> parse_baselines("auto"), baseline_label("auto"), baseline_label("black,white")
    (['mean'], 'mean', 'mean of black, white')
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from mikata.errors import ChoiceError, MikataError
from mikata.models.handle import ModelHandle

NAMES = ("black", "white", "mean", "zero", "blur", "uniform-noise")
ALIASES = {"noise": "uniform-noise", "auto": "mean"}
EXPECTED = ("black", "white", "mean", "blur", "uniform-noise")
RANDOM = ("uniform-noise",)
DEFAULT = "auto"
CHOICES = ("auto", *NAMES, "expected")
METHODS = ("integrated-gradients", "deeplift", "occlusion")  # the methods that take a baseline


class BaselineError(MikataError, ValueError):
    """A baseline that cannot be made: an unknown name, or a file of the wrong kind, size or values."""


def _is_file(text: str) -> bool:
    return os.sep in text or "/" in text or os.path.splitext(text)[1] != "" or os.path.exists(text)


def parse_baselines(spec: str | Sequence[str] | torch.Tensor) -> list[str]:
    """The baseline names (or file paths) a text asks for: ``"black"``, ``"black,white"``, ``"expected"``,
    ``"auto"`` (the default: ``mean``), a path. An unknown name raises ``BaselineError`` listing them."""
    if isinstance(spec, torch.Tensor):
        return ["tensor"]
    parts = [p.strip() for p in (spec.split(",") if isinstance(spec, str) else spec)]
    out: list[str] = []
    for p in filter(None, parts):
        low = p.lower()
        if low == "expected":
            names = list(EXPECTED)
        elif low in NAMES or low in ALIASES:
            names = [ALIASES.get(low, low)]
        elif _is_file(p):
            names = [p]
        else:
            raise ChoiceError("baseline", p, list(CHOICES), "Several with commas, or an image / .npy file")
        out += [n for n in names if n not in out]
    if not out:
        raise BaselineError(f"no baseline in {spec!r}; use one of {', '.join(CHOICES)} or an image / .npy file")
    return out


def baseline_label(spec: str | Sequence[str] | torch.Tensor, draws: int = 1) -> str:
    """How figure titles and scorecard rows name a baseline: ``mean``, ``mean of black, white``,
    ``file cell.png``, ``uniform-noise x4``."""
    if isinstance(spec, torch.Tensor):
        return "given tensor"
    names = parse_baselines(spec)
    shown = [(f"file {os.path.basename(n)}" if n not in NAMES else n) + (f" x{draws}" if n in RANDOM and draws > 1
                                                                         else "") for n in names]
    return shown[0] if len(shown) == 1 else "mean of " + ", ".join(shown)


def check_draws(spec: str | Sequence[str], draws: int) -> None:
    """``draws`` > 1 needs a random baseline among ``spec`` (one black baseline drawn twice is the same)."""
    if draws < 1:
        raise BaselineError(f"--baselines must be at least 1, got {draws}")
    if draws > 1 and not any(n in RANDOM for n in parse_baselines(spec)):
        raise BaselineError(f"--baselines {draws} draws random baselines, and {spec!r} has none; add uniform-noise "
                            "(e.g. --baseline uniform-noise or expected) or leave --baselines out")


def _stats(handle: ModelHandle, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    c = x.shape[1]
    mean = torch.tensor(handle.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(handle.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    if mean.shape[1] != c:  # a grayscale model whose stats were given once
        mean, std = mean[:, :1].expand(1, c, 1, 1), std[:, :1].expand(1, c, 1, 1)
    return mean, std


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(N, C, H, W)`` with replicated borders (radius 3 sigma, cut to the image)."""
    radius = max(1, min(int(3 * sigma), x.shape[-1] - 1, x.shape[-2] - 1))
    r = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-r.pow(2) / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    y = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    y = F.conv2d(y, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(y, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def load_baseline_file(handle: ModelHandle, path: str, like: torch.Tensor) -> torch.Tensor:
    """A baseline from a file, ``(1, C, H, W)`` in model input space on ``like``'s device: an image is
    decoded and preprocessed as the inputs are; a ``.npy`` holds pixel values in [0, 1] at the input size.
    Anything else (missing, wrong shape, values outside [0, 1]) raises one ``BaselineError`` line."""
    _, c, h, w = like.shape
    if not os.path.isfile(path):
        raise BaselineError(f"baseline file {path}: no such file; give an image or a .npy of pixel values in [0, 1]")
    if path.lower().endswith(".npy"):
        try:
            a = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise BaselineError(f"baseline file {path}: not a readable .npy array ({e}); save one with numpy.save") \
                from None
        if a.dtype.kind not in "fiub":
            raise BaselineError(f"baseline file {path}: holds {a.dtype} values; save pixel values in [0, 1]")
        if a.ndim == 3 and a.shape[-1] in (1, 3) and a.shape[0] not in (1, 3):
            a = np.moveaxis(a, -1, 0)  # (H, W, C) -> (C, H, W)
        if a.ndim == 2:
            a = a[None]
        if a.ndim != 3 or tuple(a.shape[1:]) != (h, w) or a.shape[0] not in (1, c):
            raise BaselineError(f"baseline file {path}: shape {tuple(np.shape(a))} does not fit the model's input "
                                f"({c}, {h}, {w}); save an ({h}, {w}) or ({c}, {h}, {w}) array of pixels in [0, 1]")
        if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
            raise BaselineError(f"baseline file {path}: values from {np.nanmin(a):g} to {np.nanmax(a):g}; save pixel "
                                "values in [0, 1] (divide 8-bit pixels by 255)")
        t = torch.as_tensor(a, dtype=like.dtype, device=like.device)[None].expand(1, c, h, w)
        mean, std = _stats(handle, like)
        return (t - mean) / std
    from mikata.data.images import load_image
    from mikata.errors import ImageDecodeError

    try:
        t = handle.preprocess([load_image(path, mode=handle.mode)])
    except ImageDecodeError as e:
        raise BaselineError(f"baseline file {path}: {e.reason}; give an image or a .npy of pixel values in [0, 1]") \
            from None
    if tuple(t.shape[1:]) != (c, h, w):
        raise BaselineError(f"baseline file {path}: preprocessed to {tuple(t.shape[1:])}, but the images are "
                            f"{(c, h, w)}; give a .npy of shape ({h}, {w}) instead")
    return t.to(like)


def make_baseline(handle: ModelHandle, x: torch.Tensor, kind: str | torch.Tensor = DEFAULT, seed: int = 0,
                  blur_sigma: float | None = None) -> torch.Tensor:
    """One baseline like ``x`` ``(N, C, H, W)``: a name (see the module doc), a file path, or a tensor
    broadcast to ``x``."""
    if isinstance(kind, torch.Tensor):
        return kind.to(x).expand_as(x)
    names = parse_baselines(kind)
    if len(names) != 1:
        raise BaselineError(f"make_baseline makes one baseline, {kind!r} names {len(names)}; use make_baselines")
    name = names[0]
    mean, std = _stats(handle, x)
    if name == "black":
        return ((0 - mean) / std).expand_as(x).clone()
    if name == "white":
        return ((1 - mean) / std).expand_as(x).clone()
    if name == "mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x).clone()
    if name == "zero":
        return torch.zeros_like(x)
    if name == "uniform-noise":
        gen = torch.Generator(device=x.device).manual_seed(seed)
        return (torch.rand(x.shape, generator=gen, dtype=x.dtype, device=x.device) - mean) / std
    if name == "blur":
        return blur(x, blur_sigma if blur_sigma is not None else 10.0 * x.shape[-1] / 224)
    return load_baseline_file(handle, name, x).expand_as(x).clone()


def make_baselines(handle: ModelHandle, x: torch.Tensor, spec: str | Sequence[str] | torch.Tensor = DEFAULT,
                   draws: int = 1, seed: int = 0) -> list[torch.Tensor]:
    """Every baseline ``spec`` asks for, each ``(N, C, H, W)``: random ones (``uniform-noise``) ``draws``
    times with seeds ``seed, seed + 1, ...``; the attribution methods average over them."""
    if isinstance(spec, torch.Tensor):
        return [make_baseline(handle, x, spec)]
    out = []
    for name in parse_baselines(spec):
        for k in range(draws if name in RANDOM else 1):
            out.append(make_baseline(handle, x, name, seed + k))
    return out


def method_baselines(methods: Sequence[str], options: dict | None) -> dict[str, str]:
    """``{method: baseline label}`` for the ``methods`` that take a baseline, from their ``options``
    (what figure titles and scorecard rows name)."""
    out = {}
    for m in methods:
        if m in METHODS:
            o = (options or {}).get(m) or {}
            out[m] = f"fill {o['fill']:g}" if o.get("fill") is not None else baseline_label(
                o.get("baseline", DEFAULT), o.get("baselines", 1))
    return out
