"""Feature visualization on the built-in EfficientNet-Lite0: objectives rise, seeds reproduce,
regularizers act, hooks never survive, mistakes list what is valid."""

from __future__ import annotations

import pytest
import torch

from mikata.errors import ChoiceError
from mikata.featurevis import (
    FourierImage, Objective, PixelImage, RenderOptions, channel, class_logit, diversity, layer_energy, neuron, render,
    top_activating_images, total_variation, visualize_channels, visualize_classes,
)

SMALL = dict(size=64, steps=6, jitter=4, pad=4)


def _hook_count(net: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(m._backward_pre_hooks) for m in net.modules())


@pytest.mark.parametrize("objective", [
    channel("blocks.3", [0, 5]),
    neuron("blocks.5", [1, 2], 2, 2),
    layer_energy("blocks.8"),
    class_logit([340, 949]),
    channel("blocks.5", 7) + 0.5 * diversity("blocks.5"),
], ids=["channel", "neuron", "deepdream", "class_logit", "channel+diversity"])
def test_each_objective_rises_over_a_few_steps(lite0, objective):
    res = render(lite0, objective, RenderOptions(**SMALL), n=2)
    first = [r["units"] for r in res.log if r["iteration"] == 1][0]
    last = res.log[-1]["units"]
    assert len(last) == 2 and all(b > a for a, b in zip(first, last)), (first, last)


def test_batched_units_are_independent(lite0):
    """Image i optimizes unit i only: rendering channels [3, 9] equals rendering [3, 4] for image 0
    when the transforms are off (no randomness shared between images)."""
    opts = RenderOptions(size=48, steps=4, jitter=0)
    a = render(lite0, channel("blocks.2", [3, 9]), opts).images
    b = render(lite0, channel("blocks.2", [3, 4]), opts).images
    assert torch.allclose(a[0], b[0], atol=1e-5)
    assert not torch.allclose(a[1], b[1], atol=1e-3)


def test_same_seed_same_image_and_other_seed_differs(lite0):
    opts = dict(SMALL, octaves=2, octave_scale=1.5)
    a = visualize_channels(lite0, "blocks.4", [1, 2], RenderOptions(seed=3, **opts)).images
    b = visualize_channels(lite0, "blocks.4", [1, 2], RenderOptions(seed=3, **opts)).images
    c = visualize_channels(lite0, "blocks.4", [1, 2], RenderOptions(seed=4, **opts)).images
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert a.shape == (2, 3, 64, 64)


def test_total_variation_regularizer_lowers_total_variation(lite0):
    opts = dict(size=64, steps=12, param="pixel", lr=0.1)
    plain = visualize_channels(lite0, "blocks.3", [0, 1], RenderOptions(**opts)).images
    smooth = visualize_channels(lite0, "blocks.3", [0, 1], RenderOptions(tv=50.0, **opts)).images
    assert (total_variation(smooth) < total_variation(plain)).all()


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop", "sgd"])
def test_optimizers_and_pixel_param_raise_the_objective(lite0, optimizer):
    lr = {"adam": 0.05, "rmsprop": 0.01, "sgd": 5.0}[optimizer]
    res = visualize_channels(lite0, "blocks.3", [2], RenderOptions(optimizer=optimizer, lr=lr, param="pixel", **SMALL))
    assert res.log[-1]["units"][0] > res.log[0]["units"][0]


def test_parameterizations_invert_exactly():
    x = torch.rand(2, 3, 31, 40) * 0.9 + 0.05
    for param in (FourierImage, PixelImage):
        assert torch.allclose(param.from_image(x)(), x, atol=1e-5)


def test_deepdream_from_a_photo_keeps_its_aspect_and_changes_it(lite0, photos):
    from mikata.featurevis import deepdream, load_start_image

    start = load_start_image(lite0, photos["chelsea"])  # (1, 3, 300, 451)
    res = deepdream(lite0, "blocks.5", photos["chelsea"], RenderOptions(size=96, steps=4, octaves=2, param="pixel"))
    assert res.images.shape[-2:] == (64, 96)
    small = torch.nn.functional.interpolate(start, size=(64, 96), mode="bilinear", antialias=True)
    assert 0.005 < (res.images - small).abs().mean() < 0.3  # changed, but still the photo
    assert [r["level"] for r in res.log] == [1] * 4 + [2] * 4


def test_hooks_and_requires_grad_restored_also_after_an_error(lite0):
    before = _hook_count(lite0.net)
    grads = [p.requires_grad for p in lite0.net.parameters()]
    visualize_channels(lite0, "blocks.1", [0], RenderOptions(size=32, steps=1))
    with pytest.raises(ChoiceError):
        visualize_channels(lite0, "blocks.1", [999], RenderOptions(size=32, steps=1))
    def explode(acts):
        raise RuntimeError("boom inside the forward")

    with pytest.raises(RuntimeError, match="boom"):
        render(lite0, Objective(explode, ("blocks.1",), "explode"), RenderOptions(size=32, steps=1))
    assert _hook_count(lite0.net) == before
    assert [p.requires_grad for p in lite0.net.parameters()] == grads
    assert not lite0.net.training


def test_mistakes_list_what_is_valid(lite0):
    with pytest.raises(ChoiceError, match="valid layers: stem"):
        visualize_channels(lite0, "stem.nope", [0], RenderOptions(size=32, steps=1))
    with pytest.raises(ChoiceError, match=r"0\.\.31"):
        visualize_channels(lite0, "stem.conv", range(36), RenderOptions(size=32, steps=1))
    with pytest.raises(ChoiceError, match="zebra"):
        visualize_classes(lite0, ["zebra", "zebraa"], RenderOptions(size=32, steps=1))
    with pytest.raises(ChoiceError, match="optimizer"):
        visualize_channels(lite0, "stem.conv", [0], RenderOptions(optimizer="lbfgs"))


def test_verbose_prints_the_iteration_table(lite0, capsys):
    res = visualize_channels(lite0, "blocks.2", [0, 1], RenderOptions(size=32, steps=2, verbose=True))
    out = capsys.readouterr().out
    assert "iteration" in out and "level" in out and len(res.log) == 2
    assert set(res.log[0]) >= {"iteration", "level", "units", "mean"}


def test_top_activating_images_ranks_real_photos_and_skips_bad_files(lite0, photos, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    paths = [str(p) for p in photos.values()] + [str(bad)]
    top = top_activating_images(lite0, paths, "blocks.5", [0, 3], k=3, batch_size=4)
    assert top.scanned == len(photos) and [p for p, _ in top.skipped] == [str(bad)]
    # the ranking agrees with a direct computation of mean activations
    from mikata.data import load_image
    from mikata.hooks import capture

    with torch.inference_mode(), capture(lite0.net, ["blocks.5"]) as rec:
        lite0.net(lite0.preprocess([load_image(p) for p in photos.values()]))
    means = rec.activations["blocks.5"].mean((2, 3))  # (7, 80)
    for c in (0, 3):
        order = means[:, c].argsort(descending=True)[:3].tolist()
        assert [p for p, _ in top.best[c]] == [str(list(photos.values())[i]) for i in order]
        assert top.best[c][0][1] == pytest.approx(means[order[0], c].item(), rel=1e-4)


def test_rectified_channel_of_first_conv_moves_an_edge_filter_that_the_plain_mean_cannot(lite0):
    """An edge filter's weights sum to ~0, so the plain mean of a linear first conv barely responds
    to any image; the rectified mean (what a ReLU passes on) grows with edges of its orientation."""
    w = lite0.net.stem.conv.weight  # (32, 3, 3, 3)
    edge = int((w.sum((1, 2, 3)).abs() / w.flatten(1).norm(dim=1)).argmin())
    opts = RenderOptions(size=48, steps=10, param="pixel", lr=0.1)
    plain = visualize_channels(lite0, "stem.conv", [edge], opts).log
    rect = visualize_channels(lite0, "stem.conv", [edge], opts, rectify=True).log
    gain = lambda log: log[-1]["units"][0] - log[0]["units"][0]
    assert gain(rect) > 0.2 and gain(plain) < gain(rect) / 2, (gain(plain), gain(rect))


def test_regularizers_compose_as_objectives_on_the_input(lite0):
    """RenderOptions' tv / lp / blur weights and the same regularizers subtracted as objectives give
    the same images (Lucid-style composition: ``channel - w * tv()``)."""
    from mikata.featurevis import channel
    from mikata.featurevis.regularizers import blur, lp, tv

    opts = dict(size=32, steps=3, jitter=0, seed=1)
    by_options = render(lite0, channel("blocks.3", [0, 1]), RenderOptions(tv=5.0, lp=0.5, blur=2.0, **opts)).images
    composed = channel("blocks.3", [0, 1]) - 5.0 * tv() - 0.5 * lp(6.0) - 2.0 * blur()
    by_objective = render(lite0, composed, RenderOptions(**opts)).images
    torch.testing.assert_close(by_objective, by_options, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(by_options, render(lite0, channel("blocks.3", [0, 1]), RenderOptions(**opts)).images)


def test_a_model_trained_on_gray_images_gets_gray_images(lite0):
    """A checkpoint that records gray training images (the demo's Fashion-MNIST model) renders with
    one gray channel shown to the network as three; the objective still rises; grayscale=False
    forces colour back."""
    import dataclasses

    gray_model = dataclasses.replace(lite0, metadata={**lite0.metadata, "grayscale_data": True})
    res = visualize_classes(gray_model, [340], RenderOptions(**SMALL))
    x = res.images  # (1, 3, 64, 64)
    assert x.shape == (1, 3, 64, 64)
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])
    assert res.log[-1]["units"][0] > res.log[0]["units"][0]
    colour = visualize_classes(gray_model, [340], RenderOptions(grayscale=False, **SMALL)).images
    assert (colour[:, 0] - colour[:, 1]).abs().max() > 0.05
    assert (visualize_classes(lite0, [340], RenderOptions(**SMALL)).images[:, 0] - x[:, 0]).abs().max() > 0


def test_all_gray_tells_gray_training_images_from_colour(lite0):
    from mikata.training.tensors import all_gray

    g = torch.Generator().manual_seed(0)
    gray = torch.rand(4, 1, 32, 32, generator=g).expand(-1, 3, -1, -1)
    colour = torch.rand(4, 3, 32, 32, generator=g)
    norm = lite0.preprocessing.normalize
    assert all_gray(norm(gray).half(), lite0) and not all_gray(norm(colour).half(), lite0)


def test_maco_fixes_the_magnitude_and_optimizes_only_the_phase(lite0):
    """MACO: the logit image's spectrum magnitude is the fixed 1/f law times one contrast factor per
    channel, whatever the phase; rendering with it raises the objective."""
    from mikata.featurevis.params import MacoImage

    g = torch.Generator().manual_seed(0)
    m = MacoImage.random(2, 3, 32, 32, g, decorrelate=False)
    with torch.no_grad():
        m.phase += torch.randn(m.phase.shape, generator=g)
        spec = torch.fft.rfftn(torch.logit(m()), dim=(-2, -1), norm="ortho").abs()  # (2, 3, 32, 17)
    ratio = spec[..., 1:-1] / m.magnitude[:, 1:-1]  # columns 0 and W/2 must be Hermitian: irfft changes them
    assert torch.allclose(ratio, ratio.mean((-2, -1), keepdim=True), rtol=1e-3)
    assert m.params == [m.phase]
    res = visualize_classes(lite0, [340], RenderOptions(param="maco", lr=0.2, **SMALL))
    assert res.log[-1]["units"][0] > res.log[0]["units"][0]
