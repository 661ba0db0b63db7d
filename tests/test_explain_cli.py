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


def test_figure_wraps_20_methods_and_3_targets_into_readable_rows():
    """20 methods x top-3 would be one 6,800 px row per target; wrapped, every panel keeps its size,
    rows hold at most MAX_COLUMNS panels, and each target starts its own block of rows."""
    import torch

    from mikata.attribution.figure import MAX_COLUMNS, draw_figure, figure_layout
    from mikata.attribution.result import Attribution

    assert figure_layout(2, 1) == (1, 4, {(0, 0): (0, 2), (0, 1): (0, 3)})  # small figures: one row as before
    rows, cols, cells = figure_layout(20, 3)
    assert cols == MAX_COLUMNS and rows == 1 + 3 * 4
    assert len(set(cells.values())) == 60 and all(r >= 1 for r, _ in cells.values())
    assert cells[(1, 0)] == (5, 0) and cells[(2, 19)] == (12, 1)
    g = torch.Generator().manual_seed(0)
    atts = [Attribution(f"method-{m}", f"top{t + 1}", [t], torch.rand(1, 32, 32, generator=g),
                        torch.rand(1, 4, 4, generator=g), "layer") for m in range(20) for t in range(3)]
    image = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    fig = draw_figure(image, atts, torch.softmax(torch.randn(5, generator=g), 0), [f"class {i}" for i in range(5)])
    assert len(fig.axes) == 2 + 2 * 60
    width, height = fig.get_size_inches() * fig.dpi
    assert width <= 3.1 * MAX_COLUMNS * 100 + 1 and height > width
    titles = [a.get_title() for a in fig.axes[2::2]]
    assert titles[0].startswith("method-0\ntop1") and titles[-1].startswith("method-19\ntop3")
