"""ReLU backward rules for Guided Backprop and Deconvnet, switchable between backward passes.

Every ``nn.ReLU``/``nn.ReLU6`` output is replaced (through ``mikata.hooks.attached``) by a
``_RuleReLU`` node that computes the same forward; its backward reads ``state.mode`` at backward
time. One forward graph therefore serves a plain backward (Grad-CAM, saliency) *and* a guided or
deconv backward (Guided Backprop, Guided Grad-CAM) — the sharing Captum cannot do.

In-place ReLUs (torchvision ResNet) are handled by a forward-pre hook that hands the module a clone,
so the pre-activation stays intact for our node; the module's own result is discarded.

Example:
    >>> state = RuleState()                                          # doctest: +SKIP
    >>> with attached(relu_rule_hooks(net, state)):                  # doctest: +SKIP
    ...     y = model(x); state.mode = "guided"; g, = torch.autograd.grad(y[:, 3].sum(), x)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

MODES = ("plain", "guided", "deconv")


@dataclass
class RuleState:
    mode: str = "plain"
    stash: dict[int, list[torch.Tensor]] = field(default_factory=dict)


class _RuleReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, upper: float, state: RuleState) -> torch.Tensor:  # noqa: D102
        ctx.save_for_backward(x)
        ctx.upper, ctx.state = upper, state
        return x.clamp(0.0, upper)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: D102
        (x,) = ctx.saved_tensors
        mode = ctx.state.mode
        if mode == "deconv":  # Zeiler & Fergus: ReLU of the signal coming down, forward mask ignored
            return grad.clamp_min(0.0), None, None
        mask = (x > 0) & (x < ctx.upper)
        if mode == "guided":  # Springenberg et al.: forward mask and positive gradients only
            return grad.clamp_min(0.0) * mask, None, None
        return grad * mask, None, None


def relu_rule_hooks(net: nn.Module, state: RuleState) -> list[tuple[nn.Module, str, object]]:
    """``(module, kind, fn)`` hooks for ``attached`` that route every ReLU/ReLU6 through ``_RuleReLU``."""
    hooks = []
    for module in net.modules():
        if not isinstance(module, (nn.ReLU, nn.ReLU6)):
            continue
        upper = 6.0 if isinstance(module, nn.ReLU6) else float("inf")

        def pre(mod, args, state=state):
            x = args[0]
            state.stash.setdefault(id(mod), []).append(x)
            return (x.clone(),) if getattr(mod, "inplace", False) else None

        def post(mod, args, out, upper=upper, state=state):
            x = state.stash[id(mod)].pop()
            return _RuleReLU.apply(x, upper, state)

        hooks += [(module, "forward_pre", pre), (module, "forward", post)]
    return hooks
