"""Issue 17, class 3: one run, one writer. A second writer is refused naming the first's PID, a lock left
by a killed process is recovered, and the vector offset is read inside the committing transaction."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from hostile_support import SRC, cli_env, mikata_cmd
from mikata.runs.lock import LOCK_NAME, RunLock, RunLockedError
from mikata.runs.store import Row, RunStore

MANIFEST = {"format": "mikata-run/1", "identity": {"model_spec": "x", "weights_sha1": "0" * 40, "classes": ["a", "b"]}}
HOLD = """
import sys, time
sys.path.insert(0, {src!r})
from mikata.runs.lock import RunLock
lock = RunLock.acquire(sys.argv[1])
print("locked", flush=True)
time.sleep(60)
"""


def _rows(start: int, n: int) -> list[Row]:
    return [Row(f"/d/{i:05d}.png", f"h{i}", 1, 1, i % 2, pred=i % 2, pred_prob=1.0, label_prob=1.0, topk=[[0, 1.0]])
            for i in range(start, start + n)]


def _vecs(start: int, n: int) -> dict[str, np.ndarray]:
    return {"probs": np.arange(start, start + n, dtype=np.float32)[:, None].repeat(2, 1)}  # row i holds (i, i)


def test_a_second_writer_in_the_same_process_is_refused_until_the_first_closes(tmp_path):
    first = RunStore.create_or_resume(tmp_path / "run", MANIFEST)
    with pytest.raises(RunLockedError, match=rf"is being written by PID {os.getpid()}"):
        RunStore.create_or_resume(tmp_path / "run", MANIFEST)
    with RunStore.open(tmp_path / "run") as reader:  # readers never wait for the lock
        assert reader.count() == 0
    first.close()
    RunStore.create_or_resume(tmp_path / "run", MANIFEST).close()


def test_a_lock_held_by_another_process_names_it_and_is_recovered_after_kill_9(tmp_path):
    run = tmp_path / "run"
    RunStore.create_or_resume(run, MANIFEST).close()
    holder = subprocess.Popen([sys.executable, "-c", HOLD.format(src=str(SRC)), str(run)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match=rf"PID {holder.pid}\b"):
            RunStore.create_or_resume(run, MANIFEST)
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert (run / LOCK_NAME).read_text().strip() == str(holder.pid)  # the dead writer's PID is still there
    with RunStore.create_or_resume(run, MANIFEST) as store:  # ... and the lock is free: the kernel dropped it
        assert (run / LOCK_NAME).read_text().strip() == str(os.getpid())
        store.append(_rows(0, 2), _vecs(0, 2))


@pytest.mark.parametrize("content", [b"", b"999999999\n", b"garbage", b"\x00\xff" * 10, b"-1"])
def test_a_stale_lock_file_of_any_content_does_not_block(tmp_path, content):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / LOCK_NAME).write_bytes(content)  # an empty dir with only a stale lock is still "new"
    with RunStore.create_or_resume(tmp_path / "run", MANIFEST) as store:
        assert store.count() == 0


def test_a_refused_writer_leaves_the_lock_to_the_holder(tmp_path):
    with RunLock.acquire(tmp_path):
        for _ in range(3):
            with pytest.raises(RunLockedError):
                RunLock.acquire(tmp_path)
    with RunLock.acquire(tmp_path):
        pass


def test_concurrent_raw_writers_never_share_vector_rows(tmp_path):
    """Two writers that bypass the lock (the old failure): the offset read inside the transaction keeps
    every row pointing at its own vector."""
    RunStore.create_or_resume(tmp_path / "run", MANIFEST).close()
    stores = [RunStore(tmp_path / "run", readonly=False) for _ in range(2)]
    errors = []

    def write(k: int) -> None:
        try:
            for b in range(25):
                start = (k * 25 + b) * 4
                stores[k].append(_rows(start, 4), _vecs(start, 4), replace=False)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    assert not errors
    with RunStore.open(tmp_path / "run") as store:
        assert store.count() == 200 and store.committed_vectors() == 200
        probs = np.asarray(store.vectors("probs"), dtype=np.float32)
        for path, vec_row in store.db.execute("SELECT path, vec_row FROM images"):
            i = int(path.rsplit("/", 1)[1][:5])
            assert probs[vec_row, 0] == i  # this row's own vector
        assert sorted(r for (r,) in store.db.execute("SELECT vec_row FROM images")) == list(range(200))


def test_two_scans_into_one_run_one_refused_the_other_complete(tmp_path):
    from test_scan_support import digit_images, write_folder

    images, labels = digit_images(300)
    write_folder(tmp_path / "data", images, labels)
    args = ["scan", "test_scan_support:mnist_handle", str(tmp_path / "data"), "--run", str(tmp_path / "run"),
            "--batch-size", "4", "--workers", "0"]
    first = subprocess.Popen(mikata_cmd(*args), env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    lock = tmp_path / "run" / LOCK_NAME
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (lock.exists() and lock.read_text().strip()):
        time.sleep(0.02)
    second = subprocess.run(mikata_cmd(*args), env=cli_env(), capture_output=True, text=True, timeout=120)
    out, err = first.communicate(timeout=180)
    assert first.returncode == 0, err[-500:]
    if second.returncode != 0:  # it ran while the first was writing (the usual case)
        assert second.returncode == 2 and f"is being written by PID {first.pid}" in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
    with RunStore.open(tmp_path / "run") as store:
        assert store.count() == 300 and store.committed_vectors() == 300
        assert sorted(r for (r,) in store.db.execute("SELECT vec_row FROM images")) == list(range(300))
