"""Big-run reads: a comparison kept in run A while neither run changes (and rebuilt when one does), the
matcher's shortcut for one dataset scanned twice, and whole-run reads in id order off the primary key."""

from __future__ import annotations

import shutil
import sqlite3

import numpy as np
import pytest

from compare_support import predictions, probs_for, write_run
from mikata.analysis import compare as compare_mod
from mikata.analysis import compare_cache
from mikata.analysis.compare import compare
from mikata.analysis.compare_match import _match_by_lookup, match_rows
from mikata.runs.data import _fetch_row_tuples, fetch_coded_rows, fetch_rows
from mikata.runs.store import DamagedRunError, Row, RunStore

CLASSES = ["cat", "dog", "owl"]
N = 300


def _pair(tmp_path, seed: int = 0, name_b: str = "b"):
    """Two runs over the same N paths (splits train/val/test, a field), B right more often than A."""
    rng = np.random.default_rng(seed)
    paths = [f"/data/{CLASSES[i % 3]}/{i:04d}.png" for i in range(N)]
    labels = np.arange(N) % 3
    splits = [("train", "val", "test")[i % 3] for i in range(N)]
    fields = {"site": [("north", "south")[i % 2] for i in range(N)]}
    conf_a, conf_b = rng.uniform(0.4, 0.99, N), rng.uniform(0.4, 0.99, N)
    a = write_run(tmp_path / "a", CLASSES, paths, labels,
                  probs_for(predictions(labels, rng.random(N) < 0.7, 3), 3, conf_a), splits=splits, fields=fields)
    b = write_run(tmp_path / name_b, CLASSES, paths, labels,
                  probs_for(predictions(labels, rng.random(N) < 0.8, 3), 3, conf_b), splits=splits, fields=fields,
                  model="m2")
    return a, b


def _dict(c) -> dict:
    d = c.to_dict(flipped=10 ** 6, issues=False)
    d.pop("seconds")
    return d


@pytest.fixture
def counted(monkeypatch):
    """How many times the matching and the metrics were computed (a cache hit computes neither)."""
    calls = {"match": 0, "metrics": 0}
    real_match = compare_mod.match_rows

    def match(*args):
        calls["match"] += 1
        return real_match(*args)

    def wrap(fn):
        def counted_fn(p, s):
            calls["metrics"] += 1
            return fn(p, s)
        return counted_fn

    monkeypatch.setattr(compare_mod, "match_rows", match)
    monkeypatch.setattr(compare_mod, "METRICS", [wrap(f) for f in compare_mod.METRICS])
    return calls


def _append(run, path: str, label: int, probs) -> None:
    probs = np.asarray([probs], np.float32)
    pred = int(probs[0].argmax())
    with RunStore.create_or_resume(run, RunStore.open(run).manifest) as store:
        store.append([Row(path, f"sha-{path}", 1, 1, label, "test", "ok", None, pred, float(probs[0, pred]),
                          float(probs[0, label]), [[pred, float(probs[0, pred])]])],
                     {"probs": probs.astype(np.float16)}, replace=False)


def test_a_stored_comparison_equals_a_rebuild_and_computes_nothing(tmp_path, counted):
    a, b = _pair(tmp_path)
    first = compare(a, b, replicates=200)
    assert counted == {"match": 1, "metrics": len(compare_mod.METRICS)}
    assert len(list((a / "cache").glob("compare-*.npz"))) == 1
    again = compare(a, b, replicates=200)
    assert counted == {"match": 1, "metrics": len(compare_mod.METRICS)}  # nothing recomputed
    fresh = compare(a, b, replicates=200, cache=False)
    assert _dict(first) == _dict(again) == _dict(fresh)
    assert np.array_equal(again.flipped_rows("broken"), fresh.flipped_rows("broken"))
    assert np.array_equal(again.paired.probs_b, fresh.paired.probs_b)
    # another split, other settings: other comparisons, each stored on its own and each right
    for kwargs in ({"split": "test"}, {"seed": 3}, {"confidence": 0.9}):
        assert _dict(compare(a, b, replicates=200, **kwargs)) == _dict(compare(a, b, replicates=200, cache=False,
                                                                               **kwargs))
    assert len(list((a / "cache").glob("compare-*.npz"))) == 4
    assert _dict(compare(a, b, replicates=200)) == _dict(fresh)  # the first one is still there and still right


@pytest.mark.parametrize("side", ["a", "b"])
def test_new_rows_in_either_run_rebuild_the_comparison(tmp_path, counted, side):
    a, b = _pair(tmp_path)
    before = compare(a, b, replicates=200)
    _append(a if side == "a" else b, "/data/cat/extra.png", 0, [0.1, 0.85, 0.05])  # an image only in that run
    after = compare(a, b, replicates=200)
    assert counted["match"] == 2
    assert _dict(after) == _dict(compare(a, b, replicates=200, cache=False))
    assert after.images != before.images  # the new image is counted (shared, or only in one run)


def test_a_temperature_written_or_cleared_rebuilds_the_comparison(tmp_path, counted):
    from mikata.analysis.temperature import calibrate_run, clear_temperature

    a, b = _pair(tmp_path)
    plain = compare(a, b, replicates=200)
    calibrate_run(b, split="val")
    scaled = compare(a, b, replicates=200)
    assert counted["match"] == 2
    assert _dict(scaled) == _dict(compare(a, b, replicates=200, cache=False))
    assert scaled.metric("ECE").b != plain.metric("ECE").b and any("temperature" in n for n in scaled.notes())
    clear_temperature(b)
    assert _dict(compare(a, b, replicates=200)) == _dict(plain)
    assert counted["match"] == 4  # the rebuild without cache above, then this one


def test_a_run_scanned_again_into_the_same_folder_is_another_run(tmp_path, counted):
    a, b = _pair(tmp_path)
    compare(a, b, replicates=200)
    shutil.rmtree(b)
    _, b2 = _pair(tmp_path / "other", seed=7)  # same paths and row count, other predictions
    shutil.copytree(b2, b)
    again = compare(a, b, replicates=200)
    assert counted["match"] == 2
    assert _dict(again) == _dict(compare(a, b, replicates=200, cache=False))


def test_a_damaged_or_linked_cache_file_is_a_miss(tmp_path, counted):
    a, b = _pair(tmp_path)
    good = _dict(compare(a, b, replicates=200))
    (path,) = (a / "cache").glob("compare-*.npz")
    path.write_bytes(b"not an npz")
    assert _dict(compare(a, b, replicates=200)) == good and counted["match"] == 2
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # cut in half: a zip without its directory
    assert _dict(compare(a, b, replicates=200)) == good and counted["match"] == 3
    elsewhere = tmp_path / "elsewhere.npz"
    shutil.copy(path, elsewhere)  # a valid file, but reached through a link: never read
    path.unlink()
    path.symlink_to(elsewhere)
    assert _dict(compare(a, b, replicates=200)) == good and counted["match"] == 4  # one more build: the link is never read


def test_nothing_is_stored_for_a_narrow_view_or_a_run_that_changed_while_read(tmp_path):
    from mikata.analysis.view import RunView

    a, b = _pair(tmp_path)
    compare(RunView(a, classes=["cat"]), RunView(b, classes=["cat"]), replicates=200)
    assert not list((a / "cache").glob("compare-*.npz"))
    va, vb = RunView(a), RunView(b)
    stale = compare_cache.stamp(va, vb)
    c = compare(va, vb, replicates=200, cache=False)
    _append(b, "/data/cat/late.png", 0, [0.9, 0.05, 0.05])
    rows = [compare_mod._row_dict(r) for r in c.rows]
    assert not compare_cache.save(va, RunView(b), (0, 200, 0.95, None), stale, c.matching, 0, rows)
    assert not list((a / "cache").glob("compare-*.npz"))


def test_the_same_path_list_shortcut_matches_as_the_lookup_does():
    rng = np.random.default_rng(5)
    for _ in range(300):
        n = int(rng.integers(0, 12))
        paths = [f"p{i}" for i in range(n)]
        pool = [None, "h1", "h2"]
        ha = [pool[k] if k < 3 else f"x{i}" for i, k in enumerate(rng.integers(0, 4, n))]
        hb = [pool[k] if k < 3 else f"x{i}" for i, k in enumerate(rng.integers(0, 4, n))]
        fast, slow = match_rows(paths, ha, list(paths), hb), _match_by_lookup(paths, ha, list(paths), hb)
        assert fast.rows_a.tolist() == slow.rows_a.tolist() and fast.rows_b.tolist() == slow.rows_b.tolist()
        assert (fast.by_hash, fast.changed, fast.only_a, fast.only_b) == \
            (slow.by_hash, slow.changed, slow.only_a, slow.only_b)
    m = match_rows(["a", "b", "c"], ["1", "2", None], ["a", "b", "c"], ["1", "9", "3"])
    assert m.rows_a.tolist() == [0, 2] and m.changed == 1 and m.only_a == m.only_b == 0


def _mixed_run(tmp_path):
    """Rows in three splits, with skipped rows between them."""
    run = tmp_path / "mixed"
    rng = np.random.default_rng(2)
    a, _ = _pair(tmp_path / "src")
    shutil.copytree(a, run)
    with RunStore.create_or_resume(run, RunStore.open(run).manifest) as store:
        store.append([Row(f"/data/bad/{i}.png", None, 1, 1, None, "", "skipped", "unreadable") for i in range(5)],
                     replace=False)
    for i in range(20):
        p = rng.dirichlet(np.ones(3))
        _append(run, f"/data/late/{i}.png", int(i % 3), p)
    return run


def test_whole_run_reads_equal_the_row_by_row_reader(tmp_path):
    run = _mixed_run(tmp_path)
    with RunStore.open(run) as store:
        for split, after in ((None, 0), ("test", 0), (None, 150), ("val", 200), ("nowhere", 0)):
            fast, slow = fetch_coded_rows(store, split, after), _fetch_row_tuples(store, split, after)
            assert fast[4] == slow[4]  # split names
            for x, y in zip(fast[:4] + fast[5:], slow[:4] + slow[5:]):
                assert x.dtype == np.int64 and np.array_equal(x, y)
        ids, labels, preds, splits, vec = fetch_rows(store)
        rows = store.rows(status="ok", columns=("id", "label", "pred", "split", "vec_row"), tuples=True)
        assert [tuple(r) for r in rows] == list(zip(ids.tolist(), labels.tolist(), preds.tolist(), splits.tolist(),
                                                    vec.tolist()))
    db = sqlite3.connect(run / "run.sqlite")
    db.execute("UPDATE images SET label=NULL WHERE id=(SELECT MIN(id) FROM images WHERE status='ok')")
    db.commit()
    db.close()
    with RunStore.open(run) as store, pytest.raises(DamagedRunError, match="without a label"):
        fetch_coded_rows(store)


def test_reads_by_id_and_in_id_order_never_walk_the_status_index(tmp_path):
    """Without statistics SQLite would take ``status='ok'`` to the ``(status, label, pred)`` index: a 1M-row
    run then sorted every row by id, and 120 paths by id cost a walk of every ok row (~1 s)."""
    run = _mixed_run(tmp_path)
    with RunStore.open(run) as store:
        seen: list[str] = []
        store.db.set_trace_callback(seen.append)
        store.paths([3, 5, 8, 13, 21], status="ok")
        store.rows(status="ok", columns=("id", "path", "hash"), tuples=True)
        store.rows(status="ok", split="test", after_id=10, tuples=True)
        store.row_codes("ok")
        store.db.set_trace_callback(None)
        queries = [q for q in seen if q.lstrip().upper().startswith("SELECT") and "status" in q]
        assert len(queries) >= 4
        for q in queries:
            plan = " ".join(str(r[-1]) for r in store.db.execute("EXPLAIN QUERY PLAN " + q))
            assert "images_confusion" not in plan and ("ORDER BY" not in q or "TEMP B-TREE" not in plan), (q, plan)
        assert store.paths([3, 5], status="ok") == store.paths([3, 5], status=None)
        skipped = [r[0] for r in store.rows(status="skipped", columns=("id",), tuples=True)]
        assert len(skipped) == 5 and store.paths(skipped, status="ok") == {}


@pytest.mark.parametrize("stored", ["float16", "float32"])
def test_the_ece_of_a_drawn_resample_equals_the_ece_of_those_rows(stored):
    """Grouping rows by confidence (few groups for float16 probabilities, one per row for float32) changes
    nothing: each resample's ECE is ``expected_calibration_error`` of the drawn rows."""
    from mikata.analysis.calibration import expected_calibration_error
    from mikata.analysis.paired import CalibrationBootstrap

    rng = np.random.default_rng(4)
    n, k = 700, 5
    probs = rng.dirichlet(np.ones(k) * 0.6, n).astype(stored).astype(np.float32)
    probs[:80] = probs[0]  # a block of tied rows
    labels = rng.integers(0, k, n)
    for bins in (1, 4, 15):
        cb = CalibrationBootstrap(probs, labels, bins)
        assert cb.ece() == pytest.approx(expected_calibration_error(probs, labels, bins), rel=1e-9, abs=1e-12)
        for _ in range(4):
            idx = rng.integers(0, n, n)
            assert cb.ece_of_draw(idx) == pytest.approx(expected_calibration_error(probs[idx], labels[idx], bins),
                                                        rel=1e-9, abs=1e-12)
