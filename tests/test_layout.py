"""The feature-layout adapter: token and channels-last layers are seen as (N, C, h, w) by every consumer.

Two toy networks compute the same function; one keeps its features channels-first, the other as
channels-last (N, h, w, C) or as tokens (N, 1 + h*w, C) with a class token. Whatever a consumer
reads at the matching layer (captured activations, gradients, Grad-CAM, the scan's channel means)
must be equal between them.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mikata.attribution import explain
from mikata.hooks import capture
from mikata.models import ModelHandle
from mikata.models.layers import trace_layers
from mikata.models.layout import FeatureLayout, classify, is_grid


class ConvNet(nn.Module):
    """conv -> features (N, 8, 4, 4) -> pooled head; the channels-first twin."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 4, stride=4)
        self.feat = nn.Identity()
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        f = self.feat(torch.relu(self.conv(x)))  # (N, 8, 4, 4)
        return self.head(f.mean(dim=(2, 3)))


class ChannelsLast(nn.Module):
    """The same function with the features channels-last (N, 4, 4, 8), as a Swin stage gives them."""

    def __init__(self, twin: ConvNet):
        super().__init__()
        self.conv, self.head = twin.conv, twin.head
        self.feat = nn.Identity()

    def forward(self, x):
        f = self.feat(torch.relu(self.conv(x)).permute(0, 2, 3, 1))  # (N, 4, 4, 8)
        return self.head(f.mean(dim=(1, 2)))


class Tokens(nn.Module):
    """The same function through tokens (N, 1 + 16, 8): a class token first, patches row-major."""

    def __init__(self, twin: ConvNet):
        super().__init__()
        self.conv, self.head = twin.conv, twin.head
        self.cls = nn.Parameter(torch.randn(1, 1, 8))
        self.feat = nn.Identity()

    def forward(self, x):
        p = torch.relu(self.conv(x)).flatten(2).transpose(1, 2)  # (N, 16, 8)
        t = self.feat(torch.cat([self.cls.expand(len(x), -1, -1), p], dim=1))  # (N, 17, 8)
        return self.head(t[:, 1:].mean(1))


@pytest.fixture()
def twins():
    torch.manual_seed(0)
    base = ConvNet().eval()
    names = [f"c{i}" for i in range(5)]
    return {kind: ModelHandle(net, names, input_size=(16, 16), crop_fraction=1.0, default_layer="feat")
            for kind, net in (("nchw", base), ("nhwc", ChannelsLast(base).eval()), ("tokens", Tokens(base).eval()))}


def test_layouts_detected(twins):
    assert twins["nchw"].layout("feat") == FeatureLayout("nchw", (4, 4))
    assert twins["nhwc"].layout("feat") == FeatureLayout("nhwc", (4, 4))
    assert twins["tokens"].layout("feat") == FeatureLayout("tokens", (4, 4), prefix=1)
    for h in twins.values():  # every twin lists feat as a 4x4 map and picks it as the CAM layer
        traced = {l.name: l for l in trace_layers(h.net, 3, (16, 16))}
        assert traced["feat"].map_size == (4, 4) and traced["feat"].is_default


def test_capture_sees_one_layout_for_activations_and_gradients(twins):
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    seen = {}
    for kind, h in twins.items():
        with capture(h.net, ["feat"], gradients=True, layouts=h.layouts_for(["feat"])) as rec:
            h.model(x.requires_grad_(False))[:, 2].sum().backward() if any(
                p.requires_grad for p in h.net.parameters()) else None
        seen[kind] = (rec.activations["feat"], rec.gradients["feat"])
    ref_a, ref_g = seen["nchw"]
    assert ref_a.shape == (2, 8, 4, 4) and ref_g.shape == (2, 8, 4, 4)
    for kind in ("nhwc", "tokens"):
        a, g = seen[kind]
        torch.testing.assert_close(a, ref_a)
        torch.testing.assert_close(g, ref_g)
        assert a.is_contiguous()


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "layercam", "eigencam", "scorecam"])
def test_cam_maps_equal_across_layouts(twins, method):
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    maps = {k: explain(h, x, [method], targets=[3])[0].maps for k, h in twins.items()}
    for kind in ("nhwc", "tokens"):
        torch.testing.assert_close(maps[kind], maps["nchw"], rtol=1e-4, atol=1e-6)


def test_scan_channel_means_are_channels(twins):
    from mikata.scanning.steps import run_batch

    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    ref = run_batch(twins["nchw"], x, "feat", "head", gradcam=True)
    for kind in ("nhwc", "tokens"):
        for gradcam in (False, True):
            out = run_batch(twins[kind], x, "feat", "head", gradcam=gradcam)
            assert out.channels.shape == (3, 8)  # 8 channels, not 4 rows or 17 tokens
            torch.testing.assert_close(out.channels, ref.channels)
            if gradcam:
                torch.testing.assert_close(out.cams, ref.cams, rtol=1e-4, atol=1e-6)


def test_shape_rules():
    size = (224, 224)
    assert classify((768, 7, 7), nn.Identity(), size, [], set()).kind == "nchw"
    assert classify((7, 7, 768), nn.Identity(), size, [], set()).kind == "nhwc"
    assert classify((56, 56, 96), nn.LayerNorm(96), size, [], set()).kind == "nhwc"
    assert classify((3, 197, 64), nn.Identity(), size, [(14, 14)], {197}).kind == "none"  # per-head keys
    assert classify((3, 197, 197), nn.Dropout(), size, [(14, 14)], {197}).kind == "none"  # attention
    assert classify((197, 192), nn.LayerNorm(192), size, [(14, 14)], set()) == FeatureLayout("tokens", (14, 14), 1)
    assert classify((201, 192), nn.Identity(), size, [(14, 14)], set()) == FeatureLayout("tokens", (14, 14), 5)
    assert classify((49, 768), nn.Identity(), size, [], set()) == FeatureLayout("tokens", (7, 7), 0)
    assert not is_grid(197, 64, size) and is_grid(14, 14, size)
    # another input size: the token grid follows the probed aspect ratio
    t = torch.arange(2 * (1 + 12 * 12) * 4, dtype=torch.float32).reshape(2, 145, 4)
    v = FeatureLayout("tokens", (14, 14), 1).to_nchw(t)
    assert v.shape == (2, 4, 12, 12) and torch.equal(v[:, :, 0, 1], t[:, 2])


def test_add_nchw_edits_the_map_in_the_layers_own_layout(twins):
    """A hook that removes a (N, C, h, w) component from a layer's output does the same on every twin."""
    from mikata.hooks import attached, get_layer

    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    delta = torch.randn(2, 8, 4, 4, generator=torch.Generator().manual_seed(5))
    out = {}
    for kind, h in twins.items():
        layout = h.layout("feat")
        hook = (get_layer(h.net, "feat"), "forward", lambda m, a, o, layout=layout: layout.add_nchw(o, -delta))
        with attached([hook]), torch.no_grad():
            out[kind] = h.model(x)
    assert not torch.allclose(out["nchw"], twins["nchw"].model(x))
    for kind in ("nhwc", "tokens"):
        torch.testing.assert_close(out[kind], out["nchw"])
