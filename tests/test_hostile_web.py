"""Issue 17, class 9: web inputs through every route: redirects stay on the server, review bodies are
validated by a schema (422), bad parameters are 400/422 with the valid choices, and maps or reviews
are refused to pages of other sites or other localhost ports."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import re

import pytest
from fastapi.testclient import TestClient

from hostile_support import small_run
from mikata.server import create_app
from mikata.server.security import Gate, cross_site, safe_location

TOKEN = "k" * 48
BASE = "http://127.0.0.1:8765"
SAME = {"sec-fetch-site": "same-origin"}


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    from test_scan_support import mnist_handle

    run = small_run(tmp_path_factory.mktemp("web"))
    app = create_app(run, token=TOKEN, port=8765, handle=mnist_handle())
    c = TestClient(app, base_url=BASE)
    assert c.get(f"/?token={TOKEN}").status_code == 200
    return {"app": app, "client": c, "run": run}


def _redirect(app: Gate, raw_path: bytes) -> str:
    """The Location the gate answers for a raw request path carrying the token (no HTTP client in between)."""
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": raw_path.decode("latin-1"), "raw_path": raw_path,
             "query_string": f"token={TOKEN}".encode(), "headers": [(b"host", b"127.0.0.1:8765")]}
    # a thread of its own: once the session's Chromium fixture has started, Playwright's sync API keeps
    # an event loop running in this thread, and asyncio.run refuses to nest in it
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, app(scope, receive, send)).result()
    assert sent[0]["status"] == 303
    return dict(sent[0]["headers"])[b"location"].decode("latin-1")


OFFSITE = [b"/\\evil.example/", b"/\\\\evil.example", b"//evil.example/x", b"///evil.example", b"/\\/evil.example",
           b"/\t/evil.example", b"/\n/evil.example", b"/ /evil.example", b"\\\\evil.example", b"/%5C%5Cevil.example",
           b"/./\\evil.example", b"/\r\n\\evil.example"]


@pytest.mark.parametrize("raw", OFFSITE)
def test_a_token_redirect_never_leaves_the_server(web, raw):
    location = _redirect(web["app"], raw)
    assert location.startswith("/") and not re.match(r"^/[/\\]", location)
    assert "\\" not in location and not re.search(r"[\x00-\x20\x7f]", location)


def test_safe_location_keeps_ordinary_paths():
    assert safe_location("/grid") == "/grid"
    assert safe_location("/image/12") == "/image/12"
    assert safe_location("//evil.example/x") == "/evil.example/x"


# -------------------------------------------------------------------------------------------- reviews
BAD_BODIES = [b'{"verdict": "wrong", "suggested": true}', b'{"verdict": "wrong", "suggested": 1.9}',
              b'{"verdict": "wrong", "suggested": 1e400}', b'{"verdict": "wrong", "suggested": "1"}',
              b'{"verdict": "wrong", "suggested": [1]}', b'{"verdict": "wrong", "suggested": {"a": 1}}',
              b'{"verdict": 5}', b'{"verdict": true}', b'{"verdict": ["wrong"]}', b'{"verdict": "wrong", "x": 1}',
              b'[1, 2]', b'"wrong"', b"null", b"not json", b"", b'{"verdict": "wrong"', b"[" * 5000 + b"]" * 5000,
              b'{"a":' * 5000 + b"1" + b"}" * 5000]


@pytest.mark.parametrize("body", BAD_BODIES, ids=[f"body{i}" for i in range(len(BAD_BODIES))])
def test_a_malformed_review_body_is_422_and_stores_nothing(web, body):
    c = web["client"]
    r = c.post("/api/review/1", content=body, headers={"content-type": "application/json", **SAME})
    assert r.status_code == 422, (body[:60], r.status_code, r.text[:200])
    assert "expected" in r.json()
    from mikata.runs.store import RunStore

    with RunStore.open(web["run"]) as store:
        assert store.reviews() == []


def test_review_values_outside_the_choices_are_400_and_good_ones_stored(web):
    c = web["client"]
    h = {"content-type": "application/json", **SAME}
    assert c.post("/api/review/2", content=b'{"verdict": "maybe"}', headers=h).status_code == 400
    assert c.post("/api/review/2", content=b'{"verdict": "wrong", "suggested": -1}', headers=h).status_code == 400
    assert c.post("/api/review/2", content=b'{"verdict": "wrong", "suggested": 10}', headers=h).status_code == 400
    assert c.post("/api/review/2", content=b'{"verdict": "wrong", "suggested": 99999999999999999999999}',
                  headers=h).status_code == 400
    assert c.post("/api/review/2", content=b"x" * 70000, headers=h).status_code == 413
    ok = c.post("/api/review/2", content=json.dumps({"verdict": "wrong", "suggested": 3}).encode(), headers=h)
    assert ok.status_code == 200 and ok.json()["suggested"] == 3
    assert c.post("/api/review/2", content=b'{"verdict": null}', headers=h).status_code == 200


# --------------------------------------------------------------------------------------- parameters
@pytest.mark.parametrize("query,expect,says", [
    ("layer=fc", 400, "conv_layers"), ("layer=fc_layers.0", 400, "layers that work"),
    ("layer=fc_layers", 400, "layers that work"), ("layer=..%2F..%2Fetc", 400, "conv_layers"),
    ("method=nope", 400, "gradcam"), ("method=", 400, "gradcam"), ("cls=99", 400, "0..9"), ("cls=zebra", 400, "valid"),
    ("cls=-1", 400, "valid"),
])
def test_a_bad_map_parameter_is_400_with_the_valid_choices(web, query, expect, says):
    r = web["client"].get(f"/map/1.png?{query}", headers=SAME)
    assert r.status_code == expect and says in r.text, (query, r.status_code, r.text[:300])


@pytest.mark.parametrize("path", ["/image/abc", "/grid?true=abc", "/grid?page_no=1e9", "/thumb/-5", "/class/x",
                                  "/thumb/99999999999999999999999999", "/map/0.png", "/featurevis/99.png",
                                  "/scorecard/figure/-1.png", "/static/..%2F..%2Fapp.py", "/class/999"])
def test_odd_paths_and_parameters_never_answer_500(web, path):
    r = web["client"].get(path, headers=SAME)
    assert 400 <= r.status_code < 500, (path, r.status_code)


# ------------------------------------------------------------------------------------ other sites
@pytest.mark.parametrize("headers", [{"sec-fetch-site": "same-site"}, {"sec-fetch-site": "cross-site"},
                                     {"origin": "http://127.0.0.1:9999"}, {"origin": "http://evil.example"},
                                     {"sec-fetch-site": "same-site", "origin": BASE}])
def test_maps_and_reviews_are_refused_to_other_sites_and_ports(web, headers):
    c = web["client"]
    for path in ("/map/1.png?method=gradcam", "/view/1.png"):
        r = c.get(path, headers=headers)
        assert r.status_code == 403 and "another site" in r.text, path
    r = c.post("/api/review/3", content=b'{"verdict": "wrong"}', headers={"content-type": "application/json", **headers})
    assert r.status_code == 403
    assert c.get("/thumb/1", headers=headers).status_code == 200  # plain reads stay allowed (nothing computed)


def test_own_pages_and_scripts_may_compute(web):
    c = web["client"]
    assert c.get("/map/1.png", headers=SAME).status_code == 200
    assert c.get("/map/1.png", headers={"origin": BASE}).status_code == 200
    assert c.get("/view/1.png", headers={"sec-fetch-site": "none"}).status_code == 200  # typed in the address bar
    assert c.get("/map/1.png").status_code == 200  # a script: no browser headers, the token authenticates


def test_cross_site_rule_itself():
    origins = {"http://127.0.0.1:8765"}
    assert not cross_site("GET", "/grid", {"sec-fetch-site": "cross-site"}, origins)  # navigation: allowed
    assert cross_site("POST", "/api/review/1", {"origin": "http://localhost:1"}, origins)
    assert not cross_site("POST", "/api/review/1", {"origin": "http://127.0.0.1:8765"}, origins)
