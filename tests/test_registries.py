"""A new dataset-issue type and a new evaluation check are each one module plus one registry entry.

The toy type (``toy_issue_type``: the model's top probability) and the toy check (``toy_check``:
a map's mass in its top 10% of pixels) are registered for a test only; every surface that lists
issue types or checks picks them up: ``find_issues``, ``mikata audit`` (JSON and help), the report,
the web app's issues page, ``evaluate``'s card and ``mikata evaluate --help``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import toy_check
import toy_issue_type
from test_scan_support import digit_images, mnist_handle, write_folder


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from mikata.scanning.scan import scan

    base = tmp_path_factory.mktemp("registries")
    images, labels = digit_images(80)
    write_folder(base / "digits", images, labels)
    scan(mnist_handle(), base / "digits", base / "run", batch_size=64, workers=0, progress=False)
    return base / "run"


def test_the_toy_issue_type_scores_like_its_reference_everywhere(run, tmp_path, capsys):
    from fastapi.testclient import TestClient

    from mikata.runs.data import load_run
    from mikata.analysis.issue_registry import registered_issue_type
    from mikata.analysis.issues import find_issues
    from mikata.cli import main
    from mikata.report import write_report
    from mikata.server import create_app

    d = load_run(run)
    reference = d.probs.max(1) < 0.4  # independent of the registry: the definition itself
    with registered_issue_type(toy_issue_type.SPEC):
        found = find_issues(run)
        assert list(found.types)[-1] == "unsure"  # scored after the built-in types, in registry order
        assert np.array_equal(found.types["unsure"].flag, reference) and reference.any()
        strict = find_issues(run, {"unsure": 0.6})  # property: a higher threshold flags a superset
        assert (strict.types["unsure"].flag >= found.types["unsure"].flag).all()
        assert main(["audit", str(run), "--json", "--top", "1000"]) == 0
        r = json.loads(capsys.readouterr().out)
        entry = next(t for t in r["dataset_issues"]["types"] if t["type"] == "unsure")
        assert entry["flagged"] == int(reference.sum()) and entry["threshold"] == 0.4
        with pytest.raises(SystemExit):
            main(["audit", "--help"])
        assert "unsure 0.4" in capsys.readouterr().out
        html = write_report(run, tmp_path / "r.html", maps=False).path.read_text(encoding="utf-8")
        assert '<tr data-type="unsure">' in html and 'id="issues-unsure"' in html
        client = TestClient(create_app(run, token="t0123456789abcdef", port=8799, handle=mnist_handle()),
                            base_url="http://127.0.0.1:8799")
        assert client.get("/?token=t0123456789abcdef").status_code == 200
        page = client.get("/issues?type=unsure")
        assert page.status_code == 200 and "improbable" in page.text
    from mikata.analysis.issue_registry import issue_type_names

    assert "unsure" not in issue_type_names() and "unsure" not in find_issues(run).types


def test_the_toy_check_runs_in_the_scorecard_and_the_help(capsys):
    from mikata.cli import main
    from mikata.evaluation.check_registry import registered_check
    from mikata.evaluation.scorecard import evaluate

    handle = mnist_handle()
    images, _ = digit_images(4)
    x = handle.preprocess(images)
    with registered_check(toy_check.SPEC):
        r = evaluate(handle, x, ["gradcam", "saliency"], checks=["concentration"])
        card = r.card
        assert [m["name"] for m in card["metrics"]] == ["top10-mass"]
        for m in ("gradcam", "saliency"):  # the reference: sorted pixels in numpy, not the check's topk
            flat = np.clip(r.maps[m].float().flatten(1).numpy().astype(np.float64), 0, None)
            k = max(1, round(0.1 * flat.shape[1]))
            share = np.sort(flat, axis=1)[:, ::-1][:, :k].sum(1) / flat.sum(1)
            assert card["table"][m]["top10-mass"] == pytest.approx(float(np.nanmean(share)), rel=1e-5)
            assert card["passes"][m]["concentrated"] == (card["table"][m]["top10-mass"] > 0.5)
            assert 0.1 <= card["table"][m]["top10-mass"] <= 1.0  # property: the top 10% hold at least 10%
        with pytest.raises(SystemExit):
            main(["evaluate", "--help"])
        assert "concentration (top10-mass)" in capsys.readouterr().out
    from mikata.evaluation.check_registry import check_names

    assert "concentration" not in check_names()
