"""The overview of a run is cached per run version: same numbers as a rebuild, incremental on append."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from mikata.analysis import overview_cache
from mikata.analysis.audit import class_like, confident_errors, label_issues, ranked_per_class
from mikata.runs.data import load_run
from mikata.analysis.overview import overview
from mikata.runs.store import Row, RunStore
from test_scan_support import planted_run


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return planted_run(tmp_path_factory.mktemp("planted"))


def _same(a, b) -> None:
    assert a.version == b.version and a.accuracy == b.accuracy and a.top5_accuracy == b.top5_accuracy
    assert (a.confusion == b.confusion).all() and a.label_issues == b.label_issues
    assert [(c.most_class_like, c.least_class_like, c.confident_errors) for c in a.classes] == \
        [(c.most_class_like, c.least_class_like, c.confident_errors) for c in b.classes]
    assert (a.data.ids == b.data.ids).all() and list(a.data.paths) == list(b.data.paths)
    assert (a.data.probs == b.data.probs).all() and (a.data.splits == b.data.splits).all()


def _copy(planted, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(planted["run"], run)
    overview_cache.clear(run)
    return run


def test_cached_overview_equals_a_rebuild_and_is_used(planted, tmp_path, monkeypatch):
    run = _copy(planted, tmp_path)
    first = overview(run, top_issues=None)
    assert (run / "cache").is_dir()
    calls = []
    real = overview_cache.label_issue_ranking
    monkeypatch.setattr(overview_cache, "label_issue_ranking", lambda d: calls.append(1) or real(d))
    again = overview(run, top_issues=None)
    assert calls == []  # the ranking came from the cache
    _same(first, again)
    d = load_run(run)  # the uncached reader agrees
    assert label_issues(d) == first.label_issues
    for c in first.present:  # one sort for all classes = the per-class functions
        most, least = class_like(d, c, 3)
        view = next(v for v in first.classes if v.index == c)
        assert view.most_class_like == d.ids[most].tolist() and view.least_class_like == d.ids[least].tolist()
        assert view.confident_errors == d.ids[confident_errors(d, c, 3)].tolist()
    assert ranked_per_class(d, [], 3) == []


def test_appended_rows_extend_the_cache_and_replaced_rows_rebuild_it(planted, tmp_path):
    run = _copy(planted, tmp_path)
    overview(run)  # cache at this version
    with RunStore.open(run) as store:
        vecs = {k: np.asarray(store.vectors(k)[:5]) for k in store.dims()}  # every kind the run has
        old = store.rows(status="ok", columns=("path", "label", "pred", "pred_prob", "label_prob", "split"),
                         tuples=True)[:5]
    writer = RunStore.create_or_resume(run, RunStore.open(run).manifest)
    try:  # five more rows (copies of real ones under new paths): only these are read on the next overview
        writer.append([Row(p + ".copy.png", None, 1, 1, y, s, "ok", None, pr, pp, lp) for p, y, pr, pp, lp, s in old],
                      vecs, replace=False)
    finally:
        writer.close()
    grown = overview(run, top_issues=None)
    shutil.rmtree(run / "cache")
    _same(grown, overview(run, top_issues=None))
    assert len(grown.data) == len(planted["paths"]) + 5
    writer = RunStore.create_or_resume(run, RunStore.open(run).manifest)
    try:  # the same path again (a changed file): its old row goes away, the cache cannot be extended
        writer.append([Row(old[0][0], None, 2, 2, old[0][1], old[0][5], "ok", None, 0, 0.5, 0.5)],
                      {k: v[:1] for k, v in vecs.items()})
    finally:
        writer.close()
    replaced = overview(run, top_issues=None)
    shutil.rmtree(run / "cache")
    _same(replaced, overview(run, top_issues=None))


def test_a_damaged_or_foreign_cache_is_rebuilt(planted, tmp_path):
    run = _copy(planted, tmp_path)
    good = overview(run)
    for damage in (b"not a numpy file", None):  # None: the file cut in half (a zip without its directory)
        for f in (run / "cache").glob("*.npz"):
            f.write_bytes(damage if damage is not None else f.read_bytes()[: f.stat().st_size // 2])
        _same(good, overview(run))
    for f in (run / "cache").glob("*.npz"):  # well-formed but wrong: rows that point past the vectors
        with np.load(f) as z:
            arrays = {k: z[k] for k in z.files}
        arrays["vec_rows"] = arrays["vec_rows"] + 10**6
        np.savez(f, **arrays)
    _same(good, overview(run))
    assert overview_cache._path(run, None) != overview_cache._path(run, "test")
