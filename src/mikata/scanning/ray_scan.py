"""``scan(..., engine="ray")``: the same scan on Ray Data — CPU tasks decode, an actor pool infers.

The file list still to scan (what the run does not hold yet, exactly as the local scan decides)
becomes a Ray dataset partitioned by batch, so its blocks spread over the cluster (one block of
thousands of small files would keep one actor busy and the rest idle). Then:

- **decode**: ``map_batches`` CPU tasks run mikata's own decoder (``scan_steps.decode_file``: sha1,
  decode, preprocess; a bad file becomes a recorded reason, never an error);
- **infer**: an actor pool (``--actors N``); each actor unpickles the model once, moves it to
  its GPU when ``--gpus-per-actor`` > 0, sets torch's threads to its CPUs (more threads than CPUs
  was 5x slower) and runs ``scan_steps.compute_columns`` — the local scan's own function — returning
  fixed-width columns (float16 vectors);
- **commit**: the driver is the run's only writer: ``scan_steps.commit`` appends each batch with the
  RunStore commit protocol, exactly once per file (a batch Ray re-executes after a lost worker is
  recognized by its indices and dropped). A killed driver loses only uncommitted batches; the
  same command again scans only what is missing.

Without ``address`` (and no ``RAY_ADDRESS``) a local Ray instance sized to the machine starts and
stops with the call; with one, the call joins that cluster (``auto``, ``ray://HOST:PORT``).
Actors reserve three quarters of the CPUs between them, so decode tasks always find a CPU (actors
holding every CPU starve the read tasks and the job hangs).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Callable, Sequence

import numpy as np
import torch

from mikata.runs.store import RunStore
from mikata.scanning.steps import VECTOR_COLUMNS
from mikata.data.datasets import Sample
from mikata.errors import MikataError
from mikata.models.handle import ModelHandle

log = logging.getLogger(__name__)
ACTOR_SHARE = 0.75  # of the cluster's CPUs reserved by the actor pool; the rest decodes
CONNECT_SECONDS = 2.0  # how long a cluster address may take to answer before the scan is refused


class RayUnavailableError(MikataError):
    """``engine="ray"`` without Ray Data installed, or a cluster that cannot be reached."""


def import_ray():
    """Ray and Ray Data, imported only for ``engine="ray"``; a clear message when the extra is missing."""
    # Ray's GCS client reads this once, when Ray loads: a wrong address then fails in seconds, not minutes
    os.environ.setdefault("RAY_gcs_rpc_server_connect_timeout_s", str(int(CONNECT_SECONDS)))
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise RayUnavailableError(
            f"--engine ray needs Ray Data ({e.name or e} is not installed): pip install -c constraints.txt -e '.[ray]' "
            "(or pip install 'ray[data]>=2.40' with torch pinned); without it, scan locally (--engine local)") from e
    return ray


def cluster_address(address: str | None) -> str | None:
    """The cluster a Ray scan joins (``address``, else ``RAY_ADDRESS``), checked to answer within a few seconds.

    Returns ``None`` when no address is given (a local instance starts), else the address to pass to
    ``ray.init``. Ray's own connect retries an unreachable GCS for minutes, printing a line every few
    seconds and ignoring Ctrl-C; here a TCP connect and, for a GCS address, one bounded GCS request
    come first, so a wrong address is one ``RayUnavailableError`` line before any model loads or any
    run directory is created.
    """
    given = address or os.environ.get("RAY_ADDRESS") or None
    if given is None or given == "local":
        return None
    where = "--address" if address else "RAY_ADDRESS"
    fix = (f"check {where} (`ray status` on the head node prints it) or leave it out to start a local Ray instance")
    if given.startswith("ray://"):  # Ray Client: a gRPC proxy on the head node
        _tcp_probe(given, given[len("ray://"):].split("/", 1)[0], fix)
        return given
    try:
        from ray._private.services import canonicalize_bootstrap_address

        resolved = canonicalize_bootstrap_address(given)  # "auto": the cluster this machine last started
    except Exception as e:  # noqa: BLE001 - ConnectionError, ValueError, ... from Ray's resolver
        raise RayUnavailableError(f"cannot join the Ray cluster at {given}: {_one_line(e)}; {fix}") from None
    if resolved is None:
        return None
    _tcp_probe(given, resolved, fix)
    _gcs_probe(given, resolved, fix)
    return resolved


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= 200 else text[:197] + "..."


def _tcp_probe(given: str, host_port: str, fix: str) -> None:
    import socket

    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise RayUnavailableError(f"Ray address {given!r} is not HOST:PORT (or auto, or ray://HOST:PORT); {fix}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_SECONDS).close()
    except OSError as e:
        raise RayUnavailableError(f"cannot join the Ray cluster at {given}: nothing answers at {host_port} "
                                  f"within {CONNECT_SECONDS:g} s ({e.strerror or e}); {fix}") from None


def _gcs_probe(given: str, host_port: str, fix: str) -> None:
    """One GCS request with a timeout; Ray's C++ client logs every retry to stderr, so stderr is muted meanwhile."""
    import sys

    try:
        from ray._raylet import InnerGcsClient
    except ImportError:  # another Ray version: ray.init's own connect then decides
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        InnerGcsClient.standalone(host_port, None, int(CONNECT_SECONDS * 1000))
    except Exception as e:  # noqa: BLE001 - RpcError and friends
        raise RayUnavailableError(f"cannot join the Ray cluster at {given}: {host_port} answers but is not a Ray "
                                  f"head node ({_one_line(e)}); {fix}") from None
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _connect(ray, address: str | None) -> bool:
    """Join a running cluster (``address`` or ``RAY_ADDRESS``) or start a local one; True when we started it."""
    if ray.is_initialized():
        return False
    kwargs = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
    resolved = cluster_address(address)
    if resolved is not None:
        try:
            ray.init(address=resolved, **kwargs)
        except Exception as e:  # noqa: BLE001 - ConnectionError, RuntimeError, ... from Ray's client
            raise RayUnavailableError(f"cannot join the Ray cluster at {address or os.environ['RAY_ADDRESS']}: "
                                      f"{_one_line(e)}; check the address (ray status on the head node) or leave "
                                      "--address out for a local instance") from e
        return False
    ray.init(num_cpus=os.cpu_count() or 1, **kwargs)
    return True


# Ray's own loggers, quieted during a scan to what concerns the user's job: the executor's INFO lines,
# the notebook-widget hint ("Missing packages: ['ipywidgets']"), the note that Ray's progress bars are
# off (mikata draws its own) and the token-auth note of the private local instance a scan starts.
RAY_LOGGERS = {"ray.data": logging.WARNING, "ray.widgets": logging.WARNING,
               "ray.data._internal.progress": logging.ERROR,
               "ray._private.authentication.authentication_token_setup": logging.ERROR}


def quiet_ray_logs() -> Callable[[], None]:
    """Set Ray's loggers to ``RAY_LOGGERS`` levels; returns the function that puts the old levels back.

    Not covered: Ray's C++ core prints one error-level line per actor pool ("constructor arguments in
    the object store and max_restarts > 0", ray-project/ray#53727) because Ray Data itself passes the map
    function by reference; ``RAY_BACKEND_LOG_LEVEL`` would hide it only by printing another line."""
    before = {name: logging.getLogger(name).level for name in RAY_LOGGERS}
    for name, level in RAY_LOGGERS.items():
        logging.getLogger(name).setLevel(max(level, logging.getLogger(name).getEffectiveLevel()))

    def restore() -> None:
        for name, level in before.items():
            logging.getLogger(name).setLevel(level)

    return restore


def _decode(row: dict[str, np.ndarray], preprocessing) -> dict[str, np.ndarray]:
    """Ray CPU task: read, hash and preprocess one batch of files (one dataset row) with mikata's decoder."""
    from mikata.scanning.steps import decode_file

    shape = (preprocessing.in_channels, *preprocessing.input_size)
    start, paths = int(row["start"][0]), list(row["paths"][0])
    n = len(paths)
    x = np.zeros((n, *shape), np.float32)  # (n, C, H, W), zeros where a file is skipped
    ok = np.zeros(n, bool)
    digest, reason = np.empty(n, dtype=object), np.empty(n, dtype=object)
    size, mtime, wh = np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros((n, 2), np.int64)
    for r, path in enumerate(paths):
        t, digest[r], size[r], mtime[r], why, dims = decode_file(preprocessing, str(path))
        wh[r] = dims or (0, 0)
        reason[r] = why or ""
        digest[r] = digest[r] or ""
        if t is not None:
            x[r], ok[r] = t.numpy(), True
    return {"i": np.arange(start, start + n, dtype=np.int64), "x": x, "ok": ok, "hash": digest, "size": size,
            "mtime": mtime, "reason": reason, "wh": wh}


class _Infer:
    """Ray actor: the model loaded once, ``compute_columns`` per batch."""

    def __init__(self, handle, layer: str, embed_layer: str | None, gradcam: bool, threads: int, gpu: bool,
                 with_stats: bool):
        import ray

        torch.set_num_threads(max(1, threads))
        if isinstance(handle, ray.ObjectRef):
            handle = ray.get(handle)
        if gpu:
            device = torch.device("cuda")
            handle = handle.to(device) if hasattr(handle, "to") else handle
            handle.net.to(device)
        self.handle, self.layer, self.embed_layer, self.gradcam = handle, layer, embed_layer, gradcam
        self.with_stats = with_stats
        self._empty: dict[str, np.ndarray] | None = None

    def _columns(self, x: torch.Tensor | None, items: list[tuple]) -> dict[str, np.ndarray]:
        from mikata.scanning.steps import compute_columns

        return compute_columns(self.handle, x, items, self.layer, self.embed_layer, self.gradcam, self.with_stats)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ok = np.asarray(batch["ok"], bool)
        items = [(int(i), bool(k), h, int(s), int(m), r, (int(wh[0]), int(wh[1]))) for i, k, h, s, m, r, wh in
                 zip(batch["i"], ok, batch["hash"], batch["size"], batch["mtime"], batch["reason"], batch["wh"])]
        x = torch.from_numpy(np.ascontiguousarray(batch["x"][ok])) if ok.any() else None  # (n_ok, C, H, W)
        cols = self._columns(x, items)
        if "probs" not in cols:  # every file of the batch skipped: same columns, zeros (one schema for Ray)
            cols.update({k: np.zeros((len(items),) + v.shape[1:], v.dtype) for k, v in self._shapes().items()})
        cols["hash"] = np.asarray([h or "" for h in cols["hash"]], dtype=object)
        return cols

    def _shapes(self) -> dict[str, np.ndarray]:
        if self._empty is None:
            p = self.handle.preprocessing
            x = torch.zeros((1, p.in_channels, *p.input_size))
            got = self._columns(x, [(0, True, "", 0, 0, "", tuple(p.input_size[::-1]))])
            self._empty = {k: v for k, v in got.items() if k in VECTOR_COLUMNS + ("top_i", "top_v", "cam")}
        return self._empty


def scan_on_ray(store: RunStore, handle: ModelHandle, todo: Sequence[tuple[Sample, str]], replace: bool,
                with_stats: bool,
                batch_size: int, layer: str, embed_layer: str | None, gradcam: bool, progress: bool,
                address: str | None = None, actors: int | None = None, gpus_per_actor: float = 0,
                ) -> tuple[int, list[tuple[str, str]]]:
    """Scan ``todo`` into ``store`` on Ray Data; returns (images stored ok, skipped (path, reason))."""
    from mikata.progress import Progress

    from mikata.scanning.steps import commit

    ray = import_ray()
    if not todo:
        return 0, []
    restore_logs = quiet_ray_logs()
    try:
        started = _connect(ray, address)
    except BaseException:
        restore_logs()
        raise
    try:
        cpus = float(ray.cluster_resources().get("CPU", 1))
        gpus = float(ray.cluster_resources().get("GPU", 0))
        if gpus_per_actor > 0 and gpus < gpus_per_actor:
            raise RayUnavailableError(f"--gpus-per-actor {gpus_per_actor}: the cluster has {gpus:g} GPUs; "
                                      "use 0 to infer on CPUs")
        if actors is None:
            actors = max(1, int(gpus // gpus_per_actor)) if gpus_per_actor > 0 else max(1, int(cpus * ACTOR_SHARE))
        actor_cpus = max(0.25, cpus * ACTOR_SHARE / actors) if gpus_per_actor <= 0 else 1.0
        decode_cpus = max(0.05, min(1.0, cpus * (1 - ACTOR_SHARE) / max(1, actors)))
        threads = max(1, int(actor_cpus))
        log.info("ray: %d actors x %.2f CPU (%d torch threads)%s, decode tasks %.2f CPU, %d images",
                 actors, actor_cpus, threads, f", {gpus_per_actor:g} GPU each" if gpus_per_actor else "",
                 decode_cpus, len(todo))
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # ours counts images/s; Ray's would print a line every few seconds
        # one dataset row (and block) per batch: blocks spread over the cluster, and every inference
        # batch is exactly a local scan's batch (todo[kB:(k+1)B]), so the numbers are the same to the bit
        paths = [str(s.path) for s, _ in todo]
        batches = [{"start": k, "paths": paths[k:k + batch_size]} for k in range(0, len(paths), batch_size)]
        ds = ray.data.from_items(batches, override_num_blocks=len(batches))
        ds = ds.map_batches(_decode, fn_kwargs={"preprocessing": handle.preprocessing}, batch_size=1,
                            batch_format="numpy", num_cpus=decode_cpus)
        ds = ds.map_batches(_Infer, fn_constructor_kwargs={
            "handle": ray.put(handle), "layer": layer, "embed_layer": embed_layer, "gradcam": gradcam,
            "threads": threads, "gpu": gpus_per_actor > 0, "with_stats": with_stats}, batch_size=None, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=actor_cpus, **({"num_gpus": gpus_per_actor} if gpus_per_actor > 0 else {}))
        computed, skipped = 0, []
        seen: set[int] = set()
        t0 = time.perf_counter()
        bar = Progress(len(todo), f"scan (ray): {handle.spec}", "img", progress, first="first batch")
        try:
            for cols in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=2):
                fresh = np.array([int(i) not in seen for i in cols["index"]], bool)
                if not fresh.all():  # re-executed after a lost worker: those files are stored already
                    cols = {k: v[fresh] for k, v in cols.items()}
                if not len(cols["index"]):
                    continue
                k, skips = commit(store, cols, todo, replace)
                seen.update(int(i) for i in cols["index"])
                computed += k
                skipped += skips
                bar.update(len(cols["index"]))
                bar.set_postfix(f"{len(seen) / max(time.perf_counter() - t0, 1e-9):.0f} images/s on the cluster")
        finally:
            bar.close()
        return computed, skipped
    finally:
        if started:
            ray.shutdown()
        restore_logs()
