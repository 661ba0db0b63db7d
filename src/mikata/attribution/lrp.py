"""Layer-wise Relevance Propagation through zennit composites, with batch-norm folding.

zennit is the reference implementation of the LRP rules, so mikata delegates the rules to it
instead of re-deriving them; zennit registers (and removes, on leaving its context) its own hooks,
the one place hooks are not registered through ``mikata.hooks``. Batch norm is folded into the
preceding convolution by a canonizer (zennit's ResNet canonizer for torchvision ResNets, the
sequential conv→BN merge otherwise). One forward serves every target rank.

Example:
    >>> rel = lrp(handle, x, ids, rule="epsilon-plus-flat")[0]    # (N, C, H, W)    # doctest: +SKIP
"""

from __future__ import annotations

from contextlib import ExitStack

import torch

from mikata.errors import MikataError, check_choices
from mikata.hooks import preserved
from mikata.models.handle import ModelHandle

RULES = ("epsilon-plus-flat", "epsilon-plus", "epsilon-alpha2-beta1", "epsilon-alpha2-beta1-flat",
         "epsilon", "zplus", "alpha-beta")


def _import_zennit() -> None:
    """Import zennit; if torchvision's CUDA-only operators break its import, declare their schemas."""
    try:
        import zennit  # noqa: F401
    except RuntimeError as e:
        if "torchvision" not in str(e):
            raise
        from mikata.attribution._torchvision_compat import import_torchvision_declaring_ops

        import_torchvision_declaring_ops()
        import zennit  # noqa: F401
    except ImportError as e:
        raise MikataError(f"LRP needs the zennit package ({e}); pip install zennit") from e


def make_composite(handle: ModelHandle, rule: str):
    """The zennit composite for ``rule`` with the right batch-norm canonizer for this network."""
    _import_zennit()
    from zennit import composites, rules, types
    from zennit.canonizers import SequentialMergeBatchNorm

    if type(handle.net).__name__ == "ResNet" and type(handle.net).__module__.startswith("torchvision"):
        from zennit.torchvision import ResNetCanonizer

        canonizers = [ResNetCanonizer()]
    else:
        canonizers = [SequentialMergeBatchNorm()]
    named = {"epsilon-plus-flat": composites.EpsilonPlusFlat, "epsilon-plus": composites.EpsilonPlus,
             "epsilon-alpha2-beta1": composites.EpsilonAlpha2Beta1,
             "epsilon-alpha2-beta1-flat": composites.EpsilonAlpha2Beta1Flat}
    if rule in named:
        return named[rule](canonizers=canonizers)
    single = {"epsilon": lambda: rules.Epsilon(), "zplus": lambda: rules.ZPlus(),
              "alpha-beta": lambda: rules.AlphaBeta(alpha=2.0, beta=1.0)}
    check_choices("LRP rule", rule, RULES)
    layer_map = [(types.Activation, rules.Pass()), (types.AvgPool, rules.Norm()),
                 (types.Convolution, single[rule]()), (torch.nn.Linear, rules.Epsilon())]
    return composites.LayerMapComposite(layer_map=layer_map, canonizers=canonizers)


class LRPUnsupportedError(MikataError, ValueError):
    """zennit's canonizers do not fit this architecture, so LRP's answer would be wrong."""


def _refusal(handle: ModelHandle, why: str) -> LRPUnsupportedError:
    return LRPUnsupportedError(
        f"LRP cannot run on {type(handle.net).__name__}: {why}. zennit's batch-norm canonizer merges a batch norm "
        "into the convolution before it in module order, which is wrong where a batch norm reads a concatenation "
        "or a sum (DenseNet). The model is unchanged; use deeplift, integrated-gradients or guided-backprop")


def lrp(handle: ModelHandle, x: torch.Tensor, ids: torch.Tensor, rule: str = "epsilon-plus-flat") -> list[torch.Tensor]:
    """Per target rank: relevance ``(N, C, H, W)`` of the target logit, propagated with ``rule``.

    The canonized model must compute what the model computes (checked on the first image); where
    zennit's canonizer does not fit, ``LRPUnsupportedError``. Parameter and buffer values are
    restored bit for bit afterwards, also when zennit fails half-way through a merge.
    """
    composite = make_composite(handle, rule)
    with preserved(handle.net, values=True):
        for p in handle.net.parameters():
            p.requires_grad_(False)
        with torch.inference_mode():
            expected = handle.model(x[:1])  # (1, K): what the canonized model must still compute
        with ExitStack() as stack:
            try:
                model = stack.enter_context(composite.context(handle.model))
            except RuntimeError as e:  # a merge whose shapes do not fit
                raise _refusal(handle, f"the canonizer failed ({str(e).splitlines()[0]})") from e
            with torch.enable_grad():
                xin = x.detach().requires_grad_(True)
                logits = model(xin)  # (N, K)
                scale = float(expected.abs().max()) + 1e-6
                if not torch.allclose(logits[:1].detach(), expected, rtol=1e-3, atol=1e-3 * scale):
                    raise _refusal(handle, "the canonized model computes different logits")
                picked = logits.gather(1, ids)  # (N, T)
                out = []
                for k in range(ids.shape[1]):
                    (g,) = torch.autograd.grad(picked[:, k].sum(), xin, retain_graph=k < ids.shape[1] - 1)
                    out.append(g.detach())
    return out

def run(ctx) -> tuple[list[torch.Tensor], dict]:
    """Registry entry point (``catalog.py``)."""
    return lrp(ctx.handle, ctx.x, ctx.ids, **ctx.options), {}
