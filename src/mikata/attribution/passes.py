"""One forward, several backwards: the shared gradient pass behind most methods.

``gradient_pass`` runs the model once with the target layer's output captured (and, when asked, ReLUs
routed through switchable rules), resolves the targets from the logits, then takes one
vector-Jacobian product per (backward mode, target rank). Parameters never require grad, so no
weight gradients are computed; when only layer gradients are needed the graph starts at the layer
(the input does not require grad and the layer output is re-rooted), so nothing below it is
differentiated.

Example:
    >>> p = gradient_pass(handle, x, layer="layer4", modes={"plain": ("layer", "input")})  # doctest: +SKIP
    >>> p.layer_grads["plain"][0].shape, p.input_grads["plain"][0].shape                   # doctest: +SKIP
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable

import torch

from mikata.attribution.relu_rules import RuleState, rule_mode
from mikata.errors import MikataError
from mikata.hooks import _first_tensor, attached, get_layer, preserved
from mikata.models.handle import ModelHandle


class LayerOutputError(MikataError, ValueError):
    """The layer returns several tensors (a list of branches), so no single map can be read from it."""


def several_outputs_error(handle: ModelHandle, layer: str | None, out: list | tuple) -> LayerOutputError:
    """The refusal for a layer returning ``out`` (several tensors), naming layers that give one map."""
    shapes = ", ".join("x".join(map(str, o.shape[1:])) for o in out if isinstance(o, torch.Tensor))
    good = single_map_layers(handle, layer or "")
    hint = f"; layers inside it that give one map: {', '.join(good[:4])}" if good else ""
    return LayerOutputError(
        f"layer {layer!r} returns a {type(out).__name__} of {len(out)} tensors ({shapes}: one per branch), not one "
        f"map, so CAM methods cannot use it without picking a branch for you; pass --layer with a layer that "
        f"returns one tensor{hint} (see `mikata layers`)")


def single_map_layers(handle: ModelHandle, prefix: str) -> list[str]:
    """Layers under ``prefix`` (or anywhere, when none is) whose output is one ``(N, C, h, w)`` tensor with
    more than one cell, from a module that runs once: the shallowest first (a branch, not a convolution deep inside it), finer maps first."""
    found: dict[str, int] = {}  # name -> cells of its map
    calls: dict[str, int] = {}

    def make(name: str):
        def hook(mod, args, out):
            calls[name] = calls.get(name, 0) + 1
            if isinstance(out, torch.Tensor) and out.dim() == 4 and out.shape[-1] * out.shape[-2] > 1:
                found[name] = out.shape[-1] * out.shape[-2]
        return hook

    named = [(n, m) for n, m in handle.net.named_modules() if n]
    inside = [(n, m) for n, m in named if n.startswith(prefix + ".")] if prefix else []
    with torch.inference_mode(), attached([(m, "forward", make(n)) for n, m in inside or named]):
        handle.model(torch.zeros(1, handle.in_channels, *handle.input_size, device=handle.device))
    once = [n for n in found if calls[n] == 1]  # a module reused on every branch has no single map
    return sorted(once, key=lambda n: (n.count("."), -found[n]))


@dataclass
class Pass:
    logits: torch.Tensor  # (N, K), detached
    targets: torch.Tensor  # (N, T) class ids
    labels: list[str]
    activation: torch.Tensor | None = None  # (N, C, h, w) at the layer, detached
    layer_grads: dict[str, list[torch.Tensor]] = field(default_factory=dict)  # mode -> T x (N, C, h, w)
    input_grads: dict[str, list[torch.Tensor]] = field(default_factory=dict)  # mode -> T x (N, C, H, W)
    rectifiers: dict[str, object] = field(default_factory=dict)  # what the guided / deconv rules changed
    attention: list[torch.Tensor] = field(default_factory=list)  # per block (N, heads, T, T), detached
    attention_grads: list[list[torch.Tensor]] = field(default_factory=list)  # per target rank, per block


def gradient_pass(
    handle: ModelHandle,
    x: torch.Tensor,
    resolve: Callable[[torch.Tensor], tuple[list[str], torch.Tensor]] | torch.Tensor,
    layer: str | None = None,
    modes: dict[str, tuple[str, ...]] | None = None,
    asked_by: dict[str, str] | None = None,
    attention: str = "",
) -> Pass:
    """Forward ``x`` ``(N, C, H, W)`` once; backward once per mode and target rank.

    ``resolve`` maps logits to ``(labels, ids (N, T))`` or is a ready ``(N, T)`` id tensor.
    ``modes`` maps "plain" / "guided" / "deconv" to what that backward must reach: "layer" and/or
    "input". An empty ``modes`` gives a forward only (logits, activation). ``asked_by`` names the
    method behind each rule mode for the ``RectifierError`` raised when the forward ran no rectifier.
    ``attention``: "probs" records every attention block's probabilities (fused attention off for the
    forward, ``models.attention``); "grads" also takes, per target rank, their gradients (the backward
    stops at the first block's attention). A model without attention raises ``NoAttentionError``.
    """
    from mikata.models.attention import capture_attention

    modes = modes or {}
    asked_by = asked_by or {}
    want_input = any("input" in w for w in modes.values())
    attn_grads = attention == "grads"
    rules = any(m != "plain" for m in modes)
    net = handle.net
    state = RuleState()
    grab: dict[str, torch.Tensor] = {}
    hooks = []
    view = _identity
    if layer is not None:
        module = get_layer(net, layer)
        if handle.layout(layer).kind in ("nhwc", "tokens"):  # tokens / channels-last seen as (N, C, h, w)
            view = handle.layout(layer).to_nchw

        def keep(mod, args, out):
            t = _first_tensor(out)
            if t is None or not isinstance(out, torch.Tensor):
                grab["act"] = t
                if isinstance(out, (list, tuple)) and sum(isinstance(o, torch.Tensor) for o in out) > 1:
                    grab["several"] = out  # refused after the forward: one branch must not be picked silently
                return None
            if not modes:  # forward only: keep a copy, an in-place op after the layer would overwrite an alias
                grab["act"] = t.detach().clone()
                return None
            root = t if want_input else t.detach().requires_grad_(True)
            grab["act"] = root
            return root.clone()  # a fresh node: in-place ops after the layer leave the captured output intact

        hooks.append((module, "forward", keep))
    seen = rule_mode(state) if rules else nullcontext()
    with preserved(net):
        for p in net.parameters():
            p.requires_grad_(False)
        grad_enabled = torch.enable_grad() if modes or attn_grads else torch.no_grad()
        attn = capture_attention(net, detach=not attn_grads) if attention else nullcontext()
        with attached(hooks), grad_enabled, attn as arec:
            # the attention probabilities need a graph to differentiate: rooted at the input
            xin = x.detach().requires_grad_(want_input or attn_grads) if modes or attn_grads else x
            with seen:
                logits = handle.model(xin)  # (N, K)
            if "several" in grab:
                raise several_outputs_error(handle, layer, grab["several"])
            if rules:  # refuse before any backward: without rectifiers a guided map is a plain gradient
                seen.require(" / ".join(asked_by.get(m, f"the {m} backward") for m in modes if m != "plain"), net)
            if isinstance(resolve, torch.Tensor):
                labels, ids = [str(i) for i in range(resolve.shape[1])], resolve
            else:
                labels, ids = resolve(logits.detach())
            act = grab.get("act")
            out = Pass(logits.detach(), ids, labels, None if act is None else view(act.detach()),
                       rectifiers=seen.info() if rules else {})
            if arec is not None:
                out.attention = [a.detach() for a in arec.probs]
            picked = logits.gather(1, ids)  # (N, T)
            jobs = [(mode, t) for mode in modes for t in range(ids.shape[1])]
            if attn_grads:  # first: the later jobs free the graph
                for t in range(ids.shape[1]):
                    g = torch.autograd.grad(picked[:, t].sum(), arec.probs, retain_graph=True, allow_unused=True)
                    out.attention_grads.append([torch.zeros_like(a) if gi is None else gi.detach()
                                                for a, gi in zip(arec.probs, g)])
            for j, (mode, t) in enumerate(jobs):
                state.mode = mode
                leaves = []
                if "layer" in modes[mode]:
                    leaves.append(act)
                if "input" in modes[mode]:
                    leaves.append(xin)
                grads = torch.autograd.grad(picked[:, t].sum(), leaves, retain_graph=j < len(jobs) - 1)
                gi = 0
                if "layer" in modes[mode]:
                    out.layer_grads.setdefault(mode, []).append(view(grads[gi]))
                    gi += 1
                if "input" in modes[mode]:
                    out.input_grads.setdefault(mode, []).append(grads[gi])
    return out


def _identity(t: torch.Tensor) -> torch.Tensor:
    return t
