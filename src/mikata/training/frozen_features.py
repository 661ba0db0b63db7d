"""Compute the frozen part of a network once, then train only the rest.

When the layers before ``freeze_until`` are frozen (eval mode, no gradients) and the training
images are not augmented, the input of the first trainable layer is the same every epoch. This
module computes it once per image and, during training, feeds it to that layer through a
``forward_pre`` hook while the frozen part runs on a tiny stand-in input (a few pixels), so an
epoch costs only the trainable layers. It works for any network whose trainable layers see the
frozen part only through the boundary layer's input; ``check_shortcut`` proves that on real
images and ``train`` falls back to full forward passes where it does not hold (e.g. a boundary
inside a residual block, whose skip connection bypasses it).

Example:
    >>> feats = boundary_inputs(handle, "blocks.12", x)              # doctest: +SKIP
    >>> with started_at(handle.net, "blocks.12") as feed:            # doctest: +SKIP
    ...     logits = feed(handle.model, feats[:8])                   # doctest: +SKIP
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch

from mikata.hooks import attached, get_layer
from mikata.models.handle import ModelHandle

STAND_IN_PIXELS = 8


class _Reached(Exception):
    """Raised by the hook on the boundary layer: everything after it is not needed for its input."""


def boundary_inputs(handle: ModelHandle, layer: str, x: torch.Tensor, batch_size: int = 128,
                    memory_format: torch.memory_format = torch.contiguous_format, progress: bool = False,
                    desc: str = "cache the frozen layers' output") -> torch.Tensor:
    """The input of ``layer`` for every image of ``x`` ``(N, C, H, W)``, in eval mode: ``(N, ...)``.

    Batches run on ``handle.device``; the features are kept where ``x`` is (CPU memory, usually).
    Each forward pass stops when it reaches ``layer`` (its first call), so the layers after it,
    whose output is not needed, never run. ``progress``: a bar counting images with an estimate
    after the first batch (on a large dataset this pass takes minutes).
    """
    from mikata.progress import Progress

    out = []
    got: list[torch.Tensor] = []

    def stop(mod, args):
        got.append(args[0])
        raise _Reached

    was_training = handle.net.training
    handle.net.eval()
    try:
        with torch.inference_mode(), attached([(get_layer(handle.net, layer), "forward_pre", stop)]), \
                Progress(len(x), desc, "img", progress and len(x) > batch_size, first="first batch") as bar:
            for i in range(0, len(x), batch_size):
                xb = x[i:i + batch_size].to(handle.device, non_blocking=True).float()
                got.clear()
                try:
                    handle.model(xb.contiguous(memory_format=memory_format))
                except _Reached:
                    pass
                if not got:
                    raise RuntimeError(f"layer {layer} did not run in the forward pass")
                out.append(got[0].to(x.device))  # (B, ...)
                bar.update(len(xb))
    finally:
        handle.net.train(was_training)
    return torch.cat(out) if out else x.new_empty(0)


@contextmanager
def started_at(net: torch.nn.Module, layer: str) -> Iterator[Callable]:
    """Yield ``feed(model, features)``: run ``model`` with ``layer``'s input replaced by ``features``."""
    module = get_layer(net, layer)
    holder: dict = {}

    def replace_input(mod, args):
        holder["calls"] = holder.get("calls", 0) + 1
        return (holder["features"],) + tuple(args[1:])

    def feed(model: Callable, features: torch.Tensor) -> torch.Tensor:
        holder["features"], holder["calls"] = features, 0
        c = holder.get("in_channels", 3)
        stand_in = torch.zeros(len(features), c, STAND_IN_PIXELS, STAND_IN_PIXELS,
                               device=features.device)  # (B, C, s, s)
        out = model(stand_in)
        if holder["calls"] != 1:
            raise RuntimeError(f"layer {layer} ran {holder['calls']} times in one forward pass")
        return out

    holder["in_channels"] = next((m.in_channels for m in net.modules() if isinstance(m, torch.nn.Conv2d)), 3)
    with attached([(module, "forward_pre", replace_input)]):
        yield feed


def check_shortcut(handle: ModelHandle, layer: str, x: torch.Tensor, atol: float = 1e-4) -> bool:
    """True when feeding ``layer``'s recorded input reproduces the full network's logits on ``x``."""
    was_training = handle.net.training
    handle.net.eval()
    try:
        with torch.inference_mode():
            x = x.to(handle.device).float()
            full = handle.model(x)  # (n, K)
            feats = boundary_inputs(handle, layer, x)
            with started_at(handle.net, layer) as feed:
                short = feed(handle.model, feats)
        return short.shape == full.shape and bool(torch.allclose(short, full, atol=atol, rtol=1e-4))
    except (RuntimeError, ValueError, IndexError, TypeError, AssertionError):
        # AssertionError: a model that checks its input size (timm's ViT patch embedding) refuses the
        # small stand-in image, so the shortcut cannot be used: train through the whole network
        return False
    finally:
        handle.net.train(was_training)
