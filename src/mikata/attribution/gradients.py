"""Pixel maps read straight off the shared pass: saliency, Gradient x Input, Guided Backprop, Deconvnet,
Guided Grad-CAM. Each is a registry ``run(ctx)`` over ``ctx.shared`` (``mikata.attribution.passes``):
the backwards were already taken, once per (mode, target rank), for every method of the call.

Example:
    >>> raws, info = saliency(ctx)          # T x (N, C, H, W)                       # doctest: +SKIP
"""

from __future__ import annotations

import torch

from mikata.attribution import cam
from mikata.attribution.registry import MethodContext
from mikata.attribution.result import upsample

Output = tuple[list[torch.Tensor], dict]


def saliency(ctx: MethodContext) -> Output:
    """Simonyan et al. 2014: |d logit / d x|."""
    return [g.abs() for g in ctx.shared.input_grads["plain"]], {}


def saliency_signed(ctx: MethodContext) -> Output:
    """The plain input gradient, sign kept."""
    return list(ctx.shared.input_grads["plain"]), {}


def grad_x_input(ctx: MethodContext) -> Output:
    """Shrikumar et al. 2016: gradient times input."""
    return [g * ctx.x for g in ctx.shared.input_grads["plain"]], {}


def guided_backprop(ctx: MethodContext) -> Output:
    """Springenberg et al. 2015, from the guided backward; info counts what the rule changed."""
    return list(ctx.shared.input_grads["guided"]), dict(ctx.shared.rectifiers)


def deconv(ctx: MethodContext) -> Output:
    """Zeiler & Fergus 2014, from the deconv backward."""
    return list(ctx.shared.input_grads["deconv"]), dict(ctx.shared.rectifiers)


def guided_gradcam(ctx: MethodContext) -> Output:
    """Selvaraju et al. 2017: Guided Backprop times the upsampled Grad-CAM of the same target."""
    out = []
    for k, guided in enumerate(ctx.shared.input_grads["guided"]):
        g = cam.gradcam(ctx.shared.activation, ctx.shared.layer_grads["plain"][k])  # (N, h, w)
        out.append(guided * upsample(g, tuple(ctx.x.shape[-2:]))[:, None])  # (N, C, H, W)
    return out, dict(ctx.shared.rectifiers)
