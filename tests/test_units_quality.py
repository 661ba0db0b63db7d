"""Units whose rendering failed to activate them: detected, rendered again from their top image, or shown
as their strongest dataset crop, and said so; and renderings that stop once the objective plateaus."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from mikata.analysis.units import CROP, unit_examples
from mikata.featurevis import RenderOptions
from mikata.featurevis.optimize import Rendering, plateaued
from mikata.featurevis.quality import FLAT_STD, failed_renders
from mikata.models.handle import ModelHandle
from test_scan_support import digit_images, write_folder

MEAN, STD = (0.1307,), (0.3081,)


def _handle() -> ModelHandle:
    """Two channels over the pixels: #0 = relu(z - 2) fires only on bright strokes (z 2.8), silent on a grey
    start (z ~1.2), so its rendering from noise gets no gradient; #1 = relu(-z - 100) never fires."""
    conv = nn.Conv2d(1, 2, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
        conv.bias.copy_(torch.tensor([-2.0, -100.0]))
    torch.manual_seed(0)
    net = nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 10)).eval()
    return ModelHandle(net, [str(i) for i in range(10)], input_size=(28, 28), mean=MEAN, std=STD, crop_fraction=1.0,
                       interpolation="bilinear", in_channels=1, default_layer="1", spec="two-channel test net")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from mikata.scanning.scan import scan

    base = tmp_path_factory.mktemp("units_quality")
    images, labels = digit_images(40)
    write_folder(base / "digits", images, labels)
    scan(_handle(), base / "digits", base / "run", batch_size=64, workers=0, progress=False)
    return base / "run"


def _rendering(images: torch.Tensor, scores: list[list[float]]) -> Rendering:
    return Rendering(images, [str(i) for i in range(images.shape[0])],
                     [{"level": 1, "iteration": k + 1, "units": s, "mean": float(np.mean(s))}
                      for k, s in enumerate(scores)])


def test_failed_renders_finds_flat_and_silent_images():
    gen = torch.Generator().manual_seed(0)
    images = torch.stack([torch.full((3, 16, 16), 0.5) + 0.002 * torch.randn(3, 16, 16, generator=gen),
                          torch.rand(3, 16, 16, generator=gen), torch.rand(3, 16, 16, generator=gen)])
    failed = failed_renders(_rendering(images, [[0.0, 0.0, 0.2], [0.0, 0.0, 1.5]]))
    assert set(failed) == {0, 1}
    assert failed[0].startswith("flat: pixel std 0.") and "objective 0 -> 0" in failed[0]
    assert failed[1] == "the unit never activated: objective 0 -> 0"
    assert float(images[0].std()) < FLAT_STD < float(images[2].std())


def test_plateau_arithmetic():
    rising = [[float(k)] for k in range(20)]
    assert not plateaued(rising, 8)
    flat = [[1.0]] * 4 + [[5.0]] * 9
    assert not plateaued(flat[:12], 8) and plateaued(flat, 8)  # the jump is 9 steps back, beyond the window
    assert plateaued([[0.0, 2.0]] * 9, 8)  # a silent unit counts as plateaued
    assert not plateaued([[0.0, 2.0]] * 8 + [[0.0, 2.1]], 8)  # 5% gain: still rising
    assert not plateaued([[0.0]] * 8, 8)  # never before ``patience`` steps


def test_render_stops_when_the_objective_plateaus():
    from mikata.featurevis import channel, render

    h = _handle()
    opts = RenderOptions(size=28, steps=40, jitter=0, param="pixel", lr=0.05, seed=0)
    full = render(h, channel("1", [1]), opts)
    early = render(h, channel("1", [1]), RenderOptions(**{**opts.__dict__, "plateau": 8}))
    assert full.stopped_at is None and len(full.log) == 40
    assert early.stopped_at == 9 and len(early.log) == 9  # the silent channel: 8 steps without gain


def test_units_retry_from_the_top_image_then_fall_back_on_the_strongest_crop(run):
    res = unit_examples(run, [0, 1], handle=_handle(), k=2, options=RenderOptions(size=28, steps=12, jitter=2, pad=2))
    assert res.notes[0].startswith("the rendering from noise failed (") and "rendered again from its top image" in \
        res.notes[0]
    assert CROP in res.notes[1] and "again from its top image:" in res.notes[1]
    assert all(float(res.synthetic[j].std()) > FLAT_STD for j in (0, 1))
    top = res.units[0][1][0].image_id
    assert f"id {top}" in res.notes[0]
    card = res.summary()
    assert [("synthetic_note" in u) for u in card["units"]] == [True, True]
    res.save()
    saved = json.loads((run / "units" / "units.json").read_text())
    assert saved["units"][1]["synthetic_note"] == res.notes[1]
