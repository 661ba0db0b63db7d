"""What the report and the web app share comes from one place: cell order, confusion trimming,
the scorecard table, thumbnails."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from mikata.presentation.media import thumbnail
from mikata.analysis.overview import overview
from mikata.presentation.sections import confident_first, confusion_cells, confusion_view, scorecard_table
from test_scan_support import planted_run


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return planted_run(tmp_path_factory.mktemp("sections"))


def test_every_cell_lists_its_images_in_the_order_the_grid_shows_them(planted):
    ov = overview(planted["run"])
    cells = confusion_cells(ov.data)
    assert sum(len(v) for v in cells.values()) == len(ov.data)
    for (t, p), ids in cells.items():
        assert ids.tolist() == ov.cell(t, p).tolist()
    d = ov.data
    rows = confident_first(d, np.arange(len(d)))
    pp = d.probs[rows, d.preds[rows]]
    assert (np.diff(pp) <= 0).all()


def test_confusion_view_drops_only_classes_nothing_happened_to():
    cm = np.zeros((6, 6), np.int64)
    cm[0, 0], cm[1, 1], cm[1, 2], cm[2, 1] = 5, 4, 3, 1  # class 2 has images and predictions
    cm[3, 4] = 2  # class 4 is only ever predicted
    rows, cols = confusion_view(cm, [0, 1, 2, 3], limit=10)
    assert rows == [0, 1, 2, 3] and cols == [0, 1, 2, 3, 4]
    rows, cols = confusion_view(cm, [0, 1, 2, 3], limit=2)
    assert cols == [1, 2] and rows == [1, 2]  # 4 and 2 errors involve them; 3 and 4 only 2 each


def test_scorecard_table_formats_once_for_both_renderers():
    card = {"model": "m", "images": 3, "target": "top1", "methods": ["gradcam", "saliency"],
            "metrics": [{"name": "deletion", "better": "lower"}, "insertion"],
            "table": {"gradcam": {"deletion": 0.123456, "insertion": None}, "saliency": {"deletion": 2}},
            "passes": {"gradcam": {"rand": True}, "saliency": {"rand": False, "logit": True}}, "figures": ["a.png"]}
    t = scorecard_table(card)
    assert t["checks"] == ["logit", "rand"] and [m["name"] for m in t["metrics"]] == ["deletion", "insertion"]
    assert t["rows"] == [{"method": "gradcam", "cells": ["0.1235", "–"], "passes": [None, True]},
                         {"method": "saliency", "cells": ["2", "–"], "passes": [True, False]}]
    assert t["figures"] == ["a.png"]


def test_thumbnails_keep_gray_images_one_channel(tmp_path):
    gray = tmp_path / "g.png"
    Image.fromarray(np.arange(28 * 28, dtype=np.uint8).reshape(28, 28)).convert("RGB").save(gray)
    t = Image.open(io.BytesIO(thumbnail(gray, 64)))
    assert t.mode == "L" and t.size == (28, 28)
    color = tmp_path / "c.png"
    Image.new("RGB", (28, 28), (200, 10, 10)).save(color)
    assert Image.open(io.BytesIO(thumbnail(color, 64))).mode == "RGB"
