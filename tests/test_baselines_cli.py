"""`--baseline` on the command line and in the scorecard; the random-logit check on two-class models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from mikata.cli import main
from mikata.models.handle import ModelHandle

DIGIT = "test_scan_support:mnist_handle"


@pytest.fixture(scope="module")
def digit(tmp_path_factory):
    from test_scan_support import digit_images

    path = tmp_path_factory.mktemp("digit") / "seven.png"
    digit_images(8)[0][7].save(path)
    return path


def test_explain_names_the_baseline_in_the_summary_and_the_figure(digit, tmp_path, capsys):
    code = main(["-q", "explain", DIGIT, str(digit), "--methods", "integrated-gradients,deeplift", "--steps", "4",
                 "--baseline", "white", "--out", str(tmp_path / "a"), "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert [m["info"]["baseline"] for m in summary[0]["maps"]] == ["white", "white"]
    code = main(["-q", "explain", DIGIT, str(digit), "--methods", "integrated-gradients", "--steps", "4",
                 "--baseline", "uniform-noise", "--baselines", "3", "--out", str(tmp_path / "b"), "--json"])
    assert code == 0
    maps = json.loads(capsys.readouterr().out)[0]["maps"]
    assert maps[0]["info"]["baseline"] == "uniform-noise x3"
    assert abs(maps[0]["info"]["completeness_delta"]) < 1.0


def test_explain_figure_title_names_the_default_baseline(digit):
    from mikata.attribution.figure import explain_figure
    from mikata.data.images import load_image
    from test_scan_support import mnist_handle

    fig = explain_figure(mnist_handle(), load_image(digit, mode="L"), ["integrated-gradients", "saliency"],
                         options={"integrated-gradients": {"steps": 4}})
    titles = [ax.get_title() for ax in fig.axes]
    assert any(t.startswith("integrated-gradients (signed), baseline mean") for t in titles), titles
    assert not any("baseline" in t for t in titles if t.startswith("saliency"))


@pytest.mark.parametrize("args,message", [
    (["--baseline", "grey"], "unknown baseline 'grey'"),
    (["--baseline", "missing.npy"], "baseline file missing.npy: no such file"),
    (["--baseline", "black", "--baselines", "4"], "--baselines 4 draws random baselines"),
])
def test_a_bad_baseline_exits_2_in_one_line_before_loading(digit, tmp_path, capsys, args, message):
    code = main(["-q", "explain", DIGIT, str(digit), "--methods", "integrated-gradients", "--out",
                 str(tmp_path), *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err


def test_a_baseline_file_of_the_wrong_shape_exits_2_naming_it(digit, tmp_path, capsys):
    bad = tmp_path / "small.npy"
    np.save(bad, np.zeros((3, 10, 10), np.float32))
    code = main(["-q", "evaluate", DIGIT, str(digit), "--methods", "integrated-gradients", "--checks", "faithfulness",
                 "--steps", "2", "--ig-steps", "2", "--baseline", str(bad), "--out", str(tmp_path / "ev")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and f"baseline file {bad}: shape (3, 10, 10) does not fit" in err, err
    assert len(err.splitlines()) == 1


def test_the_scorecard_names_each_baseline_and_the_curves_fill(digit, tmp_path, capsys):
    out = tmp_path / "ev"
    code = main(["-q", "evaluate", DIGIT, str(digit), "--methods", "integrated-gradients,deeplift,saliency",
                 "--checks", "faithfulness", "--steps", "4", "--ig-steps", "4", "--baseline", "expected",
                 "--fill", "deletion=black,insertion=white", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    expected = "mean of black, white, mean, blur, uniform-noise"
    assert f"integrated-gradients ({expected})" in printed and f"deeplift ({expected})" in printed
    assert "saliency (" not in printed
    assert "curves filled with deletion=black,insertion=white" in printed
    card = json.loads((out / "scorecard.json").read_text())
    assert card["baselines"] == {"integrated-gradients": expected, "deeplift": expected}
    from mikata.presentation.sections import scorecard_table

    assert [r["method"] for r in scorecard_table(card)["rows"]][:1] == [f"integrated-gradients ({expected})"]


def test_curve_fills_black_and_white_are_pixels():
    from mikata.evaluation.faithfulness import fill_image

    h = ModelHandle(nn.Sequential(nn.Flatten(), nn.Linear(192, 3)), ["a", "b", "c"], input_size=(8, 8),
                    mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2))
    x = torch.randn(2, 3, 8, 8)
    assert torch.allclose(h.denormalize(fill_image(x, "black", handle=h)), torch.zeros_like(x), atol=1e-6)
    assert torch.allclose(h.denormalize(fill_image(x, "white", handle=h)), torch.ones_like(x), atol=1e-6)


# ------------------------------------------------------------------------------ random-logit on two classes
def _tiny(classes: int) -> ModelHandle:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(8, classes))
    with torch.no_grad():  # the head a 2-way softmax training leaves: the two rows opposite
        if classes == 2:
            net[-1].weight[1] = -net[-1].weight[0]
            net[-1].bias[1] = -net[-1].bias[0]
    return ModelHandle(net.eval(), [str(i) for i in range(classes)], input_size=(16, 16))


def test_random_logit_is_meaningless_with_two_classes_and_skipped_with_a_note():
    from mikata.evaluation.randomization import random_logit
    from mikata.evaluation.scorecard import evaluate, format_scorecard

    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    two = _tiny(2)
    ids = two.model(x).argmax(1)
    # why: the only other class mirrors the target, so absolute maps coincide by construction
    _, sims = random_logit(two, x, ["integrated-gradients", "saliency"], ids,
                           options={"integrated-gradients": {"steps": 8}})
    assert all(float(sims[m][0].mean()) > 0.99 for m in sims), sims
    card = evaluate(two, x, ["saliency"], checks=["random-logit", "faithfulness"], steps=4).card
    assert "random-logit" not in card["passes"]["saliency"]
    assert card["table"]["saliency"].get("random-logit-spearman") is None
    assert card["skipped_checks"] == ["random-logit"]
    assert any(n.startswith("random-logit skipped: this model has two classes") for n in card["notes"])
    assert "note: random-logit skipped" in format_scorecard(card)
    many = evaluate(_tiny(4), x, ["saliency"], checks=["random-logit"], steps=4).card
    assert "random-logit" in many["passes"]["saliency"] and "skipped_checks" not in many
