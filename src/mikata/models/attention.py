"""Attention probabilities of a transformer: fused kernels off inside a call, weights captured per block.

Fused attention (timm's ``fused_attn`` flag, torch's ``scaled_dot_product_attention`` behind
``nn.MultiheadAttention`` and Hugging Face's "sdpa" implementation) never materializes the
attention matrix, so a method that needs it (attention rollout, gradient rollout, AttnLRP) must turn
it off for its own call and put every flag back afterwards, also when the call raises: the model
state guarantee of ``hooks.preserved`` covers these flags too.

- ``unfused(net)``: every timm module's ``fused_attn`` set to False, every Hugging Face config's
  attention implementation set to "eager"; restored on exit. Yields the number of attention modules.
- ``capture_attention(net, gradients=...)``: inside ``unfused``, records each attention block's
  probabilities ``(N, heads, T, T)`` in forward order (and with ``gradients`` their gradients once a
  backward has run). Supported: timm attention modules (a ``fused_attn`` flag and an ``attn_drop``
  dropout applied to the probabilities: ViT, DeiT, EVA, BEiT, ...), ``nn.MultiheadAttention``
  (torchvision's ViT) and Hugging Face attention modules returning ``(output, weights)``.

Example:
    >>> with capture_attention(net, gradients=True) as rec:     # doctest: +SKIP
    ...     logits = net(x)
    ...     logits[:, 3].sum().backward()
    >>> len(rec.probs), rec.probs[0].shape, rec.grads[0].shape  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from mikata.errors import MikataError
from mikata.hooks import attached


class NoAttentionError(MikataError):
    """The model has no attention module whose probabilities can be read."""


def _timm_attention(net: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in net.named_modules() if hasattr(m, "fused_attn")]


def _hf_configs(net: nn.Module) -> list[object]:
    seen: dict[int, object] = {}
    for m in net.modules():
        cfg = getattr(m, "config", None)
        if cfg is not None and hasattr(cfg, "_attn_implementation_internal"):
            seen.setdefault(id(cfg), cfg)
    return list(seen.values())


@contextmanager
def unfused(net: nn.Module) -> Iterator[int]:
    """Turn off fused attention in ``net`` for the block; every flag is restored in ``finally``."""
    timm_mods = _timm_attention(net)
    flags = [(m, m.fused_attn) for _, m in timm_mods]
    configs = [(c, c._attn_implementation_internal) for c in _hf_configs(net)]  # type: ignore[attr-defined]
    try:
        for m, _ in flags:
            m.fused_attn = False
        for c, _ in configs:
            c._attn_implementation_internal = "eager"  # type: ignore[attr-defined]
        yield len(flags) + len(configs) + sum(isinstance(m, nn.MultiheadAttention) for m in net.modules())
    finally:
        for m, value in flags:
            m.fused_attn = value
        for c, value in configs:
            c._attn_implementation_internal = value  # type: ignore[attr-defined]


def fused_flags(net: nn.Module) -> dict[str, object]:
    """The fused-attention settings of ``net`` (for tests: unchanged after a call)."""
    out: dict[str, object] = {f"{n}.fused_attn": m.fused_attn for n, m in _timm_attention(net)}
    out.update({f"config{i}": c._attn_implementation_internal for i, c in enumerate(_hf_configs(net))})  # type: ignore[attr-defined]
    return out


@dataclass
class AttentionRecording:
    """Per attention block, in forward order: its name, probabilities ``(N, heads, T, T)`` and, after a
    backward with ``gradients=True``, their gradients (same shape)."""

    names: list[str] = field(default_factory=list)
    probs: list[torch.Tensor] = field(default_factory=list)
    grads: list[torch.Tensor | None] = field(default_factory=list)


def attention_sites(net: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """``(name, module, how)`` of every module whose attention probabilities can be captured."""
    sites = []
    for name, m in net.named_modules():
        if hasattr(m, "fused_attn") and isinstance(getattr(m, "attn_drop", None), nn.Module):
            sites.append((f"{name}.attn_drop" if name else "attn_drop", m.attn_drop, "timm"))
        elif isinstance(m, nn.MultiheadAttention):
            sites.append((name, m, "mha"))
        elif type(m).__name__.endswith(("Attention", "SelfAttention")) and hasattr(m, "config") \
                and hasattr(m.config, "_attn_implementation_internal") \
                and not any(type(c).__name__.endswith("Attention") for c in m.children()):
            sites.append((name, m, "hf"))
    return sites


@contextmanager
def capture_attention(net: nn.Module, gradients: bool = False, detach: bool = True) -> Iterator[AttentionRecording]:
    """Record every attention block's probabilities during the block (fused kernels off, hooks removed
    and flags restored on exit). ``detach=False`` keeps them in the graph (for AttnLRP-style rules).
    Raises ``NoAttentionError`` when ``net`` has no attention this can read."""
    sites = attention_sites(net)
    if not sites:
        raise NoAttentionError(f"{type(net).__name__} has no attention layers (timm attention, "
                               "nn.MultiheadAttention or Hugging Face attention); attention methods need a "
                               "transformer - use a CAM or gradient method on this model")
    rec = AttentionRecording()

    def keep(name: str, probs: object) -> None:
        if not isinstance(probs, torch.Tensor) or probs.dim() != 4:
            return
        i = len(rec.probs)
        rec.names.append(name)
        rec.probs.append(probs.detach() if detach else probs)
        rec.grads.append(None)
        if gradients and probs.requires_grad:
            probs.register_hook(lambda g, i=i: rec.grads.__setitem__(i, g.detach()))

    hooks: list = []
    for name, module, how in sites:
        if how == "timm":
            hooks.append((module, "forward", lambda mod, a, out, name=name: keep(name, out)))
        elif how == "hf":
            hooks.append((module, "forward", lambda mod, a, out, name=name:
                          keep(name, out[1] if isinstance(out, tuple) and len(out) > 1 else None)))
        else:  # nn.MultiheadAttention: ask for per-head weights; the caller still gets its output
            hooks.append((module, "forward_pre_kwargs", _want_mha_weights))
            hooks.append((module, "forward", lambda mod, a, out, name=name: keep(name, out[1])))
    with unfused(net), attached(hooks):
        yield rec


def _want_mha_weights(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    kwargs = dict(kwargs, need_weights=True, average_attn_weights=False)
    return args, kwargs
