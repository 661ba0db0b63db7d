"""--shard I/N + mikata merge: the shards of a real scan merge into the store one local scan writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mikata.runs.merge import merge_runs, parse_shard, shard_of
from mikata.runs.store import RunStore, RunStoreError
from mikata.scanning.scan import scan
from scan_compare import assert_same_store
from test_scan_support import digit_images, mnist_handle, write_folder

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp("shards")
    images, labels = digit_images(240)  # real handwritten digits
    write_folder(base / "data", images, labels)
    (base / "data" / "4" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    handle = mnist_handle()
    scan(handle, base / "data", base / "local", batch_size=16, workers=0, gradcam=True, progress=False)
    return base, handle


def test_shards_then_merge_equal_one_local_scan_and_a_second_merge_adds_nothing(data):
    base, handle = data
    parts = []
    for i in range(3):
        s = scan(handle, base / "data", base / f"part{i}", batch_size=16, workers=0, gradcam=True, progress=False,
                 shard=f"{i}/3")
        assert s.total in (80, 81)
        parts.append(base / f"part{i}")
    merged = merge_runs(base / "merged", parts)
    assert merged.added == merged.rows == 241 and merged.already == 0
    assert_same_store(base / "local", base / "merged")
    with RunStore.open(base / "local") as a, RunStore.open(base / "merged") as b:  # even the ids: same order
        assert a.rows(columns=("id", "path"), tuples=True) == b.rows(columns=("id", "path"), tuples=True)
        assert [r for r in a.skipped()] == [r for r in b.skipped()] and len(a.skipped()) == 1
    again = merge_runs(base / "merged", parts)  # an interrupted merge is rerun: nothing twice
    assert again.added == 0 and again.already == 241
    assert_same_store(base / "local", base / "merged")


def test_merge_cli_and_refusals(data, tmp_path):
    base, handle = data
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "mikata", "merge", str(tmp_path / "m"), str(base / "local"), "--json"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["rows"] == 241
    assert_same_store(base / "local", tmp_path / "m")
    other = tmp_path / "other"
    scan(handle, base / "data", other, batch_size=16, workers=0, gradcam=False, progress=False, shard="0/8")  # no Grad-CAM
    with pytest.raises(RunStoreError, match="another model or setup.*gradcam"):
        merge_runs(tmp_path / "m2", [base / "local", other])
    with pytest.raises(RunStoreError, match="target run itself"):
        merge_runs(base / "local", [base / "local"])
    for bad in ("3/3", "1/0", "a/b", "2"):
        with pytest.raises(RunStoreError, match="--shard"):
            parse_shard(bad)
    items = list(range(10))
    assert sum((shard_of(items, (i, 4)) for i in range(4)), []) == items


def test_engine_ray_without_the_extra_says_how_to_install_it_before_any_work(data, tmp_path, monkeypatch):
    from mikata.scanning.ray_scan import RayUnavailableError
    from mikata.errors import ChoiceError

    base, handle = data
    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed
    with pytest.raises(RayUnavailableError, match=r"pip install -c constraints.txt -e '\.\[ray\]'"):
        scan(handle, base / "data", tmp_path / "r", engine="ray", progress=False)
    assert not (tmp_path / "r").exists()
    with pytest.raises(ChoiceError, match="engine"):
        scan(handle, base / "data", tmp_path / "r", engine="spark", progress=False)


def test_scores_of_a_merge_in_another_shard_order_equal_a_local_scan(data, tmp_path):
    """Issue scores are a function of the set of rows: the shards merged 2, 0, 1 hold the same images under
    other row ids, and every outlier, group and other score of every image is the one-shot local scan's."""
    from scan_compare import assert_same_scores

    base, handle = data
    parts = []
    for i in range(3):
        part = base / f"part{i}"
        if not part.exists():
            scan(handle, base / "data", part, batch_size=16, workers=0, gradcam=True, progress=False, shard=f"{i}/3")
        parts.append(part)
    merge_runs(tmp_path / "reordered", [parts[2], parts[0], parts[1]])
    with RunStore.open(base / "local") as a, RunStore.open(tmp_path / "reordered") as b:
        ids_a = dict((p, i) for i, p in a.rows(columns=("id", "path"), tuples=True))
        ids_b = dict((p, i) for i, p in b.rows(columns=("id", "path"), tuples=True))
    assert sorted(ids_a) == sorted(ids_b) and ids_a != ids_b  # same images, rows in another order
    assert_same_scores(base / "local", tmp_path / "reordered")


def test_issue_scores_of_permuted_rows_are_the_same_scores_permuted(data):
    """The property under the merge test: scoring the rows of a run in any order gives each row the same
    scores, flags, groups and pairs, to the bit."""
    import numpy as np

    from mikata.runs.data import load_run, subset
    from mikata.analysis.issues import check_thresholds, score_issues

    base, _ = data
    d = load_run(base / "local")
    perm = np.random.default_rng(7).permutation(len(d))
    th = check_thresholds(None)
    plain, shuffled = score_issues(d, th), score_issues(subset(d, perm), th)
    assert set(plain.types) == set(shuffled.types) and "underperforming_group" in plain.types
    for name, t in plain.types.items():
        assert np.array_equal(t.score[perm], shuffled.types[name].score), name
        assert np.array_equal(t.flag[perm], shuffled.types[name].flag), name
    as_ids = lambda found: sorted(sorted(int(found.data.ids[r]) for r in g["rows"]) for g in found.groups)  # noqa: E731
    assert as_ids(plain) == as_ids(shuffled)
    pair_ids = lambda found: sorted(tuple(sorted((int(found.data.ids[i]), int(found.data.ids[j])))) + (round(s, 6),)  # noqa: E731
                                    for i, j, s, _, _ in found.pairs)
    assert pair_ids(plain) == pair_ids(shuffled)
