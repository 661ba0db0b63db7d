"""Baselines for Integrated Gradients, DeepLIFT and occlusion (``mikata.attribution.baselines``).

Completeness for every baseline, agreement with Captum given the same baseline tensor, a dark-defect
image that a black baseline cannot see while white / mean ones can, and one-line errors for files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from mikata.attribution import explain
from mikata.attribution.baselines import (BaselineError, baseline_label, check_draws, make_baseline, make_baselines,
                                          parse_baselines)
from mikata.errors import ChoiceError
from mikata.models.handle import ModelHandle

MEAN, STD = (0.5, 0.45, 0.4), (0.25, 0.2, 0.3)
NAMED = ("black", "white", "mean", "zero", "blur", "uniform-noise")


@pytest.fixture(scope="module")
def small():
    """A small ReLU CNN Captum's DeepLift supports (no in-place or reused ReLUs, no max pooling)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    return ModelHandle(net.eval(), list("abcd"), input_size=(32, 32), mean=MEAN, std=STD)


@pytest.fixture(scope="module")
def x(small):
    pixels = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    return (pixels - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def to_pixels(x: torch.Tensor) -> torch.Tensor:
    return x * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)


def test_names_parse_and_label():
    assert parse_baselines("auto") == ["mean"]
    assert parse_baselines("expected") == ["black", "white", "mean", "blur", "uniform-noise"]
    assert parse_baselines("Black, noise,black") == ["black", "uniform-noise"]
    assert baseline_label("auto") == "mean"
    assert baseline_label("black,white") == "mean of black, white"
    assert baseline_label("uniform-noise", draws=4) == "uniform-noise x4"
    assert baseline_label("cells/plain.png") == "file plain.png"
    with pytest.raises(ChoiceError, match="did you mean white"):
        parse_baselines("whit")
    with pytest.raises(BaselineError, match="draws random baselines"):
        check_draws("black", 3)
    check_draws("expected", 3)


def test_baselines_are_made_in_pixel_space(small, x):
    """black is black pixels (not a zero tensor), white white pixels, mean each image's own mean colour."""
    px = to_pixels(x)
    torch.testing.assert_close(to_pixels(make_baseline(small, x, "black")), torch.zeros_like(x), atol=1e-6, rtol=0)
    torch.testing.assert_close(to_pixels(make_baseline(small, x, "white")), torch.ones_like(x), atol=1e-6, rtol=0)
    torch.testing.assert_close(to_pixels(make_baseline(small, x, "zero")),
                               torch.tensor(MEAN).view(1, 3, 1, 1).expand_as(x), atol=1e-6, rtol=0)
    mean = to_pixels(make_baseline(small, x, "mean"))
    torch.testing.assert_close(mean[:, :, 5, 7], px.mean(dim=(2, 3)), atol=1e-5, rtol=0)
    noise = to_pixels(make_baseline(small, x, "uniform-noise", seed=4))
    assert 0 <= noise.min() and noise.max() <= 1 and noise.std() > 0.25
    assert not torch.equal(noise, to_pixels(make_baseline(small, x, "uniform-noise", seed=5)))
    blurred = make_baseline(small, x, "blur")
    assert blurred.shape == x.shape and blurred.std() < 0.5 * x.std()
    torch.testing.assert_close(blurred.mean(), x.mean(), atol=0.05, rtol=0)  # a blur keeps the mean
    assert len(make_baselines(small, x, "expected", draws=3)) == 4 + 3


@pytest.mark.parametrize("baseline", [*NAMED, "expected"])
def test_ig_completeness_for_every_baseline(small, x, baseline):
    """sum of IG attributions = f(x) - mean over the baselines of f(x0), within 1% at 64 steps (of the
    gap, or of the attributions' absolute mass where the gap is tiny: a noise baseline scores like the image)."""
    a = explain(small, x, ["integrated-gradients"], options={"integrated-gradients": {"steps": 64,
                                                                                     "baseline": baseline}})[0]
    refs = make_baselines(small, x, baseline)
    t = torch.tensor(a.targets)[:, None]
    with torch.no_grad():
        gap = small.model(x).gather(1, t)[:, 0] - torch.stack([small.model(r).gather(1, t)[:, 0] for r in refs]).mean(0)
    total = a.raw.sum(dim=(1, 2, 3))
    scale = torch.maximum(gap.abs(), a.raw.abs().sum(dim=(1, 2, 3)))
    assert ((total - gap).abs() <= 0.01 * scale).all(), (total, gap, scale)
    torch.testing.assert_close(total - gap, torch.tensor(a.info["completeness_delta"]), rtol=1e-3, atol=1e-5)
    assert a.info["baseline"] == baseline_label(baseline)


@pytest.mark.parametrize("baseline", ["white", "mean", "uniform-noise"])
def test_ig_deeplift_and_occlusion_agree_with_captum_given_the_same_baseline(small, x, baseline):
    from captum.attr import DeepLift, IntegratedGradients, Occlusion

    x0 = make_baseline(small, x, baseline)
    t = small.model(x).argmax(1)
    got = explain(small, x, ["integrated-gradients", "deeplift", "occlusion"], targets="top1",
                  options={"integrated-gradients": {"steps": 16, "baseline": baseline},
                           "deeplift": {"baseline": baseline},
                           "occlusion": {"window": 8, "stride": 4, "baseline": baseline}})
    ig = IntegratedGradients(small.model).attribute(x, baselines=x0, target=t, n_steps=16)
    torch.testing.assert_close(got[0].raw, ig, rtol=1e-3, atol=1e-5)
    dl = DeepLift(small.model).attribute(x, baselines=x0, target=t)
    torch.testing.assert_close(got[1].raw, dl, rtol=1e-3, atol=1e-5)
    occ = Occlusion(small.model).attribute(x, sliding_window_shapes=(3, 8, 8), strides=(3, 4, 4), target=t,
                                           baselines=x0)
    torch.testing.assert_close(got[2].raw, occ[:, 0], rtol=1e-3, atol=1e-5)
    assert {a.info["baseline"] for a in got} == {baseline}


def test_occlusion_fill_still_fills_a_constant(small, x):
    a = explain(small, x, ["occlusion"], options={"occlusion": {"window": 8, "stride": 8, "fill": 0.0}})[0]
    b = explain(small, x, ["occlusion"], options={"occlusion": {"window": 8, "stride": 8, "baseline": "zero"}})[0]
    torch.testing.assert_close(a.raw, b.raw)
    assert a.info["baseline"] == "fill 0"


# ------------------------------------------------------------------------------ the dark defect
@pytest.fixture(scope="module")
def cell():
    """A grey solar cell (pixel 0.7) with a black 8 x 8 crack, and a model whose "defect" logit sums how far
    each pixel is below 0.4 (``relu(0.4 - pixel)``): the evidence is the darkness of the crack itself."""
    mean, std = (0.5,) * 3, (0.25,) * 3
    conv = nn.Conv2d(3, 1, 1)
    with torch.no_grad():
        conv.weight.fill_(-0.25 / 3)   # -(pixel - 0.5) over the channels' mean, in normalized units
        conv.bias.fill_(-0.1)           # 0.4 - pixel
    head = nn.Linear(1, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[-1.0], [1.0]]) * 100)
        head.bias.zero_()
    net = nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), head).eval()
    handle = ModelHandle(net, ["good", "defect"], input_size=(32, 32), mean=mean, std=std)
    pixels = torch.full((1, 3, 32, 32), 0.7)
    pixels[:, :, 8:16, 12:20] = 0.0
    defect = torch.zeros(32, 32, dtype=torch.bool)
    defect[8:16, 12:20] = True
    return handle, (pixels - 0.5) / 0.25, defect


@pytest.mark.parametrize("method,opts", [("integrated-gradients", {"steps": 32}), ("deeplift", {}),
                                         ("occlusion", {"window": 4, "stride": 4})])
def test_a_black_baseline_is_blind_to_a_dark_defect_and_white_or_mean_are_not(cell, method, opts):
    handle, x, defect = cell
    mass = {}
    for baseline in ("black", "white", "mean", "expected"):
        a = explain(handle, x, [method], targets="defect", options={method: {**opts, "baseline": baseline}})[0]
        m = a.maps[0].abs()
        mass[baseline] = (float(m[defect].sum()), float(m.sum()))
    on, total = mass["black"]
    assert on <= 1e-6 * max(1.0, mass["white"][0]), mass  # black pixels minus a black baseline: nothing to see
    for baseline in ("white", "mean"):
        on, total = mass[baseline]
        assert on > 1.0 and on >= 0.9 * total, (baseline, mass)  # the crack holds the attribution
    on, total = mass["expected"]  # its black and noise members also light up the grey background
    crack = int(defect.sum())
    assert on > 1.0 and on / crack >= 2 * (total - on) / (defect.numel() - crack), mass


# ------------------------------------------------------------------------------ files
def test_a_baseline_file_is_preprocessed_like_the_images(small, x, tmp_path):
    img = tmp_path / "plain.png"
    Image.fromarray(np.full((40, 50, 3), (200, 30, 90), np.uint8)).save(img)
    b = make_baseline(small, x, str(img))
    torch.testing.assert_close(to_pixels(b)[0, :, 16, 16], torch.tensor([200, 30, 90]) / 255, atol=0.01, rtol=0)
    npy = tmp_path / "grey.npy"
    np.save(npy, np.full((32, 32), 0.25, np.float32))
    torch.testing.assert_close(to_pixels(make_baseline(small, x, str(npy))), torch.full_like(x, 0.25),
                               atol=1e-6, rtol=0)
    a = explain(small, x, ["integrated-gradients"], options={"integrated-gradients": {"steps": 8,
                                                                                     "baseline": str(npy)}})[0]
    assert a.info["baseline"] == "file grey.npy"
    own = tmp_path / "own.npy"  # the image itself as its baseline: nothing to attribute
    np.save(own, to_pixels(x)[0].numpy().clip(0, 1))
    z = explain(small, x[:1], ["integrated-gradients"], options={"integrated-gradients": {"steps": 8,
                                                                                         "baseline": str(own)}})[0]
    assert z.raw.abs().max() < 1e-5


@pytest.mark.parametrize("array,match", [
    (np.zeros((3, 16, 16), np.float32), r"shape \(3, 16, 16\) does not fit the model's input \(3, 32, 32\)"),
    (np.full((32, 32), 255.0), r"values from 255 to 255; save pixel values in \[0, 1\]"),
    (np.array(["a"] * 4), "holds <U1 values"),
])
def test_a_bad_baseline_file_is_one_line_naming_it(small, x, tmp_path, array, match):
    path = tmp_path / "bad.npy"
    np.save(path, array)
    with pytest.raises(BaselineError, match=match) as info:
        make_baseline(small, x, str(path))
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(BaselineError, match="no such file"):
        make_baseline(small, x, str(tmp_path / "missing.png"))
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(BaselineError, match="text.png"):
        make_baseline(small, x, str(tmp_path / "text.png"))


def test_method_baselines_names_what_each_method_starts_from():
    from mikata.attribution.baselines import method_baselines

    got = method_baselines(["gradcam", "integrated-gradients", "deeplift", "occlusion"],
                           {"deeplift": {"baseline": "white,black"}, "occlusion": {"fill": 0.0}})
    assert got == {"integrated-gradients": "mean", "deeplift": "mean of white, black", "occlusion": "fill 0"}
