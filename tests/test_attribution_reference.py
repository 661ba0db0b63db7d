"""Agreement with independent implementations on torchvision resnet18 (random weights, 96 px):
Captum, pytorch-grad-cam and zennit. Pearson r >= 0.999 or allclose."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attribution_helpers import pearson
from mikata.attribution import explain
from mikata.attribution.smoothgrad import noise_samples
from mikata.models.handle import ModelHandle

SIZE = 96


@pytest.fixture(scope="module")
def r18(torchvision):
    from mikata.models import load_model

    torch.manual_seed(0)
    return load_model("torchvision:resnet18", pretrained=False)


@pytest.fixture(scope="module")
def x():
    gen = torch.Generator().manual_seed(1)
    return torch.randn(2, 3, SIZE, SIZE, generator=gen)


@pytest.fixture(scope="module")
def target(r18, x):
    with torch.no_grad():
        return r18.model(x).argmax(1)  # (N,)



def ours(handle, x, method, target, **opts):
    """Our raw map for the per-image top-1 class (the fixture's targets are the argmax)."""
    a = explain(handle, x, [method], targets="top1", options={method: opts} if opts else None)[0]
    assert a.targets == target.tolist()
    return a


# ------------------------------------------------------------------------------------------ Captum
def test_captum_layer_gradcam(r18, x, target):
    from captum.attr import LayerGradCam

    ref = LayerGradCam(r18.model, r18.net.layer4).attribute(x, target=target, relu_attributions=True)[:, 0]
    torch.testing.assert_close(ours(r18, x, "gradcam", target).raw, ref, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method,cls,kwargs", [
    ("saliency", "Saliency", {"abs": True}),
    ("saliency-signed", "Saliency", {"abs": False}),
    ("grad-x-input", "InputXGradient", {}),
    ("guided-backprop", "GuidedBackprop", {}),
    ("deconv", "Deconvolution", {}),
])
def test_captum_pixel_gradients(r18, x, target, method, cls, kwargs):
    import captum.attr

    ref = getattr(captum.attr, cls)(r18.model).attribute(x, target=target, **kwargs)
    torch.testing.assert_close(ours(r18, x, method, target).raw, ref, rtol=1e-4, atol=1e-6)


def test_captum_guided_gradcam(r18, x, target):
    from captum.attr import GuidedGradCam

    ref = GuidedGradCam(r18.model, r18.net.layer4).attribute(x, target=target, interpolate_mode="bilinear")
    got = ours(r18, x, "guided-gradcam", target).raw
    assert pearson(got, ref) >= 0.999
    torch.testing.assert_close(got, ref, rtol=1e-3, atol=1e-6)


def test_captum_integrated_gradients(r18, x, target):
    from captum.attr import IntegratedGradients

    a = ours(r18, x, "integrated-gradients", target, steps=8, baseline="zero")
    ref = IntegratedGradients(r18.model).attribute(x, baselines=torch.zeros_like(x), target=target, n_steps=8,
                                                   method="gausslegendre")
    torch.testing.assert_close(a.raw, ref, rtol=1e-3, atol=1e-5)


def test_noise_tunnel_same_noise(r18, x, target):
    """SmoothGrad = the mean of Captum Saliency over exactly our noisy copies (what NoiseTunnel does)."""
    from captum.attr import Saliency

    x, target = x[:1], target[:1]
    a = ours(r18, x, "smoothgrad", target, samples=3, sigma=0.2, seed=3)
    sal = Saliency(r18.model)
    ref = torch.stack([sal.attribute(x + n, target=target, abs=True) for n in noise_samples(x, 3, 0.2, 3)]).mean(0)
    torch.testing.assert_close(a.raw, ref, rtol=1e-4, atol=1e-6)


def test_captum_occlusion(r18, x, target):
    from captum.attr import Occlusion

    x, target = x[:1], target[:1]
    a = ours(r18, x, "occlusion", target, window=40, stride=28, baseline="zero")
    ref = Occlusion(r18.model).attribute(x, sliding_window_shapes=(3, 40, 40), strides=(3, 28, 28), target=target,
                                         baselines=0.0)
    torch.testing.assert_close(a.raw, ref[:, 0], rtol=1e-3, atol=1e-4)


class SmallNet(nn.Module):
    """A CNN Captum's DeepLift supports: no in-place or reused ReLUs, no max pooling."""

    def __init__(self):
        super().__init__()
        self.c1, self.r1 = nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()
        self.bn = nn.BatchNorm2d(8)
        self.c2, self.r2 = nn.Conv2d(8, 8, 3, stride=2), nn.ReLU()
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(8, 5)

    def forward(self, x):
        return self.fc(self.pool(self.r2(self.c2(self.bn(self.r1(self.c1(x)))))).flatten(1))


def test_captum_deeplift():
    from captum.attr import DeepLift

    torch.manual_seed(0)
    net = SmallNet()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-0.5, 0.5)
        net.bn.running_var.uniform_(0.5, 2)
    handle = ModelHandle(net, [str(i) for i in range(5)], input_size=(16, 16))
    xs = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    a = explain(handle, xs, ["deeplift"], targets=2, options={"deeplift": {"baseline": "zero"}})[0]
    ref = DeepLift(handle.model).attribute(xs, baselines=torch.zeros_like(xs), target=2)
    torch.testing.assert_close(a.raw, ref, rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------------- pytorch-grad-cam
@pytest.mark.parametrize("method,cls", [("gradcam", "GradCAM"), ("gradcam++", "GradCAMPlusPlus"),
                                        ("layercam", "LayerCAM"), ("xgradcam", "XGradCAM"),
                                        ("eigencam", "EigenCAM"), ("scorecam", "ScoreCAM")])
def test_pytorch_grad_cam(r18, x, target, method, cls):
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    ref_cam = getattr(pytorch_grad_cam, cls)(model=r18.model, target_layers=[r18.net.layer4])
    if method == "scorecam":  # 512 masked forwards per image: one image, smaller, keeps the test quick
        # (40 px still gives layer4 a 2 x 2 map, as 64 px does: 40 -> 20 -> 10 -> 5 -> 3 -> 2)
        ref_cam.batch_size = 128
        x, target = x[:1, :, :40, :40], r18.model(x[:1, :, :40, :40]).argmax(1)
    ref = torch.from_numpy(ref_cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in target]))
    got = ours(r18, x, method, target).maps
    lo = got.amin(dim=(1, 2), keepdim=True)
    got = got - lo
    got = got / (1e-7 + got.amax(dim=(1, 2), keepdim=True))  # pytorch-grad-cam's scale_cam_image
    for g, r in zip(got, ref):
        assert pearson(g, r) >= 0.999
    torch.testing.assert_close(got, ref, rtol=1e-3, atol=2e-3)


# ----------------------------------------------------------------------------------------- zennit
def test_zennit_lrp_epsilon_plus_flat(r18, x, target):
    from zennit.attribution import Gradient
    from zennit.composites import EpsilonPlusFlat
    from zennit.torchvision import ResNetCanonizer

    x, target = x[:1], target[:1]
    a = ours(r18, x, "lrp", target, rule="epsilon-plus-flat")
    onehot = torch.eye(1000)[target]
    with Gradient(model=r18.model, composite=EpsilonPlusFlat(canonizers=[ResNetCanonizer()])) as attributor:
        _, ref = attributor(x, onehot)
    assert pearson(a.raw, ref) >= 0.999
    torch.testing.assert_close(a.raw, ref, rtol=1e-3, atol=1e-6)
