"""What the report and the web app pick up from a run folder: feature-visualization images, the scorecard."""

from __future__ import annotations

import json
import os

from PIL import Image

from mikata.runs.attachments import featurevis_images, read_scorecard, scorecard_figure


def _png(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4)).save(path)


def test_a_folder_with_a_grid_is_shown_by_its_grid_and_links_out_are_ignored(tmp_path):
    run = tmp_path / "run"
    for name in ("0.png", "1.png", "grid.png"):
        _png(run / "featurevis" / "stem" / name)
    _png(run / "featurevis" / "zebra.png")
    _png(tmp_path / "secret.png")
    os.symlink(tmp_path / "secret.png", run / "featurevis" / "planted.png")
    shown = [p.relative_to(run / "featurevis").as_posix() for p in featurevis_images(run)]
    assert shown == ["stem/grid.png", "zebra.png"]
    assert featurevis_images(tmp_path / "no-such-run") == []


def test_scorecard_and_its_figures_stay_inside_the_evaluate_folder(tmp_path, caplog):
    run = tmp_path / "run"
    assert read_scorecard(run) is None
    (run / "evaluate").mkdir(parents=True)
    (run / "evaluate" / "scorecard.json").write_text("{not json")
    assert read_scorecard(run) is None and "unreadable" in caplog.text
    (run / "evaluate" / "scorecard.json").write_text(json.dumps({"figures": ["evaluate.png"]}))
    assert read_scorecard(run) == {"figures": ["evaluate.png"]}
    assert scorecard_figure(run, "evaluate.png") is None  # listed but not written
    _png(run / "evaluate" / "evaluate.png")
    _png(tmp_path / "outside.png")
    assert scorecard_figure(run, "evaluate.png") == run / "evaluate" / "evaluate.png"
    assert scorecard_figure(run, "../../outside.png") is None
    assert scorecard_figure(run, "scorecard.json") is None  # only PNGs
