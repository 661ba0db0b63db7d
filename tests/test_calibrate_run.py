"""``mikata calibrate`` and the calibration every view shows: the fit stored in the run, applied to
every probability a view shows (audit, report, web app, export), the reliability diagram checked
against scikit-learn, and bad calibration files refused in one line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from sklearn.calibration import calibration_curve

from mikata.runs.data import load_run
from mikata.analysis.calibration import apply_temperature, expected_calibration_error, fit_temperature
from mikata.analysis.temperature import CalibrationFileError, calibrate_run, read_temperature
from mikata.analysis.view import RunView
from cli_support import run_cli
from review_support import cells_run


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    return cells_run(tmp_path_factory.mktemp("cal-cells"))


@pytest.fixture
def run(cells, tmp_path):
    """A private copy of the scanned run (calibrating writes into it)."""
    dst = tmp_path / "run"
    shutil.copytree(cells["run"], dst, ignore=shutil.ignore_patterns("writer.lock"))
    return dst


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mikata", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


def test_calibrate_fits_on_the_split_and_every_view_applies_it(run):
    raw = load_run(run)
    val = raw.splits == "val"
    before_ranking = RunView(run).label_ranking().copy()
    t = calibrate_run(run, split="val")
    assert t.value == pytest.approx(fit_temperature(raw.probs[val], raw.labels[val]), rel=1e-9)
    assert t.images == int(val.sum()) and t.split == "val" and t.nll_after <= t.nll_before
    assert read_temperature(run) == t
    view = RunView(run)
    np.testing.assert_allclose(view.data.probs, apply_temperature(raw.probs, t.value), atol=1e-6)
    np.testing.assert_array_equal(view.data.preds, raw.preds)  # the top-1 class never changes
    np.testing.assert_array_equal(view.label_ranking(), before_ranking)  # ranked on the model's own scale
    cal = view.select(split="test").calibration()
    test = raw.splits == "test"
    assert cal["temperature"]["value"] == t.value and "temperature T=" in cal["note"] and "fitted on val" in cal["note"]
    conf_raw = raw.probs[test][np.arange(test.sum()), raw.preds[test]]
    assert cal["before"]["ece"] == pytest.approx(
        _ece_of(conf_raw, raw.preds[test] == raw.labels[test]), abs=1e-9)
    assert cal["ece"] == pytest.approx(expected_calibration_error(apply_temperature(raw.probs[test], t.value),
                                                                  raw.labels[test]), abs=1e-6)
    whole = view.calibration()  # the fitting split among the rows: said
    assert "optimistic" in whole["note"]


def _ece_of(conf: np.ndarray, right: np.ndarray) -> float:
    from mikata.analysis.calibration import reliability_of

    return reliability_of(conf, right).ece


def test_audit_calibration_matches_sklearn_on_the_run(run):
    from mikata.analysis.audit_summary import audit, format_audit

    r = audit(run, dataset_issues=False)
    d = load_run(run)
    conf = d.probs[np.arange(len(d)), d.preds]
    right = (d.preds == d.labels).astype(int)
    acc, mean_conf = calibration_curve(right, conf, n_bins=15, strategy="quantile")
    np.testing.assert_allclose(r["calibration"]["curve"]["accuracy"], acc, atol=1e-12)
    np.testing.assert_allclose(r["calibration"]["curve"]["confidence"], mean_conf, atol=1e-6)
    assert r["calibration"]["temperature"] is None and r["calibration"]["before"] is None
    text = format_audit(r)
    assert "calibration: ECE" in text and "no temperature" in text


def test_cli_calibrate_audit_report_and_clear(run, tmp_path, capsys):
    done = _cli("calibrate", str(run), "--split", "val", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["value"] > 0 and out["split"] == "val"
    text = run_cli(capsys, "audit", str(run), "--split", "test", "--no-dataset-issues")
    assert text.returncode == 0 and f"temperature T={out['value']:.2f} applied (fitted on val" in text.stdout
    audit_json = json.loads(run_cli(capsys, "audit", str(run), "--json", "--no-dataset-issues").stdout)
    assert audit_json["calibration"]["temperature"]["value"] == out["value"]
    # the audit's per-class probabilities are the calibrated ones
    d = load_run(run)
    shown = audit_json["per_class"][0]["most_class_like"][0]
    row = list(d.paths).index(shown["path"])
    c = audit_json["per_class"][0]["class"]
    k = d.class_names.index(c)
    assert shown["prob"] == pytest.approx(float(apply_temperature(d.probs[row:row + 1], out["value"])[0, k]), abs=1e-4)
    report = tmp_path / "r.html"
    done = run_cli(capsys, "report", str(run), "--out", str(report), "--no-maps")
    assert done.returncode == 0, done.stderr
    html = report.read_text()
    assert 'id="calibration"' in html and "reliability-chart" in html and "fitted on val" in html
    assert run_cli(capsys, "calibrate", str(run), "--clear").returncode == 0
    assert read_temperature(run) is None
    again = run_cli(capsys, "calibrate", str(run), "--clear")
    assert again.returncode == 0 and "no temperature" in again.stdout


def test_bad_split_and_bad_files_are_one_line(run, capsys):
    done = run_cli(capsys, "calibrate", str(run), "--split", "nosuch")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "no images in split 'nosuch'" in done.stderr and "'val'" in done.stderr
    assert run_cli(capsys, "calibrate", str(run), "--bins", "0").returncode == 2
    cal = run / "calibration.json"
    for bad in ("not json", json.dumps({"format": "mikata-calibration/1", "value": -2}),
                json.dumps({"format": "other", "value": 2})):
        cal.write_text(bad)
        with pytest.raises(CalibrationFileError, match="calibration"):
            read_temperature(run)
        done = run_cli(capsys, "audit", str(run), "--no-dataset-issues")
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
        assert "mikata calibrate" in done.stderr
    cal.unlink()
    target = run.parent / "elsewhere.json"
    target.write_text(json.dumps({"format": "mikata-calibration/1", "value": 2.0}))
    cal.symlink_to(target)
    done = run_cli(capsys, "audit", str(run), "--no-dataset-issues")
    assert done.returncode == 2 and "symbolic link" in done.stderr


def test_in_sample_split_is_refused(run):
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["trained_on"] = {"split": "train"}
    (run / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(Exception, match="trained on the split 'train'"):
        calibrate_run(run, split="train")


def test_web_app_shows_the_diagram_and_the_note(cells, run):
    from fastapi.testclient import TestClient

    from mikata.server import create_app

    calibrate_run(run, split="val")
    token = "c" * 32
    c = TestClient(create_app(run, token=token, port=8765, handle=cells["handle"]), base_url="http://127.0.0.1:8765")
    page = c.get(f"/?token={token}")
    assert page.status_code == 200
    assert 'id="calibration-section"' in page.text and "reliability-chart" in page.text
    assert "temperature T=" in page.text and 'id="ece-card"' in page.text
    h = {"sec-fetch-site": "same-origin"}
    image = c.get("/image/1", headers=h)
    assert image.status_code == 200 and 'id="temperature-note"' in image.text
    # a temperature fitted while the app runs is picked up by the next page
    (run / "calibration.json").unlink()
    assert "temperature T=" not in c.get("/", headers=h).text


def test_export_writes_the_calibrated_probabilities_and_records_the_temperature(run, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    from mikata.analysis.export import export_run

    t = calibrate_run(run, split="val")
    out = export_run(run, tmp_path / "e.parquet")
    table = pq.read_table(out)
    meta = json.loads(table.schema.metadata[b"mikata"])
    assert meta["temperature"]["value"] == t.value
    frame = table.to_pandas()
    d = load_run(run)
    cols = [f"p:{c}" for c in d.class_names]
    by_path = dict(zip(frame["path"], frame[cols].to_numpy()))
    np.testing.assert_allclose(np.stack([by_path[p] for p in d.paths]), apply_temperature(d.probs, t.value),
                               atol=1e-6)
