"""Hand-computed values on a one-conv model: Grad-CAM, saliency, Gradient x Input, guided rules, DeepLIFT."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mikata.attribution import explain
from mikata.models.handle import ModelHandle


class OneConv(nn.Module):
    """x (1, 1, 3, 3) -> 1x1 conv to 2 channels -> ReLU -> global mean -> linear to 2 classes."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([2.0, -1.0]).view(2, 1, 1, 1))
            self.conv.bias.copy_(torch.tensor([0.0, 1.0]))
            self.fc.weight.copy_(torch.tensor([[1.0, 3.0], [-2.0, 1.0]]))
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(self.pool(self.relu(self.conv(x))).flatten(1))


@pytest.fixture(scope="module")
def tiny():
    return ModelHandle(OneConv(), ["a", "b"], input_size=(3, 3), mean=(0.0,), std=(1.0,), in_channels=1,
                       default_layer="relu")


X = torch.tensor([[[[1.0, -1.0, 0.5], [2.0, 0.0, -0.5], [3.0, 1.0, -2.0]]]])  # (1, 1, 3, 3)


def _one(tiny, method, target=0):
    return explain(tiny, X, [method], targets=target)[0]


def test_gradcam_by_hand(tiny):
    # A = relu([2x, 1 - x]); dlogit_a/dA_c = fc.weight[0, c] / 9; weights = (1/9, 3/9)
    a = torch.stack([(2 * X[0, 0]).clamp_min(0), (1 - X[0, 0]).clamp_min(0)])  # (2, 3, 3)
    expected = ((1 / 9) * a[0] + (3 / 9) * a[1]).clamp_min(0)
    out = _one(tiny, "gradcam", 0)
    assert out.layer == "relu" and out.targets == [0]
    torch.testing.assert_close(out.raw[0], expected)
    torch.testing.assert_close(out.maps[0], expected)  # layer already at input resolution: no resampling


def test_saliency_and_grad_x_input_by_hand(tiny):
    # dlogit_b/dx = (-2 * 2 * [2x > 0] + 1 * (-1) * [1 - x > 0]) / 9
    x = X[0, 0]
    g = (-4 * (x > 0).float() - 1 * (x < 1).float()) / 9
    signed = explain(tiny, X, ["saliency-signed"], targets="b")[0]
    torch.testing.assert_close(signed.raw[0, 0], g)
    torch.testing.assert_close(explain(tiny, X, ["saliency"], targets=1)[0].raw[0, 0], g.abs())
    torch.testing.assert_close(explain(tiny, X, ["grad-x-input"], targets=1)[0].raw[0, 0], g * x)


def test_guided_and_deconv_by_hand(tiny):
    # class b: gradient reaching the ReLU outputs is fc.weight[1] / 9 = (-2/9, 1/9): guided keeps only the
    # positive channel (times its forward mask); deconv keeps it regardless of the mask.
    x = X[0, 0]
    guided = explain(tiny, X, ["guided-backprop"], targets=1)[0].raw[0, 0]
    torch.testing.assert_close(guided, -1 * (1 / 9) * (x < 1).float())
    deconv = explain(tiny, X, ["deconv"], targets=1)[0].raw[0, 0]
    torch.testing.assert_close(deconv, torch.full_like(x, -1 / 9))


def test_deeplift_rescale_by_hand(tiny):
    # zero baseline: A0 = relu([0, 1]) ; multiplier of each ReLU = (relu(z) - relu(z0)) / (z - z0)
    x = X[0, 0]
    z = torch.stack([2 * x, 1 - x])
    z0 = torch.tensor([0.0, 1.0]).view(2, 1, 1).expand_as(z)
    m = (z.clamp_min(0) - z0.clamp_min(0)) / (z - z0)
    m = torch.where((z - z0).abs() < 1e-10, (z > 0).float(), m)
    g = (1 / 9) * (1.0 * m[0] * 2 + 3.0 * m[1] * -1)
    out = explain(tiny, X, ["deeplift"], targets=0, options={"deeplift": {"baseline": "zero"}})[0]
    torch.testing.assert_close(out.raw[0, 0], g * x)
    assert abs(out.info["completeness_delta"][0]) < 1e-5
