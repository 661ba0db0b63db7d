"""Compare two runs row by row (by path) and vector by vector: the check that a Ray scan, a merge of
shards or a resumed scan wrote exactly the store one local scan writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mikata.analysis.runstore import RunStore


def run_contents(run: Path) -> dict[str, tuple]:
    """path -> (row without id/vec_row, its vectors as bytes, its Grad-CAM as bytes)."""
    out = {}
    with RunStore.open(run) as store:
        vecs = {k: np.asarray(store.vectors(k)) for k in sorted(store.dims())}
        assert store.committed_vectors() == store.count("ok")  # one vector row per ok row, none orphaned
        for row in store.rows():
            cam = store.image(row["id"], cam=True)["cam"]
            v = row.pop("vec_row")
            row.pop("id")
            out[row["path"]] = (tuple(sorted(row.items(), key=lambda kv: kv[0])),
                                tuple(vecs[k][v].tobytes() for k in vecs) if v is not None else None,
                                None if cam is None else cam.tobytes())
    return out


def assert_same_store(a: Path, b: Path) -> None:
    ca, cb = run_contents(a), run_contents(b)
    assert sorted(ca) == sorted(cb), set(ca) ^ set(cb)
    diff = [p for p in ca if ca[p] != cb[p]]
    assert not diff, f"{len(diff)} rows differ, e.g. {diff[0]}: {ca[diff[0]]} != {cb[diff[0]]}"
