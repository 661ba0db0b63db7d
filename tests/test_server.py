"""The web app over a real scan (MNIST CNN on real digits): token and Host gate, id-only images,
traversal attempts, reviews and their CSV, maps computed once under concurrency, rows a scan adds."""

from __future__ import annotations

import csv
import io
import json
import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from mikata.analysis.overview import overview
from mikata.runs.store import RunStore
from mikata.server import create_app
from test_scan_support import digit_images, mnist_handle, write_folder

TOKEN = "test-token-0123456789"
BASE = "http://127.0.0.1:8765"


def _scan(base, n, handle):
    from mikata.scanning.scan import scan

    images, labels = digit_images(n)
    write_folder(base / "digits", images, labels)
    return scan(handle, base / "digits", base / "run", batch_size=32, workers=0, progress=False)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """60 real digits scanned, a symlink in the data folder pointing outside it, a featurevis folder."""
    base = tmp_path_factory.mktemp("served")
    handle = mnist_handle()
    images, _ = digit_images(1)
    secret = base / "secret.png"
    images[0].save(secret)
    (base / "digits" / "0").mkdir(parents=True)
    (base / "digits" / "0" / "escape.png").symlink_to(secret)
    _scan(base, 60, handle)
    run = base / "run"
    fv = run / "featurevis" / "classes"
    fv.mkdir(parents=True)
    Image.fromarray(np.full((40, 80, 3), 200, np.uint8)).save(fv / "grid.png")
    (run / "featurevis" / "outside.png").symlink_to(secret)  # never listed
    app = create_app(run, token=TOKEN, port=8765, handle=handle)
    with RunStore.open(run) as store:
        ids = {p.rsplit("/", 1)[-1]: i for i, p in store.rows(columns=("id", "path"), tuples=True)}
    client = TestClient(app, base_url=BASE)
    assert client.get(f"/?token={TOKEN}").status_code == 200  # sets the cookie
    return {"app": app, "run": run, "client": client, "ids": ids, "base": base, "handle": handle}


def test_token_is_required_then_kept_in_an_httponly_cookie(served):
    fresh = TestClient(served["app"], base_url=BASE, follow_redirects=False)
    for path in ("/", "/grid", "/thumb/1", "/api/overview", "/static/app.js", "/reviews.csv"):
        assert fresh.get(path).status_code == 403, path
    assert fresh.get("/?token=wrong").status_code == 403
    assert fresh.get("/", headers={"cookie": "mikata_token_8765=wrong"}).status_code == 403
    assert fresh.get("/", headers={"cookie": f"mikata_token_9999={TOKEN}"}).status_code == 403  # another port's
    r = fresh.get(f"/grid?true=1&token={TOKEN}&pred=2")
    assert r.status_code == 303 and r.headers["location"] == "/grid?true=1&pred=2"
    cookie = r.headers["set-cookie"]
    assert f"mikata_token_8765={TOKEN}" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert fresh.get("/grid?true=1&pred=2").status_code == 200  # the client kept the cookie
    assert fresh.get(f"{BASE}//evil.example/x?token={TOKEN}").headers["location"] == "/evil.example/x"
    assert fresh.get("/api/overview", headers={"authorization": f"token {TOKEN}"}).status_code == 200


def test_wrong_host_is_refused_and_there_is_no_cors(served):
    c = served["client"]
    assert c.get("/", headers={"host": "evil.example:8765"}).status_code == 400
    assert c.get("/", headers={"host": "127.0.0.1:9999"}).status_code == 400
    assert c.get("/", headers={"host": "localhost:8765"}).status_code == 200
    r = c.get("/api/overview", headers={"origin": "http://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    assert "access-control-allow-origin" not in c.options("/api/overview", headers={
        "origin": "http://evil.example", "access-control-request-method": "GET"}).headers


def test_traversal_attempts_and_unknown_ids_are_all_404(served):
    c = served["client"]
    escape = served["ids"]["escape.png"]
    attempts = [
        "/thumb/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/img/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/thumb/%252e%252e%252f%252e%252e%252fetc%252fpasswd", "/img/..%252f..%252fetc%252fpasswd",
        "/img/..%2f..%2fetc%2fpasswd", "/image/../../etc/passwd", "/image/..%2f..%2fetc%2fpasswd",
        "/img//etc/passwd", "/img/%2fetc%2fpasswd", "/thumb/%2Fetc%2Fpasswd", "/map/..%2f1.png",
        "/img/1%2f..%2f..%2fetc%2fpasswd", "/etc/passwd", "/static/..%2fapp.py", "/static/%2e%2e%2fsecurity.py",
        "/static/../app.py", "/static/%2fetc%2fpasswd", "/featurevis/..%2f..%2frun.sqlite",
        "/thumb/abc", "/thumb/1.5", "/thumb/-1", "/thumb/0", "/img/-3", "/image/-1", "/image/abc",
        "/thumb/999999", "/img/999999", "/image/999999", "/map/999999.png", "/view/999999.png",
        "/thumb/99999999999999999999999999", "/image/99999999999999999999999999",
        f"/thumb/{escape}", f"/img/{escape}", f"/map/{escape}.png", f"/view/{escape}.png", f"/image/{escape}",
        "/featurevis/1.png", "/featurevis/-1.png", "/class/99", "/class/-1", "/scorecard/figure/0.png",
    ]
    for path in attempts:
        r = c.get(path)
        assert r.status_code == 404, (path, r.status_code)
        assert b"root:" not in r.content and b"SQLite" not in r.content
    assert c.post("/api/review/999999", json={"verdict": "wrong"}).status_code == 404


def test_pages_render_and_images_are_served_by_id(served):
    c = served["client"]
    ov = overview(served["run"])
    some = int(ov.data.ids[3])
    for path in ("/", "/grid?true=-1&pred=-1", "/class/3", f"/image/{some}", "/reviews", "/embedding",
                 "/featurevis", "/scorecard"):
        r = c.get(path)
        assert r.status_code == 200 and "text/html" in r.headers["content-type"], path
    dash = c.get("/").text
    assert f"{100 * ov.accuracy:.1f}%" in dash and 'id="confusion"' in dash
    assert "Skipped files" not in dash
    for t, p in [(t, p) for t in range(10) for p in range(10) if ov.confusion[t, p]][:4]:
        page = c.get(f"/grid?true={t}&pred={p}").text
        assert [int(x) for x in __import__("re").findall(r'data-id="(\d+)"', page)] == ov.cell(t, p).tolist()
    for path in (f"/thumb/{some}", f"/img/{some}", f"/view/{some}.png"):
        r = c.get(path)
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(r.content)).size[0] > 0
    js = c.get("/static/plotly.min.js")
    assert js.status_code == 200 and len(js.content) > 1_000_000  # from the plotly wheel, served locally
    emb = c.get("/api/embedding").json()
    assert sorted(emb["ids"]) == sorted(ov.data.ids.tolist()) and len(emb["x"]) == len(emb["ids"])
    gallery = c.get("/featurevis").text
    assert "classes/grid.png" in gallery and "outside.png" not in gallery
    assert Image.open(io.BytesIO(c.get("/featurevis/0.png").content)).size == (80, 40)


def test_map_endpoint_matches_the_map_service_and_refuses_bad_choices(served):
    c = served["client"]
    some = int(overview(served["run"]).data.ids[5])
    r = c.get(f"/map/{some}.png?method=gradcam&cls=4")
    assert r.status_code == 200 and r.content == served["app"].run.maps.overlay_png(some, "gradcam", 4)
    assert c.get(f"/map/{some}.png?method=magic&cls=4").status_code == 400
    assert "giraffe" in c.get(f"/map/{some}.png?method=gradcam&cls=giraffe").text
    assert c.get(f"/map/{some}.png?method=gradcam&cls=10").status_code == 400


def test_concurrent_requests_for_one_map_compute_it_once(served):
    state = served["app"].run
    calls = []
    real = state.maps._compute

    def counting(*args):
        calls.append(args)
        time.sleep(0.5)  # a slow computation: every other request arrives while it runs
        return real(*args)

    state.maps._compute = counting
    barrier = threading.Barrier(8)
    try:
        some = int(overview(served["run"]).data.ids[7])
        results = [None] * 8

        def ask(i):
            barrier.wait()
            results[i] = served["client"].get(f"/map/{some}.png?method=saliency&cls=2")

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
    finally:
        state.maps._compute = real
    assert len(calls) == 1 and elapsed < 8 * 0.5  # computed once; the others waited for it, not in turn
    assert all(r.status_code == 200 and r.content == results[0].content for r in results)


def test_reviews_are_stored_and_exported_as_csv(served):
    c = served["client"]
    ids = overview(served["run"]).data.ids.tolist()
    a, b = ids[0], ids[1]
    assert c.post(f"/api/review/{a}", json={"verdict": "wrong", "suggested": 7}).status_code == 200
    assert c.post(f"/api/review/{b}", json={"verdict": "fine"}).status_code == 200
    assert c.post(f"/api/review/{b}", json={"verdict": "maybe"}).status_code == 400
    assert c.post(f"/api/review/{b}", json={"verdict": "wrong", "suggested": 42}).status_code == 400
    assert c.post(f"/api/review/{b}", content=b"verdict=wrong",
                  headers={"content-type": "application/x-www-form-urlencoded"}).status_code == 415
    with RunStore.open(served["run"]) as store:
        stored = {r["id"]: r for r in store.reviews()}
    assert stored[a]["verdict"] == "wrong" and stored[a]["suggested"] == 7 and stored[b]["verdict"] == "fine"
    r = c.get("/reviews.csv")
    assert r.headers["content-type"].startswith("text/csv") and "attachment" in r.headers["content-disposition"]
    rows = {int(x["id"]): x for x in csv.DictReader(io.StringIO(r.text))}
    assert rows[a]["verdict"] == "wrong" and rows[a]["suggested"] == "7" and rows[b]["verdict"] == "fine"
    assert rows[a]["path"].endswith(".png")
    assert c.post(f"/api/review/{b}", json={"verdict": None}).status_code == 200  # cleared
    assert b not in {int(x["id"]) for x in csv.DictReader(io.StringIO(c.get("/reviews.csv").text))}


def test_scorecard_is_shown_when_present(served):
    c = served["client"]
    card = {"model": "mnist-cnn", "images": 60, "target": "top1", "methods": ["gradcam", "saliency"],
            "metrics": [{"name": "deletion", "better": "lower", "description": "AUC of deleting top pixels"}],
            "table": {"gradcam": {"deletion": 0.1234}, "saliency": {"deletion": 0.2345}},
            "passes": {"gradcam": {"randomization": True}, "saliency": {"randomization": False}},
            "figures": ["../../secret.png", "missing.png"], "created": "2026-11-23T00:00:00Z"}
    path = served["run"] / "evaluate" / "scorecard.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(card))
    try:
        dash = c.get("/").text
        assert "0.123" in dash and "0.234" in dash and "randomization" in dash
        assert "0.123" in c.get("/scorecard").text
        assert c.get("/scorecard/figure/0.png").status_code == 404  # escapes the evaluate folder
        assert c.get("/scorecard/figure/1.png").status_code == 404
    finally:
        path.unlink()
    assert c.get("/").status_code == 200 and "0.123" not in c.get("/").text


def test_rows_a_scan_appends_appear_on_refresh(tmp_path):
    handle = mnist_handle()
    _scan(tmp_path, 20, handle)
    app = create_app(tmp_path / "run", token=TOKEN, port=8765, handle=handle)
    c = TestClient(app, base_url=BASE)
    first = c.get(f"/api/overview?token={TOKEN}").json()
    assert first["images"] == 20 and app.run.overview_builds == 1
    c.get("/")
    assert app.run.overview_builds == 1  # unchanged run: the cached overview
    images, labels = digit_images(50)
    for i in range(20, 50):  # 30 new files next to the scanned ones
        folder = tmp_path / "digits" / str(int(labels[i]))
        folder.mkdir(exist_ok=True)
        images[i].save(folder / f"new{i:05d}.png")
    added = 30
    from mikata.scanning.scan import scan

    scan(handle, tmp_path / "digits", tmp_path / "run", batch_size=16, workers=0, progress=False)
    after = c.get("/api/overview").json()
    assert after["images"] == 20 + added and app.run.overview_builds == 2
    assert np.array(after["confusion"]).sum() == 20 + added
    assert np.array_equal(np.array(after["confusion"]), overview(tmp_path / "run").confusion)
    assert f"{20 + added} images" in c.get("/").text


def test_grid_filters_keep_the_chosen_classes_and_page(served):
    import re

    c = served["client"]
    ov = overview(served["run"])
    page = c.get("/grid?true=3&pred=-1").text
    assert re.search(r'<select name="true">.*?<option value="3" selected>', page, re.S)
    pred_select = page.split('<select name="pred">')[1].split("</select>")[0]
    assert "selected" not in pred_select
    ids = [int(x) for x in re.findall(r'data-id="(\d+)"', page)]
    assert sorted(ids) == sorted(ov.data.ids[ov.data.labels == 3].tolist())


def test_mikata_serve_prints_a_token_url_and_moves_to_the_next_free_port(served):
    import os
    import re
    import subprocess
    import sys

    import httpx

    from mikata.server.launch import bind_socket, exposure_warning

    taken = bind_socket("127.0.0.1", 0)  # occupy a port: the server must take the next one
    port = taken.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(["src", "tests", os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-m", "mikata", "serve", str(served["run"]), "--port", str(port)],
                            env=env, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        while not any("token=" in line for line in lines):
            line = proc.stderr.readline()
            assert line or proc.poll() is None, "".join(lines)
            lines.append(line)
        url = re.search(r"http://\S+", "".join(lines)).group(0)
        m = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/\?token=([0-9a-f]{48})", url)
        assert m and int(m.group(1)) != port
        with httpx.Client(follow_redirects=True) as c:
            r = c.get(url)
            assert r.status_code == 200 and "Confusion matrix" in r.text and str(r.url).endswith("/")
            images = c.get(f"http://127.0.0.1:{m.group(1)}/api/overview").json()["images"]
            assert images == len(overview(served["run"]).data)
        assert httpx.get(f"http://127.0.0.1:{m.group(1)}/").status_code == 403  # no token, no cookie
    finally:
        proc.terminate()
        proc.wait(10)
        taken.close()
    assert exposure_warning("127.0.0.1") is None and exposure_warning("localhost") is None
    assert "0.0.0.0" in exposure_warning("0.0.0.0")


def test_a_scan_in_another_process_does_not_break_the_server(tmp_path):
    """Pages keep answering 200 while `mikata scan` commits batches in a subprocess; counts only grow."""
    import os
    import subprocess
    import sys

    handle = mnist_handle()
    images, labels = digit_images(300)
    write_folder(tmp_path / "digits", images[:40], labels[:40])
    from mikata.scanning.scan import scan

    scan(handle, tmp_path / "digits", tmp_path / "run", batch_size=40, workers=0, progress=False)
    for i in range(40, 300):
        folder = tmp_path / "digits" / str(int(labels[i]))
        folder.mkdir(exist_ok=True)
        images[i].save(folder / f"late{i:05d}.png")
    app = create_app(tmp_path / "run", token=TOKEN, port=8765, handle=handle)
    c = TestClient(app, base_url=BASE, headers={"authorization": f"token {TOKEN}"})
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(["src", "tests", os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-m", "mikata", "-q", "scan", "test_scan_support:mnist_handle",
                             str(tmp_path / "digits"), "--run", str(tmp_path / "run"), "--batch-size", "16",
                             "--workers", "0"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen = []
    try:
        while proc.poll() is None:
            for path in ("/", "/grid?true=1&pred=1", "/reviews", "/api/embedding"):
                assert c.get(path).status_code == 200, path
            seen.append(c.get("/api/overview").json()["images"])
            if len(seen) > 1 and seen[-1] == seen[-2]:  # nothing new (the scan process still starting): no spinning
                time.sleep(0.2)
    finally:
        proc.wait(120)
    assert proc.returncode == 0, proc.stderr.read()
    assert seen == sorted(seen) and seen[0] >= 40
    assert c.get("/api/overview").json()["images"] == 300
    assert len(set(seen)) > 1 or seen[-1] == 300  # usually several intermediate counts were served


def test_confusion_view_keeps_the_classes_with_the_most_errors():
    from mikata.presentation.sections import confusion_view

    rng = np.random.default_rng(0)
    cm = np.diag(rng.integers(5, 10, 1000))
    cm[7, 900] = 50
    cm[900, 3] = 40
    cm[12, 13] = 1
    rows, cols = confusion_view(cm, list(range(1000)), limit=4)
    assert cols == [3, 7, 12, 900]  # errors involving them: 40, 50, 1 (ties: lower id first), 90
    assert rows == cols
    small = np.array([[3, 1], [0, 2]])
    assert confusion_view(small, [0, 1]) == ([0, 1], [0, 1])


def test_pages_carry_a_content_security_policy_and_refuse_framing(served):
    r = served["client"].get("/")
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY" and r.headers["referrer-policy"] == "no-referrer"
    assert "<script>" not in r.text  # no inline scripts: the policy allows none


def test_host_check_when_bound_to_every_interface():
    import socket

    from mikata.server.security import allowed_hosts

    hosts = allowed_hosts("0.0.0.0", 8765)
    assert {"127.0.0.1:8765", "localhost:8765", f"{socket.gethostname().lower()}:8765"} <= hosts
    assert "evil.example:8765" not in hosts and "127.0.0.1:80" not in hosts
    assert "[::1]:8765" in allowed_hosts("::1", 8765)


def test_skipped_files_are_listed_on_the_dashboard(tmp_path):
    handle = mnist_handle()
    images, labels = digit_images(12)
    write_folder(tmp_path / "digits", images, labels)
    (tmp_path / "digits" / "3" / "notes.png").write_text("not an image")
    from mikata.scanning.scan import scan

    scan(handle, tmp_path / "digits", tmp_path / "run", batch_size=16, workers=0, progress=False)
    c = TestClient(create_app(tmp_path / "run", token=TOKEN, port=8765, handle=handle), base_url=BASE,
                   headers={"authorization": f"token {TOKEN}"})
    dash = c.get("/").text
    assert "Skipped files" in dash and "notes.png" in dash
    with RunStore.open(tmp_path / "run") as store:
        skipped_id = store.ids(status="skipped")[0]
        broken_id, broken = store.rows(status="ok", columns=("id", "path"), tuples=True)[0]
    for path in (f"/image/{skipped_id}", f"/thumb/{skipped_id}", f"/map/{skipped_id}.png"):
        assert c.get(path).status_code == 404, path
    open(broken, "w").write("replaced by text after the scan")
    for path in (f"/thumb/{broken_id}", f"/img/{broken_id}", f"/view/{broken_id}.png", f"/map/{broken_id}.png"):
        assert c.get(path).status_code == 404, path


def test_the_cookie_is_found_among_other_apps_cookies(served):
    fresh = TestClient(served["app"], base_url=BASE)
    messy = f'_xsrf=2|a1b2|"quoted value"; bad cookie; username-127-0-0-1-8888="2|1:0|10:17"; mikata_token_8765={TOKEN}'
    assert fresh.get("/api/overview", headers={"cookie": messy}).status_code == 200


def test_scorecard_figures_are_served_by_index_from_the_evaluate_folder(served):
    c = served["client"]
    folder = served["run"] / "evaluate"
    folder.mkdir(exist_ok=True)
    Image.fromarray(np.zeros((10, 30, 3), np.uint8)).save(folder / "deletion.png")
    (folder / "scorecard.json").write_text(json.dumps({"model": "m", "images": 1, "target": "top1", "methods": [],
                                                       "metrics": [], "table": {}, "passes": {},
                                                       "figures": ["deletion.png", "/etc/passwd"]}))
    try:
        r = c.get("/scorecard/figure/0.png")
        assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).size == (30, 10)
        assert c.get("/scorecard/figure/1.png").status_code == 404
        assert 'src="/scorecard/figure/0.png"' in c.get("/scorecard").text
    finally:
        (folder / "scorecard.json").unlink()


def test_grid_can_show_the_maps_of_the_predicted_class(served):
    import re

    c = served["client"]
    ov = overview(served["run"])
    t = int(ov.data.labels[0])
    page = c.get(f"/grid?true={t}&pred={t}&map=gradcam").text
    srcs = re.findall(r'src="(/map/\d+\.png\?method=gradcam&amp;cls=\d+)"', page)
    assert len(srcs) == len(ov.cell(t, t)) and all(s.endswith(f"cls={t}") for s in srcs)
    r = c.get(srcs[0].replace("&amp;", "&"))
    assert r.status_code == 200 and r.content[:4] == b"\x89PNG"
    assert "/map/" not in c.get(f"/grid?true={t}&pred={t}&map=not-a-method").text  # unknown: plain images


def test_a_relative_checkpoint_spec_is_found_next_to_a_moved_run(tmp_path):
    """Inside the run directory only (issue 17): a checkpoint planted in a parent folder is never picked up."""
    from mikata.models.run_model import run_model_spec as resolve_model_spec

    (tmp_path / "project" / "runs" / "a").mkdir(parents=True)
    run = tmp_path / "project" / "runs" / "a"
    (run / "model.safetensors").write_bytes(b"")
    assert resolve_model_spec({"model_spec": "old/place/model.safetensors"}, run) == str(run / "model.safetensors")
    assert resolve_model_spec({"model_spec": "efficientnet-lite0"}, run) == "efficientnet-lite0"
    assert resolve_model_spec({"model_spec": "gone/elsewhere.safetensors"}, tmp_path) == "gone/elsewhere.safetensors"
    (tmp_path / "project" / "planted.safetensors").write_bytes(b"")
    assert resolve_model_spec({"model_spec": "x/planted.safetensors"}, run) == "x/planted.safetensors"
