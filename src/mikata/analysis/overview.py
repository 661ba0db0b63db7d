"""Everything a person looks at first in a scanned run, computed once, addressed by row id.

``overview(run)`` gathers the audit numbers (accuracy, confusion, histogram, confused pairs, the
most and least class-like images of each class, confident errors, suspected label errors, the
embedding projection) into one ``Overview``. ``mikata audit`` prints it, ``mikata report`` renders
it to a file and ``mikata serve`` caches it per ``RunStore.version()``, so all three show the same
numbers. Images are referred to by store row ids (what the server serves), never by paths.

Example:
    >>> ov = overview("runs/fashion")                                   # doctest: +SKIP
    >>> ov.accuracy, ov.class_names[ov.confused_pairs[0][0]]            # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from mikata.analysis import overview_cache
from mikata.analysis.audit import (RunData, accuracy, class_histogram, confused_pairs, confusion_matrix,
                                   exceptional_errors, label_issues, per_class_metrics, project_2d, ranked_per_class,
                                   row_normalized, topk_accuracy)
from mikata.analysis.runstore import RunStore, RunStoreError


@dataclass
class ClassView:
    """One class's numbers and its telling images (row ids, most telling first)."""

    index: int
    name: str
    images: int
    precision: float
    recall: float
    f1: float
    most_class_like: list[int]
    least_class_like: list[int]
    confident_errors: list[int]


@dataclass
class Overview:
    run_dir: str
    version: tuple[int, int, int]
    data: RunData
    skipped: list[tuple[str, str]]
    accuracy: float
    top5_accuracy: float
    confusion: np.ndarray               # (K, K) counts, rows = true class
    confusion_normalized: np.ndarray    # (K, K) rows sum to 1 (recall on the diagonal)
    histogram: np.ndarray               # (K,) images per class
    imbalance: float
    present: list[int]                  # classes that have images
    confused_pairs: list[tuple[int, int, int, int]]  # (a, b, a as b, b as a)
    classes: list[ClassView]
    label_issues: list[dict]            # audit.label_issues rows (with "id")
    exceptional: dict | None = None     # audit.exceptional_errors, when groups are given

    @property
    def class_names(self) -> list[str]:
        return self.data.class_names

    def row(self, image_id: int) -> int:
        """The index in ``data`` of a store row id (KeyError for ids not in this overview).

        ``data.ids`` is ascending: a binary search, no million-entry dict to build first.
        """
        ids = self.data.ids
        k = int(np.searchsorted(ids, int(image_id)))
        if k >= len(ids) or int(ids[k]) != int(image_id):
            raise KeyError(image_id)
        return k

    def cell(self, true: int, pred: int) -> np.ndarray:
        """Row ids of the images of class ``true`` predicted as ``pred``, most confident first."""
        d = self.data
        rows = np.nonzero((d.labels == true) & (d.preds == pred))[0]
        rows = rows[np.argsort(-d.probs[rows, pred], kind="stable")]
        return d.ids[rows]

    def embedding_2d(self, method: str = "pca", max_points: int = 20000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, xy)``: a 2-D projection of the embeddings, a seeded subsample of at most ``max_points``.

        The embeddings are L2-normalized first, so the plot compares directions, not magnitudes:
        with raw post-ReLU features a few high-norm classes stretch it and the rest collapse into a corner.
        """
        d = self.data
        rows = np.arange(len(d))
        if len(rows) > max_points:
            rows = np.sort(np.random.default_rng(seed).choice(len(rows), max_points, replace=False))
        with RunStore.open(d.run_dir) as store:
            if "embed" not in store.dims():
                raise RunStoreError("this run has no embeddings (the model has no linear head to read them from)")
            emb = np.asarray(store.vectors("embed")[d.vec_rows[rows]], dtype=np.float32)  # (n, D)
        if len(rows) < 3:
            raise RunStoreError("fewer than 3 scanned images: nothing to project")
        emb /= np.clip(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12, None)
        return d.ids[rows], project_2d(emb, method, seed).astype(np.float32)


def overview(run: str | os.PathLike, n: int = 3, top_pairs: int = 10, top_issues: int | None = 50,
             split: str | None = None, groups: Mapping[str, str] | None = None) -> Overview:
    """Compute the overview of the committed rows of a run (consistent while a scan writes)."""
    with RunStore.open(run) as store:
        with store.snapshot():  # the version and the rows from one point in time
            cached = overview_cache.run_data(store, split)
            skipped = store.skipped()
    d, version = cached.data, cached.version
    if not len(d):
        raise RunStoreError(f"{run} has no scanned images yet{f' in split {split!r}' if split else ''}")
    k = d.num_classes
    cm = confusion_matrix(d.labels, d.preds, k)
    metrics = per_class_metrics(cm)
    counts, imbalance = class_histogram(d.labels, k)
    present = np.nonzero(counts)[0].tolist()
    classes = []
    for c, (most, least, errors) in zip(present, ranked_per_class(d, present, n)):
        classes.append(ClassView(c, d.class_names[c], int(counts[c]), float(metrics["precision"][c]),
                                 float(metrics["recall"][c]), float(metrics["f1"][c]),
                                 d.ids[most].tolist(), d.ids[least].tolist(), d.ids[errors].tolist()))
    return Overview(
        run_dir=d.run_dir, version=version, data=d, skipped=skipped, accuracy=accuracy(d),
        top5_accuracy=topk_accuracy(d, 5), confusion=cm, confusion_normalized=row_normalized(cm),
        histogram=counts, imbalance=imbalance, present=present, confused_pairs=confused_pairs(cm, top_pairs),
        classes=classes, label_issues=label_issues(d, top_issues, overview_cache.issue_ranking(cached, split)),
        exceptional=exceptional_errors(d, groups) if groups else None)
