"""The web app's concept pages over a real scan (the MNIST CNN on real digits) with a hand-made atlas in the
stored format: pages, crops checked against the original pixels, escaping, ids only, the token and the
computing-route gate, the review's input checks."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
import io

from concepts_ui_support import HOSTILE, write_atlas
from mikata.analysis.runstore import RunStore
from mikata.server import create_app
from test_scan_support import digit_images, mnist_handle, write_folder

TOKEN = "concepts-token-0123456789"
BASE = "http://127.0.0.1:8765"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from mikata.analysis.scan import scan

    base = tmp_path_factory.mktemp("concepts-served")
    images, labels = digit_images(80)
    write_folder(base / "digits", images, labels)
    handle = mnist_handle()
    scan(handle, base / "digits", base / "run", batch_size=40, workers=0, progress=False)
    atlas = write_atlas(base / "run")
    client = TestClient(create_app(base / "run", token=TOKEN, port=8765, handle=handle), base_url=BASE)
    assert client.get(f"/?token={TOKEN}").status_code == 200
    with RunStore.open(base / "run") as store:
        names = store.classes
        paths = dict(store.rows(columns=("id", "path"), tuples=True))
    return {"client": client, "run": base / "run", "atlas": atlas, "names": names, "paths": paths, "handle": handle}


def test_concepts_list_class_page_and_escaped_evidence(served):
    c = served["client"]
    page = c.get("/concepts")
    assert page.status_code == 200
    assert '<a href="/concepts">Concepts</a>' in page.text  # the nav names it once there is an atlas
    assert 'id="shortcuts"' in page.text and "/concepts/0/1" in page.text
    assert HOSTILE not in page.text and "&lt;script&gt;alert(" in page.text  # escaped, never markup
    for k in range(3):
        assert f'href="/concepts/0/{k}"' in page.text
    cls = c.get("/concepts/0")
    assert cls.status_code == 200 and "<svg" in cls.text and cls.text.count('class="concept-row') == 3
    assert "/map/concepts/0/1/exemplar/0.png" in cls.text and "/concepts/0/1/crop/0.png" in cls.text
    assert HOSTILE not in cls.text


def test_crops_are_the_original_pixels_inside_the_box(served):
    c, atlas, names = served["client"], served["atlas"], served["names"]
    e = atlas["classes"][names[0]][2]["exemplars"][1]
    r = c.get("/concepts/0/2/crop/1.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    got = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))
    x0, y0, x1, y1 = e["box"]
    want = np.asarray(Image.open(served["paths"][e["id"]]).convert("RGB"))[y0:y1, x0:x1]
    assert np.array_equal(got, want)


def test_location_png_peaks_where_the_atlas_says(served):
    r = served["client"].get("/concepts/0/2/location.png")
    assert r.status_code == 200
    a = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB")).astype(int)
    red = a[..., 0] - a[..., 2]  # jet: red at the peak, blue far away
    red[a.min(-1) == 255] = -999  # the white cross marks the center itself
    y, x = np.unravel_index(np.argmax(red), red.shape)
    cx, cy = served["atlas"]["classes"][served["names"][0]][2]["location"]["center"]
    assert abs(x / a.shape[1] - cx) < 0.05 and abs(y / a.shape[0] - cy) < 0.05


def test_unknown_classes_concepts_and_exemplars_are_404_and_ids_only(served):
    c = served["client"]
    for path in ("/concepts/99", "/concepts/0/7", "/concepts/0/1/crop/9.png", "/concepts/-1/0",
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
