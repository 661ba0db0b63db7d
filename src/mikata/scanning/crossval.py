"""``crossval``: K-fold cross-validation, so every image of a dataset gets an out-of-sample prediction.

Confident learning (cleanlab, ``mikata audit``'s label-issue search) needs probabilities from a model
that did not train on the image. A held-out split gives them for 30% of a dataset; K-fold
cross-validation gives them for all of it: the images are split per class into K folds, K models
are fine-tuned (each on K-1 folds, with the same options; a ``val_fraction`` of those folds picks
the kept epoch), each scans the fold it never saw, and the K fold runs are combined into ONE run
whose rows record their fold (split ``fold1`` .. ``foldK``).

Resumable: everything lives in ``work_dir`` (default ``RUN_DIR.folds``): a finished fold's checkpoint
is reused, an interrupted training resumes from its last epoch (``train(resume=True)``), a fold's
scan resumes, and the combined run is written exactly once per row (``merge``'s copy), so a killed
crossval is simply run again.

The combined run's predictions and probabilities are comparable across folds; its embeddings and
channel means come from K different models (the manifest's ``crossval`` says so), so projections and
embedding neighbours mix K feature spaces.

Example:
    >>> s = crossval("digits/", "efficientnet-lite0", "runs/digits-cv", folds=5,
    ...              epochs=3, input_size=32, freeze_until="blocks.11")              # doctest: +SKIP
    >>> s.accuracy, s.fold_accuracy                                                  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mikata.analysis.audit import accuracy
from mikata.runs.data import load_run
from mikata.runs.layout import CROSSVAL, RunLayout
from mikata.runs.merge import copy_rows
from mikata.runs.lock import RunLock
from mikata.runs.store import RunStore
from mikata.scanning.scan import scan
from mikata.data.datasets import DatasetError, ImageDataset, load_dataset, split_dataset
from mikata.data.splits import files_sha1, source_identity
from mikata.errors import Interrupted, MikataError
from mikata.models.handle import ModelHandle
from mikata.progress import one_line

log = logging.getLogger(__name__)
PLAN_FORMAT = "mikata-crossval/2"  # 2: folds hash paths inside the folder


class CrossvalError(MikataError):
    """Cross-validation settings that cannot work, or a work folder of another cross-validation."""


@dataclass
class CrossvalSummary:
    """What one ``crossval`` call did and the out-of-sample numbers of the combined run."""

    run_dir: str
    work_dir: str
    folds: int
    rows: int                       # scanned images in the combined run
    accuracy: float                 # over every row: each predicted by the model that did not train on it
    fold_accuracy: list[float]      # of each fold's model on its held-out fold
    trained: list[int] = field(default_factory=list)   # folds (1-based) trained or resumed in this call
    reused: list[int] = field(default_factory=list)    # folds whose finished checkpoint was reused
    skipped_files: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"run": self.run_dir, "work_dir": self.work_dir, "folds": self.folds, "rows": self.rows,
                "accuracy": self.accuracy, "fold_accuracy": self.fold_accuracy, "trained": self.trained,
                "reused": self.reused, "skipped": [list(s) for s in self.skipped_files],
                "seconds": round(self.seconds, 2)}


def fold_names(folds: int) -> list[str]:
    return [f"fold{i + 1}" for i in range(folds)]


@one_line  # in a notebook, every step of the call on one line
def crossval(data: str | os.PathLike, model: str | ModelHandle, run_dir: str | os.PathLike, folds: int = 5, *,
             work_dir: str | os.PathLike | None = None, seed: int = 0, val_fraction: float = 0.15,
             progress: bool = True, device: str | torch.device | None = "cpu", scan_batch_size: int = 64,
             scan_workers: int = 2, layer: str | None = None, **train_options) -> CrossvalSummary:
    """K-fold cross-validated scan of ``data`` into ``run_dir`` (see the module doc).

    ``train_options`` are ``train``'s (``epochs``, ``input_size``, ``freeze_until``, ``augment``, ...);
    ``seed`` makes the folds, the heads and the batch order; ``val_fraction`` of each model's
    training folds is its validation split.

    Example:
        >>> cv = mikata.crossval("photos", "efficientnet-lite0", "runs/cv", folds=3, val_fraction=0.5, epochs=1,
        ...                      batch_size=4, input_size=64, workers=0, scan_workers=0, progress=False)
        >>> mikata.open_run("runs/cv").summary()["images"]    # every image scanned by a model that never saw it
        12
    """
    t0 = time.perf_counter()
    if folds < 2:
        raise CrossvalError(f"--folds {folds}: cross-validation needs at least 2 folds (5 is usual)")
    if not 0 < val_fraction < 1:
        raise CrossvalError(f"--val-fraction {val_fraction}: give a fraction in (0, 1), e.g. 0.15")
    if "split" in train_options or "resume" in train_options:
        raise CrossvalError("crossval makes its own splits: leave out split and resume (rerun crossval to resume)")
    ds = load_dataset(data)
    small = {c: n for c, n in ds.counts().items() if n < folds}
    if small:
        raise DatasetError(f"classes {dict(list(small.items())[:10])} have fewer images than --folds {folds}: every "
                           "fold needs an image of each class; lower --folds or add images")
    names = fold_names(folds)
    parts = split_dataset(ds, [1 / folds] * folds, seed=seed, names=names)
    run_dir = Path(run_dir).expanduser().resolve()
    work = Path(work_dir).expanduser().resolve() if work_dir else run_dir.with_name(run_dir.name + ".folds")
    base_spec = model.spec if isinstance(model, ModelHandle) else str(model)
    _check_plan(work, {"format": PLAN_FORMAT, "data": source_identity(data), "folds": folds, "seed": seed,
                       "val_fraction": val_fraction, "model": base_spec,
                       "options": {k: str(v) for k, v in sorted(train_options.items())},
                       "fold_files": [files_sha1(parts[n]) for n in names]})

    try:
        with RunLock.acquire(work):  # one crossval per work folder: two would train the same fold twice
            trained, reused, fold_acc, skipped, fold_runs, hashes, models = _folds(
                ds, parts, names, work, model, device, progress, seed, val_fraction, scan_batch_size, scan_workers,
                layer, train_options)
            rows = combine_folds(run_dir, fold_runs, models, base_spec, hashes, seed)
    except KeyboardInterrupt as e:
        # each fold keeps its last finished epoch and its committed scan rows; a rerun reuses or resumes them
        signum = e.signum if isinstance(e, Interrupted) else signal.SIGINT
        raise Interrupted(signum, f"finished folds and the last finished epoch of the current one are kept in "
                                  f"{work}; run the same command again to continue") from None
    total = accuracy(load_run(run_dir))
    return CrossvalSummary(str(run_dir), str(work), folds, rows, total, fold_acc, trained, reused,
                           list(dict.fromkeys(skipped)), time.perf_counter() - t0)


def _folds(ds: ImageDataset, parts: dict[str, ImageDataset], names: list[str], work: Path, model: str | ModelHandle,
           device, progress: bool, seed: int, val_fraction: float, scan_batch_size: int, scan_workers: int,
           layer: str | None, train_options: dict) -> tuple:
    """Train (or reuse, or resume) each fold's model and scan its held-out fold; the per-fold results."""
    from mikata.models.loading import load_model, read_checkpoint_metadata
    from mikata.training import state_path, train

    folds = len(names)
    trained, reused, fold_acc, skipped = [], [], [], []
    fold_runs, hashes, models = [], [], []
    for i, name in enumerate(names, start=1):
        ckpt, fold_run = work / f"{name}.safetensors", work / f"{name}-run"
        if ckpt.is_file() and not state_path(ckpt).exists() and \
                read_checkpoint_metadata(ckpt).get("training", {}).get("complete"):
            reused.append(i)
            log.info("%s/%d: reusing the finished model %s", name, folds, ckpt)
        else:
            resume = ckpt.is_file() and state_path(ckpt).exists()
            others = ImageDataset(ds.root, list(ds.classes),
                                  sorted((s for n in names if n != name for s in parts[n].samples), key=lambda s: s.path))
            log.info("%s/%d: %s on %d images (the other folds)%s", name, folds,
                     "resuming training" if resume else "training", len(others), "" if not resume else f" from {ckpt}")
            result = train(others, model, ckpt, resume=resume, progress=progress, device=device,
                           split=(1 - val_fraction, val_fraction), seed=seed, **train_options)
            skipped += result.skipped
            trained.append(i)
        handle = load_model(str(ckpt), device=device)
        hashes.append(_weights_sha1(handle))
        s = scan(handle, parts[name], fold_run, batch_size=scan_batch_size, workers=scan_workers, layer=layer,
                 progress=progress, split_label=name)
        skipped += s.skipped_files
        fold_acc.append(accuracy(load_run(fold_run)))
        log.info("%s/%d: accuracy %.2f%% on its %d held-out images", name, folds, 100 * fold_acc[-1], s.total)
        fold_runs.append(fold_run)
        models.append(ckpt)
    return trained, reused, fold_acc, skipped, fold_runs, hashes, models


def combine_folds(run_dir: Path, fold_runs: list[Path], models: list[Path], base_spec: str, hashes: list[str],
                  seed: int) -> int:
    """The fold runs' rows in one run (exactly once per row: rerunning adds nothing); returns its row count."""
    with RunStore.open(fold_runs[0]) as first:
        manifest = json.loads(json.dumps(first.manifest))
    folds = len(fold_runs)
    identity = dict(manifest["identity"])
    identity["model_spec"] = f"cross-validation of {base_spec} ({folds} folds)"  # no single model to load
    identity["weights_sha1"] = hashlib.sha1("".join(hashes).encode()).hexdigest()
    manifest.update(identity=identity, crossval={
        "folds": folds, "seed": seed, "base_model": base_spec, "fold_models": [str(m) for m in models],
        "fold_weights_sha1": hashes,
        "note": "every row's prediction and probabilities come from the fold model that did not train on it; "
                "embeddings and channel means come from the K fold models (different feature spaces)"})
    manifest.pop("trained_on", None)
    with RunStore.create_or_resume(run_dir, manifest) as out:
        done = out.done()
        for fold_run in fold_runs:
            added, already = copy_rows(out, fold_run, done)
            with RunStore.open(fold_run) as src:  # a manifest's extra columns (per-image fields) travel too
                names, values = src.field_names(), src.field_rows()
            if names:
                out.set_fields(names, values)
            log.debug("combined %s: %d rows added, %d already there", fold_run, added, already)
        return out.count()


def _weights_sha1(handle: ModelHandle) -> str:
    from mikata.models.run_model import weights_hash

    return weights_hash(handle.net)


def _check_plan(work: Path, plan: dict) -> None:
    """Write the plan into a new work folder, or check that an existing one holds this very plan."""
    path = work / CROSSVAL
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise CrossvalError(f"{path} is not readable ({e}); delete {work} to start over") from e
        if old != plan:
            diff = sorted(k for k in set(old) | set(plan) if old.get(k) != plan.get(k))
            raise CrossvalError(f"{work} holds a cross-validation with other settings (differs in: {', '.join(diff)}); "
                                "give another --run (or --work), or delete that folder to start over")
        return
    work.mkdir(parents=True, exist_ok=True)
    with RunLayout(work).replacing(path, binary=False) as f:  # whole, never through a link
        f.write(json.dumps(plan, indent=2))
