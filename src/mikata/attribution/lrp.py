"""Layer-wise Relevance Propagation through zennit composites, with batch-norm folding and a
conservation check.

zennit is the reference implementation of the LRP rules, so mikata delegates the rules to it
instead of re-deriving them; zennit registers (and removes, on leaving its context) its own hooks,
the one place hooks are not registered through ``mikata.hooks``. Batch norm is folded into the
preceding convolution by a canonizer, and residual additions become zennit ``Sum`` modules (so the
Norm rule splits relevance between the branches) for torchvision's and timm's ResNet blocks
(``mikata.attribution.lrp_canonizers``). One forward serves every target rank.

zennit's rules only see the modules they are attached to; whatever else the forward computes (an
addition zennit has no module for, a gate ``x * sigmoid(s)``, a layer scale, a functional SiLU) is
crossed by the plain gradient, which creates or destroys relevance: a raw residual addition doubles
it, so on a timm ResNet without its canonizer the map is 2^8 times too large. Each call therefore
checks conservation on its first image: the same rules with every bias left out of the rules'
denominators pass exactly the seed's relevance down to the pixels (each rule redistributes what it
receives), so the bias-free relevance must sum to 1 (the seed). Where it does not, within
``CONSERVATION_TOL``, the call refuses (``LRPUnsupportedError``) instead of drawing a wrong map.

Relevance is seeded with 1 at the target logit (as zennit's one-hot), so a map's sum is the share
of the target logit that reached the pixels (the rest was absorbed by the biases).

Example:
    >>> rel = lrp(handle, x, ids, rule="epsilon-plus-flat")[0]    # (N, C, H, W)    # doctest: +SKIP
"""

from __future__ import annotations

import math
from contextlib import ExitStack

import torch

from mikata.errors import MikataError, check_choices
from mikata.hooks import preserved
from mikata.models.handle import ModelHandle

RULES = ("epsilon-plus-flat", "epsilon-plus", "epsilon-alpha2-beta1", "epsilon-alpha2-beta1-flat",
         "epsilon", "zplus", "alpha-beta")
#: The bias-free relevance of the first image must sum to 1 within this (a rule may lose a little where
#: a neuron's positive contributions are all zero; a missing rule multiplies it by 2 per residual block).
CONSERVATION_TOL = 0.05


def _import_zennit() -> None:
    """Import zennit (which imports torchvision: ``models.torchvision_ops`` decides how)."""
    from mikata.models.torchvision_ops import torchvision_ready

    torchvision_ready()
    try:
        import zennit  # noqa: F401
    except ImportError as e:
        raise MikataError(f"LRP needs the zennit package ({e}); pip install zennit") from e


def make_composite(handle: ModelHandle, rule: str, zero_bias: bool = False):
    """The zennit composite for ``rule`` with the canonizers that fit this network.

    ``zero_bias``: the rules leave every bias out (the conservation probe; see the module docstring).
    """
    _import_zennit()
    from zennit import composites, rules, types
    from zennit.layer import Sum

    from mikata.attribution.lrp_canonizers import canonizers_for

    check_choices("LRP rule", rule, RULES)
    canonizers = canonizers_for(handle.net)
    zero = {"zero_params": "bias"} if zero_bias else {}
    named = {"epsilon-plus-flat": composites.EpsilonPlusFlat, "epsilon-plus": composites.EpsilonPlus,
             "epsilon-alpha2-beta1": composites.EpsilonAlpha2Beta1,
             "epsilon-alpha2-beta1-flat": composites.EpsilonAlpha2Beta1Flat}
    if rule in named:
        return named[rule](canonizers=canonizers, **zero)
    single = {"epsilon": lambda: rules.Epsilon(**zero), "zplus": lambda: rules.ZPlus(**zero),
              "alpha-beta": lambda: rules.AlphaBeta(alpha=2.0, beta=1.0, **zero)}
    layer_map = [(types.Activation, rules.Pass()), (Sum, rules.Norm()), (types.AvgPool, rules.Norm()),
                 (types.BatchNorm, rules.Pass()), (types.Convolution, single[rule]()),
                 (torch.nn.Linear, rules.Epsilon(**zero))]
    return composites.LayerMapComposite(layer_map=layer_map, canonizers=canonizers)


class LRPUnsupportedError(MikataError, ValueError):
    """zennit's rules or canonizers do not fit this architecture, so LRP's answer would be wrong."""


def _instead(handle: ModelHandle) -> str:
    from mikata.models.attention import attention_sites

    first = "attnlrp (LRP for transformers), " if attention_sites(handle.net) else ""
    return f"The model is unchanged; use {first}deeplift, integrated-gradients or grad-x-input instead"


def _refusal(handle: ModelHandle, why: str) -> LRPUnsupportedError:
    return LRPUnsupportedError(
        f"LRP cannot run on {type(handle.net).__name__}: {why}. zennit fits plain CNNs: its batch-norm canonizer "
        "merges a batch norm into the convolution before it in module order, which is wrong where a batch norm reads "
        "a concatenation or a sum (DenseNet), and its hooks need every module to return one tensor. " + _instead(handle))


def _not_conserved(handle: ModelHandle, rule: str, total: float) -> LRPUnsupportedError:
    what = "is not a number" if math.isnan(total) else f"sums to {total:.4g}"
    return LRPUnsupportedError(
        f"LRP ({rule}) cannot run on {type(handle.net).__name__}: relevance is not conserved (with the biases left "
        f"out it must sum to 1 at the pixels and {what}), because the network computes something zennit's rules "
        "do not cover (a residual addition or a gate outside a module, a layer scale, an activation called as a "
        f"function): such a map would be wrong by that factor. {_instead(handle)}")


def _backward(model: torch.nn.Module, x: torch.Tensor, ids: torch.Tensor,
              expected: torch.Tensor | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Logits and, per target rank, the relevance at the input of ``model`` (hooked by a composite)."""
    xin = x.detach().requires_grad_(True)
    logits = model(xin)  # (N, K)
    if expected is not None:
        scale = float(expected.abs().max()) + 1e-6
        if not torch.allclose(logits[:1].detach(), expected, rtol=1e-3, atol=1e-3 * scale):
            raise ValueError("the canonized model computes different logits")
    picked = logits.gather(1, ids)  # (N, T)
    out = []
    for k in range(ids.shape[1]):
        (g,) = torch.autograd.grad(picked[:, k].sum(), xin, retain_graph=k < ids.shape[1] - 1)
        out.append(g.detach())
    return logits.detach(), out


def conservation(handle: ModelHandle, x: torch.Tensor, ids: torch.Tensor, rule: str) -> float:
    """The bias-free relevance of ``x[:1]``'s first target summed over the pixels: 1 where every operation
    of the forward has a rule (or only routes values: max pooling, concatenation, reshapes)."""
    with ExitStack() as stack:
        model = stack.enter_context(make_composite(handle, rule, zero_bias=True).context(handle.model))
        _, (rel,) = _backward(model, x[:1], ids[:1, :1])
    return float(rel.double().sum())


def _zennit_call(handle: ModelHandle, fn):
    """``fn()`` with zennit's failures turned into a refusal naming the model."""
    try:
        return fn()
    except LRPUnsupportedError:
        raise
    except ValueError as e:
        raise _refusal(handle, str(e)) from e
    except RuntimeError as e:  # a merge whose shapes do not fit, a hook zennit cannot attach to a module's output
        raise _refusal(handle, f"zennit failed ({str(e).splitlines()[0]})") from e


def lrp(handle: ModelHandle, x: torch.Tensor, ids: torch.Tensor, rule: str = "epsilon-plus-flat",
        check: bool = True) -> tuple[list[torch.Tensor], float]:
    """Per target rank: relevance ``(N, C, H, W)`` of the target logit, propagated with ``rule``; and the
    conservation figure of the first image (see ``conservation``; NaN when ``check`` is off).

    The canonized model must compute what the model computes and conserve relevance (both checked on
    the first image); otherwise ``LRPUnsupportedError``. Parameter and buffer values are restored bit for
    bit afterwards, also when zennit fails half-way through a merge.
    """
    composite = make_composite(handle, rule)
    with preserved(handle.net, values=True):
        for p in handle.net.parameters():
            p.requires_grad_(False)
        with torch.inference_mode():
            expected = handle.model(x[:1])  # (1, K): what the canonized model must still compute
        with torch.enable_grad():
            total = _zennit_call(handle, lambda: conservation(handle, x, ids, rule)) if check else float("nan")
            if check and not abs(total - 1.0) <= CONSERVATION_TOL:  # NaN fails too
                raise _not_conserved(handle, rule, total)

            def main() -> list[torch.Tensor]:
                with composite.context(handle.model) as model:
                    return _backward(model, x, ids, expected)[1]

            out = _zennit_call(handle, main)
    bad = next((k for k, r in enumerate(out) if not torch.isfinite(r).all()), None)
    if bad is not None:
        raise _not_conserved(handle, rule, float("nan"))
    return out, total


def run(ctx) -> tuple[list[torch.Tensor], dict]:
    """Registry entry point (``catalog.py``)."""
    maps, total = lrp(ctx.handle, ctx.x, ctx.ids, **ctx.options)
    return maps, {"conservation": total}
