"""Every view of one split flags exactly the rows of that split that the whole-run computation flags.

A run of real digits (scikit-learn, the real MNIST CNN) split 50/50, with byte-identical copies and
lightly edited copies of images: a copy that lands in the other split than its original is a leak,
wherever the view looks from. ``mikata audit --split test``, ``mikata report --split test``, the web
app of ``serve --split test``, ``mikata export --split test`` and ``open_run(split=SPLIT)`` must each
flag, per issue type, the test rows that ``find_issues`` over the whole run flags, and no other image.
"""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from test_scan_support import digit_images, mnist_handle

SPLIT = "val"  # a 50/50 split names its parts train and val: "val" is the held-out one here


@pytest.fixture(scope="module")
def leaky(tmp_path_factory):
    from mikata.scanning.scan import scan

    root = tmp_path_factory.mktemp("leaky") / "digits"
    images, labels = digit_images(120)
    paths = []
    for i, (img, y) in enumerate(zip(images, labels)):
        p = root / str(int(y)) / f"{i:04d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        img.save(p)
        paths.append(p)
    for c in range(12):  # byte-identical copies: about half of them fall in the other split than their original
        shutil.copyfile(paths[c], paths[c].parent / f"copy_{c}.png")
    for c in range(12, 20):  # lightly edited copies: near duplicates
        arr = (np.asarray(images[c], np.float32) * 0.95).astype(np.uint8)
        Image.fromarray(arr).save(paths[c].parent / f"edit_{c}.png")
    run = root.parent / "run"
    scan(mnist_handle(), root, run, batch_size=64, workers=0, progress=False, fractions=(0.5, 0.5), seed=0)
    return run


def _whole(run):
    """Per issue type, the ids the whole-run computation flags, and the test rows' ids."""
    from mikata.runs.data import load_run
    from mikata.analysis.issues import find_issues

    found = find_issues(run)
    d = found.data
    test = set(d.ids[d.splits == SPLIT].tolist())
    flagged = {t.name: set(d.ids[t.flag].tolist()) for t in found.types.values()}
    assert len(load_run(run, SPLIT)) == len(test) and 0 < len(test) < len(d)
    return found, flagged, test


def test_the_run_has_a_leak_with_a_test_image(leaky):
    found, flagged, test = _whole(leaky)
    assert flagged["leak"] & test, "the fixture must plant a leak that a test image takes part in"
    assert flagged["exact_duplicate"] - test, "and a duplicate outside the test split"
    assert any(p[4] for p in found.pairs)


def test_python_view_of_a_split_flags_the_whole_runs_test_rows(leaky):
    from mikata.analysis.run import open_run

    _, flagged, test = _whole(leaky)
    view = open_run(leaky, split=SPLIT).issues()
    assert set(view.data.ids.tolist()) == test
    for t in view.types.values():
        assert set(view.data.ids[t.flag].tolist()) == flagged[t.name] & test, t.name
    # the leak's partner (a training image) is named in the pairs of the test view
    ids = view.pair_data.ids
    across = [(int(ids[i]), int(ids[j])) for i, j, _, _, a in view.pairs if a]
    assert across and all((a in test) != (b in test) for a, b in across)


def test_audit_of_a_split_flags_the_whole_runs_test_rows(leaky, capsys):
    from mikata.runs.data import load_run
    from mikata.cli import main

    found, flagged, test = _whole(leaky)
    assert main(["audit", str(leaky), "--split", SPLIT, "--json", "--top", "1000"]) == 0
    r = json.loads(capsys.readouterr().out)
    d = load_run(leaky)
    id_of = dict(zip(map(str, d.paths), d.ids.tolist()))
    for t in r["dataset_issues"]["types"]:
        assert t["flagged"] == len(flagged[t["type"]] & test), t["type"]
        assert {id_of[w["path"]] for w in t["worst"]} <= flagged[t["type"]] & test, t["type"]
    whole_leaks = sum(1 for p in found.pairs if p[4] and (int(d.ids[p[0]]) in test or int(d.ids[p[1]]) in test))
    assert r["dataset_issues"]["leaks"] == whole_leaks > 0


def test_report_of_a_split_flags_the_whole_runs_test_rows(leaky, tmp_path):
    from mikata.report import write_report

    _, flagged, test = _whole(leaky)
    html = write_report(leaky, tmp_path / "r.html", split=SPLIT, maps=False).path.read_text(encoding="utf-8")
    for name, ids in flagged.items():
        row = re.search(rf'<tr data-type="{name}">.*?<td class="num">(\d+)</td>', html)
        assert row and int(row.group(1)) == len(ids & test), name
        gallery = re.search(rf'id="issues-{name}">(.*?)(?=<div class="gallery-row"|</section>)', html, re.S)
        shown = {int(i) for i in re.findall(r'data-id="(\d+)"', gallery.group(1))} if gallery else set()
        assert shown <= ids & test, name


def test_app_of_a_split_flags_the_whole_runs_test_rows(leaky):
    from fastapi.testclient import TestClient

    from mikata.server import create_app

    _, flagged, test = _whole(leaky)
    app = create_app(leaky, token="t0123456789abcdef", port=8799, handle=mnist_handle(), split=SPLIT)
    found = app.run.issues()
    for t in found.types.values():
        assert set(found.data.ids[t.flag].tolist()) == flagged[t.name] & test, t.name
    client = TestClient(app, base_url="http://127.0.0.1:8799")
    assert client.get("/?token=t0123456789abcdef").status_code == 200
    page = client.get("/issues?type=leak")
    assert page.status_code == 200
    shown = {int(i) for i in re.findall(r'data-id="(\d+)"', page.text)}
    assert flagged["leak"] & test <= shown  # the test side of every leak; partners may show in the pairs list


def test_export_of_a_split_flags_the_whole_runs_test_rows(leaky, tmp_path):
    import pandas as pd

    from mikata.cli import main

    _, flagged, test = _whole(leaky)
    out = tmp_path / "t.csv"
    assert main(["export", str(leaky), "--split", SPLIT, "--out", str(out)]) == 0
    frame = pd.read_csv(out)
    assert set(frame["id"]) == test
    for name, ids in flagged.items():
        if f"{name}_issue" in frame:
            assert set(frame["id"][frame[f"{name}_issue"]]) == ids & test, name
