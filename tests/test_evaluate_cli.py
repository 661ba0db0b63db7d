"""`mikata evaluate`: prints a scorecard, writes scorecard.json with the contract keys and a PNG,
works on a scanned run (default out RUN_DIR/evaluate), and refuses bad input with exit code 2."""

from __future__ import annotations

import json

import pytest

from mikata.cli import main

CONTRACT = {"model", "images", "target", "methods", "metrics", "table", "passes", "figures", "created"}
SMALL = ["--steps", "4", "--stages", "2", "--samples", "1", "--seed", "1"]


def _check_card(card: dict, methods: list[str], images: int) -> None:
    assert CONTRACT <= set(card)
    assert card["methods"] == methods and card["images"] == images and card["target"] == "top1"
    names = [m["name"] for m in card["metrics"]]
    assert all(m["better"] in ("lower", "higher") and m["description"] for m in card["metrics"])
    for m in methods:
        assert set(card["table"][m]) == set(names)
        assert all(v is None or isinstance(v, float) for v in card["table"][m].values())
        assert set(card["passes"][m]) == {"deletion<random", "insertion>random", "model-randomization", "random-logit"}
    assert card["created"].endswith("Z")


def test_evaluate_images_prints_and_writes_a_scorecard(photos, tmp_path, capsys):
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("chelsea.png,140,20,400,300\n")
    out = tmp_path / "ev"
    code = main(["-q", "evaluate", "efficientnet-lite0", str(photos["chelsea"]), str(photos["coffee"]),
                 "--methods", "gradcam,saliency", "--boxes", str(boxes), "--out", str(out), *SMALL])
    assert code == 0
    printed = capsys.readouterr().out
    assert "gradcam" in printed and "deletion-auc" in printed and "pass" in printed.lower()
    card = json.loads((out / "scorecard.json").read_text())
    _check_card(card, ["gradcam", "saliency"], 2)
    assert {"pointing-game", "energy-inside", "max-sensitivity"} <= {m["name"] for m in card["metrics"]}
    assert card["figures"] == ["evaluate.png"]
    assert (out / "evaluate.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the coffee image has no box: the pointing game is over the cat alone, a 0 or 1
    assert card["table"]["gradcam"]["pointing-game"] in (0.0, 1.0)


def test_evaluate_a_scanned_run_writes_into_it(tmp_path, capsys):
    from mikata.scanning.scan import scan
    from test_scan_support import digit_images, mnist_handle, write_folder

    images, labels = digit_images(12)
    write_folder(tmp_path / "digits", images, labels)
    scan(mnist_handle(), tmp_path / "digits", tmp_path / "run", batch_size=16, workers=0, progress=False)
    code = main(["-q", "evaluate", str(tmp_path / "run"), "--images-limit", "5", "--methods", "gradcam,saliency",
                 "--model", "test_scan_support:mnist_handle",  # a factory: typed by the user, not read from the run
                 "--json", *SMALL])
    assert code == 0
    card = json.loads(capsys.readouterr().out)
    _check_card(card, ["gradcam", "saliency"], 5)
    assert card["model"] == "test_scan_support:mnist_handle"
    assert json.loads((tmp_path / "run" / "evaluate" / "scorecard.json").read_text())["table"] == card["table"]


@pytest.mark.parametrize("args, message", [
    (["efficientnet-lite0", "IMG", "--methods", "gradcam,nonsense"], "unknown method 'nonsense'"),
    (["efficientnet-lite0", "/nonexistent/cat.png"], "no such file"),
    (["efficientnet-lite0"], "give images after the model"),
    (["efficientnet-lite0", "IMG", "--checks", "speed"], "unknown check 'speed'"),
])
def test_bad_input_exits_2_with_a_clear_message(photos, capsys, args, message):
    args = [str(photos["chelsea"]) if a == "IMG" else a for a in args]
    assert main(["evaluate", *args]) == 2
    assert message in capsys.readouterr().err
