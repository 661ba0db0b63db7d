"""DeepLIFT with the Rescale rule (Shrikumar et al. 2017), from one forward of ``[x; x0]``.

Inputs and baselines run as one batch of 2N. Every ReLU/ReLU6 output is routed (through
``mikata.hooks.attached``) into ``_Rescale``, whose backward replaces the local derivative by the
multiplier ``(y - y0) / (x - x0)`` (the plain derivative where ``|x - x0|`` is tiny), as Captum does.
Linear layers (conv, eval-mode batch norm, linear, average pooling) pass multipliers unchanged.
In-place ReLUs are handed a clone, so they work (Captum's DeepLift fails on torchvision ResNet).
Limitation: max pooling uses its ordinary gradient, not Captum's max-pool rescale rule.

Example:
    >>> attrs = deeplift(handle, x, ids, baseline="black")[0]     # (N, C, H, W), target rank 0  # doctest: +SKIP
"""

from __future__ import annotations

import torch
from torch import nn

from mikata.attribution.integrated_gradients import make_baseline
from mikata.hooks import attached, preserved
from mikata.models.handle import ModelHandle

EPS = 1e-10


class _Rescale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, upper: float) -> torch.Tensor:  # noqa: D102
        y = x.clamp(0.0, upper)
        ctx.save_for_backward(x, y)
        ctx.upper = upper
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: D102
        x, y = ctx.saved_tensors
        n = x.shape[0] // 2
        dx = (x[:n] - x[n:]).repeat(2, *[1] * (x.dim() - 1))
        dy = (y[:n] - y[n:]).repeat(2, *[1] * (x.dim() - 1))
        plain = ((x > 0) & (x < ctx.upper)).to(grad.dtype)
        mult = torch.where(dx.abs() < EPS, plain, dy / torch.where(dx.abs() < EPS, torch.ones_like(dx), dx))
        return grad * mult, None


def _rescale_hooks(net: nn.Module) -> list:
    stash: dict[int, list[torch.Tensor]] = {}
    hooks = []
    for module in net.modules():
        if not isinstance(module, (nn.ReLU, nn.ReLU6)):
            continue
        upper = 6.0 if isinstance(module, nn.ReLU6) else float("inf")

        def pre(mod, args):
            stash.setdefault(id(mod), []).append(args[0])
            return (args[0].clone(),) if getattr(mod, "inplace", False) else None

        def post(mod, args, out, upper=upper):
            return _Rescale.apply(stash[id(mod)].pop(), upper)

        hooks += [(module, "forward_pre", pre), (module, "forward", post)]
    return hooks


def deeplift(
    handle: ModelHandle,
    x: torch.Tensor,
    ids: torch.Tensor,
    baseline: str | torch.Tensor = "black",
    seed: int = 0,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per target rank: DeepLIFT attributions ``(N, C, H, W)`` and summation-to-delta gaps ``(N,)``."""
    x0 = make_baseline(handle, x, baseline, seed)
    n = x.shape[0]
    with preserved(handle.net):
        for p in handle.net.parameters():
            p.requires_grad_(False)
        with attached(_rescale_hooks(handle.net)), torch.enable_grad():
            both = torch.cat([x, x0]).detach().requires_grad_(True)  # (2N, C, H, W)
            logits = handle.model(both)
            picked = logits[:n].gather(1, ids)  # (N, T)
            picked0 = logits[n:].gather(1, ids)
            attrs, deltas = [], []
            for k in range(ids.shape[1]):
                (g,) = torch.autograd.grad(picked[:, k].sum(), both, retain_graph=k < ids.shape[1] - 1)
                a = (x - x0) * g[:n]
                attrs.append(a.detach())
                deltas.append((a.sum(dim=(1, 2, 3)) - (picked[:, k] - picked0[:, k])).detach())
    return attrs, deltas
