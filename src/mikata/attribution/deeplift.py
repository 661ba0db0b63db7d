"""DeepLIFT with the Rescale rule (Shrikumar et al. 2017), from one forward of ``[x; x0]``.

Inputs and baselines run as one batch of 2N. Every rectifier the forward runs (modules, in-place
modules, functional ``F.relu`` / ``relu6`` / ``hardtanh(0, max)``: ``mikata.attribution.rectifiers``)
goes through ``_Rescale``, whose backward replaces the local derivative by the multiplier
``(y - y0) / (x - x0)`` (the plain derivative where ``|x - x0|`` is tiny), as Captum does. Linear
layers (conv, eval-mode batch norm, linear, average pooling) pass multipliers unchanged. In-place
ReLUs work (Captum's DeepLift fails on torchvision ResNet). A network whose forward runs no rectifier
is refused (``RectifierError``): DeepLIFT-Rescale there would be a gradient x input under another name.
Max pooling uses its ordinary gradient: the default of the DeepLIFT authors' implementation
(kundajelab/deeplift, ``MaxPoolDeepLiftMode.gradient``). Captum's DeepLift uses a rescaled max-pool
rule instead (summation to delta then holds across the pool), so the two differ on networks with max
pooling (SqueezeNet, VGG, GoogLeNet); completeness_delta shows the gap there. On ReLU6 networks
(EfficientNet-Lite) Captum has no rule for ReLU6 and passes the plain gradient, which breaks
summation to delta; ours applies the Rescale rule to ReLU6 as the paper defines it (tested against a
slow reference on lite1/lite2 in tests/test_attribution_zoo.py).

Example:
    >>> attrs = deeplift(handle, x, ids, baseline="white")[0]     # (N, C, H, W), target rank 0  # doctest: +SKIP
"""

from __future__ import annotations

import torch
from mikata.attribution.baselines import DEFAULT, baseline_label, make_baselines
from mikata.attribution.rectifiers import Rectifiers
from mikata.hooks import preserved
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


def deeplift(
    handle: ModelHandle,
    x: torch.Tensor,
    ids: torch.Tensor,
    baseline: str | torch.Tensor = DEFAULT,
    seed: int = 0,
    baselines: int = 1,
) -> tuple[list[torch.Tensor], list[torch.Tensor], dict]:
    """Per target rank: DeepLIFT attributions ``(N, C, H, W)`` and summation-to-delta gaps ``(N,)``, the mean
    over the baselines ``baseline`` names (``mikata.attribution.baselines``); then what the Rescale rule
    changed (``Rectifiers.info``)."""
    refs = make_baselines(handle, x, baseline, baselines, seed)
    attrs: list[torch.Tensor] = []
    deltas: list[torch.Tensor] = []
    for x0 in refs:
        a, d, info = _one_baseline(handle, x, x0, ids)
        attrs = a if not attrs else [u + v for u, v in zip(attrs, a)]
        deltas = d if not deltas else [u + v for u, v in zip(deltas, d)]
    return [a / len(refs) for a in attrs], [d / len(refs) for d in deltas], info


def _one_baseline(handle: ModelHandle, x: torch.Tensor, x0: torch.Tensor,
                  ids: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor], dict]:
    n = x.shape[0]
    with preserved(handle.net):
        for p in handle.net.parameters():
            p.requires_grad_(False)
        seen = Rectifiers(_Rescale.apply)
        with torch.enable_grad():
            both = torch.cat([x, x0]).detach().requires_grad_(True)  # (2N, C, H, W)
            with seen:
                logits = handle.model(both)
            seen.require("deeplift", handle.net)
            picked = logits[:n].gather(1, ids)  # (N, T)
            picked0 = logits[n:].gather(1, ids)
            attrs, deltas = [], []
            for k in range(ids.shape[1]):
                (g,) = torch.autograd.grad(picked[:, k].sum(), both, retain_graph=k < ids.shape[1] - 1)
                a = (x - x0) * g[:n]
                attrs.append(a.detach())
                deltas.append((a.sum(dim=(1, 2, 3)) - (picked[:, k] - picked0[:, k])).detach())
    return attrs, deltas, seen.info()


def run(ctx) -> tuple[list[torch.Tensor], dict]:
    """Registry entry point (``catalog.py``): attributions, summation-to-delta gaps, rectifier counts."""
    attrs, deltas, seen = deeplift(ctx.handle, ctx.x, ctx.ids, **ctx.options)
    return attrs, {"completeness_delta": [d.tolist() for d in deltas], **seen,
                   "baseline": baseline_label(ctx.options.get("baseline", DEFAULT), ctx.options.get("baselines", 1))}
