"""Properties and contracts: IG completeness, SmoothGrad at sigma 0, class-specific maps, shared passes
equal separate ones, errors listing choices, and the model left exactly as it was (also after errors)."""

from __future__ import annotations

import pytest
import torch

from attribution_helpers import assert_untouched, snapshot
from mikata.attribution import METHODS, NotSpatialError, explain, registry
from mikata.errors import ChoiceError

SIZE = 64
# the untouched-model checks run every method on a 40 px crop: resnet18's layer4 is still 2 x 2 there (40 -> 20 ->
# 10 -> 5 -> 3 -> 2), as at 64 px, and Score-CAM's 512 masked forwards per target cost a third
CROP = 40
FAST_OPTIONS = {"smoothgrad": {"samples": 2}, "smoothgrad-squared": {"samples": 2}, "vargrad": {"samples": 2},
                "integrated-gradients": {"steps": 4}, "occlusion": {"window": 32, "stride": 32},
                "lime": {"samples": 16, "segments": 8}}


@pytest.fixture(scope="module")
def r18(torchvision):
    from mikata.models import load_model

    torch.manual_seed(0)
    return load_model("torchvision:resnet18", pretrained=False)


@pytest.fixture(scope="module")
def x():
    return torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))


def test_ig_completeness_64_steps():
    """sum of IG attributions = f(x) - f(baseline) within 1% at 64 steps (a small random ReLU CNN;
    real ImageNet nets can need more steps: the delta is reported so users can check)."""
    from mikata.models.handle import ModelHandle
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, stride=2), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4))
    handle = ModelHandle(net, list("abcd"), input_size=(32, 32))
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    a = explain(handle, x, ["integrated-gradients"], options={"integrated-gradients": {"steps": 64,
                                                                                       "baseline": "black"}})[0]
    with torch.no_grad():
        black = (0 - torch.tensor(handle.mean).view(1, 3, 1, 1)) / torch.tensor(handle.std).view(1, 3, 1, 1)
        t = torch.tensor(a.targets)[:, None]
        gap = (handle.model(x).gather(1, t) - handle.model(black.expand_as(x)).gather(1, t))[:, 0]
    delta = torch.tensor(a.info["completeness_delta"])
    torch.testing.assert_close(a.raw.sum(dim=(1, 2, 3)) - gap, delta, rtol=1e-3, atol=1e-4)
    assert (delta.abs() <= 0.01 * gap.abs()).all(), (delta, gap)


def test_smoothgrad_sigma_zero_is_its_base(r18, x):
    for base in ("saliency", "guided-backprop"):
        sg = explain(r18, x[:1], ["smoothgrad"], options={"smoothgrad": {"sigma": 0.0, "samples": 2, "base": base}})[0]
        plain = explain(r18, x[:1], [base])[0]
        torch.testing.assert_close(sg.raw, plain.raw, rtol=1e-5, atol=1e-7)


def test_two_classes_give_different_maps(r18, x):
    for method in ("gradcam", "saliency", "guided-gradcam", "occlusion"):
        a, b = explain(r18, x, [method], targets=[3, 700], options=FAST_OPTIONS)
        assert a.targets == [3, 3] and b.targets == [700, 700]
        assert not torch.allclose(a.raw, b.raw)


def test_shared_pass_equals_separate_calls(r18, x):
    x = x[:1]
    together = explain(r18, x, ["gradcam", "saliency", "guided-backprop", "guided-gradcam"], targets="top2")
    assert [a.method for a in together][:3] == ["gradcam"] * 2 + ["saliency"]
    for a in together:
        alone = [b for b in explain(r18, x, [a.method], targets="top2") if b.target_spec == a.target_spec][0]
        assert a.targets == alone.targets
        torch.testing.assert_close(a.raw, alone.raw, rtol=1e-5, atol=1e-7)


def test_topk_ranks_are_sorted(r18, x):
    maps = explain(r18, x, ["gradcam"], targets="top3")
    with torch.no_grad():
        top = r18.model(x).topk(3, dim=1).indices
    assert [a.target_spec for a in maps] == ["top1", "top2", "top3"]
    for k, a in enumerate(maps):
        assert a.targets == top[:, k].tolist()
        assert a.maps.shape == (2, SIZE, SIZE)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_leaves_the_model_untouched(r18, x, method):
    x = x[:1, :, :CROP, :CROP]
    r18.net.layer1.train()  # an unusual mode that must survive (explain runs in eval mode and restores it)
    r18.net.fc.weight.requires_grad_(False)
    before = snapshot(r18.model)
    try:
        if registry.get(method).kind == "attention":  # transformers only: refused on a CNN, model untouched
            from mikata.models.attention import NoAttentionError

            with pytest.raises(NoAttentionError):
                explain(r18, x, [method], targets="top2", options=FAST_OPTIONS)
            assert_untouched(r18.model, before)
            return
        out = explain(r18, x, [method], targets="top2", options=FAST_OPTIONS)
        assert len(out) == 2 and all(torch.isfinite(a.maps).all() for a in out)
        assert out[0].maps.shape == (1, CROP, CROP)
        assert_untouched(r18.model, before)
    finally:
        r18.net.layer1.eval()
        r18.net.fc.weight.requires_grad_(True)


@pytest.mark.parametrize("method,kwargs,error", [
    ("gradcam", {"targets": "no such class"}, ChoiceError),
    ("guided-gradcam", {"targets": 5000}, ChoiceError),
    ("gradcam", {"layer": "fc"}, NotSpatialError),
    ("gradcam", {"layer": "layer9"}, ChoiceError),
    ("occlusion", {"options": {"occlusion": {"window": 500}}}, ValueError),
    ("integrated-gradients", {"options": {"integrated-gradients": {"baseline": "grey"}}}, ChoiceError),
])
def test_errors_name_the_choices_and_leave_no_hooks(r18, x, method, kwargs, error):
    before = snapshot(r18.model)
    with pytest.raises(error) as info:
        explain(r18, x[:1], [method], **kwargs)
    if isinstance(info.value, NotSpatialError):
        assert "layer4" in str(info.value)
    assert_untouched(r18.model, before)


def test_unknown_method_lists_methods(r18, x):
    with pytest.raises(ChoiceError) as info:
        explain(r18, x, ["gradcam", "grad-cam-plus"])
    assert "gradcam++" in str(info.value) and "integrated-gradients" in str(info.value)


def test_deterministic_with_seed(r18, x):
    opts = {"smoothgrad": {"samples": 2, "seed": 7}, "lime": {"samples": 16, "segments": 8, "seed": 7}}
    a = explain(r18, x[:1], ["smoothgrad", "lime"], options=opts)
    b = explain(r18, x[:1], ["smoothgrad", "lime"], options=opts)
    for u, v in zip(a, b):
        assert torch.equal(u.raw, v.raw)


def test_lite0_one_channel_free_layer_choice(lite0):
    """The built-in EfficientNet-Lite (depthwise convs, ReLU6) at another layer, and a 1-channel model."""
    x = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    before = snapshot(lite0.model)
    maps = explain(lite0, x, ["gradcam", "guided-gradcam", "deeplift"], layer="blocks.10")
    assert maps[0].layer == "blocks.10" and maps[0].raw.shape[-1] == 6
    assert abs(maps[2].info["completeness_delta"][0]) < 1e-3
    assert_untouched(lite0.model, before)
