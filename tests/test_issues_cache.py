"""A run's dataset issues kept on disk: a stored result equals a fresh scoring and scores nothing, and it is
rebuilt when the run gains rows, gets a temperature or is scanned again; the comparison's issue counts
read it."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from compare_support import manifest, predictions, probs_for
from mikata.analysis import issues as issues_mod
from mikata.analysis import issues_cache
from mikata.analysis.compare import compare
from mikata.analysis.issues import check_thresholds, score_issues
from mikata.analysis.view import RunView
from mikata.data.image_stats import STAT_COLUMNS, THUMB_SIDE
from mikata.runs.store import Row, RunStore

CLASSES = ["cat", "dog", "owl"]
N = 240


def _vectors(rng: np.random.Generator, n: int, start: int = 0) -> dict[str, np.ndarray]:
    """Embeddings with class structure and a few far-off rows, thumbnails with near copies, pixel stats."""
    labels = (np.arange(start, start + n) % 3)
    embed = rng.normal(size=(n, 8)) + 3 * np.eye(8)[labels]
    embed[::37] += 25  # outliers
    thumbs = rng.random((n, THUMB_SIDE * THUMB_SIDE))
    thumbs[1::20] = thumbs[0::20][: len(thumbs[1::20])] + 1e-4  # near duplicates of their neighbour
    stats = rng.uniform(0.2, 0.8, (n, len(STAT_COLUMNS)))
    stats[:, 0] = stats[:, 1] = 32
    stats[::29, 0] = 300  # odd size
    return {"embed": embed.astype(np.float16), "thumbs": thumbs.astype(np.float16), "stats": stats.astype(np.float16)}


def _run(path, seed: int = 0, model: str = "m", n: int = N):
    """``n`` ok rows with probabilities, embeddings, thumbnails, pixel stats, hashes and three splits."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    probs = probs_for(predictions(labels, rng.random(n) < 0.75, 3), 3, rng.uniform(0.4, 0.99, n)).astype(np.float32)
    with RunStore.create_or_resume(path, manifest(CLASSES, model)) as store:
        _append(store, rng, 0, n, probs)
    return path


def _append(store: RunStore, rng: np.random.Generator, start: int, n: int, probs: np.ndarray) -> None:
    labels = np.arange(start, start + n) % 3
    preds = probs.argmax(1)
    rows = [Row(f"/data/{CLASSES[y]}/{start + i:04d}.png", f"sha-{(start + i) // 2 if i % 50 == 0 else start + i}",
                1, 1, int(y), ("train", "val", "test")[(start + i) % 3], "ok", None, int(p), float(pb[p]),
                float(pb[y]), [[int(p), float(pb[p])]])
            for i, (y, p, pb) in enumerate(zip(labels, preds, probs))]
    store.append(rows, {"probs": probs.astype(np.float16), **_vectors(rng, n, start)}, replace=False)


def _same(x, y) -> None:
    assert list(x.types) == list(y.types)
    for name in x.types:
        a, b = x.types[name], y.types[name]
        assert np.array_equal(a.score, b.score) and a.score.dtype == b.score.dtype, name
        assert np.array_equal(a.flag, b.flag), name
        assert (a.order is None) == (b.order is None) and (a.order is None or np.array_equal(a.order, b.order)), name
        assert (a.threshold, a.description) == (b.threshold, b.description)
    assert x.pairs == y.pairs and x.groups == y.groups and x.notes == y.notes
    assert np.array_equal(x.data.ids, y.data.ids)


@pytest.fixture
def scored(monkeypatch):
    """How many times the issues were scored (a stored result scores nothing)."""
    calls = []
    real = issues_mod.score_issues

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(issues_mod, "score_issues", counting)
    return calls


def _fresh(run) -> "RunView":
    return RunView(run)


def test_stored_issues_equal_a_fresh_scoring_and_score_nothing(tmp_path, scored):
    run = _run(tmp_path / "a")
    first = _fresh(run).issues()
    assert len(scored) == 1 and issues_cache.path_for(run).is_file()
    assert first.pairs and first.groups and first.types["outlier"].flag.any()  # the parts worth storing are there
    assert first.types["label"].order is not None and first.types["near_duplicate"].flag.any()
    again = _fresh(run).issues()
    assert len(scored) == 1  # read back, not scored
    _same(again, first)
    with RunStore.open(run) as store:
        with store.snapshot():
            from mikata.analysis.overview_cache import run_data
            whole = run_data(store).data
    _same(again, score_issues(whole, check_thresholds(None)))  # an independent scoring of the same rows
    test = RunView(run, split="test").issues()  # a split's view selects from the stored whole run
    _same(test, first.select(np.flatnonzero(first.data.splits == "test")))
    assert len(scored) == 1


def test_new_rows_rebuild_the_stored_issues(tmp_path, scored):
    run = _run(tmp_path / "a")
    _fresh(run).issues()
    rng = np.random.default_rng(5)
    probs = probs_for(np.arange(30) % 3, 3, 0.9).astype(np.float32)
    with RunStore.create_or_resume(run, RunStore.open(run).manifest) as store:
        _append(store, rng, N, 30, probs)
    got = _fresh(run).issues()
    assert len(scored) == 2 and len(got.data) == N + 30
    issues_cache.path_for(run).unlink()
    _same(got, _fresh(run).issues())  # equal to scoring with nothing stored
    assert len(scored) == 3
    _same(got, _fresh(run).issues())
    assert len(scored) == 3


def test_a_temperature_or_a_rescan_into_the_same_folder_is_a_miss(tmp_path, scored):
    from mikata.analysis.temperature import calibrate_run, clear_temperature

    run = _run(tmp_path / "a")
    plain = _fresh(run).issues()
    calibrate_run(run, "val")
    hot = _fresh(run).issues()
    assert len(scored) == 2
    issues_cache.path_for(run).unlink()
    _same(hot, _fresh(run).issues())
    clear_temperature(run)
    _same(plain, _fresh(run).issues())
    assert len(scored) == 4
    kept = tmp_path / "kept.npz"
    shutil.copy(issues_cache.path_for(run), kept)
    shutil.rmtree(run)
    _run(run, seed=0)  # the same rows again, but another database
    issues_cache.path_for(run).parent.mkdir()
    shutil.copy(kept, issues_cache.path_for(run))
    _fresh(run).issues()
    assert len(scored) == 5


def test_a_damaged_or_linked_file_is_a_miss_and_other_thresholds_store_nothing(tmp_path, scored):
    run = _run(tmp_path / "a")
    first = _fresh(run).issues()
    path = issues_cache.path_for(run)
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])
    _same(_fresh(run).issues(), first)
    assert len(scored) == 2 and path.read_bytes() != good[: len(good) // 2]  # rebuilt and stored again
    elsewhere = tmp_path / "elsewhere.npz"
    path.rename(elsewhere)
    path.symlink_to(elsewhere)
    _same(_fresh(run).issues(), first)
    assert len(scored) == 3
    path.unlink()
    strict = _fresh(run).issues({"outlier": 0.9})
    assert not path.exists() and strict.types["outlier"].flag.sum() >= first.types["outlier"].flag.sum()
    assert not issues_cache.save(_fresh(run), {"format": -1}, first)  # a stale stamp stores nothing
    assert not path.exists()


def test_the_comparison_reads_each_runs_stored_issues(tmp_path, scored):
    a, b = _run(tmp_path / "a"), _run(tmp_path / "b", seed=1, model="m2")
    counts = compare(a, b, replicates=50).issue_counts()
    assert len(scored) == 2 and issues_cache.path_for(a).is_file() and issues_cache.path_for(b).is_file()
    again = compare(a, b, replicates=50).issue_counts()
    assert len(scored) == 2 and again == counts
    found_a, found_b = _fresh(a).issues(), _fresh(b).issues()
    for row in counts:  # every image is shared: each count is the run's own flag count
        assert row["a"] == int(found_a.types[row["type"]].flag.sum())
        assert row["b"] == int(found_b.types[row["type"]].flag.sum())


def test_a_vector_file_rewritten_in_place_is_a_miss(tmp_path, scored):
    run = _run(tmp_path / "a")
    first = _fresh(run).issues()
    embed = run / "embed.f16"
    data = np.fromfile(embed, np.float16)
    data[: len(data) // 2] *= -1  # other embeddings, same size, same rows
    data.tofile(embed)
    got = _fresh(run).issues()
    assert len(scored) == 2
    assert not np.array_equal(got.types["outlier"].score, first.types["outlier"].score)
