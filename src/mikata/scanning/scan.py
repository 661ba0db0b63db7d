"""``scan``: one batched pass of a labeled dataset through a model, into a ``RunStore``.

Per image it stores the path, a sha1 of the bytes, the label, the prediction, the full probability
vector, the top-k, the penultimate embedding (input of the last ``nn.Linear``), the mean
activation of each channel of one layer, pixel statistics for dataset issues (``data.image_stats``:
brightness, sharpness, entropy, original size; from the same decode), and optionally the Grad-CAM of the predicted class,
computed from the same forward pass. Files that cannot be decoded are stored as skipped rows with
the reason; one bad file never stops a scan. Rerunning resumes: files whose path, size and mtime
match a stored row are not read again (like git's index), everything else is hashed and computed.

Example:
    >>> from mikata.models import load_model                            # doctest: +SKIP
    >>> handle = load_model("efficientnet-lite0")                       # doctest: +SKIP
    >>> summary = scan(handle, "pets/", "runs/pets", batch_size=64)     # doctest: +SKIP
    >>> summary.computed, summary.skipped                               # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import platform
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import torch

from mikata.runs.heldout import plan_scan, select_samples  # noqa: F401 - select_samples re-exported
from mikata.runs.merge import parse_shard, shard_of
from mikata.runs.format import FORMAT as RUN_FORMAT
from mikata.runs.store import RunStore
from mikata.scanning.steps import (  # noqa: F401 - the per-batch steps, re-exported under their old home
    TOP_K, VECTOR_COLUMNS, _collate, _Files, _Outputs, commit, compute_columns, decode_file, run_batch)
from mikata.data.datasets import ImageDataset, Sample, load_dataset, parse_fractions
from mikata.data.paths import data_roots
from mikata.data.splits import source_identity
from mikata.errors import ChoiceError, MikataError
from mikata.hooks import get_layer
from mikata.models.handle import ModelHandle
from mikata.progress import notice, one_line
from mikata.models.run_model import weights_hash  # noqa: F401 - re-exported: mikata.scanning.scan.weights_hash

if TYPE_CHECKING:
    from mikata.scanning.ray_scan import RayPool

log = logging.getLogger(__name__)


@dataclass
class ScanSummary:
    """What one ``scan`` call did."""

    run_dir: str
    total: int            # images in the (split of the) dataset
    computed: int         # images run through the model in this call
    skipped: int          # files that could not be decoded in this call
    reused: int           # images already in the store, not recomputed
    seconds: float
    skipped_files: list[tuple[str, str]] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)  # engine="ray": where the seconds went

    def _repr_html_(self) -> str:
        """The counts in a table; the skipped files (escaped: names are data) under it."""
        from mikata.notebook import STYLE, esc, table_html

        rows = [["run", self.run_dir], ["images", self.total], ["computed now", self.computed],
                ["already there", self.reused], ["skipped", self.skipped], ["seconds", round(self.seconds, 1)]]
        skipped = table_html(["skipped file", "why"], self.skipped_files[:20]) if self.skipped_files else ""
        more = f"<div>... {len(self.skipped_files) - 20} more</div>" if len(self.skipped_files) > 20 else ""
        return f"<div>{STYLE}<div><b>ScanSummary</b> {esc(self.run_dir)}</div>{table_html(['', ''], rows)}{skipped}{more}</div>"


def parse_class_map(text: str | None) -> dict[str, str]:
    """``"kitty=cat,pup=dog"`` -> ``{"kitty": "cat", "pup": "dog"}`` (folder name = model class)."""
    if not text:
        return {}
    pairs = [p.split("=", 1) for p in text.split(",") if p.strip()]
    bad = [p[0] for p in pairs if len(p) != 2 or not p[0].strip() or not p[1].strip()]
    if bad:
        raise MikataError(f"--class-map: {bad} are not FOLDER=CLASS pairs; write e.g. kitty=cat,pup=dog")
    return {a.strip(): b.strip() for a, b in pairs}


def make_manifest(handle: ModelHandle, dataset: ImageDataset, layer: str, embed_layer: str | None,
                  gradcam: bool, trained_on: dict | None = None) -> dict:
    import mikata

    identity = {
        "model_spec": handle.spec, "weights_sha1": weights_hash(handle.net), "classes": list(handle.class_names),
        **handle.preprocessing.to_dict(), "layer": layer, "embedding_layer": embed_layer, "gradcam": gradcam,
    }
    # default_layer: what the model's default layer was, so a viewer can tell without loading the model
    # whether a map asked for at "the default layer" is the scan's (kept out of identity: old runs lack it)
    # trained_on: the model was trained on this data; its rows of split "train" are in-sample (runs.heldout)
    extra = {"trained_on": trained_on} if trained_on else {}
    # data_roots: the folders the app and report may serve this run's images from (data.paths)
    roots = data_roots(dataset.root, (s.path for s in dataset.samples))
    return {"format": RUN_FORMAT, "identity": identity, "dataset_root": dataset.root, "data_roots": roots, **extra,
            "default_layer": handle.default_layer,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "versions": {"mikata": mikata.__version__, "torch": torch.__version__, "numpy": np.__version__,
                         "python": platform.python_version()}}


# ------------------------------------------------------------------------------------------- scan
@one_line  # in a notebook, every step of the call on one line
def scan(
    handle: ModelHandle,
    dataset: ImageDataset | str | os.PathLike,
    run_dir: str | os.PathLike,
    batch_size: int = 64,
    workers: int = 2,
    layer: str | None = None,
    gradcam: bool = False,
    split: str | None = None,
    fractions: Sequence[float] | str | None = None,
    seed: int | None = None,
    class_map: Mapping[str, str] | None = None,
    progress: bool = True,
    shard: tuple[int, int] | str | None = None,
    engine: str = "local",
    address: str | None = None,
    actors: int | None = None,
    gpus_per_actor: float = 0,
    split_label: str = "",
) -> ScanSummary:
    """Scan ``dataset`` (an ``ImageDataset``, a class folder, or a CSV manifest) into ``run_dir``.

    Resumable and incremental: finished batches are never recomputed, new files are added. A run
    directory made with other weights or preprocessing is refused (use a new ``run_dir``).
    ``shard=(i, n)`` (or ``"i/n"``) scans only the ``i``-th of ``n`` contiguous slices of the file
    list, into its own run; ``mikata merge`` combines the shard runs into the store one scan writes.
    ``split``/``fractions``/``seed``: a checkpoint trained on this very data brings its own split and
    ``split=None`` then scans only its held-out images (``runs.heldout``; ``"all"`` scans every
    image, marking the training rows); for other data, ``seed`` defaults to 0. ``split_label`` names the
    split of every row of data that is not split (e.g. a cross-validation fold).
    ``engine="ray"`` runs the same steps on Ray actors (``scanning.ray_scan``: ``address``, ``actors``,
    ``gpus_per_actor``); the run it writes is the one the local scan writes.

    Example:
        >>> summary = mikata.scan(handle, "photos", "runs/b", workers=0, progress=False)
        >>> summary.total, summary.computed, summary.skipped
        (12, 12, 0)
        >>> mikata.scan(handle, "photos", "runs/b", workers=0, progress=False).reused   # run again: nothing redone
        12
    """
    if engine not in ("local", "ray"):
        raise ChoiceError("engine", engine, ["local", "ray"])
    if engine == "ray":
        from mikata.scanning.ray_scan import RayPool, cluster_address, import_ray

        import_ray()  # the missing extra is said before any work,
        cluster_address(address)  # and a cluster that does not answer, before any run directory is created
    t0 = time.perf_counter()
    # the actors start, import torch and load the model while the files are listed and checked
    pool = RayPool(handle, address, actors, gpus_per_actor) if engine == "ray" else None
    try:
        return _scan(handle, dataset, run_dir, batch_size, workers, layer, gradcam, split, fractions, seed, class_map,
                     progress, shard, split_label, pool, t0)
    finally:
        if pool is not None:
            pool.close()


def _scan(handle: ModelHandle, dataset: ImageDataset | str | os.PathLike, run_dir: str | os.PathLike,
          batch_size: int, workers: int, layer: str | None, gradcam: bool, split: str | None,
          fractions: Sequence[float] | str | None, seed: int | None, class_map: Mapping[str, str] | None,
          progress: bool, shard: tuple[int, int] | str | None, split_label: str, pool: RayPool | None, t0: float) -> ScanSummary:
    source = None if isinstance(dataset, ImageDataset) else dataset
    if not isinstance(dataset, ImageDataset):
        dataset = load_dataset(dataset, classes=handle.class_names, class_map=class_map, allow_empty=True)
    elif list(dataset.classes) != list(handle.class_names):
        missing = [c for c in dataset.classes if c not in handle.class_names]
        if missing:
            raise MikataError(f"dataset classes {missing[:10]} are not classes of the model; pass a class mapping")
        index = {c: i for i, c in enumerate(handle.class_names)}
        dataset = ImageDataset(dataset.root, list(handle.class_names),
                               [Sample(s.path, index[dataset.classes[s.label]], s.fields) for s in dataset.samples],
                               list(dataset.fields))
    empty = [c for c, n in dataset.counts().items() if n == 0]
    if empty:
        where = source_identity(source) if source is not None else dataset.root  # the CSV itself, not its folder
        log.info("%d of the model's %d classes have no images in %s (e.g. %s)", len(empty), handle.num_classes,
                 where, ", ".join(empty[:5]))
    if isinstance(fractions, str):
        fractions = parse_fractions(fractions)
    notice("preprocessing: %s", handle.preprocessing.describe(), logger=log, once=handle.preprocessing)
    plan = plan_scan(handle, source, dataset, split, fractions, seed, split_label)
    chosen = shard_of(plan.chosen, parse_shard(shard) if isinstance(shard, str) else shard)
    layer = layer or handle.default_layer
    if layer is None:
        raise MikataError("this model has no default layer; pass --layer NAME (see `mikata layers MODEL`)")
    get_layer(handle.net, layer)  # a clear ChoiceError for an unknown name
    embed_layer = handle.embedding_layer  # resolved once, at load
    store = RunStore.create_or_resume(run_dir, make_manifest(handle, dataset, layer, embed_layer, gradcam,
                                                                plan.trained_on))
    try:
        if dataset.fields:  # a manifest's extra columns: stored before any batch, for every chosen image
            store.set_fields(dataset.fields, ((s.path, n, v) for s, _ in chosen for n, v in s.fields))
        if pool is not None:
            return _scan_on_ray(store, pool, chosen, batch_size, layer, embed_layer, gradcam, progress, t0)
        return _scan_into(store, handle, chosen, batch_size, workers, layer, embed_layer, gradcam, progress, t0)
    finally:
        store.close()


def _unchanged(path: str, stored: tuple[int, int, str | None] | None) -> bool:
    if stored is None:
        return False
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (st.st_size, st.st_mtime_ns) == (stored[0], stored[1])


def _pending(store: RunStore, chosen: list[tuple[Sample, str]]) -> tuple[list[tuple[Sample, str]], bool]:
    """The (sample, split) pairs a scan still has to compute, and whether the run holds rows already."""
    done = store.done()
    return [(s, n) for s, n in chosen if not _unchanged(s.path, done.get(s.path))], bool(done)


def _scan_on_ray(store: RunStore, pool: RayPool, chosen: list[tuple[Sample, str]], batch_size: int, layer: str,
                 embed_layer: str | None, gradcam: bool, progress: bool, t0: float) -> ScanSummary:
    """The Ray engine over ``pool`` (a started ``scanning.ray_scan.RayPool``)."""
    todo, replace = _pending(store, chosen)
    with_stats = store.has_vectors("stats") or not store.committed_vectors()
    computed, skipped_files = pool.run(store, todo, replace, with_stats, batch_size, layer, embed_layer, gradcam,
                                       progress)
    return ScanSummary(str(store.dir), len(chosen), computed, len(skipped_files), len(chosen) - len(todo),
                       time.perf_counter() - t0, skipped_files, dict(pool.phases))


def _scan_into(store: RunStore, handle: ModelHandle, chosen: list[tuple[Sample, str]], batch_size: int,
               workers: int, layer: str, embed_layer: str | None, gradcam: bool, progress: bool,
               t0: float) -> ScanSummary:
    from mikata.progress import Progress

    todo, done = _pending(store, chosen)
    reused = len(chosen) - len(todo)
    # On a GPU, batches are decoded into pinned memory by the workers while the GPU computes, and
    # copied without blocking; a batch that does not fit in device memory is split in halves.
    loader = torch.utils.data.DataLoader(
        _Files(handle, [s for s, _ in todo]), batch_size=batch_size, shuffle=False, num_workers=workers,
        collate_fn=_collate, persistent_workers=False, prefetch_factor=4 if workers > 0 else None,
        pin_memory=handle.device.type == "cuda")
    computed = 0
    skipped_files: list[tuple[str, str]] = []
    bar = Progress(len(todo), "scan", "img", progress, first="first batch",
                   plan=f"{len(todo):,} images to compute" + (f" ({reused:,} already in the run)" if reused else ""))
    # Batches are committed by a writer thread, so the model never waits for SQLite or the vector
    # files (both release the GIL). The commit protocol is unchanged: kill -9 loses only queued batches.
    pending: queue.Queue = queue.Queue(maxsize=8)
    failed: list[BaseException] = []

    def write() -> None:
        nonlocal computed
        while (cols := pending.get()) is not None:
            if not failed:
                try:
                    k, skips = commit(store, cols, todo, bool(done))
                    computed += k
                    skipped_files.extend(skips)
                except BaseException as e:  # noqa: BLE001 - handed to the main thread
                    failed.append(e)

    # a run scanned before image statistics existed keeps its vector files aligned: no stats for it
    with_stats = store.has_vectors("stats") or not store.committed_vectors()
    writer = threading.Thread(target=write, name="mikata-scan-writer", daemon=True)
    writer.start()
    try:
        for x, items in loader:
            if failed:
                raise failed[0]
            pending.put(compute_columns(handle, x, items, layer, embed_layer, gradcam, with_stats))
            bar.update(len(items))
    finally:
        pending.put(None)
        writer.join()
        bar.close()
    if failed:
        raise failed[0]
    if skipped_files:
        log.debug("%d files skipped (ScanSummary.skipped_files / RunStore.skipped() say why)", len(skipped_files))
    return ScanSummary(str(store.dir), len(chosen), computed, len(skipped_files), reused, time.perf_counter() - t0,
                       skipped_files)
