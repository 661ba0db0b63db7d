"""Modern CNNs from timm and torchvision (random weights, seeded, small inputs): LRP conserves relevance or
refuses, and the defects issue 33 found on named architectures, each on that architecture.

Batch norms get random statistics and affine parameters: timm initializes the last batch norm of each
residual block to zero, which would hide a residual branch (and a relevance leak through it) entirely.
"""

from __future__ import annotations

import pytest
import torch
from attribution_helpers import assert_untouched, pearson, snapshot

from mikata.attribution import explain
from mikata.attribution.lrp import LRPUnsupportedError
from mikata.models.handle import ModelHandle


def _randomized(net: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                if m.weight is not None:
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.2, 0.2)
    return net.eval()


def timm_handle(name: str, size: int = 64, **kwargs) -> ModelHandle:
    import timm

    torch.manual_seed(0)
    net = _randomized(timm.create_model(name, pretrained=False, num_classes=10, **kwargs))
    return ModelHandle(net, [f"c{i}" for i in range(10)], input_size=(size, size), spec=f"timm:{name}")


def _x(size: int, n: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0))


# ------------------------------------------------------------------------------------------ LRP
def test_lrp_on_timm_resnet18_equals_torchvision_with_the_same_weights(torchvision, monkeypatch):
    """timm's blocks add the shortcut in place, outside any module: without a canonizer the plain gradient
    hands the full relevance to both branches (x2 per block, 2^8 on resnet18). With timm's blocks
    canonized, the map equals zennit's on torchvision's resnet18 holding the same weights."""
    import timm

    tv = torchvision
    torch.manual_seed(0)
    ref_net = _randomized(tv.models.resnet18(num_classes=10))
    net = timm.create_model("resnet18", pretrained=False, num_classes=10).eval()
    net.load_state_dict(ref_net.state_dict())  # the same parameter names in both
    ours = ModelHandle(net, [str(i) for i in range(10)], input_size=(64, 64))
    ref = ModelHandle(ref_net, [str(i) for i in range(10)], input_size=(64, 64))
    x = _x(64, 2)
    with torch.no_grad():
        torch.testing.assert_close(ours.model(x), ref.model(x))
    before = snapshot(ours.model)
    a = explain(ours, x, ["lrp"], targets=3)[0]
    assert_untouched(ours.model, before)
    b = explain(ref, x, ["lrp"], targets=3)[0]
    torch.testing.assert_close(a.raw, b.raw, rtol=1e-4, atol=1e-7)
    assert abs(a.info["conservation"] - 1) < 1e-4

    from zennit.attribution import (
        Gradient,  # the independent reference: zennit's own torchvision canonizer
    )
    from zennit.composites import EpsilonPlusFlat
    from zennit.torchvision import ResNetCanonizer

    with Gradient(model=ref.model, composite=EpsilonPlusFlat(canonizers=[ResNetCanonizer()])) as attributor:
        _, z = attributor(x, torch.eye(10)[[3, 3]])
    assert pearson(a.raw, z) > 0.999

    # what the issue saw: zennit without the residual canonizer multiplies the bias-free relevance by 2^8
    from zennit.canonizers import SequentialMergeBatchNorm

    import mikata.attribution.lrp_canonizers as canon

    monkeypatch.setattr(canon, "canonizers_for", lambda net: [SequentialMergeBatchNorm()])
    with pytest.raises(LRPUnsupportedError, match="not conserved") as info:
        explain(ours, x, ["lrp"])
    assert "sums to 256" in str(info.value)
    assert_untouched(ours.model, before)


@pytest.mark.parametrize("name", ["regnetx_002", "ghostnet_100", "hrnet_w18_small", "rexnet_100", "mobilevit_xxs",
                                  "vit_tiny_patch16_224"])
def test_lrp_refuses_where_relevance_is_not_conserved(name, torchvision):
    """Residual sums, SE gates and functional activations outside zennit's modules (RegNet, GhostNet, HRNet,
    ReXNet, MobileViT), NaN through attention (ViT): refused with the figure, model untouched."""
    size = 224 if name.startswith("vit") else 64
    kwargs = {"depth": 2} if name.startswith("vit") else {}
    handle = timm_handle(name, size, **kwargs)
    x = _x(size)
    before = snapshot(handle.model)
    with pytest.raises(LRPUnsupportedError) as info:
        explain(handle, x, ["lrp"])
    msg = str(info.value)
    assert "not conserved" in msg and type(handle.net).__name__ in msg and "model is unchanged" in msg
    assert ("use attnlrp" in msg) == ("vit" in name)  # the transformers (MobileViT has attention blocks)
    assert_untouched(handle.model, before)
    assert torch.isfinite(explain(handle, x, ["grad-x-input"])[0].raw).all()  # the suggested method runs


def test_lrp_on_torchvision_vit_refuses_instead_of_a_hook_error(torchvision):
    """torchvision's attention module returns a tuple: zennit's hook fails ('incorrect number of values')."""
    torch.manual_seed(0)
    net = torchvision.models.VisionTransformer(image_size=32, patch_size=16, num_layers=1, num_heads=2,
                                               hidden_dim=32, mlp_dim=64, num_classes=10).eval()
    handle = ModelHandle(net, [str(i) for i in range(10)], input_size=(32, 32))
    before = snapshot(handle.model)
    with pytest.raises(LRPUnsupportedError, match="VisionTransformer.*zennit failed.*model is unchanged; use attnlrp"):
        explain(handle, _x(32), ["lrp"])
    assert_untouched(handle.model, before)


# ------------------------------------------------------------------ the modern-CNN defects of issue 33
@pytest.mark.parametrize("name,size,real", [("vgg16", 112, 3), ("alexnet", 64, 1)])
def test_default_layer_is_not_an_adaptive_pool_that_upsamples(name, size, real, torchvision):
    """VGG and AlexNet end their features in an AdaptiveAvgPool2d to 7x7 / 6x6 that, on a smaller input,
    repeats a 3x3 (1x1) map: a CAM there claims cells the network does not have. The default layer is a
    real map before the pool."""
    from mikata.models.layers import trace_layers

    torch.manual_seed(0)
    # only shapes are read here: VGG skips torchvision's own weight init (PyTorch's default init stays), half its cost
    kwargs = {"init_weights": False} if name == "vgg16" else {}
    net = getattr(torchvision.models, name)(num_classes=10, **kwargs).eval()
    layers = {l.name: l for l in trace_layers(net, 3, (size, size))}
    assert layers["features"].output_shape[1:] == (real, real)  # what the pool reads
    assert layers["avgpool"].output_shape[1:] == ((7, 7) if name == "vgg16" else (6, 6))
    default = next(l for l in layers.values() if l.is_default)
    assert default.name != "avgpool" and default.name.startswith("features.")
    h, w = default.output_shape[1:]
    # the map's cells are all real: the default's grid is what that layer computes, no pool after it repeats it
    assert default.map_size == (h, w) and min(h, w) >= 4
    at_224 = next(l for l in trace_layers(net, 3, (224, 224)) if l.is_default)
    assert at_224.output_shape[1:] == ((7, 7) if name == "vgg16" else (6, 6))  # no upsampling there: unchanged


def test_a_layer_returning_a_list_is_refused_by_name_with_layers_that_work(torchvision):
    """timm HRNet's stage4 returns its four branches as a list: Grad-CAM raised autograd's raw
    'element 0 of tensors does not require grad', guided-gradcam and Score-CAM silently used branch 0."""
    from mikata.attribution.passes import LayerOutputError

    handle = timm_handle("hrnet_w18_small", 64)
    x = _x(64)
    before = snapshot(handle.model)
    for method in ("gradcam", "guided-gradcam", "scorecam", "eigencam"):
        with pytest.raises(LayerOutputError) as info:
            explain(handle, x, [method], layer="stage4")
        msg = str(info.value)
        assert "'stage4' returns a list of 4 tensors" in msg and "stage4.0.branches.0" in msg
    assert_untouched(handle.model, before)
    good = explain(handle, x, ["gradcam"], layer="stage4.0.branches.0")[0]  # the suggestion works
    assert good.raw.shape == (1, 16, 16) and torch.isfinite(good.raw).all()


@pytest.mark.parametrize("name,others", [("efficientformer_l1", "GELU x15"), ("rexnet_100", "SiLU x17")])
def test_guided_backprop_on_mixed_activations_says_it_is_a_hybrid(name, others, torchvision, monkeypatch):
    """EfficientFormer (GELU x15, ReLU x2) and ReXNet (SiLU x17 beside ReLU6): the guided rule acts at the
    ReLUs only. The map is the reference hybrid, and the figure's title and the note say so."""
    from mikata.attribution.figure import draw_figure
    from mikata.attribution.rectifiers import hybrid_note

    size = 224 if name == "efficientformer_l1" else 64  # EfficientFormer's attention bias is sized for 224
    handle = timm_handle(name, size)
    x = _x(size)
    gb = explain(handle, x, ["guided-backprop"])[0]
    assert others in gb.info["other_activations"] and gb.info["rectifier_calls"] > 0
    from test_attribution_zoo import _Guided, _input_grad, _patch_rectifiers

    with monkeypatch.context() as mp:  # the paper's rule at every rectifier, the rest untouched
        _patch_rectifiers(mp, _Guided, "guided")
        ref = _input_grad(handle, x, torch.tensor(gb.targets)[:, None])
    torch.testing.assert_close(gb.raw, ref, rtol=1e-3, atol=1e-5 * float(ref.abs().max()))
    note = hybrid_note("guided-backprop", gb.info)
    assert note is not None and others in note and "hybrid" in note
    image = (torch.rand(size, size, 3) * 255).to(torch.uint8).numpy()
    fig = draw_figure(image, [gb], torch.full((10,), 0.1), handle.class_names)
    titles = [ax.get_title() for ax in fig.axes]
    assert any("hybrid: plain at" in t and others.split()[0] in t for t in titles)
    assert hybrid_note("saliency", explain(handle, x, ["saliency"])[0].info) is None


def test_explain_defaults_on_a_gelu_network_leave_out_guided_gradcam(tmp_path, capsys, torchvision):
    """The default methods (gradcam, guided-gradcam, smoothgrad) on ConvNeXt (GELU only): maps for the two
    that fit, a note for the one left out, exit 0; asking for guided-gradcam still refuses (exit 2)."""
    import numpy as np
    from PIL import Image

    from mikata.cli import main

    img = tmp_path / "img.png"
    Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)).save(img)
    code = main(["-q", "explain", "zoo_models:convnext", str(img), "--out", str(tmp_path / "out"), "--samples", "2",
                 "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "left out guided-gradcam" in err and "GELU" in err
    assert sorted(p.name for p in (tmp_path / "out").glob("*.npy")) == ["img_gradcam_top1.npy",
                                                                        "img_smoothgrad_top1.npy"]
    code = main(["-q", "explain", "zoo_models:convnext", str(img), "--out", str(tmp_path / "o2"),
                 "--methods", "guided-gradcam", "--device", "cpu"])
    assert code == 2 and "GELU" in capsys.readouterr().err
