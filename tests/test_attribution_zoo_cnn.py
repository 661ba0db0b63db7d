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

    from zennit.attribution import Gradient  # the independent reference: zennit's own torchvision canonizer
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
    assert_untouched(handle.model, before)
    assert torch.isfinite(explain(handle, x, ["grad-x-input"])[0].raw).all()  # the suggested method runs


def test_lrp_on_torchvision_vit_refuses_instead_of_a_hook_error(torchvision):
    """torchvision's attention module returns a tuple: zennit's hook fails ('incorrect number of values')."""
    torch.manual_seed(0)
    net = torchvision.models.VisionTransformer(image_size=32, patch_size=16, num_layers=1, num_heads=2,
                                               hidden_dim=32, mlp_dim=64, num_classes=10).eval()
    handle = ModelHandle(net, [str(i) for i in range(10)], input_size=(32, 32))
    before = snapshot(handle.model)
    with pytest.raises(LRPUnsupportedError, match="VisionTransformer.*zennit failed.*model is unchanged"):
        explain(handle, _x(32), ["lrp"])
    assert_untouched(handle.model, before)
