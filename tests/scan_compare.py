"""Compare two runs row by row (by path) and vector by vector: the check that a Ray scan, a merge of
shards or a resumed scan wrote the store one local scan writes.

Every column and vector must be equal, floats up to the noise of float32 arithmetic: the same image
in another batch (a resumed or re-sharded scan groups images differently) may come out of the
network a few float32 ulps apart, which moves a stored float16 by at most one ulp.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mikata.runs.store import RunStore

ROW_RTOL = 1e-5                 # float64 columns computed in float32 (probabilities)
VEC_RTOL, VEC_ATOL = 2e-3, 1e-4  # float16 vectors and maps: one ulp is ~1e-3 of the value


def run_contents(run: Path) -> dict[str, tuple]:
    """path -> (row without id/vec_row, its vectors, its Grad-CAM); vectors and maps as arrays."""
    out = {}
    with RunStore.open(run) as store:
        vecs = {k: np.asarray(store.vectors(k)) for k in sorted(store.dims())}
        assert store.committed_vectors() == store.count("ok")  # one vector row per ok row, none orphaned
        for row in store.rows():
            cam = store.image(row["id"], cam=True)["cam"]
            v = row.pop("vec_row")
            row.pop("id")
            out[row["path"]] = (tuple(sorted(row.items(), key=lambda kv: kv[0])),
                                tuple(vecs[k][v] for k in vecs) if v is not None else None, cam)
    return out


def _same_value(a, b, exact: bool = False) -> bool:
    if isinstance(a, float) and isinstance(b, float) and not exact:
        return bool(np.isclose(a, b, rtol=ROW_RTOL, atol=0.0))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_value(x, y, exact) for x, y in zip(a, b))
    return a == b


def _same_array(a, b, exact: bool = False) -> bool:
    if a is None or b is None:
        return a is None and b is None
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if np.issubdtype(a.dtype, np.floating) and not exact:
        return bool(np.allclose(a.astype(np.float64), b.astype(np.float64), rtol=VEC_RTOL, atol=VEC_ATOL))
    return bool(np.array_equal(a, b))


def same_row(a: tuple, b: tuple, exact: bool = False) -> bool:
    """Two ``run_contents`` entries hold the same row: floats within the noise above, or bit for bit."""
    (row_a, vec_a, cam_a), (row_b, vec_b, cam_b) = a, b
    if [k for k, _ in row_a] != [k for k, _ in row_b] or \
            not all(_same_value(x, y, exact) for (_, x), (_, y) in zip(row_a, row_b)):
        return False
    if (vec_a is None) != (vec_b is None) or (vec_a is not None and (
            len(vec_a) != len(vec_b) or not all(_same_array(x, y, exact) for x, y in zip(vec_a, vec_b)))):
        return False
    return _same_array(cam_a, cam_b, exact)


def assert_same_store(a: Path, b: Path) -> None:
    ca, cb = run_contents(a), run_contents(b)
    assert sorted(ca) == sorted(cb), set(ca) ^ set(cb)
    diff = [p for p in ca if not same_row(ca[p], cb[p])]
    assert not diff, f"{len(diff)} rows differ, e.g. {diff[0]}: {ca[diff[0]][0]} != {cb[diff[0]][0]}"


SCORE_ATOL = 1e-4  # issue scores from vectors that may differ by one float16 ulp (see above)


def issue_scores(run: Path) -> dict[str, dict[str, float]]:
    """path -> {``TYPE_score``: value} of every issue type ``find_issues`` scores in ``run``."""
    from mikata.analysis.issues import find_issues

    found = find_issues(run)
    cols = {k: v for k, v in found.columns().items() if k.endswith("_score")}
    paths = list(found.data.paths)
    return {p: {k: float(v[i]) for k, v in cols.items()} for i, p in enumerate(paths)}


def assert_same_scores(a: Path, b: Path) -> None:
    """Every image's every issue score is the same in both runs (by path), whatever order their rows are in."""
    sa, sb = issue_scores(a), issue_scores(b)
    assert sorted(sa) == sorted(sb)
    assert {"outlier_score", "underperforming_group_score"} <= set(next(iter(sa.values())))
    worst = {k: max(abs(sa[p][k] - sb[p][k]) for p in sa) for k in next(iter(sa.values()))}
    assert all(v <= SCORE_ATOL for v in worst.values()), {k: v for k, v in worst.items() if v > SCORE_ATOL}
