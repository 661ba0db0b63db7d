"""Filter grids: resnet18's first layer in RGB, EfficientNet-Lite0's depthwise filters, grouped convs, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mikata.errors import ChoiceError
from mikata.inspect import conv_layers, filter_grid
from mikata.inspect.filters import GAP_COLOR


def _tile_pixels(g, index, block=None, pad=4):
    """The colors at the centers of the weight cells of tile ``index`` in ``g.grid``.

    ``block`` is the tile's size in weight cells (rows, cols) when it is not square (tile centers it).
    """
    cols = int(np.ceil(np.sqrt(len(g.filters))))
    label_h = g.thumb // 10 + 6
    r, c = divmod(index, cols)
    x0, y0 = pad + c * (g.thumb + pad), pad + r * (g.thumb + label_h + pad)
    if block is not None:
        y0 += (g.thumb - block[0] * g.cell) // 2
        x0 += (g.thumb - block[1] * g.cell) // 2
    arr = np.asarray(g.grid)[y0:y0 + g.thumb, x0:x0 + g.thumb]
    px = arr[g.cell // 2::g.cell, g.cell // 2::g.cell]
    return px if block is None else px[:block[0], :block[1]]


def test_first_layer_rgb_filters_match_resnet18_weights(resnet18):
    g = filter_grid(resnet18)                                    # default: the first conv
    w = resnet18.net.conv1.weight.detach().numpy()               # (64, 3, 7, 7)
    assert g.layer == "conv1" and g.mode == "rgb"
    assert g.weight_shape == (64, 3, 7, 7) and g.filters == list(range(64))
    np.testing.assert_array_equal(g.weights, w)                  # same order, same values
    peak = np.abs(w).reshape(64, -1).max(axis=1)
    expected = 0.5 + 0.5 * w.transpose(0, 2, 3, 1) / peak[:, None, None, None]  # (64, 7, 7, 3)
    np.testing.assert_allclose(g.display, expected, atol=1e-6)
    # Sign stays visible: brighter than mid gray exactly where the weight is positive.
    hwc = w.transpose(0, 2, 3, 1)
    assert np.array_equal(g.display > 0.5, hwc > 0) and np.array_equal(g.display < 0.5, hwc < 0)
    # The grid shows those colors, filter i in tile i.
    for i in (0, 9, 63):
        np.testing.assert_array_equal(_tile_pixels(g, i), (expected[i] * 255).round().astype(np.uint8))
    # A non-convolution layer of resnet18 names its convolutions.
    with pytest.raises(ChoiceError) as err:
        filter_grid(resnet18, "bn1")
    assert err.value.choices == conv_layers(resnet18.net) and err.value.choices[:2] == ["conv1", "layer1.0.conv1"]


def test_depthwise_filters_of_lite0(lite0):
    layer = "blocks.1.depthwise.conv"
    conv = lite0.net.get_submodule(layer)
    assert conv.groups == conv.in_channels == 96
    g = filter_grid(lite0, layer, max_filters=96)
    w = conv.weight.detach().numpy()                             # (96, 1, 3, 3)
    assert g.mode == "gray" and g.weight_shape == (96, 1, 3, 3) and len(g.filters) == 96
    assert g.inputs == [[i] for i in range(96)]                  # each filter sees its own channel
    np.testing.assert_array_equal(g.weights, w)
    peak = np.abs(w).reshape(96, -1).max(axis=1)
    np.testing.assert_allclose(g.display, 0.5 + 0.5 * w / peak[:, None, None, None], atol=1e-6)
    for i in (0, 50, 95):
        gray = (g.display[i, 0] * 255).round().astype(np.uint8)
        np.testing.assert_array_equal(_tile_pixels(g, i), np.repeat(gray[..., None], 3, axis=-1))
    assert filter_grid(lite0).layer == "stem.conv"


def test_grouped_conv_filters_see_their_groups_inputs():
    gen = torch.Generator().manual_seed(0)
    conv = nn.Conv2d(8, 12, 3, groups=4)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen))
    net = nn.Sequential(conv, nn.ReLU())
    g = filter_grid(net, "0")
    assert g.mode == "gray" and g.groups == 4 and g.weights.shape == (12, 2, 3, 3)
    assert g.inputs[0] == [0, 1] and g.inputs[4] == [2, 3] and g.inputs[11] == [6, 7]
    # Two input slices per filter, laid side by side: both drawn on the filter's own symmetric scale.
    w = conv.weight.detach().numpy()
    px = _tile_pixels(g, 5, block=(3, 7))  # (3, 7, 3): slice, gap, slice
    peak = np.abs(w[5]).max()
    for j, x0 in enumerate((0, 4)):
        np.testing.assert_array_equal(px[:, x0:x0 + 3, 0], (255 * (0.5 + 0.5 * w[5, j] / peak)).round())
    assert (px[:, 3] == GAP_COLOR).all()                         # the gap column between the two slices


def test_unknown_and_non_conv_layers_list_the_convolutions(lite0):
    convs = conv_layers(lite0.net)
    assert convs[:3] == ["stem.conv", "blocks.0.depthwise.conv", "blocks.0.project.conv"] and len(convs) == 49
    with pytest.raises(ChoiceError) as err:
        filter_grid(lite0, "stem.bn")
    assert err.value.choices == convs and "BatchNorm2d, not a convolution" in str(err.value)
    with pytest.raises(ChoiceError, match="valid convolution layers: stem.conv, blocks.0.depthwise.conv"):
        filter_grid(lite0, "blocks.99.conv")
    with pytest.raises(ChoiceError, match="convolutions inside it: blocks.2.expand.conv"):
        filter_grid(lite0, "blocks.2")
