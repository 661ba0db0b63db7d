"""The split a model was trained with, as a checkpoint records it, and the held-out part of a dataset.

``mikata train`` writes a ``TrainingSplit`` into the checkpoint (fractions, seed, the folder or CSV
it read, how many files, and a sha1 of the training files' paths inside that folder). ``mikata scan`` of
the SAME data (that folder, or a copy of it elsewhere whose training files hash alike) then recomputes
that split (``split_dataset`` is deterministic in the seed and the file list) and
scans only what the model never trained on, or, when asked for everything, marks the rows it did
train on — so no accuracy or label-issue list silently mixes in-sample and out-of-sample images.

Example:
    >>> rec = TrainingSplit((0.7, 0.15, 0.15), 0, "/data/digits", 120, "ab12", {"train": 84}, "relative")
    >>> TrainingSplit.from_metadata({"training": {"split_record": rec.to_dict()}}) == rec
    True
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from mikata.data.datasets import SPLIT_KEYS, ImageDataset, sample_key

TRAIN = "train"  # the split name of the rows a model was trained on


def source_identity(source: str | os.PathLike) -> str:
    """The resolved folder or CSV path a dataset was read from: what "the same data" means."""
    return str(Path(source).expanduser().resolve())


def files_sha1(part: ImageDataset, keys: str = "relative") -> str:
    """sha1 of the sorted ``key<TAB>label`` lines (``sample_key``: the path inside the dataset's folder):
    equal exactly when the same files carry the same labels, wherever the folder lies."""
    h = hashlib.sha1()
    for key, label in sorted((sample_key(part, s, keys), s.label) for s in part.samples):
        h.update(f"{key}\t{label}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


@dataclass(frozen=True)
class TrainingSplit:
    """How a checkpoint's training data was split: enough to recompute (and verify) the split."""

    fractions: tuple[float, ...]
    seed: int
    source: str          # source_identity of the folder or CSV given to ``train``
    files: int           # images in the dataset when it was split
    train_sha1: str      # files_sha1 of the training split
    sizes: Mapping[str, int] = field(default_factory=dict)  # images per split
    keys: str = "absolute"  # what the split hashed per file (datasets.SPLIT_KEYS); records before 2026-12: absolute

    def to_dict(self) -> dict[str, Any]:
        return {"fractions": list(self.fractions), "seed": self.seed, "source": self.source, "files": self.files,
                "train_sha1": self.train_sha1, "sizes": dict(self.sizes), "keys": self.keys}

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> "TrainingSplit | None":
        """The record in a checkpoint's metadata (``metadata["training"]["split_record"]``), or None when
        the checkpoint has none (trained elsewhere, or before mikata recorded it) or it is not usable."""
        training = metadata.get("training") if isinstance(metadata, Mapping) else None
        rec = training.get("split_record") if isinstance(training, Mapping) else None
        if not isinstance(rec, Mapping):
            return None
        try:
            fractions = tuple(float(f) for f in rec["fractions"])
            seed, files = rec["seed"], rec["files"]
            if not (isinstance(seed, int) and isinstance(files, int) and isinstance(rec["source"], str)
                    and isinstance(rec["train_sha1"], str)) or not all(math.isfinite(f) for f in fractions):
                return None
            sizes = {str(k): int(v) for k, v in dict(rec.get("sizes") or {}).items()}
        except (KeyError, TypeError, ValueError):
            return None
        keys = rec.get("keys", "absolute")
        if keys not in SPLIT_KEYS:
            return None
        return cls(fractions, seed, rec["source"], files, rec["train_sha1"], sizes, keys)

    def describe(self) -> str:
        return f"fractions {','.join(f'{f:g}' for f in self.fractions)}, seed {self.seed}"


def record_split(source: str | os.PathLike | None, dataset: ImageDataset, parts: Mapping[str, ImageDataset],
                 fractions: Sequence[float], seed: int) -> TrainingSplit:
    """The ``TrainingSplit`` of a dataset just split for training; ``source`` None: the dataset was given
    as a subset in memory (e.g. cross-validation folds), which no folder on disk is "the same data" as."""
    where = source_identity(source) if source is not None else f"{dataset.root} (a subset of {len(dataset)} images)"
    return TrainingSplit(tuple(float(f) for f in fractions), int(seed), where, len(dataset),
                         files_sha1(parts[TRAIN]), {k: len(v) for k, v in parts.items()}, "relative")
