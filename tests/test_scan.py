"""scan on the real MNIST CNN and real handwritten digits: stored values, bad files, resume, kill -9."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from mikata.runs.store import RunStore, RunStoreError
from mikata.scanning.scan import scan
from mikata.attribution.cam import gradcam as gradcam_from
from mikata.data.datasets import DatasetError
from cli_support import run_cli
from test_scan_support import digit_images, mnist_handle, planted_run, write_folder

SRC = Path(__file__).resolve().parents[1] / "src"
TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return planted_run(tmp_path_factory.mktemp("planted"))


def _rows(run: Path) -> dict[str, tuple]:
    """path -> (hash, label, pred, topk, status, reason, probs vector) for comparing runs."""
    with RunStore.open(run) as store:
        probs = np.asarray(store.vectors("probs"))
        out = {}
        for path, h, label, pred, topk, status, reason, vec in store.rows(
                columns=("path", "hash", "label", "pred", "topk", "status", "reason", "vec_row"), tuples=True):
            out[path] = (h, label, pred, topk, status, reason, None if vec is None else probs[vec].tobytes())
        return out


def test_stored_values_match_a_direct_forward(planted):
    handle, images = planted["handle"], planted["images"]
    with torch.inference_mode():
        probs = torch.softmax(handle.model(handle.preprocess(images)), 1).numpy()  # (N, 10)
    with RunStore.open(planted["run"]) as store:
        stored = np.asarray(store.vectors("probs"), np.float32)
        rows = store.rows(status="ok", columns=("path", "label", "pred", "vec_row", "topk", "hash"), tuples=True)
        # the model's vectors, and the pixel statistics and thumbnails of dataset issues (issue 20)
        assert store.dims() == {"probs": 10, "embed": 256, "channels": 128, "stats": 7, "thumbs": 256}
        assert store.manifest["identity"]["weights_sha1"] and store.manifest["versions"]["torch"]
    index = {p: i for i, p in enumerate(planted["paths"])}
    assert len(rows) == len(images)
    import hashlib

    for path, label, pred, vec, topk, digest in rows:
        i = index[path]
        assert label == planted["given"][i]
        assert pred == int(probs[i].argmax())
        np.testing.assert_allclose(stored[vec], probs[i], atol=2e-3)
        assert [c for c, _ in json.loads(topk)] == list(np.argsort(-probs[i], kind="stable")[:5])
        assert digest == hashlib.sha1(Path(path).read_bytes()).hexdigest()


def test_embedding_channels_and_gradcam_match_a_hand_computation(planted):
    handle = planted["handle"]
    assert all(p.requires_grad for p in handle.net.parameters()) and not handle.net.training  # left as it was
    x = handle.preprocess(planted["images"][:8])  # (8, 1, 28, 28)
    net = handle.net
    feats = net.conv_layers[:7](x)  # (8, 128, 7, 7) output of conv_layers.6
    feats.retain_grad()
    z = net.conv_layers[7:](feats).flatten(1)
    hidden = net.fc_layers[1](net.fc_layers[0](z))  # (8, 256) input of the last Linear
    logits = net.fc_layers[2](hidden)
    logits.gather(1, logits.argmax(1, keepdim=True)).sum().backward()
    cam = torch.relu((feats.grad.mean((2, 3), keepdim=True) * feats).sum(1)).detach()  # (8, 7, 7)
    with RunStore.open(planted["run"]) as store:
        rows = {p: (i, v) for i, p, v in store.rows(status="ok", columns=("id", "path", "vec_row"), tuples=True)}
        emb, ch = store.vectors("embed"), store.vectors("channels")
        for k in range(8):
            rid, vec = rows[planted["paths"][k]]
            np.testing.assert_allclose(emb[vec], hidden[k].detach().numpy(), rtol=2e-3, atol=2e-3)
            np.testing.assert_allclose(ch[vec], feats[k].detach().mean((1, 2)).numpy(), rtol=2e-3, atol=2e-3)
            np.testing.assert_allclose(store.cam(rid), cam[k].numpy(), rtol=3e-3, atol=1e-3)
    assert torch.allclose(gradcam_from(feats.detach(), feats.grad), cam)


def test_bad_files_are_recorded_with_their_reason_and_skipped(planted):
    summary = planted["summary"]
    reasons = dict(summary.skipped_files)
    assert set(reasons) == {str(p) for p in planted["bad"].values()}
    assert "empty" in reasons[str(planted["bad"]["zero"])]
    assert "not an image" in reasons[str(planted["bad"]["text"])]
    assert "truncated" in reasons[str(planted["bad"]["truncated"])]
    assert summary.computed == len(planted["paths"])
    with RunStore.open(planted["run"]) as store:
        assert dict(store.skipped()) == reasons


def test_rerun_computes_only_new_files_and_a_different_model_is_refused(tmp_path):
    images, labels = digit_images(60)
    write_folder(tmp_path / "data", images[:40], labels[:40])
    handle = mnist_handle()
    first = scan(handle, tmp_path / "data", tmp_path / "run", batch_size=16, workers=0, progress=False)
    assert (first.computed, first.reused) == (40, 0)
    before = _rows(tmp_path / "run")
    with RunStore.open(tmp_path / "run") as store:
        ids = dict(store.rows(columns=("path", "id"), tuples=True))
    for i, (img, y) in enumerate(zip(images[40:], labels[40:])):  # 20 new files
        p = tmp_path / "data" / str(int(y)) / f"new{i}.png"
        img.save(p)
    again = scan(handle, tmp_path / "data", tmp_path / "run", batch_size=16, workers=0, progress=False)
    assert (again.computed, again.reused) == (20, 40)
    after = _rows(tmp_path / "run")
    assert len(after) == 60 and all(after[p] == v for p, v in before.items())
    with RunStore.open(tmp_path / "run") as store:  # old rows untouched (a recomputed row gets a new id)
        assert all(dict(store.rows(columns=("path", "id"), tuples=True))[p] == i for p, i in ids.items())
    other = mnist_handle()
    with torch.no_grad():
        other.net.fc_layers[2].bias.add_(0.1)
    with pytest.raises(RunStoreError, match="new --run"):
        scan(other, tmp_path / "data", tmp_path / "run", workers=0, progress=False)


def test_class_mismatch_is_explained_and_a_class_map_fixes_it(tmp_path):
    images, labels = digit_images(20)
    write_folder(tmp_path / "data", images, labels)
    os.rename(tmp_path / "data" / "7", tmp_path / "data" / "seven")
    handle = mnist_handle()
    with pytest.raises(DatasetError, match="seven.*class mapping"):
        scan(handle, tmp_path / "data", tmp_path / "run", workers=0, progress=False)
    s = scan(handle, tmp_path / "data", tmp_path / "run", workers=0, progress=False, class_map={"seven": "7"})
    assert s.computed == 20
    with RunStore.open(tmp_path / "run") as store:
        assert {r["label"] for r in store.rows() if "seven" in r["path"]} == {7}


def _args(*args: str) -> list[str]:
    return ["-q", "scan", "test_scan_support:mnist_handle", *args]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "mikata", *_args(*args)]


def _env() -> dict:
    # One intra-op thread: on a loaded 2-core machine spinning OpenMP threads make a small CNN 10x slower.
    return {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{TESTS}", "OMP_NUM_THREADS": "1"}


@contextmanager
def _one_thread():
    """This process's torch on one thread, as the scan processes (``OMP_NUM_THREADS=1``): the same kernels,
    so the rows a scan computes here are bit for bit the rows a killed process committed."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def test_kill_9_mid_scan_then_resume_gives_exactly_the_rows_of_an_uninterrupted_scan(tmp_path, capsys):
    images, labels = digit_images(400)  # real handwritten digits
    write_folder(tmp_path / "data", images, labels)
    (tmp_path / "data" / "2" / "empty.png").write_bytes(b"")
    total = len(images) + 1
    common = [str(tmp_path / "data"), "--batch-size", "8", "--workers", "1"]
    proc = subprocess.Popen(_cli(*common, "--run", str(tmp_path / "killed")), env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    db = tmp_path / "killed" / "run.sqlite"
    committed = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if db.exists():
            try:
                with sqlite3.connect(db, timeout=5) as con:  # a reader while the scan writes
                    committed = con.execute("SELECT COUNT(*) FROM images").fetchone()[0]
            except sqlite3.OperationalError:  # tables not created yet
                committed = 0
            if committed >= 48:
                break
        time.sleep(0.02)
    assert proc.poll() is None, f"the scan ended before it could be killed: {proc.stderr.read().decode()[-500:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = _rows(tmp_path / "killed")
    assert 48 <= len(partial) < total
    with RunStore.open(tmp_path / "killed") as store:
        ids_before = dict(store.rows(columns=("path", "id"), tuples=True))
    resumed = subprocess.run(_cli(*common, "--run", str(tmp_path / "killed"), "--json"), env=_env(),
                             capture_output=True, text=True, timeout=120)
    # exit code 1: finished, with a skipped file (empty.png) recorded (issue 17's rule; 0 only when all is good)
    assert resumed.returncode == (1 if json.loads(resumed.stdout)["skipped"] else 0), resumed.stderr
    report = json.loads(resumed.stdout)
    assert report["reused"] == len(partial) and report["computed"] + len(report["skipped"]) == total - len(partial)
    with _one_thread():  # the uninterrupted reference: the same command in this process (no second start-up)
        fresh = run_cli(capsys, *_args(*common, "--run", str(tmp_path / "fresh")))
    assert fresh.returncode == 1 and "empty.png" in fresh.stderr, fresh.stderr
    a, b = _rows(tmp_path / "killed"), _rows(tmp_path / "fresh")
    assert len(a) == total and a == b  # every row exactly once, identical values
    with RunStore.open(tmp_path / "killed") as store:
        assert store.count() == total
        assert store.committed_vectors() == total - 1  # one vector row per decoded image, none duplicated
        ids_after = dict(store.rows(columns=("path", "id"), tuples=True))
    assert all(ids_after[p] == i for p, i in ids_before.items())  # committed rows were not recomputed


def _everything(run: Path) -> tuple[dict[str, tuple], int, int]:
    """path -> (every stored column but id and vec_row, vec_row, {vector kind: bytes}); committed vectors; scanned rows."""
    with RunStore.open(run) as store:
        vecs = {k: np.asarray(store.vectors(k)) for k in store.dims()}
        cols = ("path", "hash", "size", "mtime_ns", "label", "split", "status", "reason", "pred", "pred_prob",
                "label_prob", "topk", "vec_row")
        out = {}
        for path, *values, vec in store.rows(columns=cols, tuples=True):
            out[path] = (tuple(values), vec, None if vec is None else {k: v[vec].tobytes() for k, v in vecs.items()})
        return out, store.committed_vectors(), store.count("ok")


def _committed_rows(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as con:
            return con.execute("SELECT COUNT(*) FROM images").fetchone()[0]
    except sqlite3.OperationalError:  # tables not created yet
        return 0


class _CommitWatch:
    """The committed rows of a run's database, queried again only when its files changed: a poll is two
    stat calls while the scan process starts (imports, model load), not a SQLite connection."""

    def __init__(self, db: Path):
        self.files = (db, db.with_name(db.name + "-wal"))
        self.seen: tuple | None = None
        self.rows = 0

    def __call__(self) -> int:
        seen = tuple(_signature(p) for p in self.files)
        if seen != self.seen:
            self.seen, self.rows = seen, _committed_rows(self.files[0])
        return self.rows


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_size, st.st_mtime_ns


def test_kill_9_at_ten_seeded_random_points_then_resume_equals_an_uninterrupted_scan(tmp_path, capsys):
    """Fault injection: SIGKILL a scan at >= 10 seeded random points (a random row count, then a random
    delay of up to 50 ms, so the kill lands anywhere in the decode / forward / append / commit cycle),
    resuming each time; the finished run equals an uninterrupted one row by row and vector by vector."""
    rng = np.random.default_rng(1729)
    images, labels = digit_images(240)
    write_folder(tmp_path / "data", images, labels)
    (tmp_path / "data" / "3" / "empty.png").write_bytes(b"")  # a skipped row among them
    total = len(images) + 1
    common = [str(tmp_path / "data"), "--batch-size", "4", "--workers", "0"]
    run = tmp_path / "killed"
    watch = _CommitWatch(run / "run.sqlite")
    kills = 0
    for _ in range(40):
        if kills >= 10:
            break
        target = watch() + int(rng.integers(1, 16))
        delay = float(rng.uniform(0, 0.05))
        proc = subprocess.Popen(_cli(*common, "--run", str(run)), env=_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline and watch() < target:
            time.sleep(0.005)
        if proc.poll() is not None:  # it finished before the chosen point
            break
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
        rows, committed, ok = _everything(run)  # after every kill: the committed prefix is consistent
        assert committed == ok and sorted(r[1] for r in rows.values() if r[1] is not None) == list(range(ok))
    assert kills >= 10, f"only {kills} kills landed before the scan finished"
    # the resume and the uninterrupted reference: the same command in this process (the kills are what needs
    # fresh processes; test_kill_9_mid_scan resumes in a real one)
    with _one_thread():
        resumed = run_cli(capsys, *_args(*common, "--run", str(run), "--json"))
        assert resumed.returncode in (0, 1) and "Traceback" not in resumed.stderr, resumed.stderr[-500:]
        fresh = run_cli(capsys, *_args(*common, "--run", str(tmp_path / "fresh")))
    assert fresh.returncode == 1, fresh.stderr[-500:]  # 1: empty.png skipped, as the rule says
    a, ca, oka = _everything(run)
    b, cb, okb = _everything(tmp_path / "fresh")
    assert len(a) == total and set(a) == set(b)
    for path in b:  # row by row, vector by vector (vector rows differ only by commit order)
        (va, _, vecs_a), (vb, _, vecs_b) = a[path], b[path]
        assert va == vb, path
        assert vecs_a == vecs_b, path
    assert ca == oka == cb == okb == total - 1  # one vector row per decoded image, none lost or duplicated
