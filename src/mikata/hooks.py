"""The one place in mikata that registers hooks on a model.

Every hook lives inside a ``with`` block and is removed in ``finally``, also when the body raises.
``preserved`` puts back what a method may touch: train/eval mode and ``requires_grad``.

Example (``handle``: the built-in model, whose last convolution block is ``head``):
    >>> from mikata.hooks import capture
    >>> x = handle.preprocessing.preprocess([mikata.load_image("chelsea.png")])
    >>> with capture(handle.net, ["head"], gradients=True) as rec:
    ...     logits = handle.model(x)
    ...     logits[:, 281].sum().backward()
    >>> rec.activations["head"].shape, rec.gradients["head"].shape
    (torch.Size([1, 1280, 7, 7]), torch.Size([1, 1280, 7, 7]))
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Mapping, Protocol

import torch
from torch import nn

from mikata.errors import ChoiceError

HookKind = str  # "forward", "forward_pre", "forward_pre_kwargs", "backward", "backward_pre"


def get_layer(net: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name``; an unknown name lists the valid ones."""
    modules = dict(net.named_modules())
    if name not in modules or name == "":
        raise ChoiceError("layer", name, [n for n in modules if n], hint="`mikata layers MODEL` lists them")
    return modules[name]


@contextmanager
def attached(hooks: Iterable[tuple[nn.Module, HookKind, Callable]]) -> Iterator[None]:
    """Register ``(module, kind, fn)`` hooks for the duration of the block; always remove them."""
    handles = []
    try:
        for module, kind, fn in hooks:
            if kind == "forward":
                handles.append(module.register_forward_hook(fn))
            elif kind == "forward_pre":
                handles.append(module.register_forward_pre_hook(fn))
            elif kind == "forward_pre_kwargs":  # fn(module, args, kwargs) -> (args, kwargs) or None
                handles.append(module.register_forward_pre_hook(fn, with_kwargs=True))
            elif kind == "backward":
                handles.append(module.register_full_backward_hook(fn))
            elif kind == "backward_pre":
                handles.append(module.register_full_backward_pre_hook(fn))
            else:
                raise ValueError(f"unknown hook kind {kind!r}")
        yield
    finally:
        for h in handles:
            h.remove()


class Layout(Protocol):
    """What ``capture`` needs of a layer's layout (``mikata.models.layout.FeatureLayout``): a view as
    ``(N, C, h, w)``."""

    def to_nchw(self, t: torch.Tensor) -> torch.Tensor: ...


@dataclass
class Recording:
    """What ``capture`` saw: per layer name, its output (and input) and the gradient of its output."""

    activations: dict[str, torch.Tensor] = field(default_factory=dict)
    inputs: dict[str, torch.Tensor] = field(default_factory=dict)
    gradients: dict[str, torch.Tensor] = field(default_factory=dict)


def _first_tensor(value: object) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        for v in value:
            t = _first_tensor(v)
            if t is not None:
                return t
    return None


@contextmanager
def capture(
    net: nn.Module,
    layers: Iterable[str],
    gradients: bool = False,
    inputs: bool = False,
    detach: bool = True,
    layouts: Mapping[str, Layout] | None = None,
) -> Iterator[Recording]:
    """Record the outputs (and optionally inputs, output gradients) of named layers.

    A layer called several times in one forward keeps its last call. Recordings are the layer's
    output as it left the layer: copies, so in-place operations later in the forward (an in-place
    ReLU after a batch norm) do not change them. With ``detach=False`` the recorded activations stay
    in the graph, so a caller can differentiate with respect to them; the layer's consumers then get
    a copy (same values, same gradients).

    ``layouts`` (``handle.layouts_for(layers)``) maps a layer to the view that turns its output into
    ``(N, C, h, w)`` (tokens, channels-last): its activations and gradients are recorded through it,
    so every consumer sees one layout. Layers not in it are recorded as they come.

    Example:
        >>> x = handle.preprocessing.preprocess([mikata.load_image("chelsea.png")])
        >>> with mikata.capture(handle.net, ["head"], gradients=True) as rec:
        ...     handle.model(x)[0, 281].backward()                 # the gradient of the "tabby" logit
        >>> rec.activations["head"].shape, rec.gradients["head"].shape
        (torch.Size([1, 1280, 7, 7]), torch.Size([1, 1280, 7, 7]))
    """
    rec = Recording()
    hooks = []
    for name in dict.fromkeys(layers):
        module = get_layer(net, name)
        view = layouts[name].to_nchw if layouts and name in layouts else (lambda t: t)

        def hook(mod, args, out, name=name, view=view):
            t = _first_tensor(out)
            if t is None:
                return None
            if inputs:  # the input as it reached the layer; an in-place op inside the layer may change it
                i = _first_tensor(args)
                if i is not None:
                    rec.inputs[name] = i.detach().clone() if detach else i
            if gradients and t.requires_grad:
                # A tensor hook lives and dies with this activation: nothing to remove later.
                t.register_hook(lambda g, name=name, view=view: rec.gradients.__setitem__(name, view(g.detach())))
            if detach:  # a copy: an in-place op after the layer (DenseNet's F.relu(inplace=True)) cannot reach it
                rec.activations[name] = view(t.detach().clone()).contiguous()
                return None
            rec.activations[name] = view(t)
            # in the graph: the layer's consumers get a copy to overwrite, the recorded output stays intact
            return t.clone() if isinstance(out, torch.Tensor) and not torch.is_inference_mode_enabled() else None

        hooks.append((module, "forward", hook))
    with attached(hooks):
        yield rec


@contextmanager
def preserved(net: nn.Module, values: bool = False) -> Iterator[nn.Module]:
    """Restore each module's training flag and each parameter's ``requires_grad`` afterwards.

    With ``values=True`` also every parameter and buffer *value* and object, bit for bit, even when
    the block raises: for code that rewrites weights while it runs (zennit's canonizers fold batch
    norm into convolutions and undo it on exit, but not when they fail half-way). It costs one copy
    of the weights, so only such callers ask for it.
    """
    modes = {m: m.training for m in net.modules()}
    grads = {p: p.requires_grad for p in net.parameters()}
    saved = _snapshot_values(net) if values else []
    try:
        yield net
    finally:
        if values:
            _restore_values(saved)
        for m, mode in modes.items():
            m.training = mode
        for p, req in grads.items():
            p.requires_grad_(req)


def _snapshot_values(net: nn.Module) -> list[tuple]:
    """``(table, name, object, its data tensor, a copy of the values)`` for every parameter and buffer slot."""
    out = []
    for m in net.modules():
        for table in (m._parameters, m._buffers):
            for name, t in table.items():
                out.append((table, name, t, None if t is None else t.data,
                            None if t is None else t.detach().clone()))
    return out


def _restore_values(saved: list[tuple]) -> None:
    with torch.no_grad():
        for table, name, obj, data, copy in saved:
            table[name] = obj  # a slot the block filled (e.g. a bias created for a merge) is emptied again
            if obj is None:
                continue
            if obj.data_ptr() != data.data_ptr() or obj.shape != data.shape:
                obj.data = data  # the block swapped the storage (``p.data = ...``): put the original back
            if obj.shape != copy.shape or not torch.equal(obj, copy):
                obj.data = copy
