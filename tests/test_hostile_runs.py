"""Issue 17, classes 5 and 6 (runs): each way a run can be damaged gives one clear error from audit, report and
serve (no traceback, no 500 from a crash) and is named by ``mikata check``; a read-only run is still
served and reported (maps computed, not cached; reviews refused clearly); a full disk keeps the data."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

from hostile_support import small_run
from mikata.cli import main


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return small_run(tmp_path_factory.mktemp("damage"), n=30)


def _meta(run: Path, key: str, value: str) -> None:
    with sqlite3.connect(run / "run.sqlite") as con:
        con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))


def _manifest(run: Path, text: str) -> None:
    (run / "manifest.json").write_text(text)


def _classes(run: Path, classes) -> None:
    m = json.loads((run / "manifest.json").read_text())
    m["identity"]["classes"] = classes
    _manifest(run, json.dumps(m))


def _smash(run: Path) -> None:
    p = run / "run.sqlite"
    data = bytearray(p.read_bytes())
    data[:100] = os.urandom(100)
    p.write_bytes(bytes(data))


def _checkpoint_wal(run: Path) -> None:
    with sqlite3.connect(run / "run.sqlite") as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")


DAMAGE = {
    "sqlite smashed": _smash,
    "sqlite truncated": lambda r: os.truncate(r / "run.sqlite", 4096),
    "sqlite is text": lambda r: (r / "run.sqlite").write_text("hello"),
    "sqlite empty": lambda r: (r / "run.sqlite").write_bytes(b""),
    "probs missing": lambda r: (r / "probs.f16").unlink(),
    "probs short": lambda r: os.truncate(r / "probs.f16", (r / "probs.f16").stat().st_size // 2),
    "embed empty": lambda r: os.truncate(r / "embed.f16", 0),
    "vector count too large": lambda r: _meta(r, "vec_rows", "1000000"),
    "vector count not a number": lambda r: _meta(r, "vec_rows", "many"),
    "vector count negative": lambda r: _meta(r, "vec_rows", "-3"),
    "dims not JSON": lambda r: _meta(r, "dims", "{probs: 10"),
    "dims a list": lambda r: _meta(r, "dims", "[10, 20]"),
    "dims negative": lambda r: _meta(r, "dims", '{"probs": -10}'),
    "manifest not JSON": lambda r: _manifest(r, "{not json"),
    "manifest empty": lambda r: _manifest(r, ""),
    "manifest a list": lambda r: _manifest(r, "[1, 2]"),
    "manifest without identity": lambda r: _manifest(r, '{"format": "mikata-run/1"}'),
    "manifest missing": lambda r: (r / "manifest.json").unlink(),
    "fewer classes than the data": lambda r: _classes(r, ["0", "1", "2"]),
    "classes not names": lambda r: _classes(r, [1, 2, 3]),
}


@pytest.fixture(params=sorted(DAMAGE), ids=lambda k: k.replace(" ", "-"))
def damaged(request, run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    _checkpoint_wal(copy)
    for extra in ("run.sqlite-wal", "run.sqlite-shm"):
        (copy / extra).unlink(missing_ok=True)
    DAMAGE[request.param](copy)
    return copy


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(["-q", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_audit_and_report_refuse_a_damaged_run_in_one_line(damaged, capsys, tmp_path):
    for args in (["audit", str(damaged)], ["report", str(damaged), "--out", str(tmp_path / "r.html"), "--no-maps"]):
        rc, out, err = _cli(capsys, *args)
        assert rc == 2, (args, out[-300:], err[-300:])
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in err, err[-500:]


def test_check_names_the_damage(damaged, capsys):
    rc, out, err = _cli(capsys, "check", str(damaged), "--json")
    report = json.loads(out)
    assert rc == 1 and not report["ok"] and any(p["severity"] == "damaged" for p in report["problems"]), out


def test_serve_refuses_a_damaged_run_or_answers_clearly(damaged):
    from fastapi.testclient import TestClient

    from mikata.errors import MikataError
    from mikata.server import create_app

    try:
        app = create_app(damaged, token="d" * 32, port=8765)
    except MikataError as e:  # refused at start: the usual case
        assert "\n" not in str(e)
        return
    c = TestClient(app, base_url="http://127.0.0.1:8765", raise_server_exceptions=False)
    for path in (f"/?token={'d' * 32}", "/grid", "/api/overview", "/thumb/1", "/image/1", "/api/embedding"):
        r = c.get(path)
        assert r.status_code != 500 or "mikata check" in r.text, (path, r.status_code, r.text[:200])


def test_an_intact_run_checks_clean_and_a_changed_image_is_stale(run, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    rc, out, _ = _cli(capsys, "check", str(copy), "--hashes")
    assert rc == 0 and "intact" in out
    with sqlite3.connect(copy / "run.sqlite") as con:
        path = con.execute("SELECT path FROM images WHERE status='ok' LIMIT 1").fetchone()[0]
    st = os.stat(path)
    os.utime(path, ns=(1, 1))
    try:
        rc, out, _ = _cli(capsys, "check", str(copy), "--json")
    finally:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # the images are shared by the module's tests
    problems = json.loads(out)["problems"]
    assert rc == 1 and [p["severity"] for p in problems] == ["stale"] and "changed since the scan" in problems[0]["what"]


def test_uncommitted_vector_bytes_are_stale_not_damage(run, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    with open(copy / "probs.f16", "ab") as f:
        f.write(b"\0" * 20 * 3)  # three rows of a batch that never committed
    rc, out, _ = _cli(capsys, "check", str(copy), "--json")
    problems = json.loads(out)["problems"]
    assert len(problems) == 1, problems
    (p,) = problems
    assert p["severity"] == "stale" and "uncommitted" in p["what"]
    rc, out, err = _cli(capsys, "audit", str(copy))
    assert rc == 0


# ---------------------------------------------------------------------------------- read-only runs
@contextmanager
def immutable(folder: Path):
    """``chattr +i`` on the run and its files: read-only even for root (the tests run as root)."""
    paths = [folder, *folder.rglob("*")]
    done = []
    try:
        for p in paths:
            if subprocess.run(["chattr", "+i", str(p)], capture_output=True).returncode != 0:
                pytest.skip("chattr +i is not available here")
            done.append(p)
        yield
    finally:
        for p in reversed(done):
            subprocess.run(["chattr", "-i", str(p)], capture_output=True)


@pytest.fixture
def readonly_run(run, tmp_path):
    copy = tmp_path / "ro"
    shutil.copytree(run, copy)
    _checkpoint_wal(copy)
    for extra in ("run.sqlite-wal", "run.sqlite-shm"):
        (copy / extra).unlink(missing_ok=True)
    with immutable(copy):
        yield copy


def test_a_read_only_run_is_served_maps_computed_not_cached_reviews_refused(readonly_run):
    from fastapi.testclient import TestClient
    from test_scan_support import mnist_handle

    from mikata.server import create_app

    app = create_app(readonly_run, token="r" * 32, port=8765, handle=mnist_handle())
    c = TestClient(app, base_url="http://127.0.0.1:8765")
    assert c.get("/?token=" + "r" * 32).status_code == 200
    h = {"sec-fetch-site": "same-origin"}
    for _ in range(2):  # computed each time: nothing can be cached
        r = c.get("/map/1.png?method=gradcam", headers=h)
        assert r.status_code == 200 and r.content[:4] == b"\x89PNG"
    r = c.post("/api/review/1", json={"verdict": "wrong"}, headers=h)
    assert r.status_code == 409 and "read-only" in r.text  # a conflict with the run's state (issue 34: was 400)
    assert c.get("/reviews.csv").status_code == 200


def test_a_read_only_run_gets_a_report_with_maps(readonly_run, tmp_path):
    from test_scan_support import mnist_handle

    from mikata.report import write_report

    r = write_report(readonly_run, tmp_path / "r.html", handle=mnist_handle(), methods=["gradcam"])
    assert r.maps > 0 and (tmp_path / "r.html").stat().st_size > 0


def test_scanning_into_a_read_only_run_is_refused_in_one_line(run, readonly_run, capsys):
    rc, out, err = _cli(capsys, "scan", "test_scan_support:mnist_handle", str(run.parent / "digits"),
                        "--run", str(readonly_run), "--workers", "0")
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "not writable" in err, err


# ---------------------------------------------------------------------------------------- disk full
def test_a_full_disk_during_a_scan_says_how_many_rows_are_safe(run, tmp_path, capsys, monkeypatch):
    import errno

    from mikata.runs.store import RunStore

    calls = {"n": 0}
    real = RunStore.append

    def append(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.dir / "probs.f16"))
        return real(self, *a, **kw)

    monkeypatch.setattr(RunStore, "append", append)
    rc, out, err = _cli(capsys, "scan", "test_scan_support:mnist_handle", str(run.parent / "digits"), "--run",
                        str(tmp_path / "full"), "--workers", "0", "--batch-size", "4")
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "8 rows are committed" in err and "resumes" in err, err
    monkeypatch.setattr(RunStore, "append", real)
    rc, out, err = _cli(capsys, "scan", "test_scan_support:mnist_handle", str(run.parent / "digits"), "--run",
                        str(tmp_path / "full"), "--workers", "0", "--json")
    assert rc == 0 and json.loads(out)["reused"] == 8
