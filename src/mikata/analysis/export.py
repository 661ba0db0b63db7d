"""``export_run``: every scanned row of a run as a file other tools read (Parquet, CSV, JSON lines).

The table is ``Run.to_pandas()``: path, split, label, prediction, probabilities, margin, label quality,
suspected label errors with their suggestions, reviews from the web app. Parquet keeps the class
names (and the run's model and dataset) in the schema metadata under ``mikata``, so pandas, Polars,
DuckDB or FiftyOne get the labels without a side file. ``maps_dir`` also writes one ``.npy`` map per
image (the predicted class; computed in batches and cached in the run) and adds its path as a column.

Example:
    >>> export_run("runs/a", "a.parquet")                          # doctest: +SKIP
    >>> import pandas as pd; pd.read_parquet("a.parquet").shape    # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from typing import TYPE_CHECKING

from mikata.runs.layout import RunLayout, output_path
from mikata.errors import ChoiceError, MikataError

if TYPE_CHECKING:
    from mikata.analysis.view import RunView
    from mikata.models.source import ModelSource

log = logging.getLogger(__name__)
FORMATS = ("parquet", "csv", "json")


class ExportError(MikataError):
    """An export that cannot be written as asked; the message says what to do."""


def export_format(path: str | os.PathLike, fmt: str | None = None) -> str:
    """The format asked for, or the one the file's suffix names (``.parquet``, ``.csv``, ``.json``/``.jsonl``).

    A format asked for that contradicts the suffix (``--format csv --out x.parquet``) is refused: the
    file would hold one format under another's name. A suffix no format claims (``.txt``) takes ``fmt``.
    """
    suffix = Path(path).suffix.lower().lstrip(".")
    named = {"jsonl": "json", "pq": "parquet"}.get(suffix, suffix)
    if fmt is None:
        fmt = named
    elif named in FORMATS and named != fmt:
        raise ExportError(f"--format {fmt} but --out {Path(path).name} names {named}: name the file "
                          f"{Path(path).stem}.{fmt}, or leave --format out and the suffix decides")
    if fmt not in FORMATS:
        raise ChoiceError("export format", fmt, list(FORMATS))
    return fmt


def export_run(run: "str | os.PathLike | RunView", out: str | os.PathLike, fmt: str | None = None,
               split: str | None = None, maps_dir: str | os.PathLike | None = None, map_method: str = "gradcam",
               batch_size: int = 32, device: str | None = "cpu", model: "str | ModelSource | None" = None) -> Path:
    """Write one row per scanned image of ``run`` (a run directory or a ``RunView``: its selected rows) to
    ``out``; returns the path written (``device``: where the ``maps_dir`` maps are computed; ``model``: a
    spec you type for them or a ``ModelSource``, see ``Run``).

    Example:
        >>> mikata.export_run("runs/a", "a.parquet").name
        'a.parquet'
        >>> import pandas as pd
        >>> pd.read_parquet("a.parquet").shape[0]
        12
    """
    from mikata.analysis.run import open_run

    fmt = export_format(out, fmt)
    target = Path(out).expanduser()
    RunLayout(target.parent).check_file(target.parent.resolve() / target.name,  # before any work
                                        "remove it, or pass --out with another file")
    r = open_run(run, split, model=model, device=device)
    frame = r.to_pandas()
    t = r.view.temperature()
    if t is not None:  # the probability columns are the calibrated ones: say so where the file is made
        log.info("%s: %s", out, t.note())
    # a name that is not valid UTF-8 (kept as surrogates in memory) as text every format can hold: \xNN escapes
    frame["path"] = [as_text(p) for p in frame["path"]]
    if maps_dir is not None:
        frame["map_path"] = _write_maps(r, frame, Path(maps_dir), map_method, batch_size)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with output_path(out) as tmp:  # whole, through a temporary file; a link at ``out`` is refused, never followed
        if fmt == "parquet":
            _parquet(frame, tmp, r)
        elif fmt == "csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_json(tmp, orient="records", lines=True, force_ascii=False)
    return out


def as_text(path: str) -> str:
    """``path`` as valid UTF-8 text: bytes of a non-UTF-8 name as ``\\xNN`` (valid names are unchanged)."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _parquet(frame, out: Path, run) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as e:
        raise ExportError("Parquet export needs pyarrow: pip install -c constraints.txt pyarrow "
                          "(or use --format csv / json)") from e
    table = pa.Table.from_pandas(frame, preserve_index=False)
    identity = run._identity
    meta = {"classes": run.class_names, "model_spec": identity["model_spec"],
            "weights_sha1": identity["weights_sha1"], "run": str(run.path)}
    t = run.view.temperature()
    meta["temperature"] = None if t is None else t.to_dict()  # the probabilities are softmax(log p / T)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"mikata": json.dumps(meta).encode()})
    pq.write_table(table, out)


def _write_maps(run, frame, folder: Path, method: str, batch_size: int) -> list[str]:
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    ids = [int(i) for i in frame["id"]]
    maps = run.maps_service.maps(ids, [method], None, batch_size=batch_size)  # predicted class of each image
    preds = {int(i): run.class_names.index(p) for i, p in zip(frame["id"], frame["predicted"])}
    paths = []
    for i in ids:
        p = folder / f"{i}_{method}_{preds[i]}.npy"
        np.save(p, maps[(i, method, preds[i])])
        paths.append(str(p))
    return paths
