"""scan(engine="ray") on one local Ray cluster (2 CPUs, small object store, no dashboard), against a local scan.

One module-scoped cluster for every test here (starting Ray costs seconds, each scan's actors
several more: importing torch and mikata and unpickling the model). The data: real handwritten
digits and two files that cannot be decoded; the model: the real MNIST CNN.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

ray = pytest.importorskip("ray", reason="the [ray] extra is not installed")

from mikata.runs.store import RunStore  # noqa: E402
from mikata.scanning.ray_scan import PRELOAD  # noqa: E402
from mikata.scanning.scan import scan  # noqa: E402
from scan_compare import assert_same_scores, assert_same_store, run_contents, same_row  # noqa: E402
from test_scan_support import digit_images, mnist_handle, write_folder  # noqa: E402

SRC, TESTS = Path(__file__).resolve().parents[1] / "src", Path(__file__).resolve().parent
BATCH = 8


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    base = tmp_path_factory.mktemp("ray")
    images, labels = digit_images(240)
    write_folder(base / "data", images, labels)
    (base / "data" / "2" / "empty.png").write_bytes(b"")
    (base / "data" / "7" / "notes.png").write_text("not an image\n")
    handle = mnist_handle()
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    # as a scan's own local instance (ray_scan._connect): the worker processes Ray starts import torch and the
    # scan's modules as they start, here while this process scans the reference run
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 2**20, log_to_driver=False,
             configure_logging=False, _system_config={"preload_python_modules": list(PRELOAD)})
    try:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as each actor (1 CPU): the same kernels, so the same numbers to the bit
        try:
            scan(handle, base / "data", base / "local", batch_size=BATCH, workers=0, gradcam=True, progress=False)
        finally:
            torch.set_num_threads(threads)
        yield base, handle
    finally:
        ray.shutdown()


def test_ray_scan_equals_a_local_scan_row_by_row_and_vector_by_vector(cluster):
    base, handle = cluster
    s = scan(handle, base / "data", base / "ray", batch_size=BATCH, gradcam=True, progress=False, engine="ray",
             actors=2)
    assert (s.computed, s.skipped, s.reused) == (240, 2, 0)
    assert sorted(p.rsplit("/", 1)[1] for p, _ in s.skipped_files) == ["empty.png", "notes.png"]
    assert_same_store(base / "local", base / "ray")
    assert _ids_by_path(base / "ray") == _ids_by_path(base / "local")  # batches stored in order, as locally
    assert s.phases["batches (first submitted to last stored)"] > 0 and min(s.phases.values()) >= 0  # the split
    again = scan(handle, base / "data", base / "ray", batch_size=BATCH, gradcam=True, progress=False, engine="ray")
    assert (again.computed, again.reused) == (0, 242)  # nothing to do: no actor even starts


def _ids_by_path(run: Path) -> dict[str, int]:
    with RunStore.open(run) as store:
        return {row["path"]: row["id"] for row in store.rows()}


def _our_actor_pids() -> list[int]:
    """Processes of this test's cluster (descendants of this process) running a scan actor.

    (Ray's state API needs the dashboard, which this cluster does not start.)"""
    me, pids = os.getpid(), []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if not (d / "cmdline").read_bytes().startswith(b"ray::_ScanActor"):
                continue
            pid = int(d.name)
            while pid > 1 and pid != me:  # walk up: ours only
                pid = int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if pid == me:
                pids.append(int(d.name))
        except (OSError, ValueError, IndexError):
            continue
    return pids


def _kill_an_actor_when_alive(killed: list[int], stop: threading.Event) -> None:
    while not stop.is_set() and not killed:
        alive = _our_actor_pids()
        if alive:
            time.sleep(0.3)  # let it take work first
            os.kill(alive[0], signal.SIGKILL)
            killed.append(alive[0])
            return
        time.sleep(0.05)


def test_a_worker_killed_mid_job_still_gives_the_same_store(cluster):
    base, handle = cluster
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_an_actor_when_alive, args=(killed, stop), daemon=True)
    killer.start()
    try:
        s = scan(handle, base / "data", base / "lost-worker", batch_size=BATCH, gradcam=True, progress=False,
                 engine="ray", actors=1)
    finally:
        stop.set()
        killer.join(10)
    assert killed, "no actor was found to kill"
    assert s.computed + s.skipped == 242
    assert_same_store(base / "local", base / "lost-worker")


def test_rerun_after_a_killed_driver_computes_only_what_is_missing(cluster):
    base, handle = cluster
    run = base / "killed-driver"
    address = ray.get_runtime_context().gcs_address
    code = ("from mikata.scanning.scan import scan; from test_scan_support import mnist_handle; "
            f"scan(mnist_handle(), {str(base / 'data')!r}, {str(run)!r}, batch_size=2, gradcam=True, "
            f"progress=False, engine='ray', address={address!r}, actors=1)")
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{TESTS}", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    committed = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if (run / "run.sqlite").exists():
            try:
                with RunStore.open(run) as store:
                    committed = store.count()
            except Exception:  # noqa: BLE001 - tables not created yet
                committed = 0
            if committed >= 4:
                break
        time.sleep(0.01)
    assert proc.poll() is None, f"the driver ended before it was killed: {proc.stderr.read().decode()[-800:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # a healthy scan's driver (the actors were created and had stored batches) printed no Ray error line,
    # e.g. core_worker.cc's "constructor arguments in the object store and max_restarts > 0"
    err = proc.stderr.read().decode()
    assert not [line for line in err.splitlines() if " E " in line or "core_worker" in line or "ERROR" in line], err
    partial = run_contents(run)
    assert 4 <= len(partial) < 242
    s = scan(handle, base / "data", run, batch_size=BATCH, gradcam=True, progress=False, engine="ray", actors=1)
    assert s.reused == len(partial) and s.computed + s.skipped == 242 - len(partial)
    assert_same_store(base / "local", run)
    assert_same_scores(base / "local", run)  # every issue score a function of the images, not of the row order
    resumed = run_contents(run)
    assert all(same_row(resumed[p], v, exact=True) for p, v in partial.items())  # kept bit for bit
