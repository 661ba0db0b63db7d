"""mikata report on a real scan (the MNIST CNN on real digits), checked against overview() and in Chromium."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest

from mikata.analysis.overview import overview
from test_scan_support import digit_images, mnist_handle, write_folder

HISTORY = {"train_loss": [1.9, 0.8, 0.5], "val_loss": [1.2, 0.7, 0.6],
           "train_accuracy": [0.41, 0.77, 0.86], "val_accuracy": [0.62, 0.79, 0.83], "epoch_seconds": [1.0, 1.0, 1.0]}


@pytest.fixture(scope="module")
def report_run(tmp_path_factory):
    """300 real digits (12 in a wrong folder) scanned with a mikata checkpoint of the MNIST CNN that
    carries a training history, plus a feature-visualization grid and an evaluate scorecard in the run."""
    from mikata.scanning.scan import scan
    from mikata.featurevis import RenderOptions, visualize_classes
    from mikata.models import load_model
    from mikata.models.loading import save_checkpoint

    base = tmp_path_factory.mktemp("report")
    images, labels = digit_images(300)
    rng = np.random.default_rng(0)
    flipped = rng.choice(len(labels), 12, replace=False)
    labels[flipped] = (labels[flipped] + rng.integers(1, 10, len(flipped))) % 10
    write_folder(base / "digits", images, labels)
    h = mnist_handle()
    h.metadata["architecture"] = "test_scan_support:mnist_handle"
    ckpt = save_checkpoint(h, base / "digits-cnn.safetensors", extra={"training": {"history": HISTORY}})
    handle = load_model(str(ckpt), architecture="test_scan_support:mnist_handle")  # a factory: typed, not read
    run = base / "run"
    scan(handle, base / "digits", run, batch_size=64, workers=0, progress=False)
    r = visualize_classes(handle, ["3", "8"], RenderOptions(size=28, steps=4, jitter=2, pad=2))
    (run / "featurevis" / "classes").mkdir(parents=True)
    r.grid(thumb=56).save(run / "featurevis" / "classes" / "grid.png")
    (run / "evaluate").mkdir()
    r.grid(thumb=40).save(run / "evaluate" / "deletion.png")
    (run / "evaluate" / "scorecard.json").write_text(json.dumps({
        "model": str(ckpt), "images": 20, "target": "top1", "methods": ["gradcam", "saliency"],
        "metrics": [{"name": "deletion_auc", "better": "lower", "description": "area under the deletion curve"}],
        "table": {"gradcam": {"deletion_auc": 0.21}, "saliency": {"deletion_auc": 0.34}},
        "passes": {"gradcam": {"randomization": True}, "saliency": {"randomization": False}},
        "figures": ["deletion.png"], "created": "2026-11-23T12:00:00Z"}))
    return {"run": run, "handle": handle, "base": base, "ckpt": ckpt}


@pytest.fixture(scope="module")
def report(report_run, tmp_path_factory):
    from mikata.report import write_report

    groups = {"0": "round", "6": "round", "8": "round", "9": "round"}
    out = tmp_path_factory.mktemp("html") / "report.html"
    result = write_report(report_run["run"], out, groups=groups, handle=report_run["handle"])
    ov = overview(report_run["run"], groups=groups, top_issues=50)
    return {"result": result, "html": out.read_text(encoding="utf-8"), "ov": ov, "path": out, "groups": groups}


class _Collect(HTMLParser):
    """Elements with an id, the confusion cells and the label-issue rows."""

    def __init__(self):
        super().__init__()
        self.ids: dict[str, dict] = {}
        self.cells: list[dict] = []
        self.issue_ids: list[int] = []
        self._text_of: str | None = None
        self.text: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids[a["id"]] = a
            self._text_of = a["id"]
        if tag == "td" and "cell" in (a.get("class") or "").split():
            self.cells.append(a)
        if tag == "tr" and "issue" in (a.get("class") or "").split():
            self.issue_ids.append(int(a["data-id"]))

    def handle_data(self, data):
        if self._text_of and data.strip():
            self.text.setdefault(self._text_of, data.strip())
            self._text_of = None


def test_report_sections_and_numbers_match_the_overview(report, report_run):
    html, ov, result = report["html"], report["ov"], report["result"]
    p = _Collect()
    p.feed(html)
    for section in ("summary", "training", "confusion", "histogram", "pairs", "exceptional", "class-galleries",
                    "label-issues", "embedding", "featurevis", "scorecard"):
        assert section in p.ids, section
    assert p.text["accuracy"] == f"{ov.accuracy:.2%}" and float(p.ids["accuracy"]["data-value"]) == ov.accuracy
    assert p.text["top5"] == f"{ov.top5_accuracy:.2%}"
    assert int(p.text["errors"]) == int((ov.data.labels != ov.data.preds).sum())
    cells = {(int(c["data-t"]), int(c["data-p"])): int(c["data-count"]) for c in p.cells}
    assert len(cells) == len(ov.present) ** 2  # every class is present and predicted here
    assert all(cells[t, q] == ov.confusion[t, q] for t, q in cells)
    assert p.issue_ids == [i["id"] for i in ov.label_issues] and len(p.issue_ids) > 0
    assert int(p.text["exceptional-count"]) == ov.exceptional["count"]
    data = json.loads(re.search(r'<script type="application/json" id="mk-data">(.*?)</script>', html, re.S).group(1))
    nonzero = [(t, q) for t in ov.present for q in range(len(ov.class_names)) if ov.confusion[t, q]]
    assert sorted(data["cells"]) == sorted(f"{t},{q}" for t, q in nonzero)
    assert all(data["cells"][f"{t},{q}"] == ov.cell(t, q).tolist() for t, q in nonzero)
    thumbs = json.loads(re.search(r'<script type="application/json" id="mk-thumbs">(.*?)</script>', html, re.S).group(1))
    assert sorted(map(int, thumbs)) == sorted(ov.data.ids.tolist())  # each image's thumbnail once
    # maps: Grad-CAM and Guided Grad-CAM of each class's most and least class-like images
    wanted = {(i, c.index) for c in ov.classes for i in c.most_class_like + c.least_class_like}
    # ... and of the predicted class of each least class-like image the model gives another class (issue 31.8)
    predicted = {(i, int(ov.data.preds[ov.row(i)])) for c in ov.classes for i in c.least_class_like
                 if ov.data.preds[ov.row(i)] != c.index}
    assert result.maps == 2 * len(wanted | predicted) and html.count("Guided Grad-CAM of image") == 2 * 3 * len(ov.classes)
    assert "val accuracy" in html and "classes/grid.png" in html and "deletion_auc" in html
    assert not re.search(r"https?://", html), "the report must not reference anything on the network"
    assert result.bytes == report["path"].stat().st_size


def test_batched_maps_equal_single_maps_and_are_cached(report_run, monkeypatch):
    from mikata.presentation.maps import MapService
    from mikata.runs.store import RunStore

    service = MapService(report_run["run"], handle=report_run["handle"])
    ov = overview(report_run["run"])
    off = max(((t, q) for t in ov.present for q in ov.present if t != q), key=lambda tq: ov.confusion[tq])
    wrong = ov.cell(*off)[:2].tolist()  # explained for their (wrong) predicted class: classes=None
    ids = ov.cell(5, 5)[:5].tolist() + wrong
    assert len(ids) == 7
    got = service.maps(ids, ["gradcam", "saliency"], classes=[5] * 5 + [None] * 2, batch_size=3)
    assert {k for i, _, k in got if i in wrong} == {off[1]}
    assert len(got) == 2 * len(ids)
    fresh = MapService(report_run["run"], handle=report_run["handle"])
    for (i, m, k), a in got.items():
        single = fresh._compute(fresh_path(report_run["run"], i), m, k, None)
        assert np.allclose(a, single, rtol=1e-2, atol=2e-3 * float(np.abs(single).max()) + 1e-6), (i, m, k)
    with RunStore.open(report_run["run"]) as store:
        assert all(store.get_map(i, m, k) is not None for i, m, k in got)
    monkeypatch.setattr(service, "_compute_batch", lambda *a: pytest.fail("cached maps were computed again"))
    again = service.maps(ids, ["gradcam", "saliency"], classes=[5] * 5 + [None] * 2)
    assert all(np.array_equal(again[k], got[k]) for k in got)
    assert np.array_equal(service.map(ids[0], "gradcam", 5), got[(ids[0], "gradcam", 5)])


def fresh_path(run, image_id):
    from mikata.presentation.media import image_file
    from mikata.runs.store import RunStore

    with RunStore.open(run) as store:
        return image_file(store, image_id)


def test_report_in_chromium_lists_a_cells_images_and_shows_points(report, browser):
    from browser_support import new_page, screenshot

    ov = report["ov"]
    page = new_page(browser)
    page.goto(report["path"].as_uri(), wait_until="load")
    page.wait_for_function("document.documentElement.dataset.ready === '1'", timeout=10000)
    off = [(t, q) for t in ov.present for q in ov.present if t != q and ov.confusion[t, q]]
    t, q = max(off, key=lambda tq: ov.confusion[tq])
    for tt, qq in ((t, q), (t, t)):
        page.click(f'td.cell[data-t="{tt}"][data-p="{qq}"]')
        while page.locator("#cell-list button.more").count():
            page.click("#cell-list button.more")
        listed = page.eval_on_selector_all("#cell-list figure.thumb", "fs => fs.map(f => +f.dataset.id)")
        assert listed == ov.cell(tt, qq).tolist()
        assert page.locator("#cell-list figure.thumb img").first.get_attribute("src").startswith("data:image/")
    page.click(f'td.cell[data-t="{t}"][data-p="{q}"]')
    screenshot(page, "report-digits")
    # a confused pair's count opens the same list
    page.click(f'#pairs button[data-cell="{t},{q}"]')
    assert page.eval_on_selector_all("#cell-list figure.thumb", "fs => fs.length") == ov.confusion[t, q]
    # the embedding: clicking a point shows that image
    k, pid = page.evaluate("() => { const E = JSON.parse(document.getElementById('mk-data').textContent).emb;"
                           " return [7, E.ids[7]]; }")
    x, y = page.evaluate(f"() => window.mikataReport.embXY({k})")
    page.locator("#emb-canvas").click(position={"x": x, "y": y})
    picked = int(page.get_attribute("#emb-pick", "data-id"))
    xy = page.evaluate(f"() => window.mikataReport.embXY(JSON.parse(document.getElementById('mk-data').textContent)"
                       f".emb.ids.indexOf({picked}))")
    assert picked == pid or (abs(xy[0] - x) < 1.5 and abs(xy[1] - y) < 1.5)  # or a point drawn at the same place
    # a label-issue thumbnail opens the viewer
    page.click("#label-issues img.thumb-img >> nth=0")
    assert page.is_visible("#viewer") and f"#{ov.label_issues[0]['id']}" in page.inner_text("#viewer")
    assert page.problems == []


def test_report_command_and_its_errors(report_run, tmp_path, capsys):
    from mikata.cli import main

    out = tmp_path / "r.html"
    assert main(["report", str(report_run["run"]), "--out", str(out), "--no-maps", "--json", "--thumb", "48"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["path"] == str(out.resolve()) and summary["maps"] == 0 and out.stat().st_size == summary["bytes"]
    html = out.read_text(encoding="utf-8")
    assert "Guided Grad-CAM of image" not in html and 'id="accuracy"' in html
    assert main(["report", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "not a mikata run directory" in capsys.readouterr().err
    assert main(["report", str(report_run["run"]), "--groups", str(tmp_path / "missing.json")]) == 2
    assert "--groups" in capsys.readouterr().err
    assert main(["report", str(report_run["run"]), "--methods", "magic", "--out", str(out)]) == 2
    assert "unknown method 'magic'" in capsys.readouterr().err


def test_report_of_a_plain_run_leaves_optional_sections_out(tmp_path):
    """A checkpoint without training history, no featurevis, no scorecard: those sections are simply absent;
    a checkpoint deleted since the scan leaves the maps out with a note instead of failing."""
    from mikata.scanning.scan import scan
    from mikata.models import load_model
    from mikata.models.loading import save_checkpoint
    from mikata.report import write_report

    images, labels = digit_images(60)
    write_folder(tmp_path / "digits", images, labels)
    h = mnist_handle()
    h.metadata["architecture"] = "test_scan_support:mnist_handle"
    ckpt = save_checkpoint(h, tmp_path / "plain.safetensors")
    scan(load_model(str(ckpt), architecture="test_scan_support:mnist_handle"), tmp_path / "digits", tmp_path / "run", batch_size=32, workers=0, progress=False)
    ckpt.unlink()
    gone = write_report(tmp_path / "run", tmp_path / "gone.html")
    assert gone.maps == 0 and any(n.startswith("attribution maps left out") for n in gone.notes)
    assert "attribution maps left out" in (tmp_path / "gone.html").read_text(encoding="utf-8")
    r = write_report(tmp_path / "run", tmp_path / "plain.html", maps=False)
    html = (tmp_path / "plain.html").read_text(encoding="utf-8")
    for absent in ('id="training"', 'id="featurevis"', 'id="scorecard"', 'id="exceptional"'):
        assert absent not in html
    assert 'id="embedding"' in html and r.thumbnails == 60 and r.maps == 0
    # many classes: the matrix keeps the ones with the most errors, and says so
    r = write_report(tmp_path / "run", tmp_path / "small.html", maps=False, max_matrix=4)
    p = _Collect()
    p.feed((tmp_path / "small.html").read_text(encoding="utf-8"))
    ov = overview(tmp_path / "run")
    off = ov.confusion - np.diag(np.diag(ov.confusion))
    errs = off.sum(0) + off.sum(1)
    kept = {int(c["data-t"]) for c in p.cells}
    assert len(p.cells) == 16 and min(errs[list(kept)]) >= np.sort(errs)[-4]
    assert any("the 4 classes with the most errors" in n for n in r.notes)


def test_a_wide_scorecard_stays_inside_its_card_in_chromium(report_run, tmp_path, browser):
    """Every metric and check of `mikata evaluate` for six methods: the table's headers wrap and what is
    still too wide scrolls inside the scorecard's card instead of running out of it (seen at 1000 px)."""
    import shutil

    from browser_support import new_page
    from mikata.evaluation.scorecard import CHECK_METRICS, METRICS
    from mikata.report import write_report

    run = tmp_path / "run"
    shutil.copytree(report_run["run"], run)
    methods = ["gradcam", "guided-gradcam", "integrated-gradients", "smoothgrad", "deeplift", "occlusion"]
    rng = np.random.default_rng(0)
    (run / "evaluate" / "scorecard.json").write_text(json.dumps({
        "model": str(report_run["ckpt"]), "images": 20, "target": "top1", "methods": methods,
        "metrics": [{"name": k, "better": b, "description": d} for k, (b, d) in METRICS.items()],
        "table": {m: {k: float(rng.uniform(-1, 1)) for k in METRICS} for m in methods},
        "passes": {m: {c: bool(rng.integers(2)) for c in CHECK_METRICS} for m in methods},
        "figures": [], "created": "2026-11-23T12:00:00Z"}))
    out = tmp_path / "wide.html"
    write_report(run, out, maps=False, handle=report_run["handle"])
    page = new_page(browser, width=1000, height=800)
    page.goto(out.as_uri(), wait_until="load")
    page.wait_for_function("document.documentElement.dataset.ready === '1'", timeout=10000)
    box = page.evaluate("""() => { const s = document.querySelector('#scorecard'), t = document.querySelector('#scorecard-table');
        const sb = s.getBoundingClientRect(), tb = t.getBoundingClientRect();
        return {section: [sb.left, sb.right], wrap: [tb.left, tb.right], overflow: s.scrollWidth - s.clientWidth,
                columns: t.querySelectorAll('thead th').length}; }""")
    assert box["columns"] == 1 + len(METRICS) + len(CHECK_METRICS)
    assert box["overflow"] <= 0  # nothing sticks out of the card
    assert box["section"][0] <= box["wrap"][0] and box["wrap"][1] <= box["section"][1]
    from browser_support import ARTIFACTS

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("() => { document.querySelector('header.top').style.position = 'static'; }")  # not over the card
    page.locator("#scorecard").screenshot(path=str(ARTIFACTS / "report-scorecard-wide.png"))
    assert page.problems == []


def test_least_class_like_errors_show_the_predicted_class_map_beside_the_label_class_map(report, report_run,
                                                                                          browser):
    """Issue 31.8: for a least class-like image the model gives another class, the label class's map is often
    all zero; the card also shows each method's map of the predicted class, computed for that class."""
    import re

    from browser_support import new_page, screenshot
    from mikata.runs.store import RunStore

    ov, html = report["ov"], report["html"]
    d = ov.data
    wrong = [(c, i) for c in ov.classes for i in c.least_class_like if d.preds[ov.row(i)] != c.index]
    assert wrong  # the 12 flipped labels make some
    with RunStore.open(report_run["run"]) as store:
        for c, i in wrong:
            pred = int(d.preds[ov.row(i)])
            block = html[html.index(f'id="class-{c.index}"'):]
            card = re.search(rf'<div class="card wrong" data-id="{i}">(.*?)<div class="caption">', block, re.S)
            assert card, (c.index, i)
            captions = re.findall(r'<figure class="pred-map[^"]*"[^>]*><img src="data:image/png;base64,[^"]+" '
                                  r'alt="[^"]*"><figcaption>([^<]*)', card.group(1))
            names = ov.class_names
            assert captions == [f"Grad-CAM: predicted {names[pred]}", f"Guided Grad-CAM: predicted {names[pred]}"]
            # made for the predicted class (cached in the run like every gallery map)
            assert store.get_map(int(i), "gradcam", pred) is not None
    page = new_page(browser)
    page.goto(report["path"].as_uri(), wait_until="load")
    c, i = wrong[0]
    card = page.locator(f'#class-{c.index} .card.wrong[data-id="{i}"]').first
    boxes = card.locator("figure").evaluate_all("fs => fs.map(f => f.getBoundingClientRect().top)")
    assert len(boxes) == 5 and max(boxes) - min(boxes) < 2  # image, two label-class maps, two predicted: one row
    card.scroll_into_view_if_needed()
    screenshot(page, "report-least-class-like-predicted-maps")
    assert page.problems == []
