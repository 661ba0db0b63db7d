"""The split a model was trained with, as a checkpoint records it, and the held-out part of a dataset.

``mikata train`` writes a ``TrainingSplit`` into the checkpoint (fractions, seed, the folder or CSV
it read, how many files, a sha1 of the training files' paths inside that folder, and a content hash of
every file per split). ``mikata scan`` of the SAME data (that folder, or a copy of it elsewhere whose
training files hash alike) then recomputes that split (``split_dataset`` is deterministic in the seed
and the file list); the same images reached by other paths (a CSV of the folder, another root) are
recognised by their content hashes (the sha1 of the file's bytes a scan computes anyway). Either way
the scan takes only what the model never trained on, or, when asked for everything, marks the rows it
did train on — so no accuracy or label-issue list silently mixes in-sample and out-of-sample images.

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
from mikata.data.files import UnreadableFileError, file_digest

TRAIN = "train"  # the split name of the rows a model was trained on
# Content hashes kept per file: the first 16 hex digits (64 bits) of the sha1 of its bytes. Two different
# images share one with odds ~n^2 / 2^65 (1e-9 for 200k images), and 70k files take ~1.2 MB of metadata.
CONTENT_DIGITS = 16


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


def content_key(sha1_hex: str) -> str:
    """The part of a file's sha1 (as ``file_digest`` and the scan compute it) a checkpoint keeps."""
    return sha1_hex[:CONTENT_DIGITS]


def content_keys(paths: Sequence[str], workers: int = 4) -> list[str | None]:
    """``content_key`` of each file (None for a file that cannot be read: the scan records it as a skip)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(path: str) -> str | None:
        try:
            return content_key(file_digest(path)[0])
        except UnreadableFileError:
            return None

    with ThreadPoolExecutor(max(1, workers)) as pool:
        return list(pool.map(one, paths))


def content_record(parts: Mapping[str, ImageDataset], workers: int = 4) -> dict[str, str]:
    """Per split name, the sorted content keys of its files concatenated into one string (compact in a
    checkpoint's JSON metadata); unreadable files are left out."""
    out = {}
    for name, part in parts.items():
        keys = sorted({k for k in content_keys([s.path for s in part.samples], workers) if k})
        out[name] = "".join(keys)
    return out


def _valid_content(value: Any) -> dict[str, str]:
    """The content record of a checkpoint's metadata, or {} when it is absent or malformed."""
    if not isinstance(value, Mapping):
        return {}
    hexdigits = set("0123456789abcdef")
    out = {}
    for name, keys in value.items():
        if not (isinstance(name, str) and isinstance(keys, str) and len(keys) % CONTENT_DIGITS == 0
                and set(keys) <= hexdigits):
            return {}
        out[name] = keys
    return out


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
    # split name -> its files' content keys, concatenated (``content_record``); {} in older checkpoints
    content: Mapping[str, str] = field(default_factory=dict, compare=False)

    def to_dict(self, content: bool = True) -> dict[str, Any]:
        """The record as JSON data; ``content=False`` leaves out the per-file hashes (for a run's manifest)."""
        out = {"fractions": list(self.fractions), "seed": self.seed, "source": self.source, "files": self.files,
               "train_sha1": self.train_sha1, "sizes": dict(self.sizes), "keys": self.keys}
        if content and self.content:
            out["content"] = dict(self.content)
        return out

    def split_by_content(self) -> dict[str, str]:
        """content key -> the split its file was in; an image in several splits (a duplicate file) counts
        as ``train``'s, because the model saw it."""
        out: dict[str, str] = {}
        for name in sorted(self.content, key=lambda n: n == TRAIN):  # train last: it wins
            keys = self.content[name]
            for i in range(0, len(keys), CONTENT_DIGITS):
                out[keys[i:i + CONTENT_DIGITS]] = name
        return out

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
        return cls(fractions, seed, rec["source"], files, rec["train_sha1"], sizes, keys,
                   _valid_content(rec.get("content")))

    def describe(self) -> str:
        return f"fractions {','.join(f'{f:g}' for f in self.fractions)}, seed {self.seed}"


def record_split(source: str | os.PathLike | None, dataset: ImageDataset, parts: Mapping[str, ImageDataset],
                 fractions: Sequence[float], seed: int, workers: int = 4) -> TrainingSplit:
    """The ``TrainingSplit`` of a dataset just split for training, with every file's content key (one more
    read of each file, from the page cache once decoded); ``source`` None: the dataset was given as a subset
    in memory (e.g. cross-validation folds), which no folder on disk is "the same data" as."""
    where = source_identity(source) if source is not None else f"{dataset.root} (a subset of {len(dataset)} images)"
    return TrainingSplit(tuple(float(f) for f in fractions), int(seed), where, len(dataset),
                         files_sha1(parts[TRAIN]), {k: len(v) for k, v in parts.items()}, "relative",
                         content_record(parts, workers))
