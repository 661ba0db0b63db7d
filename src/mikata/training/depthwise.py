"""Faster weight gradients for large depthwise convolutions on small feature maps (CPU training).

oneDNN, PyTorch's CPU convolution library, computes the weight gradient of a 3x3 depthwise
convolution with a fast kernel, but a 5x5 one (EfficientNet's blocks) through a slow general path:
at 64-px inputs, where the late blocks see 2x2 to 4x4 maps, that one gradient took ~40% of a
fine-tuning step while the forward and the input gradient took ~1%. Written as a sum over the
kernel's taps (for each tap, multiply the shifted input by the output gradient and sum over batch
and positions) it costs ``k*k`` vectorized multiply-sums over channels-last memory: 5-20x faster
at these sizes, slower once the map has more than ``MAX_POSITIONS`` output positions.

``faster_depthwise_grads(net)`` routes the convolutions where that holds (CPU, float32,
channels-last input, depthwise, kernel larger than 3x3, a weight that trains, at most
``MAX_POSITIONS`` output positions) through ``DepthwiseConv2d`` while the block runs; every other
call, and every call after the block, is PyTorch's own convolution. The forward pass and the input
gradient are PyTorch's; only the weight gradient's summation order differs (float32 rounding).

Example:
    >>> with faster_depthwise_grads(handle.net):           # doctest: +SKIP
    ...     loss = F.cross_entropy(handle.model(x), y)     # doctest: +SKIP
    ...     loss.backward()                                # doctest: +SKIP
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn
from torch.nn import functional as F

# Output positions (Ho * Wo) up to which the tap sum beat oneDNN for 5x5 kernels on a 2-core
# AVX-512 CPU (2x2: 20x, 4x4: 3x, 5x5: 1.5x faster; 7x7 a tie; 14x14 2x slower).
MAX_POSITIONS = 25


def tap_weight_grad(x: torch.Tensor, grad: torch.Tensor, kernel: tuple[int, int],
                    stride: tuple[int, int]) -> torch.Tensor:
    """Weight gradient ``(C, 1, kh, kw)`` of a depthwise convolution (no padding, no dilation).

    ``x`` ``(B, C, H, W)``: its input; ``grad`` ``(B, C, Ho, Wo)``: the gradient of its output.
    """
    _, c, ho, wo = grad.shape
    (kh, kw), (sh, sw) = kernel, stride
    out = x.new_empty(c, kh, kw)
    for i in range(kh):
        for j in range(kw):
            shifted = x[:, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]  # (B, C, Ho, Wo)
            out[:, i, j] = (shifted * grad).sum((0, 2, 3))
    return out.unsqueeze(1)


class DepthwiseConv2d(torch.autograd.Function):
    """``F.conv2d`` with ``groups = channels``; its backward computes the weight gradient by ``tap_weight_grad``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                stride: tuple[int, int], padding: tuple[int, int]) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding, ctx.has_bias = stride, padding, bias is not None
        return F.conv2d(x, weight, bias, stride, padding, 1, weight.shape[0])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_x = grad_w = grad_b = None
        if need_x:
            grad_x = torch.ops.aten.convolution_backward(
                grad, x, weight, None, list(ctx.stride), list(ctx.padding), [1, 1], False, [0, 0], weight.shape[0],
                [True, False, False])[0]
        if need_w:
            ph, pw = ctx.padding
            padded = F.pad(x, [pw, pw, ph, ph]) if ph or pw else x
            grad_w = tap_weight_grad(padded, grad, tuple(weight.shape[-2:]), ctx.stride)
        if need_b and ctx.has_bias:
            grad_b = grad.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None, None


def _output_positions(x: torch.Tensor, conv: nn.Conv2d) -> int:
    (h, w), (kh, kw), (sh, sw) = x.shape[-2:], conv.kernel_size, conv.stride
    if isinstance(conv.padding, str):  # "same" (stride 1: one output per input position) or "valid"
        return h * w if conv.padding == "same" else max(0, h - kh + 1) * max(0, w - kw + 1)
    ph, pw = conv.padding
    return max(0, (h + 2 * ph - kh) // sh + 1) * max(0, (w + 2 * pw - kw) // sw + 1)


def uses_tap_grads(conv: nn.Conv2d, x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether this call of ``conv`` on ``x`` goes through ``DepthwiseConv2d`` (see the module doc)."""
    return (torch.is_grad_enabled() and weight.requires_grad and x.device.type == "cpu"
            and x.dtype == torch.float32 and weight.dtype == torch.float32 and x.dim() == 4
            and not torch.is_autocast_enabled("cpu")
            and x.is_contiguous(memory_format=torch.channels_last)
            and _output_positions(x, conv) <= MAX_POSITIONS)


def _eligible(conv: nn.Module) -> bool:
    """Depthwise, larger than 3x3, zero padding given as numbers, no dilation."""
    return (isinstance(conv, nn.Conv2d) and conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels
            and conv.kernel_size[0] * conv.kernel_size[1] > 9 and conv.dilation == (1, 1)
            and conv.padding_mode == "zeros" and not isinstance(conv.padding, str)
            and "_conv_forward" not in vars(conv))


@contextmanager
def faster_depthwise_grads(net: nn.Module) -> Iterator[int]:
    """Inside the block, ``net``'s eligible depthwise convolutions use ``DepthwiseConv2d`` where it is faster.

    Yields how many convolutions may take the tap sum; ``net`` is left as it was on exit (also on errors).
    """
    patched = [m for m in net.modules() if _eligible(m)]

    def routed(conv: nn.Conv2d):
        plain = conv._conv_forward  # the class's method, bound to this module

        def conv_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
            if uses_tap_grads(conv, x, weight):
                return DepthwiseConv2d.apply(x, weight, bias, conv.stride, conv.padding)
            return plain(x, weight, bias)

        return conv_forward

    try:
        for conv in patched:
            conv._conv_forward = routed(conv)  # an instance attribute: shadows the method for this module only
        yield len(patched)
    finally:
        for conv in patched:
            vars(conv).pop("_conv_forward", None)
