"""What one dummy forward tells a ``ModelHandle`` about its network: a trailing softmax, probabilities
returned, the number of outputs, the head. ``probe_model`` makes that forward; a loader that traces
the layers anyway reads the same answers from its own forward (``layers.trace_and_probe``)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn

from mikata.models.outputs import extract_logits


@dataclass
class Probe:
    """What one dummy forward tells a handle about its network."""

    softmax_layer: str | None = None  # a trailing softmax module, whose input is used instead
    log_of_probs: bool = False        # the output is probabilities (a functional softmax)
    outputs: int | None = None        # None: the model could not take the probe
    head: str | None = None           # the last nn.Linear called
    conv_head: str | None = None      # without one: a conv classifier (SqueezeNet), the last parametric layer


def probe_model(net: nn.Module, in_channels: int, input_size: tuple[int, int]) -> Probe:
    """One dummy forward: a trailing softmax module? probabilities returned? how many outputs? the head?

    The outputs count is None when the model cannot take the probe (the real call reports that
    later); the head then falls back to the last ``nn.Linear`` registered.
    """
    from mikata.hooks import attached

    order: list[tuple[str, nn.Module]] = []
    leaves = [(n, m) for n, m in net.named_modules() if n and not list(m.children())]
    hooks = [(m, "forward", lambda mod, a, o, n=n: order.append((n, mod))) for n, m in leaves]
    from mikata.devices import module_device

    x = torch.zeros(1, in_channels, *input_size, device=module_device(net))
    try:
        with torch.inference_mode(), attached(hooks):
            out = net(x)
    except Exception:  # a model that cannot take this probe is reported later, by the real call
        return probe_from_forward(net, [], None)
    return probe_from_forward(net, order, out)


def probe_from_forward(net: nn.Module, order: list[tuple[str, nn.Module]], output: object) -> Probe:
    """The ``Probe`` from one dummy forward's leaf modules in the order they finished and its output
    (None: the forward failed). ``trace_and_probe`` reads the same forward as the layer listing."""
    linears = [n for n, m in net.named_modules() if isinstance(m, nn.Linear)]
    try:
        out = None if output is None else extract_logits(output)
    except Exception:  # an output without class scores: reported later, by the real call
        out = None
    if out is None:  # a model that cannot take this probe is reported later, by the real call
        return Probe(head=linears[-1] if linears else None)
    called = [n for n, m in order if isinstance(m, nn.Linear)]
    head = called[-1] if called else (linears[-1] if linears else None)
    outputs = int(out.shape[-1])
    conv_head = None
    if head is None:  # a conv that maps to the classes with nothing learned after it (SqueezeNet's classifier.1)
        learned = [(n, m) for n, m in order if any(True for _ in m.parameters(recurse=False))]
        if learned and isinstance(learned[-1][1], nn.Conv2d) and learned[-1][1].out_channels == outputs:
            conv_head = learned[-1][0]
    if order and isinstance(order[-1][1], (nn.Softmax, nn.LogSoftmax)):
        return Probe(order[-1][0], False, outputs, head, conv_head)
    if out.dim() == 2 and out.shape[1] > 1 and bool((out >= 0).all()) and torch.allclose(out.sum(1), torch.ones(1, device=out.device)):
        warnings.warn("this model seems to return probabilities from a functional softmax; mikata uses their "
                      "log as logits (equal up to a per-image constant). Return logits for exact gradients.",
                      stacklevel=4)
        return Probe(None, True, outputs, head, conv_head)
    return Probe(None, False, outputs, head, conv_head)
