"""How ``evaluate`` spends its passes: channels-last memory for every pass (same maps, same card), the
fully filled point of the curves computed once for every map, and the scorecard's line on how well
Integrated Gradients' maps add up (against a direct computation). Tiny conv nets: each test takes a second."""

from __future__ import annotations

import torch
from torch import nn

from mikata.models.handle import ModelHandle


def _net(seed: int = 0) -> ModelHandle:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    return ModelHandle(net.eval(), list("abcd"), input_size=(16, 16), default_layer="2")


def _images(n: int = 4) -> torch.Tensor:
    return torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def test_nested_channels_last_leaves_the_outer_block_in_charge():
    from mikata.evaluation.faithfulness import channels_last

    handle = _net()
    conv = handle.net[2].weight
    with channels_last(handle.model, probe=_images(2)) as outer:
        assert outer and conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
        with channels_last(handle.model, probe=_images(2)) as inner:
            assert inner
        assert not conv.is_contiguous()  # the inner block did not put it back
    assert conv.is_contiguous()


def test_evaluate_in_channels_last_gives_the_contiguous_card(monkeypatch):
    from contextlib import contextmanager

    from mikata.evaluation import faithfulness, scorecard

    handle, x = _net(), _images(3)
    kw = dict(checks=["faithfulness", "randomization", "random-logit", "stability"], steps=3, stages=2, samples=1,
              options={"integrated-gradients": {"steps": 4}})
    methods = ["gradcam", "guided-backprop", "integrated-gradients"]
    fast = scorecard.evaluate(handle, x, methods, **kw)

    @contextmanager
    def contiguous(module, probe=None, enable=True):
        yield False

    monkeypatch.setattr(faithfulness, "channels_last", contiguous)
    plain = scorecard.evaluate(handle, x, methods, **kw)
    for m in methods:
        torch.testing.assert_close(fast.maps[m], plain.maps[m], rtol=1e-4, atol=1e-6)
        for k, v in plain.card["table"][m].items():
            assert abs(fast.card["table"][m][k] - v) < 1e-4, (m, k)
    assert fast.card["passes"] == plain.card["passes"]
    assert all(p.is_contiguous() for p in handle.net.parameters())  # the caller's model is left as it was


def test_the_fully_filled_point_is_one_forward_for_every_map():
    from mikata.evaluation.faithfulness import fill_image, perturbation_curves

    handle, x = _net(), _images()
    ids = torch.tensor([0, 1, 2, 3])
    maps = [torch.rand(4, 16, 16, generator=torch.Generator().manual_seed(s)) for s in range(2)]
    calls = []
    hook = handle.net.register_forward_hook(lambda mod, args, out: calls.append(args[0].shape[0]))
    try:
        ends: dict = {}
        shared = [perturbation_curves(handle, x, m, ids, steps=5, fill="blur", ends=ends) for m in maps]
    finally:
        hook.remove()
    alone = [perturbation_curves(handle, x, m, ids, steps=5, fill="blur") for m in maps]
    with torch.inference_mode():
        p = torch.softmax(handle.model(fill_image(x, "blur")), 1).gather(1, ids.view(-1, 1))[:, 0]
    for s, a in zip(shared, alone):
        for mode in ("deletion", "insertion"):
            torch.testing.assert_close(s[mode], a[mode], rtol=1e-5, atol=1e-6)
        # deletion ends and insertion starts at the blurred image, whatever the map
        torch.testing.assert_close(s["deletion"][:, -1], p, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(s["insertion"][:, 0], p, rtol=1e-5, atol=1e-6)
    # per call: the base probabilities (1 forward of 4), the probe (2); the filled images once, in the first call;
    # then 2 x 5 x 4 points less the 2 x 4 fully filled ones
    perturbed = sum(calls) - 2 * (4 + 2)
    assert perturbed == 2 * (2 * 5 * 4 - 2 * 4) + 4


def test_the_scorecard_says_how_well_integrated_gradients_adds_up():
    from mikata.attribution.baselines import make_baseline
    from mikata.attribution.integrated_gradients import integrated_gradients
    from mikata.evaluation import scorecard

    handle, x = _net(), _images()
    res = scorecard.evaluate(handle, x, ["gradcam", "integrated-gradients"], checks=["random-logit"],
                             options={"integrated-gradients": {"steps": 4}})
    note = next(n for n in res.card["notes"] if n.startswith("integrated-gradients: its maps add up"))
    assert not any(n.startswith("gradcam:") for n in res.card["notes"])  # Grad-CAM claims no completeness
    # direct: the attributions' sum against f(x) - f(x0) with the default (mean colour) baseline
    ids = handle.model(x).argmax(1)
    attrs, _ = integrated_gradients(handle, x, ids.view(-1, 1), steps=4)
    with torch.no_grad():
        gap = (handle.model(x) - handle.model(make_baseline(handle, x, "mean"))).gather(1, ids.view(-1, 1))[:, 0]
    err = ((attrs[0].sum(dim=(1, 2, 3)) - gap).abs() / gap.abs()).double()
    assert f"within {float(err.median()):.1%} (median) and {float(err.max()):.1%} (worst) over the 4 images" in note
    assert f"{int((err > 0.05).sum())} of 4 miss the 5%" in note
