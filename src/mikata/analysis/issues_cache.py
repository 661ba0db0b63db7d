"""A run's dataset issues (``analysis.issues``) kept on disk, stamped with what they were computed from.

Scoring every issue type of a 1,000,000-row run (k-NN over the embeddings and the pixel thumbnails,
k-means groups, cleanlab's label ranking) takes minutes; the result only changes when the run does.
``RunView.issues()`` with the default thresholds and groups (what the issues page, ``mikata audit``
and the comparison's issue counts show) therefore keeps the whole run's ``DatasetIssues`` in
``RUN_DIR/cache/issues-all.npz``, and ``load`` gives it back while it still holds:

- the stamp inside holds the run's ``RunStore.version()``, its database's identity (device and inode of
  ``run.sqlite``: a run deleted and scanned again is another run), the calibration file's stamp (a
  temperature changes the label scores), the manifest's stamp (which splits the model was trained on
  decides which rows are searched for label errors), the vector files' stamps (probabilities,
  embeddings, thumbnails, pixel statistics: rewritten in place, they are other data), the registered
  issue types with their default thresholds, and the scoring settings; any difference and the file
  is ignored, then replaced by the next build;
- the stored row ids must equal the rows the view reads now.

The cache is data, never code: plain arrays and JSON text (``allow_pickle=False``); a damaged,
foreign or symlinked file is a miss. A run directory that cannot be written simply gets no cache.

Example:
    >>> before = stamp(view)                                                   # doctest: +SKIP
    >>> found = load(view, whole) or score_issues(whole, check_thresholds(None))  # doctest: +SKIP
    >>> save(view, before, found)                                               # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mikata.analysis.issue_registry import default_thresholds
from mikata.analysis.temperature import stamp as temperature_stamp
from mikata.runs.cache_files import read_arrays, write_arrays
from mikata.runs.layout import CACHE, RunLayout, UnsafeRunFileError

if TYPE_CHECKING:
    from mikata.analysis.issues import DatasetIssues
    from mikata.analysis.view import RunView
    from mikata.runs.data import RunData

log = logging.getLogger(__name__)
FORMAT = 1
SETTINGS = {"k": 10, "min_group": 10, "seed": 0}  # score_issues' defaults, which RunView.issues uses
VECTORS = ("probs", "embed", "thumbs", "stats")  # the stored vectors the built-in types read
GROUP_KEYS = ("group", "size", "accuracy", "ratio", "flagged")


def path_for(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / CACHE / "issues-all.npz"


def _file_stamp(path: Path) -> list[int] | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return [st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size]


def stamp(view: "RunView") -> dict:
    """What must be unchanged for the stored issues of ``view``'s run to hold."""
    import mikata.analysis.issues  # noqa: F401 - registers the built-in types that default_thresholds lists

    run_dir = Path(view.run_dir)
    db = _file_stamp(run_dir / "run.sqlite")
    layout = RunLayout(run_dir)
    return {"format": FORMAT, "version": list(view.version()), "db": None if db is None else db[:2],
            "temperature": temperature_stamp(run_dir), "manifest": _file_stamp(run_dir / "manifest.json"),
            "vectors": [_file_stamp(layout.vector(kind)) for kind in VECTORS],
            "types": [[k, v] for k, v in default_thresholds().items()], "settings": SETTINGS}


def _same(a: dict, b: dict) -> bool:
    return json.loads(json.dumps(a)) == json.loads(json.dumps(b))  # tuples and lists alike


def load(view: "RunView", whole: "RunData") -> "DatasetIssues | None":
    """The stored issues of the whole run ``whole`` (the rows ``view`` reads now) if they still hold, else None."""
    from mikata.analysis.issues import DatasetIssues, IssueType

    path = path_for(view.run_dir)
    try:
        got = read_arrays(view.run_dir, path, "issues cache")
        if got is None:
            return None
        if not _same(json.loads(str(got["stamp"])), stamp(view)):
            return None
        if not np.array_equal(got["ids"], whole.ids):
            return None
        n = len(whole)
        meta = json.loads(str(got["meta"]))
        types = {}
        for i, t in enumerate(meta["types"]):  # arrays by position: a type's name never names a file
            name = str(t["name"])
            score, flag = got[f"score{i}"].astype(np.float64), got[f"flag{i}"].astype(bool)
            order = got[f"order{i}"].astype(np.int64) if t["order"] else None
            if len(score) != n or len(flag) != n or (order is not None and len(order) and
                                                     (order.min() < 0 or order.max() >= n)):
                return None
            th = t["threshold"]
            types[name] = IssueType(name, score, flag, None if th is None else float(th), order, str(t["description"]))
        pi, pj = got["pair_i"].astype(np.int64), got["pair_j"].astype(np.int64)
        sim, kind, across = got["pair_sim"].astype(np.float64), got["pair_kind"], got["pair_across"].astype(bool)
        if not (len(pi) == len(pj) == len(sim) == len(kind) == len(across)) or \
                (len(pi) and (min(pi.min(), pj.min()) < 0 or max(pi.max(), pj.max()) >= n)):
            return None
        pairs = [(i, j, s, str(k), a) for i, j, s, k, a in
                 zip(pi.tolist(), pj.tolist(), sim.tolist(), kind.tolist(), across.tolist())]
        rows, offsets = got["group_rows"].astype(np.int64), got["group_offsets"].astype(np.int64)
        if len(offsets) != len(meta["groups"]) + 1 or (len(rows) and (rows.min() < 0 or rows.max() >= n)):
            return None
        groups = [{**{k: g[k] for k in GROUP_KEYS}, "rows": rows[offsets[i]:offsets[i + 1]].tolist()}
                  for i, g in enumerate(meta["groups"])]
        notes = [str(s) for s in meta["notes"]]
    except (OSError, KeyError, ValueError, TypeError, EOFError) as e:  # damaged or not ours: a miss
        if not isinstance(e, FileNotFoundError):
            log.info("ignoring the issues cache %s (%s)", path, e)
        return None
    return DatasetIssues(whole, types, pairs, groups, notes)


def save(view: "RunView", before: dict, found: "DatasetIssues") -> bool:
    """Store the whole run's issues ``found``, computed while the run was at ``before`` (``stamp`` taken
    before its rows were read); nothing is stored when the run changed meanwhile. Written to a temporary
    file then renamed. True when stored."""
    if found.whole is not None or not _same(stamp(view), before):
        return False
    arrays: dict[str, np.ndarray] = {}
    types = []
    for i, (name, t) in enumerate(found.types.items()):
        arrays[f"score{i}"] = np.asarray(t.score, np.float64)
        arrays[f"flag{i}"] = np.asarray(t.flag, bool)
        if t.order is not None:
            arrays[f"order{i}"] = np.asarray(t.order, np.int64)
        types.append({"name": name, "threshold": t.threshold, "order": t.order is not None,
                      "description": t.description})
    p = found.pairs
    arrays.update(pair_i=np.asarray([x[0] for x in p], np.int64), pair_j=np.asarray([x[1] for x in p], np.int64),
                  pair_sim=np.asarray([x[2] for x in p], np.float64),
                  pair_kind=np.asarray([x[3] for x in p], dtype=str) if p else np.zeros(0, dtype="<U1"),
                  pair_across=np.asarray([x[4] for x in p], bool))
    group_rows = [np.asarray(g["rows"], np.int64) for g in found.groups]
    arrays["group_rows"] = np.concatenate(group_rows) if group_rows else np.zeros(0, np.int64)
    arrays["group_offsets"] = np.concatenate([[0], np.cumsum([len(r) for r in group_rows], dtype=np.int64)]).astype(
        np.int64)
    groups = [{k: (v.item() if isinstance(v, np.generic) else v) for k, v in g.items() if k != "rows"}
              for g in found.groups]
    meta = {"types": types, "groups": groups, "notes": list(found.notes)}
    path = path_for(view.run_dir)
    try:
        write_arrays(view.run_dir, path, {"stamp": np.asarray(json.dumps(before)),
                                          "ids": np.asarray(found.data.ids, np.int64),
                                          "meta": np.asarray(json.dumps(meta)), **arrays})
    except (OSError, UnsafeRunFileError, TypeError, ValueError) as e:
        log.info("cannot write the issues cache in %s (%s); the issues are scored each time", path.parent, e)
        return False
    return True
