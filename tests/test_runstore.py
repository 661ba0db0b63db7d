"""RunStore: SQLite is the commit point for the float16 vector files; readers see committed rows only."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from mikata.runs.store import Row, RunStore, RunStoreError

MANIFEST = {"format": "mikata-run/1", "identity": {"model_spec": "m", "weights_sha1": "abc", "layer": "x"}}


def _rows(start: int, n: int, skip_every: int = 0) -> list[Row]:
    return [Row(f"/d/{i}.png", f"h{i}", 10, 1, i % 3, status="skipped" if skip_every and i % skip_every == 0 else "ok",
                reason="bad" if skip_every and i % skip_every == 0 else None, pred=(i + 1) % 3, topk=[[0, 1.0]])
            for i in range(start, start + n)]


def _vecs(rows: list[Row], dim: int, seed: int) -> np.ndarray:
    n = sum(r.status == "ok" for r in rows)
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float16)


def test_vectors_follow_rows_and_skipped_rows_have_none(tmp_path):
    with RunStore.create_or_resume(tmp_path / "run", MANIFEST) as store:
        a, b = _rows(0, 10, skip_every=4), _rows(10, 7)
        va, vb = _vecs(a, 5, 0), _vecs(b, 5, 1)
        store.append(a, {"probs": va})
        store.append(b, {"probs": vb})
    with RunStore.open(tmp_path / "run") as store:
        assert store.count() == 17 and store.count("skipped") == 3
        assert store.committed_vectors() == 14
        mm = store.vectors("probs")
        got = {p: mm[v] for p, v in store.rows(status="ok", columns=("path", "vec_row"), tuples=True)}
        expected = dict(zip([r.path for r in a + b if r.status == "ok"], np.concatenate([va, vb])))
        assert got.keys() == expected.keys() and all((got[p] == expected[p]).all() for p in got)
        assert sum(r["vec_row"] is None for r in store.rows(status="skipped")) == 3


def test_bytes_appended_without_a_commit_are_truncated_on_resume(tmp_path):
    with RunStore.create_or_resume(tmp_path / "run", MANIFEST) as store:
        store.append(_rows(0, 4), {"probs": _vecs(_rows(0, 4), 3, 0)})
    with open(tmp_path / "run" / "probs.f16", "ab") as f:  # a batch that was killed before its commit
        f.write(np.ones((5, 3), np.float16).tobytes())
    with RunStore.create_or_resume(tmp_path / "run", MANIFEST) as store:
        assert (tmp_path / "run" / "probs.f16").stat().st_size == 4 * 3 * 2
        rows = _rows(4, 2)
        v = _vecs(rows, 3, 7)
        store.append(rows, {"probs": v})
        assert store.committed_vectors() == 6
        assert (store.vectors("probs")[4:] == v).all()


def test_a_different_identity_or_a_foreign_folder_is_refused(tmp_path):
    RunStore.create_or_resume(tmp_path / "run", MANIFEST).close()
    other = {**MANIFEST, "identity": {**MANIFEST["identity"], "weights_sha1": "def"}}
    with pytest.raises(RunStoreError, match="weights_sha1.*new --run"):
        RunStore.create_or_resume(tmp_path / "run", other)
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.txt").write_text("mine")
    with pytest.raises(RunStoreError, match="not a mikata run"):
        RunStore.create_or_resume(tmp_path / "stuff", MANIFEST)
    with pytest.raises(RunStoreError, match="mikata scan"):
        RunStore.open(tmp_path / "nothing")


READER = """
import sys
from mikata.runs.store import RunStore
with RunStore.open(sys.argv[1]) as s:
    print(s.count(), s.vectors("probs").shape[0])
"""


def test_another_process_reads_committed_rows_while_a_write_transaction_is_open(tmp_path):
    src = str(Path(__file__).resolve().parents[1] / "src")
    with RunStore.create_or_resume(tmp_path / "run", MANIFEST) as store:
        store.append(_rows(0, 6), {"probs": _vecs(_rows(0, 6), 4, 0)})
        # a writer in the middle of its next batch (a second connection: the store's own is not raw SQL's)
        with closing(sqlite3.connect(tmp_path / "run" / "run.sqlite", isolation_level=None)) as writer:
            writer.execute("BEGIN IMMEDIATE")
            writer.execute("DELETE FROM images")
            out = subprocess.run([sys.executable, "-c", READER, str(tmp_path / "run")], capture_output=True,
                                 text=True, timeout=60, env={"PYTHONPATH": src, "PATH": "/usr/bin:/bin"})
            writer.execute("ROLLBACK")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["6", "6"]
