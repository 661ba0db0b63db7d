"""Activation grids on the built-in EfficientNet-Lite0 and a real photo: tiles, values, scales, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mikata.data import load_image
from mikata.errors import ChoiceError
from mikata.hooks import capture
from mikata.inspect import activation_grid, parse_channels
from mikata.display import colorize, normalize_map


def _reference(handle, path, layer) -> np.ndarray:
    """The layer's output for the photo, captured independently of the code under test."""
    x = handle.preprocess([load_image(path)])
    with torch.inference_mode(), capture(handle.net, [layer]) as rec:
        handle.model(x)
    return rec.activations[layer][0].numpy()


def _cells(grid, thumb, n_slots, pad=4):
    """Tile regions (thumb x thumb) of ``render.tile``'s layout, row by row."""
    cols = int(np.ceil(np.sqrt(n_slots)))
    label_h = thumb // 10 + 6
    arr = np.asarray(grid)
    out = []
    for i in range(n_slots):
        r, c = divmod(i, cols)
        x0, y0 = pad + c * (thumb + pad), pad + r * (thumb + label_h + pad)
        out.append(arr[y0:y0 + thumb, x0:x0 + thumb])
    return out


@pytest.fixture(scope="module")
def chelsea_blocks3(lite0, photos):
    return _reference(lite0, photos["chelsea"], "blocks.3")  # (40, 28, 28)


def test_top_k_channels_are_the_strongest_and_match_hooks(lite0, photos, chelsea_blocks3):
    g = activation_grid(lite0, photos["chelsea"], "blocks.3", top=10)
    ref = chelsea_blocks3
    means = ref.reshape(ref.shape[0], -1).mean(axis=1)
    assert g.shape == ref.shape == (40, 28, 28)
    assert g.channels == list(np.argsort(-means, kind="stable")[:10])
    np.testing.assert_allclose(g.values, ref[g.channels], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(g.scores, means[g.channels], rtol=1e-5)
    assert list(g.scores) == sorted(g.scores, reverse=True)
    # 10 tiles on a 4x4 layout: 10 cells drawn, the rest left white.
    cells = _cells(g.grid, 96, 16)
    drawn = [bool((c != 255).any()) for c in cells]
    assert drawn == [True] * 10 + [False] * 6


def test_each_channel_is_scaled_to_its_own_range_and_drawn_as_such(lite0, photos, chelsea_blocks3):
    g = activation_grid(lite0, photos["chelsea"], "blocks.3", channels="0:9", thumb=84)
    assert g.channels == list(range(9)) and g.scale is None
    for i, c in enumerate(g.channels):
        np.testing.assert_allclose(g.display[i], normalize_map(chelsea_blocks3[c]), atol=1e-6)
    # The pixels drawn are the colormapped display values: 28 -> 84 px is an exact 3x nearest upscale.
    for i, cell in enumerate(_cells(g.grid, 84, 9)):
        expected = colorize(g.display[i], "viridis")                     # (28, 28, 3)
        np.testing.assert_array_equal(cell[1::3, 1::3], expected)


def test_shared_scale_keeps_strengths_comparable(lite0, photos, chelsea_blocks3):
    g = activation_grid(lite0, photos["chelsea"], "blocks.3", channels=[5, 1, 30], shared_scale=True)
    vals = chelsea_blocks3[[5, 1, 30]]
    lo, hi = vals.min(), vals.max()
    assert g.scale == pytest.approx((lo, hi), rel=1e-5)
    np.testing.assert_allclose(g.display, (vals - lo) / (hi - lo), atol=1e-6)
    assert g.display.min() == pytest.approx(0) and g.display.max() == pytest.approx(1)


def test_overlay_tiles_show_the_input_crop(lite0, photos):
    plain = activation_grid(lite0, photos["chelsea"], "stem", channels="0:4")
    over = activation_grid(lite0, photos["chelsea"], "stem", channels="0:4", overlay=True)
    assert over.values.shape == (4, 112, 112)
    np.testing.assert_array_equal(plain.values, over.values)
    assert np.abs(np.asarray(plain.grid, float) - np.asarray(over.grid, float)).mean() > 10


def test_default_draws_first_64_channels_of_a_wide_layer(lite0, photos):
    g = activation_grid(lite0, photos["coffee"], "head")
    assert g.shape == (1280, 7, 7) and g.channels == list(range(64))


def test_vector_layer_is_drawn_as_bars_with_its_values(lite0, photos):
    g = activation_grid(lite0, photos["chelsea"], "flatten", top=12)
    ref = _reference(lite0, photos["chelsea"], "flatten")          # (1280,)
    assert g.values.shape == (12,)
    np.testing.assert_allclose(g.values, np.sort(ref)[::-1][:12], rtol=1e-5)
    pooled = activation_grid(lite0, photos["chelsea"], "pool", channels=[3, 1])
    assert pooled.shape == (1280, 1, 1) and pooled.values.shape == (2,)
    np.testing.assert_allclose(pooled.values, ref[[3, 1]], rtol=1e-5)


def test_errors_list_valid_choices_and_leave_no_hooks(lite0, photos):
    with pytest.raises(ChoiceError, match="valid layers: stem"):
        activation_grid(lite0, photos["chelsea"], "blocks.99")
    with pytest.raises(ChoiceError, match=r"0\.\.31"):
        activation_grid(lite0, photos["chelsea"], "stem", channels="40")
    assert all(not m._forward_hooks for m in lite0.net.modules())


def test_parse_channels():
    assert parse_channels("0:4,10", 32) == [0, 1, 2, 3, 10]
    assert parse_channels("0:64:16", 32) == [0, 16]
    assert parse_channels(range(2, 5), 32) == [2, 3, 4]
    assert parse_channels([7, 7, 2], 32) == [7, 2]
    with pytest.raises(ChoiceError):
        parse_channels("a:b", 32)
    with pytest.raises(ChoiceError):
        parse_channels("40:50", 32)


def test_grayscale_model_maps_and_filters():
    """A one-channel (MNIST-like) classifier: maps overlay on the gray input, filters are one slice each."""
    from PIL import Image
    from sklearn.datasets import load_digits
    from torch import nn

    from mikata.inspect import filter_grid
    from mikata.models import ModelHandle

    gen = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(6, 10))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    handle = ModelHandle(net, [str(d) for d in range(10)], input_size=(32, 32), mean=(0.5,), std=(0.5,),
                         in_channels=1, crop_fraction=1.0)
    digit = Image.fromarray((load_digits().images[0] * 255 / 16).astype(np.uint8), "L").resize((32, 32))
    g = activation_grid(handle, digit, "1", overlay=True)
    x = handle.preprocess([digit])
    expected = torch.relu(net[0](x))[0].detach().numpy()           # (6, 32, 32)
    np.testing.assert_allclose(g.values, expected, rtol=1e-5, atol=1e-6)
    f = filter_grid(handle)
    assert f.layer == "0" and f.mode == "gray" and f.weights.shape == (6, 1, 3, 3)
