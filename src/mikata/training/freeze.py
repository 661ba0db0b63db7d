"""Freezing the early layers of a network for transfer learning.

``freeze_until(net, "blocks.12")`` freezes every parameter of the modules that come before
``blocks.12`` in ``named_modules`` order; ``blocks.12`` and everything after it train. Frozen
modules stay in eval mode during training, so their BatchNorm statistics keep the pretrained
values, and since no frozen tensor needs a gradient autograd records nothing for them.

Example:
    >>> frozen = freeze_until(handle.net, "blocks.12")     # doctest: +SKIP
    >>> set_training_mode(handle.net, frozen)              # doctest: +SKIP
"""

from __future__ import annotations

from torch import nn

from mikata.errors import ChoiceError


def freeze_until(net: nn.Module, layer: str | None) -> list[str]:
    """Freeze the modules before ``layer``; return their names (those to keep in eval mode)."""
    names = [n for n, _ in net.named_modules() if n]
    for p in net.parameters():
        p.requires_grad_(True)
    if layer is None:
        return []
    if layer not in names:
        raise ChoiceError("layer", layer, names, hint="run `mikata layers MODEL` to list them")
    boundary = names.index(layer)
    ancestors = {layer.rsplit(".", k)[0] for k in range(1, layer.count(".") + 1)}
    frozen = []
    for name in names[:boundary]:
        module = net.get_submodule(name)
        for p in module.parameters(recurse=False):
            p.requires_grad_(False)
        if name not in ancestors:
            frozen.append(name)
    # Buffers-only or parameter-free modules before the boundary hold nothing to freeze but
    # still go to eval mode (Dropout, BatchNorm without affine).
    return frozen


def set_training_mode(net: nn.Module, frozen: list[str]) -> None:
    """``net.train()`` except the frozen modules, which stay in eval mode (BatchNorm, Dropout)."""
    net.train()
    for name in frozen:
        net.get_submodule(name).eval()


def trainable_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
