"""Two-class runs: PR and ROC curves against scikit-learn, the operating threshold in audit, report
and web app (a real browser moves the slider), top-k only where k < classes."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from sklearn.metrics import (average_precision_score, confusion_matrix, precision_recall_curve, roc_auc_score,
                             roc_curve)

from binary_support import two_class_handle, two_class_run
from mikata.runs.data import load_run
from mikata.analysis.binary import CurveError, binary_curves, curves_from_scores, positive_class
from mikata.errors import ChoiceError


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return two_class_run(tmp_path_factory.mktemp("binary"))


@pytest.fixture(scope="module")
def data(run):
    return load_run(run)


def _sklearn_pr(y, s):
    """sklearn's PR arrays turned to our order (recall rising, threshold falling), its end point dropped."""
    p, r, t = precision_recall_curve(y, s)
    return p[:-1][::-1], r[:-1][::-1], t[::-1]


# ------------------------------------------------------------------------------- the numbers
@pytest.mark.parametrize("seed", range(4))
def test_curves_equal_sklearn_on_scores_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = 400 + 100 * seed
    y = rng.random(n) < 0.15 + 0.1 * seed
    s = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1).astype(np.float16).astype(np.float32)  # float16: many ties
    c = curves_from_scores(y, s)
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    ours = c.roc()
    assert np.allclose(ours[0], fpr) and np.allclose(ours[1], tpr) and np.array_equal(ours[2][1:], thr[1:])
    p, r, t = _sklearn_pr(y, s)
    op, orr, ot = c.pr()
    assert np.allclose(op, p) and np.allclose(orr, r) and np.array_equal(ot, t)
    assert c.auroc == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert c.average_precision == pytest.approx(average_precision_score(y, s), abs=1e-12)


def test_run_curves_equal_sklearn_on_the_stored_probabilities(data):
    assert data.class_names == ["3", "8"]
    counts = np.bincount(data.labels, minlength=2)
    assert counts[1] < counts[0] and positive_class(data) == 1  # "8" is the minority: the default positive
    c = binary_curves(data)
    y, s = data.labels == 1, data.probs[:, 1]
    assert c.positive_name == "8" and (c.n_pos, c.n_neg) == (counts[1], counts[0])
    assert c.auroc == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert c.average_precision == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert 0.85 < c.auroc < 0.999  # a real model on noisy digits: good, not perfect (the curves are worth drawing)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    assert np.allclose(c.roc()[0], fpr) and np.allclose(c.roc()[1], tpr)
    for t in (0.0, 0.05, 0.3, 0.5, 0.9, 0.97, 1.0, float(c.best_f1().threshold)):
        p = c.at(t)
        tn, fp, fn, tp = confusion_matrix(y, s >= t, labels=[False, True]).ravel()
        assert (p.tp, p.fp, p.fn, p.tn) == (tp, fp, fn, tn), t
    # the slider's table: the same counts at each of its stops
    table = c.threshold_table(1000)
    for i in (0, 137, 500, 903, 1000):
        t = table["thresholds"][i]
        assert (table["tp"][i], table["fp"][i]) == (int((y & (s >= t)).sum()), int((~y & (s >= t)).sum()))
    # the best F1 is the best over every threshold
    f1 = [2 * c.at(t).tp / (2 * c.at(t).tp + c.at(t).fp + c.at(t).fn) for t in np.unique(s)]
    assert c.best_f1().f1 == pytest.approx(max(f1))


def test_positive_class_named_and_one_vs_rest(data):
    assert positive_class(data, "3") == 0 and positive_class(data, "8") == 1 and positive_class(data, 0) == 0
    c = binary_curves(data, "3")
    assert c.positive_name == "3" and c.negative_name == "8"
    assert c.auroc == pytest.approx(roc_auc_score(data.labels == 0, data.probs[:, 0]), abs=1e-12)
    with pytest.raises(ChoiceError, match=r"valid positive classes: 3, 8"):  # 'classes', not 'classs'
        positive_class(data, "cat")
    # one vs rest on a three-class problem; none without a named class
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    probs = rng.dirichlet(np.ones(3), 300).astype(np.float32)
    probs[np.arange(300), y] += 0.5
    probs /= probs.sum(1, keepdims=True)
    three = type(data)(np.arange(1, 301), [""] * 300, y, probs.argmax(1), np.array(["test"] * 300), np.arange(300),
                       probs, ["a", "b", "c"], "")
    assert binary_curves(three) is None
    c = binary_curves(three, "b")
    assert c.negative_name == "not b"
    assert c.auroc == pytest.approx(roc_auc_score(y == 1, probs[:, 1]), abs=1e-12)


def test_one_sided_rows_say_so():
    c = curves_from_scores(np.zeros(5, bool), np.linspace(0, 1, 5))
    assert np.isnan(c.auroc) and np.isnan(c.average_precision)
    with pytest.raises(CurveError, match="no images of 'positive'"):
        c.roc()
    at = c.at(0.5)
    assert (at.tp, at.fp, at.fn, at.tn) == (0, 3, 0, 2) and at.precision == 0.0 and np.isnan(at.recall)
    assert np.isnan(c.at(1.5).precision)  # nothing called: precision is undefined, not 100%
    assert c.summary()["auroc"] is None and c.summary()["at_threshold"]["recall"] is None
    assert "pr" not in c.curve_points() and "roc" not in c.curve_points()


# ------------------------------------------------------------------------------- audit and CLI
def test_audit_prints_the_counts_at_a_threshold(run, data, capsys):
    from mikata.cli import main

    assert main(["audit", str(run), "--no-dataset-issues", "--threshold", "0.9", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    y, s = data.labels == 1, data.probs[:, 1]
    b = r["binary"]
    assert r["top5_accuracy"] is None  # two classes: top-5 is 100% by definition and not reported
    assert b["positive"] == "8" and b["auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-6)
    at = b["at_threshold"]
    assert at["threshold"] == 0.9
    assert (at["tp"], at["fp"], at["fn"], at["tn"]) == (int((y & (s >= 0.9)).sum()), int((~y & (s >= 0.9)).sum()),
                                                        int((y & (s < 0.9)).sum()), int((~y & (s < 0.9)).sum()))
    assert at["precision"] == pytest.approx(at["tp"] / (at["tp"] + at["fp"]), abs=1e-6)
    assert main(["audit", str(run), "--no-dataset-issues", "--threshold", "0.9"]) == 0
    text = capsys.readouterr().out
    assert "top-5" not in text and "AUROC" in text
    assert f"threshold 0.9: precision {at['precision']:.2%}   recall {at['recall']:.2%}" in text
    assert re.search(rf"true 8\s+{at['tp']}\s+{at['fn']}\n\s+true 3\s+{at['fp']}\s+{at['tn']}", text)
    assert main(["audit", str(run), "--no-dataset-issues", "--positive", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["binary"]["positive"] == "3"
    assert main(["audit", str(run), "--threshold", "1.5"]) == 2
    assert "not a probability" in capsys.readouterr().err
    assert main(["audit", str(run), "--positive", "cat"]) == 2
    assert "valid positive classes: 3, 8" in capsys.readouterr().err


def test_audit_of_many_classes_keeps_top5_and_refuses_a_bare_threshold(tmp_path):
    from mikata.analysis.audit_summary import audit, format_audit
    from mikata.scanning.scan import scan
    from test_scan_support import digit_images, mnist_handle, write_folder

    images, labels = digit_images(120)
    write_folder(tmp_path / "digits", images, labels)
    scan(mnist_handle(), tmp_path / "digits", tmp_path / "run", batch_size=64, workers=0, progress=False)
    r = audit(tmp_path / "run", dataset_issues=False)
    assert r["top5_accuracy"] is not None and "binary" not in r and "top-5" in format_audit(r)
    per_class = {c["class"]: c for c in r["per_class"]}
    d = load_run(tmp_path / "run")
    for c in ("0", "3", "9"):  # each class against the rest, as scikit-learn computes it
        k = d.class_names.index(c)
        assert per_class[c]["auroc"] == pytest.approx(roc_auc_score(d.labels == k, d.probs[:, k]), abs=1e-4)
        assert per_class[c]["average_precision"] == pytest.approx(
            average_precision_score(d.labels == k, d.probs[:, k]), abs=1e-4)
    one = audit(tmp_path / "run", dataset_issues=False, positive="3")["binary"]
    assert one["negative"] == "not 3" and one["positives"] == int((labels == 3).sum())
    with pytest.raises(CurveError, match="--threshold needs a two-class run or a --positive CLASS"):
        audit(tmp_path / "run", dataset_issues=False, threshold=0.3)


def test_run_api_summary_and_curves(run, data):
    import mikata

    r = mikata.open_run(run)
    s = r.summary()
    assert "top5_accuracy" not in s and s["positive"] == "8"
    assert s["auroc"] == pytest.approx(roc_auc_score(data.labels == 1, data.probs[:, 1]), abs=1e-12)
    assert r.curves("3").positive_name == "3"


# ------------------------------------------------------------------------------------- report
def test_report_draws_both_curves_with_the_two_thresholds(run, data, tmp_path):
    from mikata.report import write_report

    out = tmp_path / "r.html"
    write_report(run, out, maps=False)
    html = out.read_text(encoding="utf-8")
    c = binary_curves(data)
    assert 'id="curves"' in html and 'id="top5"' not in html and "top-5 accuracy" not in html
    assert f"ROC · AUROC {c.auroc:.3f}" in html and f"precision-recall · AP {c.average_precision:.3f}" in html
    assert "recall of 8 (TPR)" in html and "precision of 8" in html
    for chart in ("roc-chart", "pr-chart"):
        svg = re.search(rf'<svg id="{chart}".*?</svg>', html, re.S).group(0)
        assert svg.count('class="marker"') == 2 and "threshold 0.5" in svg and "best F1, threshold" in svg
        points = re.search(r'class="curve" points="([^"]+)"', svg).group(1).split()
        assert len(points) > 20
    best = c.best_f1()
    rows = re.findall(r'<tr data-point="([^"]+)">(.*?)</tr>', html, re.S)
    assert [r[0] for r in rows] == ["default", "best F1"]
    cells = re.findall(r'<td class="num">([^<]*)</td>', rows[1][1])
    assert cells[0] == f"{best.threshold:.4g}" and cells[-4:] == [str(best.tp), str(best.fn), str(best.fp), str(best.tn)]
    # the markers sit where the counts say: ROC (fpr, recall) of the 0.5 point, in the plot box
    roc = re.search(r'<svg id="roc-chart"[^>]*data-left="(\d+)" data-top="(\d+)" data-width="(\d+)" data-height="(\d+)"',
                    html)
    left, top, w, h = map(float, roc.groups())
    at = c.at(0.5)
    svg = re.search(r'<svg id="roc-chart".*?</svg>', html, re.S).group(0)
    cx, cy = map(float, re.search(r'<circle class="marker" cx="([\d.]+)" cy="([\d.]+)"', svg).groups())
    assert cx == pytest.approx(left + w * at.fpr, abs=0.06) and cy == pytest.approx(top + h * (1 - at.recall), abs=0.06)


def test_report_threshold_slider_in_a_real_browser(browser, run, data, tmp_path):
    from browser_support import new_page

    from mikata.report import write_report

    out = tmp_path / "r.html"
    write_report(run, out, maps=False)
    page = new_page(browser)
    page.goto(out.as_uri())
    c = binary_curves(data)
    for t in (0.2, 0.9):
        page.locator("#threshold").fill(str(t))
        p = c.at(t)
        text = page.locator("#threshold-readout").text_content()
        assert f"precision {100 * p.precision:.2f}% · recall {100 * p.recall:.2f}%" in text
        assert f"positives called {p.tp}, missed {p.fn} · negatives called {p.fp}, passed {p.tn}" in text
    ring = page.locator("#pr-chart circle.moving")
    svg = page.locator("#pr-chart")
    left, top, w, h = (float(svg.get_attribute(f"data-{k}")) for k in ("left", "top", "width", "height"))
    assert float(ring.get_attribute("cx")) == pytest.approx(left + w * c.at(0.9).recall, abs=0.11)
    assert float(ring.get_attribute("cy")) == pytest.approx(top + h * (1 - c.at(0.9).precision), abs=0.11)
    assert page.problems == []


# ------------------------------------------------------------------------------------ web app
TOKEN = "binary-test-token"


@pytest.fixture(scope="module")
def live(run):
    from browser_support import live_server
    from mikata.server import create_app

    with live_server(lambda port: create_app(run, token=TOKEN, port=port, handle=two_class_handle())) as (url, app):
        yield {"url": url, "app": app}


def test_api_curves_and_dashboard(run, data):
    from fastapi.testclient import TestClient

    from mikata.server import create_app

    client = TestClient(create_app(run, token=TOKEN, port=8765, handle=two_class_handle()),
                        base_url="http://127.0.0.1:8765")
    client.get(f"/?token={TOKEN}")
    got = client.get("/api/curves").json()
    c = binary_curves(data)
    assert got["positive"] == "8" and got["auroc"] == pytest.approx(c.auroc, abs=1e-6)
    assert len(got["table"]["thresholds"]) == 1001 and got["table"]["tp"][500] == c.at(0.5).tp
    page = client.get("/").text
    assert 'id="threshold"' in page and 'id="roc-chart"' in page and "top-5 accuracy" not in page
    # the command it suggests names the run by its path (a copy-paste that works from any folder)
    import html
    import shlex

    command = html.unescape(re.search(r'<code id="audit-command">([^<]*)</code>', page).group(1))
    assert command == f"mikata audit {shlex.quote(str(run))} --threshold T"
    with pytest.raises(ChoiceError, match="valid positive classes"):
        create_app(run, token=TOKEN, port=8765, handle=two_class_handle(), positive="cat")


def test_threshold_slider_in_a_real_browser(browser, live, data):
    from browser_support import new_page, screenshot

    page = new_page(browser)
    page.goto(f"{live['url']}/?token={TOKEN}")
    page.wait_for_selector("#threshold[data-ready='1']")
    c = binary_curves(data)
    url = page.url

    def shown():
        return {k: page.locator(f"#th-{k}").text_content() for k in ("tp", "fp", "fn", "tn", "precision", "recall")}

    at = c.at(0.5)
    assert shown()["tp"] == str(at.tp) and shown()["fp"] == str(at.fp)
    ring = page.locator("#roc-chart circle.moving")
    before = (ring.get_attribute("cx"), ring.get_attribute("cy"))
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    for t in (0.9, 0.2, 0.975):
        page.locator("#threshold").fill(str(t))
        p = c.at(t)
        got = shown()
        assert (got["tp"], got["fp"], got["fn"], got["tn"]) == (str(p.tp), str(p.fp), str(p.fn), str(p.tn)), t
        assert got["precision"] == f"{100 * p.precision:.1f}%" and got["recall"] == f"{100 * p.recall:.1f}%"
        assert page.locator("#threshold-value").text_content() == f"{t:.3f}"
    # the ring moved to the operating point, on the page, without a reload or another request
    svg = page.locator("#roc-chart")
    left, top, w, h = (float(svg.get_attribute(f"data-{k}")) for k in ("left", "top", "width", "height"))
    p = c.at(0.975)
    assert float(ring.get_attribute("cx")) == pytest.approx(left + w * p.fpr, abs=0.11)
    assert float(ring.get_attribute("cy")) == pytest.approx(top + h * (1 - p.recall), abs=0.11)
    assert (ring.get_attribute("cx"), ring.get_attribute("cy")) != before
    assert page.locator("#pr-chart circle.moving").get_attribute("visibility") == "visible"
    assert page.url == url and requests == []
    screenshot(page, "binary-dashboard-threshold")
    assert page.problems == []
