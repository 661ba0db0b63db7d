"""Which images a scan takes, so that no number silently mixes training images with held-out ones.

A checkpoint from ``mikata train`` records its split (``data.splits.TrainingSplit``). Scanning the
SAME folder or CSV with it, or a moved or copied folder holding exactly the files it trained on:

- no ``split``: the held-out splits, val and test. Both are out-of-sample for the weights (no image
  of them was in a gradient step); val only picked the kept epoch, which hardly moves per-image
  probabilities, and it doubles the rows the label-issue search can use. Each row records its split,
  so ``mikata audit RUN --split test`` still gives the untouched test number.
- ``split="all"``: every image; the rows the model trained on get split ``train`` and the run's
  manifest says so (``trained_on``), so audit, report and app state how many rows are in-sample and
  keep them out of the label-issue search.
- ``fractions``/``seed`` other than the checkpoint's are refused: they would call training images
  held-out.

The same images reached by other paths (the folder it trained on read through a CSV, a CSV's files
scanned as a folder, another root) are recognised by content: the checkpoint keeps a hash of each file's
bytes per split (``data.splits.content_record``), the files are hashed before the scan, and each image
gets the split its content had when the model trained (``new`` for an image the training data did not
hold). The scan says so in one line. Checkpoints without content hashes match by path only.

Any other data (a model trained elsewhere, another folder) is scanned as before.

Example:
    >>> plan = plan_scan(handle, "digits/", dataset, split=None, fractions=None, seed=None)  # doctest: +SKIP
    >>> plan.names, plan.trained_on["split"]                                                  # doctest: +SKIP
    (['val', 'test'], 'train')
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from mikata.data.datasets import ImageDataset, Sample, split_dataset
from mikata.data.splits import TRAIN, TrainingSplit, files_sha1, source_identity
from mikata.errors import MikataError
from mikata.progress import notice

if TYPE_CHECKING:
    import numpy as np

    from mikata.models.handle import ModelHandle  # annotations only: reading a run needs no torch

log = logging.getLogger(__name__)
HELD_OUT = "held-out"  # every split but train
ALL = "all"            # every split, training rows marked
NEW = "new"            # recognised by content: an image the checkpoint's training data did not hold


@dataclass
class ScanPlan:
    """The (sample, split name) pairs to scan, and the model's training split when it is this data."""

    chosen: list[tuple[Sample, str]]
    names: list[str]                   # the split names scanned ([""] when the data is not split)
    trained_on: dict | None = None     # for the run's manifest: the checkpoint's split of this very data


def select_samples(dataset: ImageDataset, split: str | None, fractions: Sequence[float] | None,
                   seed: int, label: str = "", keys: str = "relative") -> list[tuple[Sample, str]]:
    """(sample, split name) pairs to scan: one split, every split, or the whole dataset (whose rows
    get the split name ``label``, e.g. a cross-validation fold)."""
    if not fractions:
        if split and split != ALL:
            raise MikataError(f"--split {split} needs --split-fractions (e.g. 0.6,0.2,0.2) to know how to split")
        return [(s, label) for s in dataset.samples]
    parts = split_dataset(dataset, fractions, seed, keys=keys)
    if split in (None, ALL):
        names = list(parts)
    elif split == HELD_OUT:
        names = [n for n in parts if n != TRAIN]
    elif split in parts:
        names = [split]
    else:
        raise MikataError(f"unknown split {split!r}; with {len(fractions)} fractions the splits are "
                          f"{list(parts) + [HELD_OUT, ALL]}")
    return [(s, n) for n in names for s in parts[n].samples]


def plan_scan(handle: ModelHandle, source: str | os.PathLike | None, dataset: ImageDataset, split: str | None,
              fractions: Sequence[float] | None, seed: int | None, label: str = "") -> ScanPlan:
    """What to scan (see the module doc); logs one line saying which split and why, loudly when the
    scan includes images the model was trained on."""
    rec = TrainingSplit.from_metadata(handle.metadata)
    where = source_identity(source) if source is not None else dataset.root
    # label: rows named by the caller (a cross-validation fold scanned by its fold's model) keep that name
    if rec is not None and rec.content and not label and not _same_training_data(dataset, rec, where):
        plan = _plan_by_content(handle, where, dataset, split, fractions, seed, rec)
        if plan is not None:
            return plan
    if rec is None or (rec.source != where and not _copy_of_training_data(dataset, rec)):
        chosen = select_samples(dataset, split, fractions, 0 if seed is None else seed, label)
        return ScanPlan(chosen, sorted({n for _, n in chosen}))
    if rec.source != where:
        log.info("%s holds the very files %s was trained on in %s (moved or copied): using the checkpoint's split",
                 where, handle.spec, rec.source)
    if fractions is not None and (tuple(float(f) for f in fractions) != rec.fractions
                                  or (seed is not None and seed != rec.seed)) or \
            fractions is None and seed is not None and seed != rec.seed:
        raise MikataError(f"{handle.spec} was trained on {where} with the split {rec.describe()}; another split "
                          "would call some of its training images held-out. Leave out --split-fractions and --seed "
                          "(the checkpoint's split is used), or scan a copy of the model trained elsewhere")
    parts = split_dataset(dataset, rec.fractions, rec.seed, keys=rec.keys)
    same = files_sha1(parts[TRAIN], rec.keys) == rec.train_sha1 if TRAIN in parts else False
    if not same:
        log.warning("WARNING: %s changed since %s was trained on it (%d images now, %d then): the split recomputed "
                    "from the checkpoint (%s) may differ from the one it trained on, so some 'held-out' rows may "
                    "be training images", where, handle.spec, len(dataset), rec.files, rec.describe())
    effective = HELD_OUT if split is None else split
    chosen = select_samples(dataset, effective, rec.fractions, rec.seed, keys=rec.keys)
    names = [n for n in parts if any(c[1] == n for c in chosen)]
    counts = {n: len(parts[n]) for n in names}
    trained_on = {"split": TRAIN, **rec.to_dict(content=False), "verified": same, "matched": "path"}
    if TRAIN in names:
        log.warning("WARNING: %d of the %d images scanned were used to train %s (their rows are marked split=train): "
                    "their accuracy and label issues are not out-of-sample. `mikata audit RUN --split test` (or a "
                    "scan without --split) keeps to held-out images; `mikata crossval` gives every image an "
                    "out-of-sample prediction", counts[TRAIN], len(chosen), handle.spec)
    else:
        notice("scanning the held-out split%s of %s: %s images (the model was trained on its %d train images; "
               "checkpoint split %s; --split all scans everything)", "s" if len(names) > 1 else "", where,
               " + ".join(f"{counts[n]} {n}" for n in names), len(parts.get(TRAIN, ())), rec.describe(), logger=log)
    return ScanPlan(chosen, names, trained_on)


def _same_training_data(dataset: ImageDataset, rec: TrainingSplit, where: str) -> bool:
    """Whether the path-based split reproduces the training split exactly (same folder or CSV, or a copy
    of it, with the same training files); otherwise a checkpoint with content hashes matches by content."""
    if rec.source != where:
        return _copy_of_training_data(dataset, rec)
    parts = split_dataset(dataset, rec.fractions, rec.seed, keys=rec.keys)
    return TRAIN in parts and files_sha1(parts[TRAIN], rec.keys) == rec.train_sha1


def _plan_by_content(handle: ModelHandle, where: str, dataset: ImageDataset, split: str | None,
                     fractions: Sequence[float] | None, seed: int | None, rec: TrainingSplit) -> ScanPlan | None:
    """Each image's split from its content hash (see the module doc); None when no image of ``dataset`` was
    in the checkpoint's data (then it is other data, scanned as such)."""
    from mikata.data.splits import content_keys

    known = rec.split_by_content()
    if len(dataset) >= 5000:  # one read of every file before the scan reads them again (then from the page cache)
        log.info("hashing the %d files of %s to recognise the images %s was trained on by content", len(dataset),
                 where, handle.spec)
    keys = content_keys([s.path for s in dataset.samples])
    names = [known.get(k, NEW) if k else NEW for k in keys]
    if all(n == NEW for n in names):
        return None
    if fractions is not None or seed is not None:
        raise MikataError(f"{where} holds images {handle.spec} was trained on (recognised by content), so it brings "
                          f"its own split ({rec.describe()}); another split would call some of its training images "
                          "held-out. Leave out --split-fractions and --seed")
    counts = {n: names.count(n) for n in dict.fromkeys(sorted(names, key=_split_order))}
    if split in (None, HELD_OUT):
        wanted = [n for n in counts if n != TRAIN]
    elif split == ALL:
        wanted = list(counts)
    elif split in counts:
        wanted = [split]
    else:
        raise MikataError(f"unknown split {split!r}; recognised by content, {where} has the splits "
                          f"{list(counts) + [HELD_OUT, ALL]}")
    chosen = [(s, n) for n in wanted for s, m in zip(dataset.samples, names) if m == n]
    found = " + ".join(f"{counts[n]} {n}" for n in counts if n != NEW)
    extra = f", {counts[NEW]} not in its data" if NEW in counts else ""
    scanned = " + ".join(f"{counts[n]} {n}" for n in wanted) or "nothing"
    recognised = len(names) - counts.get(NEW, 0)
    if TRAIN in wanted:
        log.warning("WARNING: %d of the %d images of %s are from the data %s was trained on (%s), recognised by "
                    "content under other paths (%s%s); its %d training images are marked split=train: their accuracy "
                    "and label issues are not out-of-sample. A scan without --split keeps to held-out images",
                    recognised, len(names), where, handle.spec, rec.source, found, extra, counts.get(TRAIN, 0))
    else:
        log.info("%d of the %d images of %s are from the data %s was trained on (%s), recognised by content under "
                 "other paths (%s%s): scanning the held-out ones (%s); its %d training images are left out "
                 "(--split all scans and marks them)", recognised, len(names), where, handle.spec, rec.source,
                 found, extra, scanned, counts.get(TRAIN, 0))
    trained_on = {"split": TRAIN, **rec.to_dict(content=False), "verified": True, "matched": "content",
                  "recognised": {n: c for n, c in counts.items() if n != NEW}}
    return ScanPlan(chosen, wanted, trained_on)


def _split_order(name: str) -> tuple[int, str]:
    """train, val, test, then the rest by name, ``new`` last: the order splits are listed in."""
    order = {TRAIN: 0, "val": 1, "test": 2, NEW: 4}
    return order.get(name, 3), name


def _copy_of_training_data(dataset: ImageDataset, rec: TrainingSplit) -> bool:
    """Whether ``dataset``, read from another folder than the checkpoint's, holds exactly the files (same
    paths inside the folder, same labels) the model was trained on: a moved or copied dataset."""
    if rec.keys != "relative" or len(dataset) != rec.files:
        return False
    parts = split_dataset(dataset, rec.fractions, rec.seed)
    return TRAIN in parts and files_sha1(parts[TRAIN]) == rec.train_sha1


# ------------------------------------------------------------------ reading a run: in-sample rows
def in_sample_rows(manifest: dict, splits) -> "np.ndarray":
    """``(N,)`` bool: the rows of a run whose image the scanned model was trained on (split ``train`` of
    a run whose manifest says the model was trained on this data; see ``plan_scan``)."""
    import numpy as np

    splits = np.asarray(splits, dtype=str)
    trained = manifest.get("trained_on") if isinstance(manifest, dict) else None
    if not isinstance(trained, dict) or not isinstance(trained.get("split"), str):
        return np.zeros(len(splits), bool)
    return splits == trained["split"]


def trained_rows_note(trained: int, rows: int) -> str | None:
    """The sentence audit, report and app show when a run holds rows the model was trained on."""
    if not trained:
        return None
    return (f"{trained} of {rows} rows were used to train this model; their accuracy and label issues are not "
            "out-of-sample (they are left out of the label-issue search; `--split test` shows held-out rows only)")


def label_scope_note(scope: dict) -> str:
    """"label issues searched over U of M rows; left out: ..." for audit, report and app."""
    text = f"label issues searched over {scope['used']} of {scope['rows']} scanned rows"
    left = [f"{n} {why}" for why, n in scope.get("left_out", {}).items() if n]
    return text + ("; left out: " + "; ".join(left) if left else "")
