"""``mikata serve RUN_A --compare RUN_B`` over two real scans: the pages show the library's numbers, the
flipped lists page by page, and the image page of a shared image shows both models' maps."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from compare_runs import two_runs
from mikata.analysis.compare import compare
from mikata.presentation.maps import MapService
from mikata.models.source import ModelSource
from mikata.server import create_app

TOKEN = "compare-token-0123456789"
BASE = "http://127.0.0.1:8765"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    base = tmp_path_factory.mktemp("compare-app")
    run_a, run_b, ha, hb = two_runs(base, 90, b_rows=75)
    app = create_app(run_a, token=TOKEN, port=8765, handle=ha, compare=run_b, compare_source=ModelSource(handle=hb))
    client = TestClient(app, base_url=BASE)
    assert client.get(f"/?token={TOKEN}").status_code == 200
    return {"app": app, "client": client, "run_a": run_a, "run_b": run_b, "ha": ha, "hb": hb}


def test_the_compare_page_shows_the_library_numbers(served):
    c = compare(served["run_a"], served["run_b"])
    html = served["client"].get("/compare").text
    acc = c.metric("accuracy")
    assert c.images["shared"] == 75 and c.images["only_a"] == 15
    from mikata.formatting import percent

    assert re.search(r'id="cmp-acc-a">' + re.escape(percent(acc.a, 1)), html)
    assert re.search(r'id="cmp-acc-b">' + re.escape(percent(acc.b, 1)), html)
    fixed = [int(x) for x in re.findall(r'id="fixed-grid">(.*?)</div>', html, re.S)[0].split('data-id="')[1:]
             for x in [x.split('"')[0]]]
    assert fixed == [it["id_a"] for it in c.flipped_items("fixed", 0, 24)] and fixed
    assert 'href="/compare"' in served["client"].get("/").text  # the nav names the comparison
    issues = served["client"].get("/compare/issues")
    assert issues.status_code == 200 and "label" in issues.text


def test_flipped_lists_page_by_page_and_refuse_other_kinds(served):
    client = served["client"]
    c = served["app"].run.compare.comparison()
    for kind in ("fixed", "broken"):
        r = client.get(f"/compare/flipped?kind={kind}")
        assert r.status_code == 200
        ids = [int(i) for i in re.findall(r'<a class="tile flip" href="/image/(\d+)"', r.text)]
        assert ids == [it["id_a"] for it in c.flipped_items(kind, 0, 120)]
    assert client.get("/compare/flipped?kind=sideways").status_code == 400


def test_the_image_page_of_a_shared_image_shows_both_models_maps(served):
    client, app = served["client"], served["app"]
    cmp = app.run.compare
    c = cmp.comparison()
    item = c.flipped_items("fixed", 0, 1)[0]
    html = client.get(f"/image/{item['id_a']}").text
    assert 'id="compare-panel"' in html and f'/compare/map/{item["id_a"]}.png' in html
    r = client.get(f"/compare/map/{item['id_a']}.png?method=gradcam")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    # B's map of A's image is B's own map of its partner row (B's prediction)
    service = MapService(served["run_b"], source=ModelSource(handle=served["hb"]))
    try:
        want, legend = service.overlay(item["id_b"], "gradcam", None)
    finally:
        service.close()
    assert r.content == want
    # an image B did not scan: no panel maps, and B's map is a 404
    last = int(app.run.overview().data.ids[-1])
    assert cmp.partner(last) is None
    assert "did not scan this image" in client.get(f"/image/{last}").text
    assert client.get(f"/compare/map/{last}.png").status_code == 404


def test_without_compare_there_is_no_compare_page(served):
    app = create_app(served["run_a"], token=TOKEN, port=8765, handle=served["ha"])
    client = TestClient(app, base_url=BASE)
    assert client.get(f"/?token={TOKEN}").status_code == 200
    assert client.get("/compare").status_code == 404 and 'href="/compare"' not in client.get("/").text
    assert client.get("/compare/map/1.png").status_code == 404


def test_the_page_carries_both_models_maps_of_the_flipped_images(served, tmp_path):
    from mikata.report.compare import write_comparison_report

    c = compare(served["run_a"], served["run_b"])
    r = write_comparison_report(c, tmp_path / "cmp.html", maps=True, source_a=ModelSource(handle=served["ha"]),
                                source_b=ModelSource(handle=served["hb"]))
    cards = len(c.flipped_items("fixed", 0, 24)) + len(c.flipped_items("broken", 0, 24))
    page = (tmp_path / "cmp.html").read_text()
    assert r.notes == [n for n in c.notes()] and r.maps == 2 * cards > 0
    assert page.count('alt="A\'s map"') == cards and page.count('alt="B\'s map"') == cards
    assert page.count('class="flip"') == cards


def test_model_options_reach_the_maps(served, tmp_path, monkeypatch, capsys):
    """--model-b names B's model for the page's maps (A's noisy weights match no spec: its maps are left
    out, exit 1); `serve --compare RUN_B --compare-model SPEC` hands the spec to the app."""
    import shutil
    import sqlite3

    from cli_support import run_cli

    out = tmp_path / "cmp.html"
    run_a = tmp_path / "run_a"  # a copy without A's cached maps (another test may have computed them)
    shutil.copytree(served["run_a"], run_a)
    with sqlite3.connect(run_a / "run.sqlite") as db:
        db.execute("DELETE FROM maps")
    r = run_cli(capsys, "compare", str(run_a), str(served["run_b"]), "--out", str(out), "--maps", "--no-issues",
                "--device", "cpu", "--json", "--model-a", "test_scan_support:mnist_handle", "--model-b",
                "test_scan_support:mnist_handle")
    assert r.returncode == 1, r.stderr
    import json

    report = json.loads(r.stdout)["report"]
    cards = report["flipped_shown"]
    assert report["maps"] == cards  # B's maps only
    assert any(n.startswith("model A's maps left out") for n in report["notes"])
    page = out.read_text()
    assert page.count('alt="B\'s map"') == cards and 'alt="A\'s map"' not in page

    from mikata import cli
    from mikata.server import launch

    seen = {}
    monkeypatch.setattr(launch, "serve", lambda run, **kw: seen.update(run=run, **kw))
    assert cli.main(["serve", str(served["run_a"]), "--compare", str(served["run_b"]), "--compare-model",
                     "test_scan_support:mnist_handle", "--device", "cpu"]) == 0
    assert seen["compare"] == str(served["run_b"]) and seen["compare_model"] == "test_scan_support:mnist_handle"
