"""Depthwise weight gradients by a tap sum (training.depthwise) against PyTorch's own convolution backward."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.nn import functional as F

from mikata.training.depthwise import MAX_POSITIONS, DepthwiseConv2d, faster_depthwise_grads
from mikata.training.freeze import freeze_until


def _node_names(t: torch.Tensor) -> set[str]:
    """Names of every autograd node behind ``t``."""
    seen, todo, names = set(), [t.grad_fn], set()
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        todo += [n for n, _ in node.next_functions]
    return names


@pytest.mark.parametrize("size,kernel,stride,padding,bias", [(6, 5, 1, 0, False), (5, 5, 1, 2, True),
                                                              (9, 5, 2, 2, True), (7, 3, 2, 1, False)])
def test_tap_sum_gradients_match_pytorch_conv_backward(size, kernel, stride, padding, bias):
    g = torch.Generator().manual_seed(size * kernel + stride)
    x = torch.randn(3, 8, size, size, generator=g).contiguous(memory_format=torch.channels_last)
    w = torch.randn(8, 1, kernel, kernel, generator=g)
    b = torch.randn(8, generator=g) if bias else None
    upstream = None
    grads = []
    for fn in (lambda x, w, b: F.conv2d(x, w, b, stride, padding, 1, 8),  # reference: PyTorch (oneDNN) autograd
               lambda x, w, b: DepthwiseConv2d.apply(x, w, b, (stride, stride), (padding, padding))):
        xs, ws = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
        bs = b.clone().requires_grad_(True) if bias else None
        out = fn(xs, ws, bs)  # (3, 8, Ho, Wo)
        upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)) if upstream is None else upstream
        out.backward(upstream)
        grads.append((out.detach(), xs.grad, ws.grad, bs.grad if bias else None))
    (ref_out, ref_x, ref_w, ref_b), (out, gx, gw, gb) = grads
    assert torch.equal(out, ref_out)  # the forward is PyTorch's own
    assert torch.allclose(gx, ref_x, atol=1e-5) and gw.shape == ref_w.shape
    assert torch.allclose(gw, ref_w, rtol=1e-4, atol=1e-4)
    if bias:
        assert torch.allclose(gb, ref_b, atol=1e-4)


def test_only_small_maps_of_trainable_depthwise_convs_take_the_tap_sum_and_the_net_is_restored(lite0):
    net = copy.deepcopy(lite0.net)
    freeze_until(net, "blocks.9")
    net.to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 48, 48).contiguous(memory_format=torch.channels_last)  # blocks 9-15 see 3x3 and 2x2 maps

    def run(fast: bool) -> tuple[set[str], dict[str, torch.Tensor]]:
        net.zero_grad(set_to_none=True)
        net.eval()  # same BatchNorm statistics in both runs
        with faster_depthwise_grads(net) if fast else torch.enable_grad():
            loss = net(x).logsumexp(1).sum()
            names = _node_names(loss)
        loss.backward()
        return names, {k: p.grad for k, p in net.named_parameters() if p.grad is not None}

    plain_nodes, plain = run(False)
    fast_nodes, fast = run(True)
    assert "DepthwiseConv2dBackward" in fast_nodes and "DepthwiseConv2dBackward" not in plain_nodes
    assert plain.keys() == fast.keys() and "blocks.8.depthwise.conv.weight" not in fast  # frozen: no gradient
    for k in plain:
        assert torch.allclose(fast[k], plain[k], rtol=1e-3, atol=1e-5 * plain[k].abs().max()), k
    assert all("_conv_forward" not in vars(m) for m in net.modules())  # every module as it was

    with faster_depthwise_grads(net) as routed:
        assert routed == 9  # lite0's 5x5 depthwise convolutions (the 3x3 ones keep oneDNN's fast kernel)
    assert all("_conv_forward" not in vars(m) for m in net.modules())


def test_large_maps_frozen_weights_and_no_grad_calls_keep_pytorchs_convolution():
    conv = torch.nn.Conv2d(8, 8, 5, padding=2, groups=8)
    small = torch.randn(2, 8, 5, 5).contiguous(memory_format=torch.channels_last)  # 25 output positions
    large = torch.randn(2, 8, 6, 6).contiguous(memory_format=torch.channels_last)  # 36
    assert 5 * 5 <= MAX_POSITIONS < 6 * 6
    with faster_depthwise_grads(conv) as routed:
        assert routed == 1
        assert "DepthwiseConv2dBackward" in _node_names(conv(small))
        assert "DepthwiseConv2dBackward" not in _node_names(conv(large))
        assert "DepthwiseConv2dBackward" not in _node_names(conv(small.contiguous()))  # NCHW: oneDNN is faster
        with torch.no_grad():
            assert conv(small).grad_fn is None
        conv.requires_grad_(False)
        assert conv(small.requires_grad_(True)).grad_fn is not None
        assert "DepthwiseConv2dBackward" not in _node_names(conv(small))  # a frozen weight: nothing to speed up
    assert "_conv_forward" not in vars(conv)
    with faster_depthwise_grads(torch.nn.Conv2d(8, 8, 3, padding=1, groups=8)) as routed:
        assert routed == 0  # 3x3: oneDNN's own kernel is fast
