"""``scan(..., engine="ray")``: the same scan on a pool of Ray actors, each decoding and inferring its batches.

The pool starts before the scan lists its files (``RayPool``, created by ``scanning.scan``): while the
driver walks the dataset and stats what the run already holds, the actor processes start, import
torch and unpickle the model (stored once per node in Ray's object store). Then:

- **batches of paths**: the file list still to scan (exactly as the local scan decides) is cut into
  the local scan's batches; each goes to an actor as a list of paths, never as decoded pixels, with
  ``IN_FLIGHT`` batches queued per actor so no actor waits for the driver;
- **one actor, one batch**: the actor runs mikata's own decoder (``scanning.steps.decode_file``: sha1,
  decode, preprocess; a bad file becomes a recorded reason, never an error) and the local scan's
  ``compute_columns``, and returns fixed-width columns (float16 vectors); torch uses the actor's CPUs;
- **commit**: the driver is the run's only writer: ``scanning.steps.commit`` appends the batches in
  their order with the RunStore commit protocol, so the run holds the rows, ids and vectors a local
  scan writes. A lost actor is restarted and its batches retried by Ray; a killed driver loses only
  uncommitted batches, and the same command again scans only what is missing.

Without ``address`` (and no ``RAY_ADDRESS``) a local Ray instance sized to the machine starts and
stops with the call; with one, the call joins that cluster (``auto``, ``ray://HOST:PORT``).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Callable, Sequence

import numpy as np
import torch

from mikata.runs.store import RunStore
from mikata.data.datasets import Sample
from mikata.errors import MikataError
from mikata.models.handle import ModelHandle

log = logging.getLogger(__name__)
CONNECT_SECONDS = 2.0  # how long a cluster address may take to answer before the scan is refused


class RayUnavailableError(MikataError):
    """``engine="ray"`` without Ray installed, or a cluster that cannot be reached."""


def import_ray():
    """Ray, imported only for ``engine="ray"``; a clear message when the extra is missing."""
    # Ray's GCS client reads this once, when Ray loads: a wrong address then fails in seconds, not minutes
    os.environ.setdefault("RAY_gcs_rpc_server_connect_timeout_s", str(int(CONNECT_SECONDS)))
    try:
        import ray
    except ImportError as e:
        raise RayUnavailableError(
            f"--engine ray needs Ray ({e.name or e} is not installed): pip install -c constraints.txt -e '.[ray]' "
            "(or pip install 'ray[data]>=2.40' with torch pinned); without it, scan locally (--engine local)") from e
    return ray


def cluster_address(address: str | None) -> str | None:
    """The cluster a Ray scan joins (``address``, else ``RAY_ADDRESS``), checked to answer within a few seconds.

    Returns ``None`` when no address is given (a local instance starts), else the address to pass to
    ``ray.init``. Ray's own connect retries an unreachable GCS for minutes, printing a line every few
    seconds and ignoring Ctrl-C; here a TCP connect and, for a GCS address, an HTTP/2 greeting and one
    bounded GCS request come first, so a wrong address is one ``RayUnavailableError`` line before any
    model loads or any run directory is created.
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
    _http2_probe(given, resolved, fix)
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


# HTTP/2's client connection preface and an empty SETTINGS frame (RFC 9113, section 3.4)
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def _http2_probe(given: str, host_port: str, fix: str) -> None:
    """A GCS is a gRPC server: it answers HTTP/2's connection preface with a SETTINGS frame at once.

    A port that accepts connections but never answers is refused here after ``CONNECT_SECONDS``, in a
    Python socket wait that Ctrl-C ends at once, rather than after the three connect timeouts in a row of
    Ray's GCS client (which no signal ends). Skipped with ``RAY_USE_TLS``: a TLS server expects a TLS
    handshake, not the preface in clear; ``_gcs_probe`` then decides alone.
    """
    import socket

    if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
        return
    host, _, port = host_port.rpartition(":")
    reply, why = b"", f"no HTTP/2 reply within {CONNECT_SECONDS:g} s"
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_SECONDS) as s:
            s.sendall(_H2_PREFACE)
            deadline = time.monotonic() + CONNECT_SECONDS
            while len(reply) < 9 and deadline > time.monotonic():
                s.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = s.recv(9 - len(reply))
                if not chunk:
                    why = "it closed the connection without an HTTP/2 reply"
                    break
                reply += chunk
    except socket.timeout:
        pass
    except OSError as e:
        why = e.strerror or str(e)
    if len(reply) == 9 and reply[3] == 4:  # a frame header (length 3 bytes, type 1 byte): SETTINGS is type 4
        return
    if reply:
        why = f"its reply {reply[:9]!r} is no HTTP/2 SETTINGS frame"
    raise RayUnavailableError(f"cannot join the Ray cluster at {given}: {host_port} answers but is not a Ray head "
                              f"node ({why}); {fix}")


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
    # the worker processes Ray starts for this job import torch and the scan's modules as they start,
    # during the rest of the start and the file listing, so an actor begins with them loaded
    ray.init(num_cpus=os.cpu_count() or 1, _system_config={"preload_python_modules": list(PRELOAD)}, **kwargs)
    return True


PRELOAD = ("torch", "mikata.scanning.ray_scan", "mikata.scanning.steps")  # what every scan actor imports


# Ray's own loggers, quieted during a scan to what concerns the user's job: Ray Data's INFO lines and
# notebook-widget hint ("Missing packages: ['ipywidgets']") where a user's own code runs Ray Data in the
# same session, and the token-auth note of the private local instance a scan starts.
RAY_LOGGERS = {"ray.data": logging.WARNING, "ray.widgets": logging.WARNING,
               "ray.data._internal.progress": logging.ERROR,
               "ray._private.authentication.authentication_token_setup": logging.ERROR}


def quiet_ray_logs() -> Callable[[], None]:
    """Set Ray's loggers to ``RAY_LOGGERS`` levels; returns the function that puts the old levels back.

    Ray's C++ core logs to stderr on its own; the one error line a healthy scan used to get from it
    ("constructor arguments in the object store and max_restarts > 0") has its cause removed instead:
    ``_ScanActor``'s constructor takes no object reference."""
    before = {name: logging.getLogger(name).level for name in RAY_LOGGERS}
    for name, level in RAY_LOGGERS.items():
        logging.getLogger(name).setLevel(max(level, logging.getLogger(name).getEffectiveLevel()))

    def restore() -> None:
        for name, level in before.items():
            logging.getLogger(name).setLevel(level)

    return restore


class _ScanActor:
    """Ray actor: reads, hashes, decodes and infers whole batches of paths, the local scan's own steps.

    Its constructor takes numbers only, so Ray can restart a lost actor from its creation task alone
    (constructor arguments held in the object store cannot be recovered on a restart, and Ray prints an
    error line for every actor created with them, ray-project/ray#53727). The model travels as a
    nested reference with each call, stored once per node; the actor unpickles it on its first call.
    """

    def __init__(self, threads: int, gpu: bool):
        import threading

        torch.set_num_threads(max(1, threads))  # more threads than the actor's CPUs was 5x slower
        self.gpu = gpu
        self.handle: ModelHandle | None = None
        # a GPU actor runs two calls at once (decoding one batch while the GPU infers the other); the
        # model, its hooks and its loading are one call's at a time
        self._model_lock = threading.Lock()
        self._seconds = {"decode": 0.0, "infer": 0.0, "batches": 0.0}

    def account(self) -> dict[str, float]:
        """This actor's seconds so far: its process's CPU time, and the wall time of its batches' steps."""
        return {"cpu": time.process_time(), **self._seconds}

    def load(self, model: list) -> float:
        """Unpickle the model (``model[0]``, an object reference) unless loaded; returns the seconds it took."""
        with self._model_lock:
            if self.handle is not None:
                return 0.0
            import ray

            t = time.perf_counter()
            handle = ray.get(model[0])
            if self.gpu:
                device = torch.device("cuda")
                handle = handle.to(device) if hasattr(handle, "to") else handle
                handle.net.to(device)
            self.handle = handle
            return time.perf_counter() - t

    def scan(self, model: list, start: int, paths: list[str], layer: str, embed_layer: str | None, gradcam: bool,
             with_stats: bool) -> dict[str, np.ndarray]:
        """``compute_columns`` of the files ``paths`` (indices ``start`` on in the scan's list)."""
        from mikata.scanning.steps import compute_columns, decode_file

        self.load(model)
        t = time.perf_counter()
        xs, items = [], []
        for r, path in enumerate(paths):
            x, digest, size, mtime, reason, dims = decode_file(self.handle.preprocessing, path)
            items.append((start + r, x is not None, digest, size, mtime, reason, dims))
            if x is not None:
                xs.append(x)
        x = torch.stack(xs) if xs else None  # (n_ok, C, H, W)
        t1 = time.perf_counter()
        with self._model_lock:
            cols = compute_columns(self.handle, x, items, layer, embed_layer, gradcam, with_stats)
        t2 = time.perf_counter()
        self._seconds["decode"] += t1 - t
        self._seconds["infer"] += t2 - t1
        self._seconds["batches"] += 1
        return cols


MAX_RESTARTS = 8  # a lost actor process is replaced this often; then the scan stops (a rerun resumes)
IN_FLIGHT = 2  # batches queued at each actor: it starts the next one while the driver stores the last


class RayPool:
    """A Ray scan's cluster connection and actors, started before the scan's file list is built.

    ``scan`` creates the pool first, then lists and stats the files while the actor processes start,
    import torch and unpickle the model; ``run`` then only streams batches of paths through them.
    ``phases`` holds where the time went (seconds), for ``ScanSummary.phases``.
    """

    def __init__(self, handle: ModelHandle, address: str | None = None, actors: int | None = None,
                 gpus_per_actor: float = 0):
        self.ray = ray = import_ray()
        self.handle = handle
        self.phases: dict[str, float] = {}
        self.actors: list = []
        self.started = False
        self._restore_logs = quiet_ray_logs()
        try:
            t = time.perf_counter()
            self.started = _connect(ray, address)
            self.phases["cluster start" if self.started else "cluster connect"] = time.perf_counter() - t
            self._start_actors(actors, gpus_per_actor)
        except BaseException:
            self.close()
            raise

    def _start_actors(self, actors: int | None, gpus_per_actor: float) -> None:
        ray = self.ray
        t = time.perf_counter()
        resources = ray.cluster_resources()
        cpus, gpus = float(resources.get("CPU", 1)), float(resources.get("GPU", 0))
        if gpus_per_actor > 0 and gpus < gpus_per_actor:
            raise RayUnavailableError(f"--gpus-per-actor {gpus_per_actor}: the cluster has {gpus:g} GPUs; "
                                      "use 0 to infer on CPUs")
        if actors is None:
            actors = max(1, int(gpus // gpus_per_actor)) if gpus_per_actor > 0 else max(1, int(cpus))
        # each actor decodes and infers its own batches, so the actors share every CPU of the cluster
        actor_cpus = max(0.25, cpus / actors) if gpus_per_actor <= 0 else 1.0
        threads = max(1, int(actor_cpus))
        log.info("ray: %d actors x %.2f CPU (%d torch threads)%s", actors, actor_cpus, threads,
                 f", {gpus_per_actor:g} GPU each" if gpus_per_actor else "")
        remote = ray.remote(_ScanActor).options(
            num_cpus=actor_cpus, max_restarts=MAX_RESTARTS, max_task_retries=-1, max_concurrency=2 if gpus_per_actor > 0 else 1,
            **({"num_gpus": gpus_per_actor} if gpus_per_actor > 0 else {}))
        self.actors = [remote.remote(threads, gpus_per_actor > 0) for _ in range(actors)]
        self.model = [ray.put(self.handle)]  # one object-store copy per node, whatever the number of actors
        self._loads = [a.load.remote(self.model) for a in self.actors]
        self._created = time.perf_counter()
        self.phases["actor creation (asynchronous)"] = self._created - t

    def run(self, store: RunStore, todo: Sequence[tuple[Sample, str]], replace: bool, with_stats: bool,
            batch_size: int, layer: str, embed_layer: str | None, gradcam: bool, progress: bool
            ) -> tuple[int, list[tuple[str, str]]]:
        """Scan ``todo`` into ``store``: batches of paths to the actors, results committed in batch order."""
        from mikata.progress import Progress
        from mikata.scanning.steps import commit

        ray = self.ray
        t0 = time.perf_counter()
        self.phases["file listing and run checks (actors starting meanwhile)"] = t0 - self._created
        if not todo:
            return 0, []
        paths = [str(s.path) for s, _ in todo]
        starts = list(range(0, len(paths), batch_size))  # every batch is exactly a local scan's batch
        pending: dict = {}  # result reference -> (batch start, actor)
        nxt = 0

        def submit(actor) -> None:
            nonlocal nxt
            if nxt < len(starts):
                k = starts[nxt]
                ref = actor.scan.remote(self.model, k, paths[k:k + batch_size], layer, embed_layer, gradcam,
                                        with_stats)
                pending[ref] = (k, actor)
                nxt += 1

        for _ in range(IN_FLIGHT):
            for actor in self.actors:
                submit(actor)
        done: dict[int, dict] = {}  # finished batches waiting for an earlier one, by start
        commit_at, computed, stored, skipped = 0, 0, 0, []
        get_s = write_s = 0.0
        bar = Progress(len(todo), f"scan (ray): {self.handle.spec}", "img", progress, first="first batch")
        try:
            try:
                loads = ray.get(self._loads)
            except ray.exceptions.RayActorError as e:
                raise _actor_failure(e, store) from e
            ready = time.perf_counter()
            self.phases["actors ready after creation"] = ready - self._created
            self.phases["driver waited for actors"] = ready - t0
            self.phases["model unpickle in an actor (max)"] = max(loads)
            while pending:
                t = time.perf_counter()
                (ref,), _ = ray.wait(list(pending), num_returns=1)
                k, actor = pending.pop(ref)
                submit(actor)  # the actor has its next batch before the driver stores this one
                try:
                    done[k] = ray.get(ref)
                except ray.exceptions.RayActorError as e:
                    raise _actor_failure(e, store) from e
                t1 = time.perf_counter()
                get_s += t1 - t
                new = 0
                while commit_at in done:  # in order: row ids as the local scan gives them
                    cols = done.pop(commit_at)
                    n, skips = commit(store, cols, todo, replace)
                    computed += n
                    skipped += skips
                    new += len(cols["index"])
                    commit_at += batch_size
                write_s += time.perf_counter() - t1
                if new:
                    stored += new
                    bar.set_postfix(f"{stored / max(time.perf_counter() - t0, 1e-9):.0f} images/s on the cluster")
                    bar.update(new)
        finally:
            bar.close()
        self.phases["batches (first submitted to last stored)"] = time.perf_counter() - t0
        self.phases["driver: waiting for results"] = get_s
        self.phases["driver: storing results"] = write_s
        accounts = ray.get([a.account.remote() for a in self.actors])
        batches = max(1.0, sum(a["batches"] for a in accounts))
        self.phases["actors: read, hash, decode per batch (mean)"] = sum(a["decode"] for a in accounts) / batches
        self.phases["actors: inference per batch (mean)"] = sum(a["infer"] for a in accounts) / batches
        self.phases["actors: CPU seconds (sum, start included)"] = sum(a["cpu"] for a in accounts)
        return computed, skipped

    def close(self) -> None:
        """Let the actors go (their handles dropped: they exit) and stop the local instance if it is ours."""
        self.actors, self._loads, self.model = [], [], []
        try:
            if self.started:
                self.ray.shutdown()
                self.started = False
        finally:
            self._restore_logs()


def _actor_failure(e: BaseException, store: RunStore) -> MikataError:
    return MikataError(f"a Ray actor was lost more than {MAX_RESTARTS} times ({_one_line(e)}); the batches stored "
                       f"so far are kept in {store.dir}: run the same command again to scan the rest")
