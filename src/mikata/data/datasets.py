"""Labeled image datasets: class folders, CSV manifests, and deterministic per-class splits.

A folder dataset has one subfolder per class; images may sit deeper inside a class folder
(``cats/indoor/1.jpg`` is a cat). A manifest is a CSV with ``path,label`` columns (paths relative
to the CSV's folder unless absolute); with a header row, any further columns (``path,label,cell_type``)
are per-image **fields**: text the scan stores, which the audit, the report and the web app group,
filter and colour by. Field values are data, never code. Splits are per class, like MATLAB's splitEachLabel, and
depend only on the seed and the file list (each file's path inside the dataset's folder), never on the order the
filesystem returns or on where the folder lies: a copy of a dataset elsewhere splits the same way.

Example:
    >>> ds = folder_dataset("flowers/")                           # doctest: +SKIP
    >>> parts = split_dataset(ds, (0.6, 0.2, 0.2), seed=0)        # doctest: +SKIP
    >>> len(parts["train"]), ds.counts()                           # doctest: +SKIP
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from mikata.data.images import is_image_file
from mikata.errors import MikataError

SPLIT_NAMES = ("train", "val", "test")


class DatasetError(MikataError):
    """A dataset folder or manifest that cannot be used as it is; the message says how to fix it."""


@dataclass(frozen=True)
class Sample:
    path: str  # absolute path
    label: int  # index into ImageDataset.classes
    fields: tuple[tuple[str, str], ...] = ()  # (column, value) of a manifest's extra columns


@dataclass
class ImageDataset:
    root: str
    classes: list[str]
    samples: list[Sample] = field(default_factory=list)
    fields: list[str] = field(default_factory=list)  # a manifest's extra column names, in its order

    def __len__(self) -> int:
        return len(self.samples)

    def counts(self) -> dict[str, int]:
        """Images per class, in class order (classes with no images show 0)."""
        c = Counter(s.label for s in self.samples)
        return {name: c.get(i, 0) for i, name in enumerate(self.classes)}

    def subset(self, samples: Iterable[Sample]) -> "ImageDataset":
        return ImageDataset(self.root, list(self.classes), list(samples), list(self.fields))


def folder_dataset(root: str | os.PathLike, classes: Sequence[str] | None = None,
                   class_map: Mapping[str, str] | None = None, allow_empty: bool = False) -> ImageDataset:
    """Read a class-folder dataset.

    ``classes`` fixes the class order (e.g. a model's class names); folders are matched to it
    case-insensitively, after renaming through ``class_map`` (folder name -> class name).
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist or is not a folder")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DatasetError(f"{root} has no class subfolders; put each class's images in a folder named after the class")
    class_map = dict(class_map or {})
    folder_class = {f.name: class_map.get(f.name, f.name) for f in folders}
    if classes is None:
        classes = sorted(set(folder_class.values()))
    else:
        known = {c.lower(): c for c in classes}
        unknown = [f for f, c in folder_class.items() if c.lower() not in known]
        if unknown:
            raise DatasetError(
                f"folders {unknown[:10]} in {root} are not classes of the model (e.g. {list(classes)[:5]}); "
                "rename them or pass a class mapping (folder=class)")
        folder_class = {f: known[c.lower()] for f, c in folder_class.items()}
    index = {c: i for i, c in enumerate(classes)}
    samples = []
    for f in folders:
        for dirpath, dirnames, filenames in os.walk(f, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if is_image_file(name) and not name.startswith("."):
                    samples.append(Sample(str(Path(dirpath) / name), index[folder_class[f.name]]))
    ds = ImageDataset(str(root), list(classes), samples)
    _check_nonempty(ds, allow_empty, f"folder {root}")
    return ds


def manifest_dataset(csv_path: str | os.PathLike, classes: Sequence[str] | None = None,
                     allow_empty: bool = False) -> ImageDataset:
    """Read a ``path,label`` CSV (a header row is optional; with one, extra columns become fields)."""
    csv_path = Path(csv_path).expanduser().resolve()
    if not csv_path.is_file():
        raise DatasetError(f"manifest {csv_path} does not exist" if not csv_path.exists() else
                           f"manifest {csv_path} is not a regular file; give a .csv file")
    rows = read_manifest_rows(csv_path)
    names: list[str] = []
    header = bool(rows) and [c.strip().lower() for c in rows[0][:2]] == ["path", "label"]
    if header:
        names = manifest_fields(csv_path, rows[0][2:])
        rows = rows[1:]
    bad = [i + 1 for i, r in enumerate(rows) if len(r) < 2]
    if bad:
        raise DatasetError(f"{csv_path}: rows {bad[:10]} do not have the two columns path,label")
    labels = [r[1].strip() for r in rows]
    if classes is None:
        classes = sorted(set(labels))
    index = {c.lower(): i for i, c in enumerate(classes)}
    unknown = sorted({l for l in labels if l.lower() not in index})
    if unknown:
        raise DatasetError(f"{csv_path}: labels {unknown[:10]} are not among the classes {list(classes)[:10]}")
    base = csv_path.parent
    samples = [Sample(str((base / r[0].strip()).resolve()), index[l.lower()],
                      tuple((n, r[2 + k].strip() if 2 + k < len(r) else "") for k, n in enumerate(names)))
               for r, l in zip(rows, labels)]
    ds = ImageDataset(str(base), list(classes), _once(csv_path, samples, 1 + header), names)
    _check_nonempty(ds, allow_empty, f"manifest {csv_path}")
    return ds


MAX_MANIFEST_BYTES = 1 << 30  # 1 GiB: ~10 M rows of 100 characters; a larger "manifest" is not one


def read_manifest_rows(csv_path: Path) -> list[list[str]]:
    """The non-blank rows of a manifest, decoded: UTF-8 (with or without the BOM that Excel's
    "CSV UTF-8" writes) or UTF-16 with its BOM; anything else is one clear ``DatasetError``."""
    import codecs
    import stat

    try:
        fd = os.open(csv_path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO must not block
    except OSError as e:
        raise DatasetError(f"manifest {csv_path} cannot be read ({e.strerror or e})") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise DatasetError(f"manifest {csv_path} is not a regular file; give a .csv file")
        if st.st_size > MAX_MANIFEST_BYTES:
            raise DatasetError(f"manifest {csv_path} is {st.st_size / 2**30:.1f} GiB, over the 1 GiB a manifest "
                               "may have; split it, or use a class-folder dataset")
        os.set_blocking(fd, True)
        raw = f.read()
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding, text_bytes = "utf-16", raw
    else:
        encoding, text_bytes = "utf-8", raw[3:] if raw.startswith(codecs.BOM_UTF8) else raw
    try:
        text = text_bytes.decode(encoding)
    except UnicodeDecodeError as e:
        line = text_bytes[:e.start].count(b"\n") + 1
        raise DatasetError(f"manifest {csv_path}: line {line} is not {encoding.upper()} (byte 0x{text_bytes[e.start]:02x}); "
                           "save it as UTF-8 (Excel: Save As > CSV UTF-8)") from None
    if "\x00" in text:
        line = text[:text.index("\x00")].count("\n") + 1
        raise DatasetError(f"manifest {csv_path}: line {line} holds NUL bytes (UTF-16 without a byte order mark?); "
                           "save it as UTF-8 (Excel: Save As > CSV UTF-8)")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        return [r for r in reader if r and any(c.strip() for c in r)]
    except csv.Error as e:  # e.g. a field over csv's 128 KiB limit, or a quote left open
        raise DatasetError(f"manifest {csv_path}: line {reader.line_num}: {e}; a manifest cell holds a path, "
                           "a label or a short value") from None


def _once(csv_path: Path, samples: list[Sample], first_line: int) -> list[Sample]:
    """Each file once: a repeat with the same label is dropped (with a warning); with another label the
    manifest contradicts itself, and that is refused naming both lines."""
    import logging

    seen: dict[str, int] = {}
    out: list[Sample] = []
    repeats = 0
    for k, s in enumerate(samples):
        j = seen.get(s.path)
        if j is None:
            seen[s.path] = len(out)
            out.append(s)
        elif out[j].label == s.label:
            repeats += 1
        else:
            first = samples.index(out[j]) + first_line
            raise DatasetError(f"manifest {csv_path}: {s.path} is listed twice with different labels (non-blank rows "
                               f"{first} and {k + first_line}); keep one row per file")
    if repeats:
        logging.getLogger(__name__).warning("manifest %s lists %d files more than once; each is used once",
                                            csv_path, repeats)
    return out


def manifest_fields(csv_path: Path, header: Sequence[str]) -> list[str]:
    """The extra column names of a manifest's header: non-empty, distinct, not ``path``/``label``."""
    names = [h.strip() for h in header]
    if any(not n for n in names):
        raise DatasetError(f"{csv_path}: the header has an empty column name after path,label; name every column")
    lower = [n.lower() for n in names]
    dup = sorted({n for n in lower if lower.count(n) > 1 or n in ("path", "label")})
    if dup:
        raise DatasetError(f"{csv_path}: the header repeats the columns {dup}; give each column its own name")
    return names


def load_dataset(source: str | os.PathLike, classes: Sequence[str] | None = None,
                 class_map: Mapping[str, str] | None = None, allow_empty: bool = False) -> ImageDataset:
    """A folder or a ``.csv`` manifest, whichever ``source`` is."""
    if str(source).lower().endswith(".csv"):
        return manifest_dataset(source, classes, allow_empty)
    return folder_dataset(source, classes, class_map, allow_empty)


def _check_nonempty(ds: ImageDataset, allow_empty: bool, what: str) -> None:
    if not ds.samples:
        raise DatasetError(f"{what} has no image files ({', '.join(sorted({'.jpg', '.png', '.bmp', '.tif'}))}, …)")
    empty = [c for c, n in ds.counts().items() if n == 0]
    if empty and not allow_empty:
        shown = empty[:10] + ([f"… ({len(empty)} in all)"] if len(empty) > 10 else [])
        raise DatasetError(f"{what}: classes without images: {shown}; add images or remove those classes")


SPLIT_KEYS = ("relative", "absolute")  # what a split hashes per file; "absolute": checkpoints before 2026-12


def sample_key(ds: ImageDataset, s: Sample, keys: str = "relative") -> str:
    """What identifies ``s`` for splits and split checks: its path inside ``ds.root`` (POSIX separators), so
    the same files split the same way wherever the folder lies; ``keys="absolute"``: its absolute path."""
    if keys == "absolute":
        return s.path
    try:
        return Path(os.path.relpath(s.path, ds.root)).as_posix()
    except ValueError:  # Windows: another drive than the dataset's folder
        return s.path


def _rank(seed: int, key: str) -> str:
    # surrogateescape: a non-UTF-8 file name hashes as its bytes (valid names hash as before)
    return hashlib.sha1(f"{seed}:{key}".encode("utf-8", "surrogateescape")).hexdigest()


def split_dataset(ds: ImageDataset, fractions: Sequence[float] = (0.6, 0.2, 0.2), seed: int = 0,
                  names: Sequence[str] = SPLIT_NAMES, keys: str = "relative") -> dict[str, ImageDataset]:
    """Per-class split into ``names`` by ``fractions`` (summing to at most 1), deterministic in ``seed``.

    Each class is ordered by a seeded hash of its files' ``sample_key`` (path inside the dataset's folder),
    so adding images to one class never moves images of another class between splits, and moving or
    copying the folder moves none. ``keys="absolute"`` recomputes the splits of older checkpoints.
    """
    if not fractions or any(f < 0 for f in fractions) or sum(fractions) > 1 + 1e-9:
        raise DatasetError(f"split fractions {list(fractions)} must be non-negative and sum to at most 1")
    if len(fractions) > len(names):
        raise DatasetError(f"{len(fractions)} fractions but only the split names {list(names)}")
    by_class: dict[int, list[Sample]] = {}
    for s in ds.samples:
        by_class.setdefault(s.label, []).append(s)
    parts: dict[str, list[Sample]] = {n: [] for n in names[:len(fractions)]}
    for label in sorted(by_class):
        items = sorted(by_class[label], key=lambda s: _rank(seed, sample_key(ds, s, keys)))
        bounds, acc = [], 0.0
        for f in fractions:
            acc += f
            bounds.append(round(acc * len(items)))
        start = 0
        for name, end in zip(parts, bounds):
            parts[name].extend(items[start:end])
            start = end
    return {n: ds.subset(sorted(v, key=lambda s: s.path)) for n, v in parts.items()}


def parse_fractions(text: str) -> tuple[float, ...]:
    """``"0.6,0.2,0.2"`` -> (0.6, 0.2, 0.2), with a clear error for anything else."""
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise DatasetError(f"--split {text!r}: give fractions like 0.6,0.2,0.2") from None
