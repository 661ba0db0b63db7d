"""Sanity checks: Spearman and SSIM against scipy / skimage, the cascade against a slow direct
version, random logit against Quantus, and the published finding on EfficientNet-Lite0 + photos:
plain gradients lose similarity as the top layers are randomized, Guided Backprop keeps it."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from mikata.data.images import load_image
from mikata.evaluation.randomization import (cascade, compute_maps, normalize01, parametrized_units, random_logit,
                                           randomize_unit, spearman, ssim, stage_groups)
from mikata.evaluation.scorecard import evaluate
from mikata.models.handle import ModelHandle


def test_spearman_matches_scipy_with_ties():
    from scipy.stats import spearmanr

    g = torch.Generator().manual_seed(0)
    a = torch.rand(3, 20, 20, generator=g)
    b = a + 0.5 * torch.rand(3, 20, 20, generator=g)
    a[0, :10] = 0.0  # ties, as in a Grad-CAM after its ReLU
    b[1] = torch.round(b[1] * 4)
    ours = spearman(a, b)
    for i in range(3):
        assert ours[i].item() == pytest.approx(spearmanr(a[i].flatten(), b[i].flatten()).statistic, abs=1e-10)


def test_ssim_matches_skimage():
    from skimage.metrics import structural_similarity

    g = torch.Generator().manual_seed(1)
    a = torch.rand(2, 40, 33, generator=g)
    b = normalize01(a + 0.3 * torch.randn(2, 40, 33, generator=g))
    ours = ssim(a, b)
    for i in range(2):
        ref = structural_similarity(a[i].double().numpy(), b[i].numpy(), data_range=1.0, gaussian_weights=True,
                                    sigma=1.5, use_sample_covariance=False)
        assert ours[i].item() == pytest.approx(ref, abs=1e-10)


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.blocks = nn.Sequential(*[nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()) for _ in range(3)])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        return self.fc(self.pool(self.blocks(self.stem(x))).flatten(1))


def test_cascade_matches_a_slow_direct_implementation():
    """Quantus' ModelParameterRandomisation cannot be matched: it randomizes one module per step
    with ``reset_parameters`` from the global RNG (which also resets batch-norm statistics). The
    slow version here follows Adebayo et al. with our randomization: per stage a cumulative copy,
    plain autograd saliency per image, scipy Spearman and skimage SSIM on |maps|."""
    from scipy.stats import spearmanr
    from skimage.metrics import structural_similarity

    torch.manual_seed(0)
    handle = ModelHandle(net=Tiny(), class_names=list("abcde"), input_size=(16, 16), default_layer="blocks.2")
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    ids = torch.tensor([0, 3, 4])
    res = cascade(handle, x, ["saliency"], ids, stages=3, seed=5)
    assert parametrized_units(handle.net) == ["stem", "blocks.0", "blocks.1", "blocks.2", "fc"]
    groups = stage_groups(parametrized_units(handle.net), 3)
    assert groups == [["fc"], ["blocks.2", "blocks.1"], ["blocks.0", "stem"]]

    def saliency(net, img, t):
        img = img[None].clone().requires_grad_(True)
        net(img)[0, t].backward()
        return img.grad[0].abs().amax(0)  # (H, W)

    net = copy.deepcopy(handle.net).eval()
    original = [saliency(net, x[i], int(ids[i])) for i in range(3)]
    gen = torch.Generator().manual_seed(5)
    for s, group in enumerate(groups):
        for name in group:
            randomize_unit(net.get_submodule(name), gen)
        for i in range(3):
            m = saliency(net, x[i], int(ids[i]))
            a, b = original[i].numpy().astype(np.float64), m.numpy().astype(np.float64)
            rho = spearmanr(a.ravel(), b.ravel()).statistic
            assert res.spearman["saliency"][s, i].item() == pytest.approx(rho, abs=1e-6)
            na, nb = (a - a.min()) / (a.max() - a.min()), (b - b.min()) / (b.max() - b.min())
            ref = structural_similarity(na, nb, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                        use_sample_covariance=False)
            assert res.ssim["saliency"][s, i].item() == pytest.approx(ref, abs=1e-6)
    assert all(not torch.equal(p, q) for p, q in zip(handle.net.parameters(), net.parameters()) if p.dim() > 1)


@pytest.fixture(scope="module")
def three(lite0, photos):
    return lite0.preprocess([load_image(photos[k]) for k in ("chelsea", "coffee", "rocket")])


def test_cascade_tells_saliency_from_guided_backprop(lite0, three):
    before = [p.clone() for p in lite0.net.parameters()]
    card = evaluate(lite0, three[:2], ["saliency", "guided-backprop"], checks=["randomization"], stages=4).card
    assert card["passes"]["saliency"]["model-randomization"] is True
    assert card["passes"]["guided-backprop"]["model-randomization"] is False
    top = card["cascade"]["spearman"]
    assert top["guided-backprop"][0] > 0.9 > 0.5 > top["saliency"][0]
    assert card["table"]["saliency"]["randomization-spearman"] < card["table"]["guided-backprop"]["randomization-spearman"]
    assert all(torch.equal(a, b) for a, b in zip(before, lite0.net.parameters()))  # the caller's model is untouched


def test_random_logit_matches_quantus(lite0, three, torchvision):
    """Quantus' RandomLogit draws the other class with numpy's global seed; we take the classes it
    asked its explain_func for and hand them to ours. Similarity: Spearman (quantus' default SSIM
    there runs on flattened 1-D maps, not the 2-D SSIM of the paper) on absolute maps."""
    import quantus

    x = torch.nn.functional.interpolate(three[:2], size=(96, 96), mode="bilinear", align_corners=False)
    with torch.no_grad():
        ids = lite0.model(x).argmax(1)
    asked = []

    def explain_func(model, inputs, targets, **kwargs):
        t = torch.as_tensor(np.asarray(targets)).long().view(-1)
        asked.append(t)
        return compute_maps(lite0, torch.as_tensor(inputs), ["gradcam"], t, None, None, 1024)["gradcam"].abs()[:, None].numpy()

    a = compute_maps(lite0, x, ["gradcam"], ids, None, None, 1024)["gradcam"].abs()[:, None].numpy()
    metric = quantus.RandomLogit(num_classes=1000, similarity_func=quantus.similarity_func.correlation_spearman,
                                 abs=False, normalise=False, disable_warnings=True)
    theirs = metric(model=lite0.model, x_batch=x.numpy(), y_batch=ids.numpy(), a_batch=a, channel_first=True,
                    explain_func=explain_func, device="cpu")
    other, sims = random_logit(lite0, x, ["gradcam"], ids, other=asked[-1])
    assert (other != ids).all()
    # a map that is constant (Grad-CAM all zero for a class with no positive evidence) has no rank
    # order: Quantus (scipy) gives NaN, we count it as 0 similarity so the check can still decide
    np.testing.assert_allclose(sims["gradcam"][0].numpy(), np.nan_to_num(np.array(theirs, dtype=float)), atol=1e-6)
