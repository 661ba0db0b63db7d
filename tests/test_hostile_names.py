"""Issue 17, class 2: file names that are not valid UTF-8 go through scan, train, audit, report, serve,
predict and explain: stored losslessly (their exact bytes), shown readably (``\\xNN``), never a crash."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from hostile_support import cli_env, mikata_cmd
from mikata.runs.store import RunStore
from mikata.data.filenames import from_db, shown, to_db

ODD = [b"latin1_\xe9t\xe9.png", b"bad_\xff\xfe.png", b"mixed_\xe9_\xc3\xa9.png", b"\x80lead.png"]
GARBAGE = b"broken_\xe9.png"  # a non-UTF-8 name that is not an image either: a recorded skip


def _name(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


@pytest.fixture(scope="module")
def odd_data(tmp_path_factory):
    from test_scan_support import digit_images, write_folder

    base = tmp_path_factory.mktemp("names")
    images, labels = digit_images(30)
    paths = write_folder(base / "digits", images, labels)
    renamed = []
    for p, raw in zip(paths, ODD):  # the first images get the odd names, in their class folders
        target = os.path.join(os.fsencode(p.parent), raw)
        os.rename(os.fsencode(p), target)
        renamed.append(os.fsdecode(target))
    garbage = os.path.join(os.fsencode(base / "digits" / "1"), GARBAGE)
    with open(garbage, "wb") as f:
        f.write(b"not an image")
    return {"base": base, "data": base / "digits", "odd": renamed, "garbage": os.fsdecode(garbage)}


@pytest.fixture(scope="module")
def odd_run(odd_data):
    r = subprocess.run(mikata_cmd("scan", "test_scan_support:mnist_handle", str(odd_data["data"]), "--run",
                                  str(odd_data["base"] / "run"), "--workers", "0", "--json"),
                       env={**cli_env(), "PYTHONIOENCODING": "utf-8:strict"}, capture_output=True, text=True,
                       timeout=300)
    return {**odd_data, "run": odd_data["base"] / "run", "scan": r}


@pytest.mark.parametrize("raw", ODD + [GARBAGE, b"plain.png", "日本.png".encode()])
def test_path_helpers_are_lossless_and_printable(raw):
    name = _name(raw)
    assert from_db(to_db(name)) == name and os.fsencode(from_db(to_db(name))) == raw
    assert isinstance(to_db(name), str) == (raw.decode("utf-8", "ignore").encode() == raw)
    shown(name).encode("utf-8")  # always encodable
    assert shown("plain.png") == "plain.png"


def test_scan_stores_every_odd_name_exactly_and_exits_1_for_the_skipped_file(odd_run):
    r = odd_run["scan"]
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-800:]
    report = json.loads(r.stdout)
    assert report["computed"] == 30 and [s["path"] for s in report["skipped"]] == [odd_run["garbage"]]
    assert shown(odd_run["garbage"]) in r.stderr  # "broken_\xe9.png", readable
    with RunStore.open(odd_run["run"]) as store:
        done = store.done()
        kinds = dict(store.db.execute("SELECT path, typeof(path) FROM images").fetchall())
        assert store.skipped() == [(odd_run["garbage"], store.skipped()[0][1])]
    for p in odd_run["odd"]:
        assert p in done and kinds[to_db(p)] == "blob"
    assert sum(k == "text" for k in kinds.values()) == 30 - len(ODD)


def test_a_rescan_reuses_the_odd_names(odd_run):
    r = subprocess.run(mikata_cmd("scan", "test_scan_support:mnist_handle", str(odd_run["data"]), "--run",
                                  str(odd_run["run"]), "--workers", "0", "--json"), env=cli_env(),
                       capture_output=True, text=True, timeout=300)
    report = json.loads(r.stdout)
    assert report["reused"] == 31 and report["computed"] == 0


@pytest.mark.parametrize("as_json", [False, True])
def test_audit_shows_odd_names(odd_run, as_json):
    r = subprocess.run(mikata_cmd("audit", str(odd_run["run"]), "--top", "40", *(["--json"] if as_json else [])),
                       env={**cli_env(), "PYTHONIOENCODING": "utf-8:strict"}, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-800:]
    if as_json:
        assert json.loads(r.stdout)["skipped"][0]["path"] == odd_run["garbage"]  # lossless in JSON
    else:
        assert shown(odd_run["garbage"]) in r.stdout


def test_report_with_odd_names(odd_run, tmp_path):
    from mikata.report import write_report

    r = write_report(odd_run["run"], tmp_path / "r.html", maps=False)
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert r.thumbnails == 30 and shown(odd_run["garbage"]) in html


def test_serve_with_odd_names(odd_run):
    from fastapi.testclient import TestClient
    from test_scan_support import mnist_handle

    from mikata.server import create_app

    app = create_app(odd_run["run"], token="n" * 32, port=8765, handle=mnist_handle())
    c = TestClient(app, base_url="http://127.0.0.1:8765")
    assert c.get("/?token=" + "n" * 32).status_code == 200
    assert shown(odd_run["garbage"]) in c.get("/").text
    with RunStore.open(odd_run["run"]) as store:
        ids = {from_db(p): i for i, p in store.db.execute("SELECT id, path FROM images WHERE status='ok'")}
    h = {"sec-fetch-site": "same-origin"}
    for p in odd_run["odd"]:
        i = ids[p]
        page = c.get(f"/image/{i}")
        assert page.status_code == 200 and shown(p).replace("\\", "\\") in page.text
        assert c.get(f"/thumb/{i}").status_code == 200 and c.get(f"/img/{i}").status_code == 200
        assert c.get(f"/map/{i}.png", headers=h).status_code == 200
        assert c.post(f"/api/review/{i}", json={"verdict": "wrong"}, headers=h).status_code == 200
    csv = c.get("/reviews.csv")
    assert csv.status_code == 200 and all(shown(p) in csv.text for p in odd_run["odd"])


def test_predict_and_explain_with_odd_names(odd_run, tmp_path):
    img = odd_run["odd"][0]
    env = {**cli_env(), "PYTHONIOENCODING": "utf-8:strict"}
    r = subprocess.run(mikata_cmd("predict", "test_scan_support:mnist_handle", img), env=env, capture_output=True,
                       text=True, timeout=300, errors="surrogateescape")
    assert r.returncode == 0 and shown(img) in r.stdout, r.stderr[-500:]
    r = subprocess.run(mikata_cmd("explain", "test_scan_support:mnist_handle", img, "--methods", "gradcam", "--out",
                                  str(tmp_path / "ex")), env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-800:]
    assert any(f.endswith("_explain.png") for f in os.listdir(tmp_path / "ex"))


def test_train_with_odd_names(odd_data, tmp_path):
    from hostile_support import tiny_cnn
    from mikata.training import train

    data = tmp_path / "d"
    shutil.copytree(odd_data["data"], data)
    result = train(data, tiny_cnn(), tmp_path / "m.safetensors", epochs=1, batch_size=16, workers=0, progress=False)
    assert Path(result.checkpoint).is_file()
    assert [os.fsencode(p).rsplit(b"/", 1)[-1] for p, _ in result.skipped] == [GARBAGE]
