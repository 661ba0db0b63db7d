"""Units rendered in one batch: each image equals the image its unit gets when rendered alone (same seed),
a unit that plateaus leaves the batch, and `unit_examples` shows the same images and notes for a batch of
channels as for each channel on its own."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mikata.analysis.units import unit_examples
from mikata.featurevis import RenderOptions, channel, render
from mikata.featurevis.objectives import class_logit
from mikata.models.handle import ModelHandle
from test_scan_support import digit_images, write_folder


def _colour_handle() -> ModelHandle:
    """A small random conv net on 3-channel 32 px images; channel 0 of layer "3" is silent everywhere
    (bias -100 before the ReLU: it never gets a gradient, so it plateaus at once), the others live."""
    torch.manual_seed(0)
    conv2 = nn.Conv2d(8, 6, 3, stride=2, padding=1)
    with torch.no_grad():
        conv2.bias.fill_(0.5)  # live on a grey start
        conv2.bias[0] = -100.0
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), conv2, nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 4)).eval()
    return ModelHandle(net, ["a", "b", "c", "d"], input_size=(32, 32), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                       crop_fraction=1.0, interpolation="bilinear", in_channels=3, default_layer="3",
                       spec="small colour test net")


def _gray_handle() -> ModelHandle:
    """One channel over 28 px digits: #0 = relu(z - 2) fires only on bright strokes (silent on a grey start:
    rendered again from its top image), #1 = relu(-z - 100) never fires (shown as its strongest crop),
    #2 = relu(z + 5) fires on a grey start (rendered from noise)."""
    conv = nn.Conv2d(1, 3, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, -1.0, 1.0]).view(3, 1, 1, 1))
        conv.bias.copy_(torch.tensor([-2.0, -100.0, 5.0]))
    torch.manual_seed(0)
    net = nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 10)).eval()
    return ModelHandle(net, [str(i) for i in range(10)], input_size=(28, 28), mean=(0.1307,), std=(0.3081,),
                       crop_fraction=1.0, interpolation="bilinear", in_channels=1, default_layer="1",
                       spec="three-channel test net")


@pytest.mark.parametrize("opts", [
    dict(param="pixel", plateau=4),  # Adam; rows leave the batch at different steps
    dict(param="fourier", plateau=4, optimizer="sgd", lr=5.0),
    dict(param="pixel", plateau=0, octaves=2, octave_scale=1.5, tv=0.5, steps=4),  # every step, two levels, a penalty
])
def test_each_image_of_a_batch_equals_its_unit_rendered_alone(opts):
    """Same seed, same image, up to float noise. (Not Fourier with Adam over many steps: Adam divides each
    coefficient's gradient by its own running size, so a coefficient whose gradient is zero up to rounding
    moves by up to ``lr`` in a direction the rounding picks, and a batch of 4 rounds unlike a batch of 1.)"""
    h = _colour_handle()
    options = RenderOptions(**{"size": 32, "steps": 10, "seed": 3, **opts})
    units = [0, 2, 5]
    batch = render(h, channel("3", units), options)
    for i, c in enumerate(units):
        alone = render(h, channel("3", [c]), options)
        assert torch.allclose(batch.images[i], alone.images[0], atol=1e-4), (c, (batch.images[i] - alone.images[0]).abs().max())
        assert batch.stopped[i] == alone.stopped[0]
        assert [r["units"][i] for r in batch.log][:len(alone.log)] == pytest.approx(
            [r["units"][0] for r in alone.log], abs=1e-4)
    if opts["plateau"]:
        assert batch.stopped[0] == 5  # the silent channel: 4 steps without gain, then out of the batch
    assert not torch.allclose(batch.images[1], batch.images[2], atol=1e-3)  # different units, different images


def test_a_row_that_plateaued_leaves_the_batch():
    """The forward runs on the rows still rising only: the images it sees per step add up to each row's
    own step count, and a stopped row's image is the one it had when it stopped."""
    h = _colour_handle()
    h.layouts_for(["3"])  # the handle probes the layer's layout once (a forward of its own): before counting
    seen: list[int] = []
    hook = h.net[0].register_forward_hook(lambda m, args, out: seen.append(out.shape[0]))
    try:
        res = render(h, channel("3", [0, 5]), RenderOptions(size=32, steps=12, seed=0, plateau=4))
    finally:
        hook.remove()
    assert res.stopped[0] == 5
    ran = [s or 12 for s in res.stopped]
    assert seen == [2] * ran[0] + [1] * (max(ran) - ran[0])
    assert sum(seen) == sum(ran) == res.image_steps < 2 * len(res.log)
    assert res.log[-1]["units"][0] == res.log[4]["units"][0]  # the stopped row keeps its last score
    assert res.stopped == [5, None] and res.stopped_at is None  # one row ran every step


def test_class_logits_of_a_partial_batch_pick_their_own_classes():
    """A per-image objective reads which rows the batch still holds: the logits of a batch whose first row
    stopped equal those of rendering the other class alone."""
    h = _colour_handle()
    opts = RenderOptions(size=32, steps=6, seed=1, plateau=2, plateau_tol=10.0)  # every row stops at step 3
    both = render(h, class_logit([0, 3]), opts)
    alone = render(h, class_logit([3]), opts)
    assert both.stopped == [3, 3] and alone.stopped == [3]
    assert torch.allclose(both.images[1], alone.images[0], atol=1e-4)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from mikata.scanning.scan import scan

    base = tmp_path_factory.mktemp("units_batch")
    images, labels = digit_images(30)
    write_folder(base / "digits", images, labels)
    scan(_gray_handle(), base / "digits", base / "run", batch_size=64, workers=0, progress=False)
    return base / "run"


def test_units_show_the_same_images_and_notes_in_a_batch_as_one_by_one(run):
    h = _gray_handle()
    opts = RenderOptions(size=28, steps=10, jitter=2, pad=2)
    batch = unit_examples(run, [0, 1, 2], handle=h, k=2, options=opts)
    assert batch.notes[0].startswith("the rendering from noise failed") and "crop" in batch.notes[1]
    assert batch.notes[2] is None
    steps = []
    for j, c in enumerate([0, 1, 2]):
        alone = unit_examples(run, [c], handle=h, k=2, options=opts)
        assert alone.notes == [batch.notes[j]]
        assert torch.allclose(batch.synthetic[j], alone.synthetic[0], atol=1e-4), c
        steps.append(alone.image_steps)
    assert batch.image_steps == sum(steps)  # the batch's rows ran the steps each unit runs alone


def test_the_image_optimizer_adam_takes_torchs_adam_steps():
    """featurevis's Adam (no torch._dynamo import) against torch.optim.Adam on the same gradients."""
    from mikata.featurevis.optimize import Adam

    gen = torch.Generator().manual_seed(0)
    ours, ref = torch.randn(2, 3, 5, 5, generator=gen), None
    ref = ours.clone().requires_grad_(True)
    ours.requires_grad_(True)
    a, b = Adam([ours], lr=0.05), torch.optim.Adam([ref], lr=0.05)
    for _ in range(6):
        g = torch.randn(2, 3, 5, 5, generator=gen) * torch.rand(1, generator=gen)
        ours.grad, ref.grad = g.clone(), g.clone()
        a.step()
        b.step()
        a.zero_grad()
        b.zero_grad()
    assert ours.grad is None
    assert torch.allclose(ours, ref, atol=1e-6) and not torch.allclose(ours, torch.zeros_like(ours))
