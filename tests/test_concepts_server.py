"""The web app's concept pages over a real scan (the MNIST CNN on real digits) and its computed atlas: pages
against the atlas, crops against the original pixels, heatmaps against ``concept_heatmap``, the image
decomposition, reviews, escaping, ids only, the token and the computing-route gate, the review's input checks."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
from concepts_ui_support import HOSTILE, copy_concept_run
from fastapi.testclient import TestClient
from markupsafe import escape
from PIL import Image

from mikata.runs.store import RunStore
from mikata.server import create_app
from mikata.server.concept_state import concept_pages

TOKEN = "concepts-token-0123456789"
BASE = "http://127.0.0.1:8765"


@pytest.fixture(scope="module")
def served(tmp_path_factory, concept_run_template):
    got = copy_concept_run(concept_run_template, tmp_path_factory.mktemp("concepts-served"))
    client = TestClient(create_app(got["run"], token=TOKEN, port=8765, handle=got["handle"]), base_url=BASE)
    assert client.get(f"/?token={TOKEN}").status_code == 200
    with RunStore.open(got["run"]) as store:
        names = store.classes
        paths = dict(store.rows(columns=("id", "path"), tuples=True))
    return {**got, "client": client, "json": got["atlas"].to_json(), "names": names, "paths": paths}


def test_concepts_list_and_class_page_show_the_atlas(served):
    c, doc = served["client"], served["json"]
    page = c.get("/concepts")
    assert page.status_code == 200
    assert '<a href="/concepts">Concepts</a>' in page.text  # the nav names it once there is an atlas
    for name, concepts in doc["classes"].items():
        ci = served["names"].index(name)
        assert f'href="/concepts/{ci}"' in page.text
        for k in range(len(concepts)):
            assert f'href="/concepts/{ci}/{k}"' in page.text
    cls = c.get("/concepts/3")
    assert cls.status_code == 200 and "<svg" in cls.text
    assert cls.text.count('class="concept-row') == len(doc["classes"]["3"])
    ranked = sorted(doc["classes"]["3"], key=lambda e: -e["importance"])
    order = [cls.text.index(f'data-concept="{e["concept"]}"') for e in ranked]
    assert order == sorted(order)  # most important first
    assert "/map/concepts/3/0/exemplar/0.png" in cls.text and "/concepts/3/0/crop/0.png" in cls.text
    for e in doc["classes"]["3"]:
        assert str(escape(e["evidence"])) in cls.text


def test_evidence_and_names_from_the_atlas_are_escaped(served, monkeypatch):
    from mikata.concepts import surface

    doc = json.loads(json.dumps(served["json"]))
    doc["classes"]["3"][1]["evidence"] = HOSTILE
    doc["classes"]["3"][1]["shortcut"] = True
    monkeypatch.setattr(surface, "atlas_json", lambda run_dir: doc)
    pages = concept_pages(served["client"].app.run)
    monkeypatch.setattr(pages, "_view", None)
    for path in ("/concepts", "/concepts/3", "/concepts/3/1"):
        text = served["client"].get(path).text
        assert HOSTILE not in text and "&lt;script&gt;alert(" in text, path


def test_concept_page_accuracy_its_images_and_heatmaps(served):
    from mikata.concepts import concept_heatmap, concept_images

    c, doc = served["client"], served["json"]
    entry = doc["classes"]["3"][0]
    page = c.get("/concepts/3/0")
    assert page.status_code == 200
    errors = next(e for e in doc["errors"]["per_class"]["3"] if e["concept"] == "3/0")
    assert f'{errors["with"]["images"]} images)' in page.text  # accuracy with it, over that many images
    ids, _, present = concept_images(served["run"], "3/0")
    shown = re.findall(r'id="concept-images">(.*?)</div>\n', page.text, re.DOTALL)[0]
    assert re.findall(r'data-id="(\d+)"', shown) == [str(i) for i in ids[present]]
    for j, e in enumerate(entry["exemplars"]):
        assert f'href="/image/{e["id"]}" data-id="{e["id"]}"' in page.text
    # the exemplar's heatmap: the crop half-blended with the concept's map, colored 0 .. its peak in the image
    from mikata.display import colorize

    e = entry["exemplars"][0]
    r = c.get("/map/concepts/3/0/exemplar/0.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    over = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB")).astype(float)
    x0, y0, x1, y1 = e["box"]
    heat = concept_heatmap(served["run"], e["id"], "3/0", model=served["handle"])
    crop = np.asarray(Image.open(served["paths"][e["id"]]).convert("RGB")).astype(float)[y0:y1, x0:x1]
    want = 0.5 * colorize(heat[y0:y1, x0:x1] / heat.max(), "jet") + 0.5 * crop
    assert over.shape == want.shape and np.abs(over - want).max() <= 1
    whole = c.get(f"/map/concepts/3/0/image/{e['id']}.png")
    assert whole.status_code == 200
    assert Image.open(io.BytesIO(whole.content)).size == Image.open(served["paths"][e["id"]]).size


def test_crops_are_the_original_pixels_inside_the_box(served):
    c, doc = served["client"], served["json"]
    e = doc["classes"]["5"][2]["exemplars"][1]
    r = c.get("/concepts/5/2/crop/1.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    got = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))
    x0, y0, x1, y1 = e["box"]
    want = np.asarray(Image.open(served["paths"][e["id"]]).convert("RGB"))[y0:y1, x0:x1]
    assert np.array_equal(got, want)


def test_location_png_is_hottest_where_the_concept_sits_on_average(served):
    from mikata.concepts import concept_location_map

    r = served["client"].get("/concepts/3/1/location.png")
    assert r.status_code == 200
    a = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB")).astype(int)
    grid = concept_location_map(served["run"], "3/1")
    gy, gx = np.unravel_index(np.argmax(grid), grid.shape)
    red = a[..., 0] - a[..., 2]
    y, x = np.unravel_index(np.argmax(red), red.shape)
    assert abs(x / a.shape[1] - (gx + 0.5) / grid.shape[1]) <= 1 / grid.shape[1]
    assert abs(y / a.shape[0] - (gy + 0.5) / grid.shape[0]) <= 1 / grid.shape[0]


def test_decomposition_of_an_image_shares_sum_to_one(served):
    from mikata.concepts import image_decomposition

    c = served["client"]
    with RunStore.open(served["run"]) as store:
        row = store.image(5)
    d = c.get("/map/concepts/decomposition/5").json()
    name = served["names"][row["pred"]]
    assert d["class"] == name and d["text"].startswith(f"{name}: ")
    ref = image_decomposition(served["run"], 5, model=served["handle"])
    assert [s[0] for s in d["shares"]] == [n for n, _ in ref]
    assert sum(s[1] for s in d["shares"]) == pytest.approx(1.0, abs=1e-3)
    assert all(s[2] == row["pred"] and f"/{s[3]}" in s[0] for s in d["shares"])
    assert "decomposition" in c.get("/image/5").text
    assert c.get("/map/concepts/decomposition/999999").status_code == 404


def test_review_round_trip(served):
    from mikata.concepts import concept_reviews

    c = served["client"]
    assert c.post("/api/concept-review/3/1", json={"verdict": "artefact"}).json() == {"concept": "3/1", "verdict": "artefact"}
    assert concept_reviews(served["run"])["3/1"]["verdict"] == "artefact"
    assert "marked <b>artefact</b>" in c.get("/concepts/3/1").text
    assert "you: artefact" in c.get("/concepts/3").text
    assert c.post("/api/concept-review/3/1", json={"verdict": None}).status_code == 200
    assert "3/1" not in concept_reviews(served["run"])


def test_unknown_classes_concepts_and_exemplars_are_404_and_ids_only(served):
    c = served["client"]
    for path in ("/concepts/99", "/concepts/0/7", "/concepts/0/1/crop/99.png", "/concepts/-1/0",
                 "/concepts/0/1/crop/-1.png", "/map/concepts/0/9/exemplar/0.png", "/concepts/x/0",
                 "/concepts/0/1/crop/..%2F..%2Fetc%2Fpasswd"):
        assert c.get(path).status_code in (404, 422), path
    assert c.get("/concepts/0/1/crop/0.png").content[:4] == b"\x89PNG"


def test_token_and_cross_site_gate_cover_the_concept_routes(served):
    fresh = TestClient(served["client"].app, base_url=BASE, follow_redirects=False)
    for path in ("/concepts", "/concepts/0", "/concepts/0/1/crop/0.png", "/map/concepts/decomposition/1"):
        assert fresh.get(path).status_code == 403, path
    c = served["client"]
    cross = {"sec-fetch-site": "cross-site"}
    assert c.get("/map/concepts/0/1/exemplar/0.png", headers=cross).status_code == 403
    assert c.get("/map/concepts/decomposition/1", headers=cross).status_code == 403
    assert c.post("/api/concept-review/0/1", json={"verdict": "object"}, headers={"origin": "http://evil.example"}).status_code == 403


def test_review_input_is_checked_before_anything_is_stored(served):
    c = served["client"]
    assert c.post("/api/concept-review/0/1", content=b"verdict=object",
                  headers={"content-type": "application/x-www-form-urlencoded"}).status_code == 415
    assert c.post("/api/concept-review/0/1", json={"verdict": "object", "extra": 1}).status_code == 422
    assert c.post("/api/concept-review/0/1", json={"verdict": 1}).status_code == 422
    r = c.post("/api/concept-review/0/1", json={"verdict": "wrong"})
    assert r.status_code == 400 and "object" in r.text
    assert c.post("/api/concept-review/0/9", json={"verdict": "object"}).status_code == 404
    assert c.post("/api/concept-review/0/1", content=b"{" * 5000,
                  headers={"content-type": "application/json"}).status_code == 413


def test_a_run_without_an_atlas_says_how_to_make_one(tmp_path, served):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(served["run"], run)
    shutil.rmtree(run / "concepts")
    c = TestClient(create_app(run, token=TOKEN, port=8765, handle=served["handle"]), base_url=BASE)
    page = c.get(f"/concepts?token={TOKEN}")
    assert page.status_code == 200 and "mikata concepts" in page.text
    assert '<a href="/concepts">' not in page.text
    assert c.get("/concepts/0").status_code == 404
    assert "decomposition" not in c.get("/image/1").text


def test_a_stale_atlas_is_not_shown_and_the_image_page_says_why(tmp_path, served):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(served["run"], run)
    doc = json.loads((run / "concepts" / "atlas.json").read_text())
    doc["key"] = "0" * len(doc["key"])  # as after a rescan: the run's version no longer matches
    (run / "concepts" / "atlas.json").write_text(json.dumps(doc))
    c = TestClient(create_app(run, token=TOKEN, port=8765, handle=served["handle"]), base_url=BASE)
    assert "the run changed since" in c.get(f"/concepts?token={TOKEN}").text
    assert c.get("/concepts/3").status_code == 404
    d = c.get("/map/concepts/decomposition/5").json()
    assert d["shares"] == [] and "mikata concepts" in d["text"]


def test_concepts_page_lists_the_class_level_tests_and_the_images_they_came_from(served):
    page = served["client"].get("/concepts").text
    assert 'id="concept-scope">Computed on every image of the run (all splits).' in page
    found = [(cls, f) for cls, fs in served["json"]["class_findings"].items() for f in fs]
    assert found and 'id="class-findings"' in page
    for cls, f in found:
        assert str(escape(f["evidence"])) in page
