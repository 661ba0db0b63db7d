"""Issue 34 (jobs): stored values that are garbage, NaN/inf or null are named by `mikata check`, shown as
damaged by the app (never a 500), and refused by `mikata merge` before anything is written; a shard
missing a vector kind, a row pointing past its vectors, rows sharing a vector: the same."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from mikata.runs.merge import merge_runs, split_run
from mikata.runs.store import RunStore, RunStoreError, as_probability, decode_map, parse_topk
from mikata.cli import main

TOKEN = "j" * 32


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A real scan (20 digits, the MNIST CNN, Grad-CAMs stored) with one cached map."""
    from test_scan_support import digit_images, mnist_handle, write_folder

    from mikata.scanning.scan import scan

    root = tmp_path_factory.mktemp("jobs")
    images, labels = digit_images(20)
    write_folder(root / "digits", images, labels)
    scan(mnist_handle(), root / "digits", root / "run", batch_size=8, workers=0, progress=False, gradcam=True)
    with RunStore.open(root / "run", annotate=True) as s:
        s.put_map(1, "gradcam", 3, "", np.linspace(0, 1, 28 * 28).reshape(28, 28), 0.1)
    _settle(root / "run")
    return root


def _settle(run: Path) -> None:
    with sqlite3.connect(run / "run.sqlite") as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for extra in ("run.sqlite-wal", "run.sqlite-shm"):
        (run / extra).unlink(missing_ok=True)


def _sql(run: Path, query: str, *args) -> None:
    with sqlite3.connect(run / "run.sqlite") as con:
        con.execute(query, args)


def _vectors(run: Path, kind: str, rows: slice, value: float) -> None:
    with sqlite3.connect(run / "run.sqlite") as con:
        dim = json.loads(con.execute("SELECT value FROM meta WHERE key='dims'").fetchone()[0])[kind]
    a = np.memmap(run / f"{kind}.f16", np.float16, "r+").reshape(-1, dim)
    a[rows] = value
    a.flush()


def _dir_instead(run: Path, name: str) -> None:
    (run / name).unlink()
    (run / name).mkdir()


# damage -> (what `mikata check` says, in part; what the image page of row 1 says is damaged, or None)
GARBAGE = {
    "cam garbage bytes": (lambda r: _sql(r, "UPDATE images SET cam=? WHERE id=1", b"\x01\x02\x03"),
                          "1 stored Grad-CAMs are not finite maps", "Grad-CAM"),
    "cam NaN": (lambda r: _sql(r, "UPDATE images SET cam=(SELECT ? || substr(cam, 3) FROM images WHERE id=1) WHERE id=1",
                               np.float16(np.nan).tobytes()), "1 stored Grad-CAMs are not finite maps", "Grad-CAM"),
    "cam inf": (lambda r: _sql(r, "UPDATE images SET cam=(SELECT substr(cam, 1, length(cam) - 2) || ? FROM images "
                                  "WHERE id=1) WHERE id=1", np.float16(np.inf).tobytes()),
                "1 stored Grad-CAMs are not finite maps", "Grad-CAM"),
    "cached map garbage": (lambda r: _sql(r, "UPDATE maps SET map=?", b"xyz"),
                           "1 cached attribution maps are not finite", None),
    "cached map inf": (lambda r: _sql(r, "UPDATE maps SET map=?", np.full((28, 28), np.inf, np.float16).tobytes()),
                       "1 cached attribution maps are not finite", None),
    "cached map wrong size": (lambda r: _sql(r, "UPDATE maps SET height=1000"),
                              "1 cached attribution maps are not finite", None),
    "top-k not JSON": (lambda r: _sql(r, "UPDATE images SET topk='[[3, 0.9' WHERE id=1"),
                       "1 scanned rows have a top-k list that is not", "top-k"),
    "top-k wrong types": (lambda r: _sql(r, "UPDATE images SET topk='[[\"x\", \"y\"], 5]' WHERE id=1"),
                          "1 scanned rows have a top-k list that is not", "top-k"),
    "top-k NaN": (lambda r: _sql(r, "UPDATE images SET topk='[[3, NaN]]' WHERE id=1"),
                  "1 scanned rows have a top-k list that is not", "top-k"),
    "top-k null": (lambda r: _sql(r, "UPDATE images SET topk=NULL WHERE id=1"),
                   "1 scanned rows have a top-k list that is not", None),
    "top-k class past the classes": (lambda r: _sql(r, "UPDATE images SET topk='[[12, 0.5]]' WHERE id=1"),
                                     "1 scanned rows have a top-k list that is not", None),
    "top-k deep nesting": (lambda r: _sql(r, "UPDATE images SET topk=? WHERE id=1", "[" * 10000 + "]" * 10000),
                           "1 scanned rows have a top-k list that is not", "top-k"),
    "probability null": (lambda r: _sql(r, "UPDATE images SET pred_prob=NULL WHERE id=1"),
                         "1 scanned rows have a pred probability", "pred prob"),
    "probability NaN (stored as null)": (lambda r: _sql(r, "UPDATE images SET pred_prob=? WHERE id=1", float("nan")),
                                         "1 scanned rows have a pred probability", "pred prob"),
    "probability inf": (lambda r: _sql(r, "UPDATE images SET pred_prob=? WHERE id=1", float("inf")),
                        "1 scanned rows have a pred probability", "pred prob"),
    "probability text": (lambda r: _sql(r, "UPDATE images SET pred_prob='high' WHERE id=1"),
                         "1 scanned rows have a pred probability", "pred prob"),
    "probability 7": (lambda r: _sql(r, "UPDATE images SET pred_prob=7 WHERE id=1"),
                      "1 scanned rows have a pred probability", "pred prob"),
    "label probability negative": (lambda r: _sql(r, "UPDATE images SET label_prob=-0.5 WHERE id=1"),
                                   "1 scanned rows have a label probability", "label prob"),
    "probs vector NaN": (lambda r: _vectors(r, "probs", slice(0, 2), np.nan), "2 of the 20 probs vectors hold NaN", None),
    "probs vector inf": (lambda r: _vectors(r, "probs", slice(3, 4), np.inf), "1 of the 20 probs vectors hold NaN", None),
    "probs vector not summing to 1": (lambda r: _vectors(r, "probs", slice(0, 5), 0.5),
                                      "5 of the 20 probability vectors are not probabilities", None),
    "embedding NaN": (lambda r: _vectors(r, "embed", slice(0, 20), np.nan), "20 of the 20 embed vectors hold NaN", None),
    "channels inf": (lambda r: _vectors(r, "channels", slice(5, 6), -np.inf), "1 of the 20 channels vectors", None),
}
# a file replaced by a directory: check names it, the app refuses the run in one line at start
NOT_FILES = {
    "probs.f16 is a directory": (lambda r: _dir_instead(r, "probs.f16"), "probs.f16 is not a regular file (a directory)"),
    "embed.f16 is a directory": (lambda r: _dir_instead(r, "embed.f16"), "embed.f16 is not a regular file (a directory)"),
    "channels.f16 is a FIFO": (lambda r: ((r / "channels.f16").unlink(), __import__("os").mkfifo(r / "channels.f16")),
                               "channels.f16 is not a regular file (a FIFO)"),
}


def _damaged_copy(base: Path, tmp_path: Path, damage) -> Path:
    run = tmp_path / "run"
    shutil.copytree(base / "run", run)
    damage(run)
    return run


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(["-q", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_check_names_garbage_values(base, tmp_path, capsys, kind):
    damage, said, _ = GARBAGE[kind]
    run = _damaged_copy(base, tmp_path, damage)
    rc, out, _ = _cli(capsys, "check", str(run), "--json")
    report = json.loads(out)
    assert rc == 1 and not report["ok"], out
    assert [p for p in report["problems"] if said in p["what"]], report["problems"]


@pytest.mark.parametrize("kind", sorted(NOT_FILES))
def test_check_names_a_vector_file_that_is_not_a_file(base, tmp_path, capsys, kind):
    damage, said = NOT_FILES[kind]
    run = _damaged_copy(base, tmp_path, damage)
    rc, out, err = _cli(capsys, "check", str(run), "--json")
    assert rc == 1 and "Traceback" not in err
    problems = json.loads(out)["problems"]
    assert [p for p in problems if said in p["what"] and p["severity"] == "damaged"], problems
    from mikata.errors import MikataError
    from mikata.server import create_app

    with pytest.raises(MikataError, match=re.escape(f"{said}; `mikata check ")):
        create_app(run, token=TOKEN, port=8765)


def test_an_intact_run_has_no_value_problems(base, capsys):
    rc, out, _ = _cli(capsys, "check", str(base / "run"), "--json")
    assert rc == 0 and json.loads(out)["ok"], out


PAGES = ("/", "/grid", "/image/1", "/image/2", "/map/1.png?method=gradcam", "/map/1.png?method=gradcam&cls=3",
         "/api/overview", "/class/0", "/reviews", "/embedding", "/api/embedding", "/thumb/1")


@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_the_app_serves_a_run_with_garbage_values_without_a_500(base, tmp_path, kind):
    from fastapi.testclient import TestClient
    from test_scan_support import mnist_handle

    from mikata.server import create_app

    damage, _, shown = GARBAGE[kind]
    run = _damaged_copy(base, tmp_path, damage)
    app = create_app(run, token=TOKEN, port=8765, handle=mnist_handle())
    c = TestClient(app, base_url="http://127.0.0.1:8765", raise_server_exceptions=False)
    assert c.get(f"/?token={TOKEN}").status_code == 200
    for page in PAGES:
        r = c.get(page, headers={"sec-fetch-site": "same-origin"})
        assert r.status_code == 200, (page, r.status_code, r.text[:300])
        if page.startswith("/map/"):
            assert r.content[:4] == b"\x89PNG"
    if shown:
        text = c.get("/image/1").text
        assert f"This row's stored {shown}" in text and "damaged" in text


def test_a_garbage_cached_map_is_computed_again_and_replaced(base, tmp_path):
    from mikata.runs.store import RunStore

    run = _damaged_copy(base, tmp_path, GARBAGE["cached map garbage"][0])
    with RunStore.open(run, annotate=True) as s:
        assert s.get_map(1, "gradcam", 3) is None  # a miss, not a crash
        s.put_map(1, "gradcam", 3, "", np.ones((28, 28)), 0.1)
        assert s.get_map(1, "gradcam", 3).shape == (28, 28)
        assert s.damaged_map_count() == 0


# ------------------------------------------------------------------------------------------------ merge
@pytest.fixture(scope="module")
def shards(base) -> list[Path]:
    return split_run(base / "run", base / "shards", 2)


def _shard_copies(shards: list[Path], tmp_path: Path) -> list[Path]:
    out = []
    for s in shards:
        shutil.copytree(s, tmp_path / s.name)
        _settle(tmp_path / s.name)
        out.append(tmp_path / s.name)
    return out


def _tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _drop_kind(run: Path, kind: str) -> None:
    with sqlite3.connect(run / "run.sqlite") as con:
        dims = json.loads(con.execute("SELECT value FROM meta WHERE key='dims'").fetchone()[0])
        dims.pop(kind)
        con.execute("UPDATE meta SET value=? WHERE key='dims'", (json.dumps(dims),))
    (run / f"{kind}.f16").unlink()


SHARD_DAMAGE = {
    "a vector file missing": (lambda r: (r / "channels.f16").unlink(), "channels.f16 is missing"),
    "a vector kind missing": (lambda r: _drop_kind(r, "channels"),
                              "stores the vectors ['embed', 'probs', 'stats', 'thumbs'] but"),
    "a vector file truncated": (lambda r: __import__("os").truncate(r / "embed.f16", 512), "embed.f16 holds 1 vectors"),
    "a row past its vectors": (lambda r: _sql(r, "UPDATE images SET vec_row=500 WHERE id=(SELECT MAX(id) FROM images)"),
                               "1 scanned rows point outside the"),
    "a row without a vector": (lambda r: _sql(r, "UPDATE images SET vec_row=NULL WHERE id=(SELECT MAX(id) FROM images)"),
                               "1 scanned rows point outside the"),
    "rows sharing a vector": (lambda r: _sql(r, "UPDATE images SET vec_row=0 WHERE id=(SELECT MAX(id) FROM images)"),
                              "1 rows share another row's vector"),
    "garbage top-k": (lambda r: _sql(r, "UPDATE images SET topk='nonsense' WHERE id=(SELECT MAX(id) FROM images)"),
                      "top-k list that is not"),
    "NaN probabilities": (lambda r: _vectors(r, "probs", slice(0, 1), np.nan), "1 of the 10 probs vectors hold NaN"),
    "probs.f16 a directory": (lambda r: _dir_instead(r, "probs.f16"), "probs.f16 is not a regular file"),
    "database not SQLite": (lambda r: (r / "run.sqlite").write_text("hello"), "run.sqlite"),
}


@pytest.mark.parametrize("kind", sorted(SHARD_DAMAGE))
@pytest.mark.parametrize("target_exists", [False, True], ids=["new-target", "existing-target"])
def test_merge_refuses_a_damaged_shard_before_writing_anything(base, shards, tmp_path, capsys, kind, target_exists):
    damage, said = SHARD_DAMAGE[kind]
    first, second = _shard_copies(shards, tmp_path)
    damage(second)
    target = tmp_path / "merged"
    if target_exists:
        merge_runs(target, [base / "shards" / "shard0"])
        _settle(target)
    before = _tree_digest(target) if target_exists else None
    rc, out, err = _cli(capsys, "merge", str(target), str(first), str(second))
    assert rc == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and said in lines[0] and str(second) in lines[0], err
    assert "Traceback" not in err
    if target_exists:
        assert _tree_digest(target) == before  # the target is untouched
        assert f"nothing was written to {target}" in lines[0] or "scan the shards with one setup" in lines[0]
    else:
        assert not target.exists()


def test_merge_of_intact_shards_still_works(base, shards, tmp_path):
    target = tmp_path / "merged"
    s = merge_runs(target, shards)
    assert s.rows == 20 and s.added == 20
    from mikata.runs.integrity import check_run

    assert check_run(target).ok


# ------------------------------------------------------------------------------------- the value readers
def test_decode_map_against_numpy_and_refusals():
    m = np.arange(12, dtype=np.float16).reshape(3, 4)
    np.testing.assert_array_equal(decode_map(m.tobytes(), (3, 4)), m.astype(np.float32))
    assert decode_map(m.tobytes(), (4, 4)) is None and decode_map(m.tobytes(), None) is None
    assert decode_map(b"abc", (1, 1)) is None and decode_map("text", (3, 4)) is None
    assert decode_map(np.full((3, 4), np.nan, np.float16).tobytes(), (3, 4)) is None
    assert decode_map(m.tobytes(), (0, 24)) is None and decode_map(m.tobytes(), (-3, -4)) is None


@pytest.mark.parametrize("text, expected", [
    ("[[1, 0.5], [0, 0.25]]", [[1, 0.5], [0, 0.25]]), ("[]", []), (None, []), ("", []),
    ("[[1, 0.5]", None), ("{}", None), ("[[true, 0.5]]", None), ("[[1, 1.5]]", None), ("[[1, NaN]]", None),
    ("[[1, Infinity]]", None), ("[[-1, 0.5]]", None), ("[[1, 0.5, 2]]", None), ("[1, 0.5]", None),
    ('[["1", 0.5]]', None), ("[" * 5000 + "]" * 5000, None), (b"[[1, 0.5]]", None),
])
def test_parse_topk(text, expected):
    assert parse_topk(text) == expected


@pytest.mark.parametrize("value, expected", [(0.25, 0.25), (0, 0.0), (1, 1.0), (None, None), ("0.5", None),
                                             (float("nan"), None), (float("inf"), None), (-0.1, None),
                                             (1.01, None), (True, None)])
def test_as_probability(value, expected):
    assert as_probability(value) == expected


def test_merge_refusal_names_the_first_problem_and_the_count(base, shards, tmp_path):
    first, second = _shard_copies(shards, tmp_path)
    _sql(second, "UPDATE images SET topk='x', pred_prob=NULL WHERE id=(SELECT MAX(id) FROM images)")
    with pytest.raises(RunStoreError, match=r"is damaged: .* \(and 1 more\); nothing was written to"):
        merge_runs(tmp_path / "m", [first, second])


@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_the_report_is_written_for_a_run_with_garbage_values(base, tmp_path, kind):
    from test_scan_support import mnist_handle

    from mikata.report import write_report

    run = _damaged_copy(base, tmp_path, GARBAGE[kind][0])
    r = write_report(run, tmp_path / "r.html", handle=mnist_handle(), methods=["gradcam"], workers=1)
    assert r.maps > 0 and (tmp_path / "r.html").stat().st_size > 0


@pytest.mark.parametrize("column", ["pred", "label"])
def test_a_row_without_a_prediction_or_label_is_named_and_refused_in_one_line(base, tmp_path, capsys, column):
    run = _damaged_copy(base, tmp_path, lambda r: _sql(r, f"UPDATE images SET {column}=NULL WHERE id=3"))
    rc, out, _ = _cli(capsys, "check", str(run), "--json")
    problems = json.loads(out)["problems"]
    assert rc == 1 and any(p["severity"] == "damaged" for p in problems), problems
    if column == "pred":
        assert any("1 scanned rows have no prediction" in p["what"] for p in problems), problems
    rc, out, err = _cli(capsys, "audit", str(run))
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "mikata check" in err
