"""zennit canonizers for the residual networks mikata knows: batch norm folded, residual sums as modules.

An LRP rule can only act where zennit has a module to hook. A residual block that adds its two branches
with ``+`` leaves the addition to the plain gradient, which hands the full relevance to both branches
(doubling it per block); zennit's ``ResNetCanonizer`` rewrites torchvision's blocks so the addition is a
``zennit.layer.Sum`` module that the Norm rule splits in proportion to each branch's contribution.
timm's ``BasicBlock`` / ``Bottleneck`` add in place (``x += shortcut``) with a different layout (drop
block, anti-aliasing, squeeze-excitation, drop path), so they get a forward of their own here, the same
computation with the addition made a ``Sum``. Classes are recognized by their defining module and name,
so neither torchvision nor timm is imported for a network that does not use them.

Example:
    >>> canonizers_for(timm.create_model("resnet18"))     # doctest: +SKIP
    [SequentialMergeBatchNorm, TimmResNetBlockCanonizer]
"""

from __future__ import annotations

import torch
from torch import nn

_TIMM_BLOCKS = {("timm.models.resnet", "BasicBlock"), ("timm.models.resnet", "Bottleneck")}


def _is_timm_block(module: nn.Module) -> bool:
    return (type(module).__module__, type(module).__name__) in _TIMM_BLOCKS


def _timm_basic_forward(self, x: torch.Tensor) -> torch.Tensor:
    """timm ``BasicBlock.forward`` with the residual addition as ``self.canonizer_sum``."""
    shortcut = x
    x = self.aa(self.act1(self.drop_block(self.bn1(self.conv1(x)))))
    x = self.bn2(self.conv2(x))
    return self.act2(_residual(self, x, shortcut))


def _timm_bottleneck_forward(self, x: torch.Tensor) -> torch.Tensor:
    """timm ``Bottleneck.forward`` with the residual addition as ``self.canonizer_sum``."""
    shortcut = x
    x = self.act1(self.bn1(self.conv1(x)))
    x = self.aa(self.act2(self.drop_block(self.bn2(self.conv2(x)))))
    x = self.bn3(self.conv3(x))
    return self.act3(_residual(self, x, shortcut))


def _residual(self, x: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
    if self.se is not None:
        x = self.se(x)
    if self.drop_path is not None:
        x = self.drop_path(x)
    if self.downsample is not None:
        shortcut = self.downsample(shortcut)
    return self.canonizer_sum(torch.stack([shortcut, x], dim=-1))  # (N, C, h, w, 2) -> (N, C, h, w)


def timm_resnet_canonizer():
    """A zennit ``AttributeCanonizer`` giving timm's ResNet blocks a forward whose residual sum is a module."""
    from zennit.canonizers import AttributeCanonizer
    from zennit.layer import Sum

    def attributes(name: str, module: nn.Module) -> dict | None:
        if not _is_timm_block(module):
            return None
        forward = _timm_bottleneck_forward if type(module).__name__ == "Bottleneck" else _timm_basic_forward
        return {"forward": forward.__get__(module), "canonizer_sum": Sum()}

    return AttributeCanonizer(attributes)


def canonizers_for(net: nn.Module) -> list:
    """The zennit canonizers that fit ``net``: torchvision's ResNet canonizer, timm ResNet blocks' residual
    sums, and otherwise (and besides) the sequential conv -> batch-norm merge."""
    from zennit.canonizers import SequentialMergeBatchNorm

    if type(net).__name__ == "ResNet" and type(net).__module__.startswith("torchvision"):
        from zennit.torchvision import ResNetCanonizer

        return [ResNetCanonizer()]
    canonizers = [SequentialMergeBatchNorm()]
    if any(_is_timm_block(m) for m in net.modules()):
        canonizers.append(timm_resnet_canonizer())
    return canonizers
