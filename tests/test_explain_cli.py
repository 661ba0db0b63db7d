"""`mikata explain` end to end on the built-in model and a real photo; the notebook figure API."""

from __future__ import annotations

import json

import numpy as np

from mikata.cli import main


def test_explain_cli_writes_figure_maps_and_json(photos, tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    out = tmp_path / "out"
    code = main(["-q", "explain", "efficientnet-lite0", str(photos["chelsea"]), str(bad), "--methods",
                 "gradcam,guided-gradcam,saliency", "--target", "top2", "--out", str(out), "--json"])
    assert code == 1  # one unreadable file is reported, the rest is done
    summary = json.loads((out / "summary.json").read_text())
    assert summary[1]["error"] and summary[0]["top"][0]["class"] == "tiger cat"
    maps = summary[0]["maps"]
    assert [(m["method"], m["target"]) for m in maps] == [
        ("gradcam", "top1"), ("gradcam", "top2"), ("guided-gradcam", "top1"), ("guided-gradcam", "top2"),
        ("saliency", "top1"), ("saliency", "top2")]
    assert maps[0]["targets"]["name"] == "tiger cat" and maps[0]["layer"] == "head"
    assert np.load(maps[0]["raw"]).shape == (7, 7)
    assert np.load(maps[2]["raw"]).shape == (3, 224, 224)
    from PIL import Image

    assert Image.open(summary[0]["figure"]).size[0] > 800
    assert "cannot read" in capsys.readouterr().err


def test_explain_cli_unknown_method_lists_choices(photos, tmp_path, capsys):
    code = main(["explain", "efficientnet-lite0", str(photos["coffee"]), "--methods", "gradcam,gradkam",
                 "--out", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown method 'gradkam'" in err and "guided-gradcam" in err


def test_explain_figure_for_notebooks(lite0, photos):
    from mikata.attribution.figure import explain_figure
    from mikata.data import load_image

    fig = explain_figure(lite0, load_image(photos["coffee"]), ["gradcam", "eigencam"], targets="top1")
    assert len(fig.axes) == 4 + 2  # image, bars, two overlays, two colorbars
    assert "gradcam" in fig.axes[2].get_title()
