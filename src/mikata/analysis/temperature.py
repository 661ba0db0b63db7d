"""A run's fitted temperature: ``mikata calibrate RUN --split val`` fits it, every view applies it.

``calibrate_run`` fits temperature scaling (``analysis.calibration.fit_temperature``) on the stored
probabilities of one split's rows, as the model gave them, and writes ``calibration.json`` in the run
(through ``RunLayout``: whole, never through a link, under the run's writer lock). From then on
``RunView`` shows ``softmax(log p / T)`` wherever a probability is shown — audit, report, web app,
export, notebook — with the note ``Temperature.note()`` ("temperature T=1.84 applied (fitted on val,
450 images)"). The top-1 class of every image stays what it was, and the label-issue ranking keeps
using the model's own probabilities (its per-class thresholds are on the model's scale).

The file is data: a value that is not a positive finite number, or a file that is not JSON, is
refused with one line saying to run ``mikata calibrate`` again (or ``--clear``).

Example:
    >>> t = calibrate_run("runs/fashion", split="val")             # doctest: +SKIP
    >>> t.value, t.note()                                           # doctest: +SKIP
    (1.84, 'temperature T=1.84 applied (fitted on val, 450 images)')
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass

import numpy as np

from mikata.analysis.calibration import (DEFAULT_BINS, apply_temperature, fit_temperature, nll, reliability_of)
from mikata.runs.layout import CALIBRATION, RunLayout
from mikata.runs.store import RunStoreError

FORMAT = "mikata-calibration/1"


class CalibrationFileError(RunStoreError):
    """A ``calibration.json`` that cannot be used (not JSON, not a positive temperature)."""


@dataclass(frozen=True)
class Temperature:
    """The temperature a run's probabilities are shown at, and what it was fitted on."""

    value: float
    split: str              # the split whose rows it was fitted on
    images: int             # how many rows
    nll_before: float       # mean negative log-likelihood of those rows at T = 1 ...
    nll_after: float        # ... and at T = value
    ece_before: float       # their ECE (equal-mass bins) at T = 1 ...
    ece_after: float        # ... and at T = value
    fitted: str = ""        # UTC time of the fit

    def note(self) -> str:
        """The sentence every view shows beside its probabilities."""
        return f"temperature T={self.value:.2f} applied (fitted on {self.split or 'rows without a split'}, " \
               f"{self.images} images)"

    def to_dict(self) -> dict:
        return {"format": FORMAT, **asdict(self)}

    def _repr_html_(self) -> str:
        from mikata.notebook import STYLE, esc, table_html

        rows = [["temperature T", self.value], ["fitted on", f"split {self.split!r}, {self.images} images"],
                ["NLL before -> after", f"{self.nll_before:.4f} -> {self.nll_after:.4f}"],
                ["ECE before -> after", f"{self.ece_before:.4f} -> {self.ece_after:.4f}"]]
        return f"<div>{STYLE}<div><b>Temperature</b> {esc(self.note())}</div>{table_html(['', ''], rows)}</div>"


def read_temperature(run_dir: str | os.PathLike) -> Temperature | None:
    """The run's temperature, or None when it has none (``CalibrationFileError`` for an unusable file)."""
    layout = RunLayout(run_dir)
    path = layout.calibration
    if not layout.check_file(path, "remove it, or run `mikata calibrate RUN --clear`"):
        return None
    todo = f"run `mikata calibrate {layout.dir} --split val` again, or `--clear` it"
    try:
        raw = json.loads(layout.read_text(path))
    except (ValueError, UnicodeDecodeError) as e:
        raise CalibrationFileError(f"{path} is not JSON ({e}); {todo}") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CalibrationFileError(f"{path} is not a mikata calibration ({FORMAT}); {todo}")
    value = raw.get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise CalibrationFileError(f"{path}: the temperature {str(value)[:40]!r} is not a positive number; {todo}")
    try:
        return Temperature(float(value), str(raw.get("split", "")), int(raw.get("images", 0)),
                           *(float(raw.get(k, "nan")) for k in ("nll_before", "nll_after", "ece_before",
                                                                 "ece_after")),
                           str(raw.get("fitted", "")))
    except (TypeError, ValueError) as e:
        raise CalibrationFileError(f"{path}: {e}; {todo}") from None


def stamp(run_dir: str | os.PathLike) -> tuple[int, int, int] | None:
    """What changes when the calibration file is written or removed (a view's caches key on it)."""
    try:
        st = os.lstat(os.path.join(run_dir, CALIBRATION))
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def calibrate_run(run: str | os.PathLike, split: str = "val", bins: int = DEFAULT_BINS) -> Temperature:
    """Fit the temperature on the rows of ``split`` (the model's own probabilities) and store it in the run.

    Refuses a split the model was trained on (its probabilities are in-sample: overconfident by
    construction) and a split with no rows, each in one line naming the run.

    Example:
        >>> t = mikata.calibrate("runs/small", split="")   # runs/small was scanned without splits: its rows are held out
        >>> t.images, t.ece_after < t.ece_before
        (12, True)
    """
    from mikata.runs.data import load_run
    from mikata.runs.heldout import in_sample_rows
    from mikata.runs.lock import RunLock
    from mikata.runs.store import RunStore

    layout = RunLayout(run)
    with RunStore.open(layout.dir) as store:
        manifest = store.manifest
        d = load_run(store)
    rows = np.flatnonzero(d.splits == split)
    if not len(rows):
        named = ", ".join(repr(s) for s in sorted(set(d.splits.tolist()))) or "none"
        raise RunStoreError(f"{layout.dir} has no images in split {split!r} to fit a temperature on; its splits "
                            f"are {named} (fit on a held-out split the model did not train on, e.g. --split val)")
    if in_sample_rows(manifest, d.splits[rows]).any():
        raise RunStoreError(f"{layout.dir}: the model was trained on the split {split!r}, so its probabilities there "
                            "are overconfident by construction; fit on a held-out split (e.g. --split val)")
    probs, labels, preds = d.probs[rows], d.labels[rows], d.preds[rows]
    t = fit_temperature(probs, labels)
    right = preds == labels

    def ece(p: np.ndarray) -> float:
        return reliability_of(p[np.arange(len(p)), preds], right, bins).ece

    fitted = Temperature(t, split, int(len(rows)), nll(probs, labels, 1.0), nll(probs, labels, t), ece(probs),
                         ece(apply_temperature(probs, t)), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    with RunLock.acquire(layout.dir):  # one writer: not while a scan appends rows
        with layout.replacing(layout.calibration, binary=False) as f:
            f.write(json.dumps(fitted.to_dict(), indent=2))
    return fitted


def clear_temperature(run: str | os.PathLike) -> bool:
    """Remove the run's temperature (its views show the model's own probabilities again); True if there was one."""
    from mikata.runs.lock import RunLock

    layout = RunLayout(run)
    if not layout.check_file(layout.calibration, "remove it by hand"):
        return False
    with RunLock.acquire(layout.dir):
        layout.calibration.unlink()
    return True
