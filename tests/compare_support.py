"""Runs written straight into a RunStore, for the comparison tests: every label, prediction and probability
chosen by the test, so the expected numbers are known exactly.

``write_run(dir, paths, labels, probs, ...)`` stores one ok row per path (the prediction is the argmax of
its probabilities), with the file hash given (or the path's own), the split and manifest fields given.
``simulated_pair(n, p_a, p_b, seed)`` draws two models' correctness on the same n images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from mikata.runs.format import FORMAT
from mikata.runs.store import Row, RunStore


def manifest(classes: Sequence[str], model: str, roots: Sequence[str] = ("/data",)) -> dict:
    return {"format": FORMAT, "identity": {"model_spec": model, "weights_sha1": model, "classes": list(classes),
                                           "layer": "x"},
            "dataset_root": roots[0], "data_roots": list(roots)}


def write_run(run: Path, classes: Sequence[str], paths: Sequence[str], labels: Sequence[int], probs: np.ndarray,
              hashes: Sequence[str | None] | None = None, splits: Sequence[str] | None = None,
              fields: dict[str, Sequence[str]] | None = None, model: str = "m",
              roots: Sequence[str] | None = None) -> Path:
    """One ok row per path; ``probs`` (N, K) rows are the stored probability vectors."""
    probs = np.asarray(probs, np.float32)
    preds = probs.argmax(1)
    hashes = hashes if hashes is not None else [f"sha-{p}" for p in paths]
    splits = splits if splits is not None else [""] * len(paths)
    roots = roots or [str(Path(paths[0]).parent.parent)] if len(paths) else ["/data"]
    rows = [Row(str(p), h, 1, 1, int(y), sp, "ok", None, int(pr), float(pb[pr]), float(pb[y]),
                [[int(pr), float(pb[pr])]])
            for p, h, y, sp, pr, pb in zip(paths, hashes, labels, splits, preds, probs)]
    with RunStore.create_or_resume(run, manifest(classes, model, roots)) as store:
        store.append(rows, {"probs": probs.astype(np.float16)}, replace=False)
        if fields:
            names = list(fields)
            store.set_fields(names, [(str(p), n, str(fields[n][i])) for i, p in enumerate(paths) for n in names])
    return run


def probs_for(preds: np.ndarray, k: int, confidence: np.ndarray | float = 0.8) -> np.ndarray:
    """(N, K) probabilities whose argmax is ``preds``, with ``confidence`` on it and the rest spread evenly."""
    preds = np.asarray(preds)
    conf = np.broadcast_to(np.asarray(confidence, np.float64), preds.shape)
    out = np.repeat(((1 - conf) / (k - 1))[:, None], k, axis=1)
    out[np.arange(len(preds)), preds] = conf
    return out


def predictions(labels: np.ndarray, correct: np.ndarray, k: int) -> np.ndarray:
    """Predictions equal to ``labels`` where ``correct``, the next class otherwise."""
    labels = np.asarray(labels)
    return np.where(correct, labels, (labels + 1) % k)
