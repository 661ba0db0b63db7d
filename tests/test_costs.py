"""Costs known up front: the estimators' arithmetic and messages (never wall times), and that the
estimate is printed before the expensive part starts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mikata.evaluation.costs import LONG, cheaper_settings, cost_message, evaluate_cost
from mikata.models.handle import ModelHandle

PER_IMAGE = {"gradcam": 0.5, "integrated-gradients": 20.0}
CHECKS = ["faithfulness", "randomization", "random-logit", "stability"]


def test_evaluate_cost_scales_the_probe_with_each_checks_passes():
    c = evaluate_cost(PER_IMAGE, 6, CHECKS, curve_s=40.0, stages=8, samples=8)
    maps = 20.5 * 6
    assert c.maps == pytest.approx(maps)
    assert c.parts == pytest.approx({"faithfulness": 40.0 * 3, "randomization": 8 * maps, "random-logit": maps,
                                     "stability": 8 * maps})
    assert c.total == pytest.approx(maps * 18 + 120)
    assert evaluate_cost(PER_IMAGE, 6, ["localization"]).parts == {}


def test_a_long_estimate_suggests_cheaper_settings_largest_saving_first():
    c = evaluate_cost(PER_IMAGE, 6, CHECKS, curve_s=40.0, stages=8, samples=8)
    assert c.total > LONG
    tips = cheaper_settings(c, PER_IMAGE, 6, stages=8, samples=8, ig_steps=64)
    assert tips[0].startswith("--checks faithfulness,random-logit (leaves out randomization and stability")
    flags = [t.split(" ")[0] for t in tips]
    # savings: checks 1968 s, images-limit 1945 s (1 of 6 images), ig-steps 1620 s, stages 738 s, samples 738 s
    assert flags == ["--checks", "--images-limit", "--ig-steps", "--stages", "--samples"]
    assert tips[1] == "--images-limit 1 (about 10 min)"
    assert tips[2] == "--ig-steps 16 (integrated-gradients is 98% of the map work; saves ~27 min)"
    msg = cost_message(c, 6, list(PER_IMAGE), 2, tips)
    assert msg.startswith(f"evaluate: about {round(c.total / 60)} min in all for 6 images x 2 methods (maps 2.0 min, "
                          "faithfulness 2.0 min, randomization 16 min, random-logit 2.0 min, stability 16 min; "
                          "timed on 2 images before starting); that is long: cheaper settings: --checks")


def test_a_short_estimate_suggests_nothing():
    c = evaluate_cost({"gradcam": 0.1}, 4, CHECKS, curve_s=2.0)
    assert c.total < LONG and cheaper_settings(c, {"gradcam": 0.1}, 4, 8, 8) == []
    assert "cheaper" not in cost_message(c, 4, ["gradcam"], 2, [])


def test_evaluate_prints_its_estimate_before_the_maps(monkeypatch, capsys):
    from mikata.evaluation import scorecard

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, 3))
    handle = ModelHandle(net.eval(), list("abc"), input_size=(16, 16), default_layer="1")
    x = torch.randn(5, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    seen = []
    real = scorecard._timed_maps

    def spy(handle, x, methods, *a, **k):
        seen.append(x.shape[0])
        return real(handle, x, methods, *a, **k)

    monkeypatch.setattr(scorecard, "_timed_maps", spy)
    monkeypatch.setenv("MIKATA_PROGRESS", "lines")
    scorecard.evaluate(handle, x, ["gradcam", "saliency"], checks=["faithfulness", "random-logit"], steps=3,
                       progress=True)
    err = capsys.readouterr().err
    assert seen == [2, 5]  # the probe on 2 images, then the maps of all 5
    line = next(l for l in err.splitlines() if "in all for 5 images x 2 methods" in l)
    assert "timed on 2 images before starting" in line and "faithfulness" in line and "random-logit" in line


# ------------------------------------------------------------------------------ training
def test_train_cost_arithmetic_and_suggestions():
    from mikata.training.costs import LONG as TRAIN_LONG, train_cost, train_message, train_suggestions

    c = train_cost(cached=2624, cache_per_image=0.32, train=1837, step_per_image=0.26, val=394, epochs=15)
    assert c.cache == pytest.approx(2624 * 0.32)
    assert c.epoch == pytest.approx(1837 * 0.26 + 394 * 0.26 / 3)
    assert c.total == pytest.approx(c.cache + 15 * c.epoch) and c.total > TRAIN_LONG
    tips = train_suggestions(c, 224, 15, "blocks.6", ["blocks.11", "blocks.12"])
    assert tips[0].startswith("--input-size 160 (about 51% of the pixels; saves ~")
    fit = int((TRAIN_LONG - c.cache) // c.epoch)
    assert fit < 1 and not any(t.startswith("--epochs") for t in tips)  # caching alone is over 10 min
    assert tips[-1] == ("--freeze-until blocks.11 (now blocks.6): fewer layers learn, so each epoch runs a smaller "
                        "part of the network")
    msg = train_message(c, 2624, 32, tips)
    assert msg.startswith("train: about 2.4 h in all: caching the frozen layers' output 14 min (2,624 images), then "
                          "8.5 min per epoch x 15 epoch(s) (timed on 32 images before starting); that is long: "
                          "cheaper settings: --input-size 160")
    short = train_cost(0, 0.0, 100, 0.01, 20, 3)
    assert train_suggestions(short, 64, 3, None) == [] and "caching" not in train_message(short, 0, 16, [])
    some = train_cost(0, 0.0, 1000, 0.1, 200, 20)  # 107 s per epoch: 5 epochs fit in 10 min
    assert "--epochs 5 (saves ~27 min)" in train_suggestions(some, 64, 20, None)


def test_later_freeze_points(lite0):
    from mikata.training.costs import later_layers

    n = len(lite0.net.blocks)
    assert later_layers(lite0.net, "blocks.6")[0] == f"blocks.{7 + (n - 8) // 2}"
    assert later_layers(lite0.net, None)[0] == f"blocks.{2 * n // 3}"


def test_train_prints_its_estimate_before_caching(tmp_path, lite0, caplog, capsys, monkeypatch):
    import logging

    from mikata.training import train
    from test_train import write_digits

    data = write_digits(tmp_path / "digits", per_class=12)
    monkeypatch.setenv("MIKATA_PROGRESS", "lines")
    with caplog.at_level(logging.INFO, logger="mikata"):
        train(data, lite0, tmp_path / "m.safetensors", progress=True, epochs=1, batch_size=8, input_size=32,
              freeze_until="blocks.11", threads=1)
    err = capsys.readouterr().err
    line = next(l for l in err.splitlines() if l.startswith("train: about"))
    assert "caching the frozen layers' output" in line and "per epoch x 1 epoch(s) (timed on 8 images" in line
    assert err.index("train: about") < err.index("cache the frozen layers' output")  # before the long pass
