"""ReLU backward rules for Guided Backprop and Deconvnet, switchable between backward passes.

Every rectifier the forward runs (modules, in-place modules, functional ``F.relu`` / ``relu6`` /
``hardtanh(0, max)``: see ``mikata.attribution.rectifiers``) computes the same forward through a
``_RuleReLU`` node whose backward reads ``state.mode`` at backward time. One forward graph therefore
serves a plain backward (Grad-CAM, saliency) *and* a guided or deconv backward (Guided Backprop,
Guided Grad-CAM) — the sharing Captum cannot do.

Example:
    >>> state = RuleState()                                          # doctest: +SKIP
    >>> with rule_mode(state) as seen:                               # doctest: +SKIP
    ...     y = model(x); state.mode = "guided"; g, = torch.autograd.grad(y[:, 3].sum(), x)
    >>> seen.count                                                   # rectifier calls routed   # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mikata.attribution.rectifiers import Rectifiers

MODES = ("plain", "guided", "deconv")


@dataclass
class RuleState:
    mode: str = "plain"


class _RuleReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, upper: float, state: RuleState) -> torch.Tensor:  # noqa: D102
        y = x.clamp(0.0, upper)
        ctx.save_for_backward(y)  # the forward mask is (0 < y < upper): the same as on x, and y is never overwritten
        ctx.upper, ctx.state = upper, state
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: D102
        (y,) = ctx.saved_tensors
        mode = ctx.state.mode
        if mode == "deconv":  # Zeiler & Fergus: ReLU of the signal coming down, forward mask ignored
            return grad.clamp_min(0.0), None, None
        mask = (y > 0) & (y < ctx.upper)
        if mode == "guided":  # Springenberg et al.: forward mask and positive gradients only
            return grad.clamp_min(0.0) * mask, None, None
        return grad * mask, None, None


def rule_mode(state: RuleState) -> Rectifiers:
    """A ``Rectifiers`` mode that routes every rectifier through ``_RuleReLU`` reading ``state.mode``."""
    return Rectifiers(lambda x, upper: _RuleReLU.apply(x, upper, state))
