"""Label corrections for training: a run's label review (``--reviews RUN``) or a CSV (``--corrections FILE``).

The web app's label review stores a verdict per image (``RunStore.reviews``). For training they mean
(``analysis.audit.reviewed_label``, the same rule as the export and the reviews CSV):

- "label wrong" with a chosen class: the image is trained under that class;
- "label wrong" without one: the image is left out (its label is known to be wrong, the right one is not);
- "label fine": the image stays as it is.

A CSV ``path,label`` does the same by hand: a class name relabels the image, an empty label leaves it
out; a relative path is inside the dataset folder. Only the training's view of the data changes:
nothing in the dataset folder is moved or rewritten, and the split is made from the folder's own
labels, so the checkpoint's split (``data.splits``) still describes the folder ``mikata scan`` reads.

Every correction must name an image of the dataset and a class of it; a reviewed image must still
be the file that was reviewed (same sha1). Anything else is one ``CorrectionsError`` line naming the
file and what to do.

Example:
    >>> c = from_reviews("runs/fashion-cv")                                   # doctest: +SKIP
    >>> parts, summary = apply_corrections(dataset, parts, c)                 # doctest: +SKIP
    >>> summary["relabeled"], summary["left_out"]                             # doctest: +SKIP
    (41, 3)
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from mikata.data.datasets import DatasetError, ImageDataset, Sample

MAX_CSV_BYTES = 64 * 2**20


class CorrectionsError(DatasetError):
    """Corrections that cannot be applied: an unknown class, an image not in the dataset, a changed file."""


@dataclass
class Corrections:
    """What to change: ``labels`` (absolute path -> class name) and ``left_out`` (absolute paths)."""

    source: dict                                   # what the checkpoint records about where they came from
    labels: dict[str, str] = field(default_factory=dict)
    left_out: set[str] = field(default_factory=set)
    fine: int = 0                                  # reviews that kept the label
    where: str = ""                                # the file or run named in messages


def _real(path: str | os.PathLike) -> str:
    return os.path.realpath(os.path.expanduser(path))


def from_reviews(run_dir: str | os.PathLike) -> Corrections:
    """The label review stored in a run (``mikata serve RUN``'s Label review, or ``POST /api/review``)."""
    from mikata.analysis.audit import reviewed_label
    from mikata.runs.store import RunStore

    with RunStore.open(run_dir) as store:
        names = store.classes
        reviews = store.reviews()
        hashes = {}
        if reviews:
            ids = [r["id"] for r in reviews]
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                marks = ",".join("?" * len(chunk))
                hashes.update(store.db.execute(f"SELECT id, hash FROM images WHERE id IN ({marks})", chunk).fetchall())
        where = str(store.dir)
    if not reviews:
        raise CorrectionsError(f"{where} has no label reviews; review suspected label errors first (`mikata serve "
                               f"{where}`, Label review) or give --corrections FILE.csv")
    out = Corrections({"kind": "reviews", "run": where, "reviews": len(reviews)}, where=where)
    for r in reviews:
        path = _real(r["path"])
        _check_unchanged(path, hashes.get(r["id"]), where)
        cls = reviewed_label(r, r["label"])
        if r["verdict"] == "fine":
            out.fine += 1
        elif cls is None:
            out.left_out.add(path)
        elif not 0 <= cls < len(names):
            raise CorrectionsError(f"{where}: the review of {r['path']} names class id {cls}, not one of the run's "
                                   f"{len(names)} classes; review it again in the app")
        else:
            out.labels[path] = names[cls]
    return out


def _check_unchanged(path: str, sha1: str | None, where: str) -> None:
    """The file a review judged must be the file trained on: same bytes (sha1) as when it was scanned."""
    if not sha1:
        return
    h = hashlib.sha1()
    try:
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
    except OSError as e:
        raise CorrectionsError(f"{path} (reviewed in {where}) cannot be read ({e.strerror or e}); restore it or "
                               "clear its review") from None
    if h.hexdigest() != sha1:
        raise CorrectionsError(f"{path} changed since it was scanned into {where} (its review judged other bytes); "
                               "scan and review it again, or clear its review")


def from_csv(path: str | os.PathLike) -> Corrections:
    """A ``path,label`` CSV (header required; an empty label leaves the image out). Relative paths are
    inside the dataset folder (``apply_corrections`` resolves them). The checkpoint records the file's sha256."""
    p = Path(path).expanduser()
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise CorrectionsError(f"--corrections {p}: cannot read it ({e.strerror or e})") from None
    if len(raw) > MAX_CSV_BYTES:
        raise CorrectionsError(f"{p}: {len(raw) / 2**20:.0f} MiB is over the {MAX_CSV_BYTES // 2**20} MiB limit "
                               "for a corrections CSV")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CorrectionsError(f"{p} is not UTF-8 text; save it as a UTF-8 CSV with the columns path,label") from None
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or [c.strip().lower() for c in rows[0][:2]] != ["path", "label"]:
        raise CorrectionsError(f"{p}: the first line must be the header path,label (one image per line after it: "
                               "its path inside the dataset folder and its right class, or an empty label to leave "
                               "it out)")
    out = Corrections({"kind": "csv", "file": str(p.resolve()), "sha256": hashlib.sha256(raw).hexdigest(),
                       "rows": 0}, where=str(p))
    for number, row in enumerate(rows[1:], start=2):
        if not row or not any(c.strip() for c in row):
            continue
        if len(row) < 2 or not row[0].strip():
            raise CorrectionsError(f"{p} line {number}: {','.join(row)[:80]!r} is not path,label")
        image = Path(row[0].strip()).expanduser()
        full = str(image) if not image.is_absolute() else _real(image)  # relative: inside the dataset folder
        label = row[1].strip()
        if full in out.labels or full in out.left_out:
            raise CorrectionsError(f"{p} line {number}: {row[0].strip()} is listed twice; keep one line per image")
        if label:
            out.labels[full] = label
        else:
            out.left_out.add(full)
        out.source["rows"] += 1
    return out


def apply_corrections(ds: ImageDataset, parts: Mapping[str, ImageDataset], c: Corrections
                      ) -> tuple[dict[str, ImageDataset], dict]:
    """``parts`` (the dataset's split, made from the folder's labels) with ``c`` applied in every part,
    and the summary the checkpoint records: ``{**c.source, "relabeled", "left_out", "fine", "unchanged"}``.

    Every path in ``c`` must be an image of ``ds`` and every class one of ``ds.classes`` (matched
    exactly, else case-insensitively); ``CorrectionsError`` names the first few that are not."""
    index = {_real(s.path): s for s in ds.samples}
    if any(not os.path.isabs(p) for p in [*c.labels, *c.left_out]):  # a CSV's paths inside the dataset folder
        labels = {_inside(ds.root, p): name for p, name in c.labels.items()}
        left_out = {_inside(ds.root, p) for p in c.left_out}
        if len(labels) + len(left_out) < len(c.labels) + len(c.left_out):
            raise CorrectionsError(f"{c.where}: two lines name the same image (one relative, one absolute path); "
                                   "keep one line per image")
        c = Corrections(c.source, labels, left_out, c.fine, c.where)
    missing = sorted(p for p in [*c.labels, *c.left_out] if p not in index)
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise CorrectionsError(f"{c.where}: {len(missing)} corrected image(s) are not in the dataset {ds.root}: "
                               f"{shown}; give the folder those images are in (the one that was scanned and reviewed)")
    exact = {n: i for i, n in enumerate(ds.classes)}
    folded = {n.lower(): i for i, n in enumerate(ds.classes)}
    target: dict[str, int] = {}
    for p, name in c.labels.items():
        k = exact.get(name, folded.get(name.lower()))
        if k is None:
            raise CorrectionsError(f"{c.where}: the class {name[:60]!r} (for {p}) is not a class of {ds.root}; its "
                                   f"classes are {', '.join(ds.classes[:20])}{', ...' if len(ds.classes) > 20 else ''}")
        target[p] = k
    relabeled = unchanged = 0
    out: dict[str, ImageDataset] = {}
    for name, part in parts.items():
        samples: list[Sample] = []
        for s in part.samples:
            key = _real(s.path)
            if key in c.left_out:
                continue
            k = target.get(key)
            if k is not None and k != s.label:
                samples.append(Sample(s.path, k, s.fields))
                relabeled += 1
            else:
                unchanged += k is not None
                samples.append(s)
        out[name] = part.subset(samples)
    summary = {**c.source, "relabeled": relabeled, "left_out": len(c.left_out), "fine": c.fine,
               "unchanged": unchanged}
    return out, summary


def _inside(root: str, path: str) -> str:
    return path if os.path.isabs(path) else _real(os.path.join(root, path))


def describe(summary: Mapping) -> str:
    """The training line: which corrections, how many labels changed and images left out."""
    what = (f"the label review of {summary['run']} ({summary['reviews']} reviews)" if summary.get("kind") == "reviews"
            else f"the corrections in {summary.get('file')} (sha256 {str(summary.get('sha256'))[:12]})")
    return (f"labels from {what}: {summary['relabeled']} changed, {summary['left_out']} image(s) left out"
            + (f", {summary['fine']} confirmed" if summary.get("fine") else "")
            + (f", {summary['unchanged']} already so" if summary.get("unchanged") else ""))
