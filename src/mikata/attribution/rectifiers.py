"""One override for every rectifier a forward runs: modules, in-place modules and functional calls.

Guided Backprop, Deconvnet and DeepLIFT's Rescale rule change how gradients cross a rectifier
(``relu``, ``relu6``, ``hardtanh(0, max)``). Swapping ``nn.ReLU`` modules misses networks that call
``F.relu`` inside ``forward`` (torchvision GoogLeNet, DenseNet), so the override is a
``TorchFunctionMode`` active during the forward: every rectifier call — ``nn.ReLU``/``nn.ReLU6``
modules (they call ``F.relu``/``F.hardtanh``), ``F.relu``, ``torch.relu``, ``Tensor.relu``,
``F.relu6``, ``F.hardtanh`` and their in-place forms — goes through the caller's ``rule``. An in-place
call gets the rule's result copied back into its input, so code that ignores the return value still
sees the rectified tensor; rules save their own copy of what they need. No hook touches the model.

The mode also records which other activations ran (GELU, SiLU, hardswish, ...) so a method defined
only for rectifiers can refuse with the name of what the model uses instead (``RectifierError``).

Example:
    >>> counter = Rectifiers(lambda x, upper: x.clamp(0, upper))          # doctest: +SKIP
    >>> with counter:                                                       # doctest: +SKIP
    ...     y = model(x)
    >>> counter.count, counter.others                                       # doctest: +SKIP
    (49, {})
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from mikata.errors import MikataError

Rule = Callable[[torch.Tensor, float], torch.Tensor]  # (pre-activation, upper bound) -> output


class RectifierError(MikataError, ValueError):
    """A method defined only for rectifiers was asked of a network whose forward ran none."""


_RELU = {F.relu, torch.relu, torch.Tensor.relu}
_RELU_INPLACE = {torch.relu_, torch.Tensor.relu_}
_RELU6 = {F.relu6}
_HARDTANH = {F.hardtanh}
_HARDTANH_INPLACE = {F.hardtanh_, torch._C._nn.hardtanh_}
# activations that are not rectifiers; their names make the refusal message say what the model has
_OTHERS = {F.gelu: "GELU", F.silu: "SiLU", F.hardswish: "hardswish", F.mish: "Mish", F.elu: "ELU",
           F.selu: "SELU", F.celu: "CELU", F.leaky_relu: "leaky ReLU", F.prelu: "PReLU", F.softplus: "softplus",
           F.hardsigmoid: "hardsigmoid", torch.sigmoid: "sigmoid", torch.Tensor.sigmoid: "sigmoid",
           F.sigmoid: "sigmoid", torch.tanh: "tanh", torch.Tensor.tanh: "tanh", F.tanh: "tanh"}


def _bounds(func, args: tuple, kwargs: dict) -> tuple[torch.Tensor, float, bool] | None:
    """``(input, upper, inplace)`` when ``func(*args, **kwargs)`` is a rectifier call, else None."""
    if func in _RELU:
        return args[0], float("inf"), bool(kwargs.get("inplace", args[1] if len(args) > 1 else False))
    if func in _RELU_INPLACE:
        return args[0], float("inf"), True
    if func in _RELU6:
        return args[0], 6.0, bool(kwargs.get("inplace", args[1] if len(args) > 1 else False))
    if func in _HARDTANH or func in _HARDTANH_INPLACE:
        lo = kwargs.get("min_val", args[1] if len(args) > 1 else -1.0)
        hi = kwargs.get("max_val", args[2] if len(args) > 2 else 1.0)
        if float(lo) != 0.0:
            return None  # a hardtanh that is not a rectifier (e.g. the default -1..1): left alone
        inplace = func in _HARDTANH_INPLACE or bool(kwargs.get("inplace", args[3] if len(args) > 3 else False))
        return args[0], float(hi), inplace
    return None


class Rectifiers(TorchFunctionMode):
    """While active, every rectifier call returns ``rule(x, upper)``; counts calls and elements.

    ``count``: rectifier calls routed through the rule; ``elements``: activations they produced;
    ``others``: name -> calls of non-rectifier activations seen (they run unchanged).
    """

    def __init__(self, rule: Rule):
        super().__init__()
        self.rule = rule
        self.count = 0
        self.elements = 0
        self.others: dict[str, int] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: D105
        kwargs = kwargs or {}
        hit = _bounds(func, args, kwargs)
        if hit is None or not isinstance(hit[0], torch.Tensor) or not torch.is_grad_enabled():
            if func in _OTHERS:
                self.others[_OTHERS[func]] = self.others.get(_OTHERS[func], 0) + 1
            return func(*args, **kwargs)
        x, upper, inplace = hit
        self.count += 1
        self.elements += x.numel()
        if not inplace:
            return self.rule(x, upper)
        out = self.rule(x.clone(), upper)  # the rule keeps the pre-activation; the caller's tensor is overwritten
        return x.copy_(out)

    def info(self) -> dict:
        """What ``Attribution.info`` reports: rectifier calls and activations the rule changed, and the
        other activations the forward ran unchanged."""
        out = {"rectifier_calls": self.count, "rectifier_activations": self.elements}
        if self.others:  # activations the rule did not touch (e.g. MobileNetV3's hardswish): said, not hidden
            out["other_activations"] = ", ".join(f"{k} x{v}" for k, v in sorted(self.others.items()))
        return out

    def require(self, method: str, net: object = None) -> None:
        """Raise ``RectifierError`` when the forward ran no rectifier (the method would be a plain gradient)."""
        if self.count:
            return
        if isinstance(net, torch.jit.ScriptModule):
            raise RectifierError(f"{method} needs to change how gradients cross the ReLUs, and a TorchScript model "
                                 "runs them inside its compiled graph where mikata cannot reach them: load the "
                                 "Python model (package.module:factory or a checkpoint), or use saliency, "
                                 "grad-x-input or integrated-gradients")
        seen = ", ".join(sorted(self.others)) or "no ReLU, ReLU6 or hardtanh(0, max)"
        raise RectifierError(f"{method} needs ReLU-like activations (ReLU, ReLU6, hardtanh(0, max)); this model "
                             f"runs {seen}: use saliency, grad-x-input or integrated-gradients instead")


def hybrid_note(method: str, info: dict) -> str | None:
    """One line saying that ``method`` ran as a hybrid (its rule at the rectifiers, the plain gradient at the
    other activations ``info`` lists), or None when the forward ran rectifiers only. EfficientFormer (GELU x15,
    ReLU x2) and ReXNet (SiLU x17 beside ReLU6) give such hybrids: the figure and the command line say so."""
    others = info.get("other_activations")
    if not others or not info.get("rectifier_calls"):
        return None
    return (f"{method} is a hybrid here: its rule changed {info['rectifier_calls']} ReLU-like calls, the plain "
            f"gradient crossed {others}")

