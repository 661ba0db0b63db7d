"""``write_report``: one self-contained HTML file that shows a scanned run to a person.

Everything comes from ``overview()`` (the same numbers ``mikata audit`` prints and ``mikata
serve`` shows), the run's cached attribution maps (``MapService.maps``, computed in batches when
missing) and, when present, the training history inside the run's checkpoint, feature-visualization
grids under ``RUN_DIR/featurevis/``, the scorecard of ``mikata evaluate`` and the concept atlas of
``mikata concepts`` (``report.concepts``).

The file opens offline: charts are inline SVG drawn here, images are ``data:`` URIs, and each
image's thumbnail is embedded once, in a JSON table (id -> image) that the page's small script
reads to draw the lists a click asks for (a confusion cell, a confused pair, an embedding point),
a page of thumbnails at a time.

Example:
    >>> result = write_report("runs/fashion", "fashion.html")          # doctest: +SKIP
    >>> result.path, result.timings["total"]                          # doctest: +SKIP
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from mikata.runs.attachments import attachment_notes, featurevis_images, read_scorecard, scorecard_figure
from mikata.runs.layout import RunLayout, write_output
from mikata.presentation.sections import confusion_cells, confusion_view, scorecard_table

from mikata.errors import MikataError
from mikata.formatting import percent

if TYPE_CHECKING:
    from mikata.analysis.binary import Curves
    from mikata.analysis.issues import DatasetIssues
    from mikata.analysis.overview import Overview
    from mikata.analysis.view import RunView
    from mikata.models.source import ModelSource

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).with_name("templates")
DEFAULT_METHODS = ("gradcam", "guided-gradcam")


class ReportError(MikataError):
    """The report cannot be written (bad run directory, unwritable output, bad option)."""


@dataclass
class ReportResult:
    path: Path
    images: int
    thumbnails: int
    maps: int
    bytes: int
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage, and "total"
    notes: list[str] = field(default_factory=list)            # sections left out, and why
    cam_layer: str | None = None                               # the layer CAM maps came from
    map_size: tuple[int, int] | None = None                    # (h, w) cells of those maps

    def summary(self) -> dict:
        return {"path": str(self.path), "images": self.images, "thumbnails": self.thumbnails, "maps": self.maps,
                "bytes": self.bytes, "timings": {k: round(v, 3) for k, v in self.timings.items()},
                "notes": self.notes, "cam_layer": self.cam_layer,
                "map_size": list(self.map_size) if self.map_size else None}


# ------------------------------------------------------------------------------------------ images
ISSUE_THUMB = 160  # px: the suspected label errors' thumbnails, big enough to judge the label by eye


def _b64(data: bytes) -> str:
    """A compact table entry: 'p' or 'j' (PNG / JPEG) then base64; the page adds the data: prefix."""
    return ("p" if data[:4] == b"\x89PNG" else "j") + base64.b64encode(data).decode("ascii")


def _thumbnails(run_dir: str, ids: Sequence[int], size: int, workers: int) -> tuple[dict[int, str], list[str]]:
    """id -> table entry for every image that still exists; a note for the ones that don't."""
    from mikata.presentation.media import image_files, thumbnail
    from mikata.runs.store import RunStore

    with RunStore.open(run_dir) as store:
        files = image_files(store, ids)
        unserved = [p for i, p in store.paths(set(int(i) for i in ids) - set(files)).items()]
    # files that exist but lie outside the run's data folders (data.paths) are not gone: say which is which
    outside = sum(1 for p in unserved if os.path.isfile(p))
    missing = len(unserved) - outside

    def one(item: tuple[int, Path]) -> tuple[int, str | None]:
        try:
            return item[0], _b64(thumbnail(item[1], size, quality=80))
        except Exception as e:  # a file changed since the scan: the report still gets written
            log.warning("no thumbnail for image %s: %s", item[0], e)
            return item[0], None

    with ThreadPoolExecutor(max(1, workers)) as pool:
        got = dict(pool.map(one, files.items(), chunksize=64))
    table = {i: t for i, t in got.items() if t is not None}
    lost = missing + len(got) - len(table)
    notes = [f"{lost} images could not be read any more (moved or deleted since the scan): no thumbnails"] if lost else []
    if outside:
        notes.append(f"{outside} images lie outside the run's data folders (manifest 'data_roots'), so they are "
                     "not shown; scan them from a manifest or folder that contains them")
    return table, notes


def _png_uri(a: np.ndarray, max_side: int = 160) -> str:
    from PIL import Image

    from mikata.presentation.media import data_uri, encode

    img = Image.fromarray(a)
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.BILINEAR)
    small = img.width * img.height <= 96 * 96
    return data_uri(encode(img, "PNG" if small else "JPEG", quality=85))


def _file_uri(path: Path, max_side: int = 1600) -> str:
    """A PNG file as a data URI, scaled down when it is larger than a screen needs."""
    from PIL import Image

    from mikata.presentation.media import data_uri, encode

    raw = path.read_bytes()
    with Image.open(path) as img:
        if max(img.size) <= max_side and len(raw) <= 2_000_000:
            return data_uri(raw)
        img = img.convert("RGB")
        img.thumbnail((max_side, max_side), Image.LANCZOS)
        return data_uri(encode(img, "JPEG", quality=90))


# ------------------------------------------------------------------------------- optional sections
def training_history(identity: dict, run_dir: str | os.PathLike) -> dict[str, list[float]] | None:
    """``metadata["training"]["history"]`` of the run's checkpoint when ``mikata train`` made it, else None."""
    from mikata.models.loading import read_checkpoint_metadata
    from mikata.models.run_model import run_model_spec

    spec = run_model_spec(identity, run_dir)
    if not spec.endswith(".safetensors") or not os.path.isfile(spec):
        return None
    try:
        history = read_checkpoint_metadata(spec).get("training", {}).get("history")
    except MikataError:
        return None
    if not isinstance(history, dict) or not any(history.get(k) for k in ("train_loss", "val_loss")):
        return None
    return {k: [float(v) for v in vs] for k, vs in history.items() if isinstance(vs, list)}


def training_best_epoch(identity: dict, run_dir: str | os.PathLike) -> int | None:
    """``metadata["training"]["best_epoch"]`` of the run's checkpoint (the epoch kept), else None."""
    from mikata.models.loading import read_checkpoint_metadata
    from mikata.models.run_model import run_model_spec

    spec = run_model_spec(identity, run_dir)
    if not spec.endswith(".safetensors") or not os.path.isfile(spec):
        return None
    try:
        best = read_checkpoint_metadata(spec).get("training", {}).get("best_epoch")
    except MikataError:
        return None
    return best if isinstance(best, int) and not isinstance(best, bool) and best > 0 else None


def featurevis_grids(run_dir: Path) -> list[dict]:
    """The feature-visualization images of the run (``attachments.featurevis_images``) as titled data URIs."""
    folder = RunLayout(run_dir).featurevis
    out = []
    for p in featurevis_images(run_dir):
        try:
            out.append({"title": str(p.relative_to(folder)), "uri": _file_uri(p)})
        except Exception as e:
            log.warning("skipping feature-visualization image %s: %s", p, e)
    return out


def units_section(run_dir: Path) -> dict | None:
    """``RUN_DIR/units/`` (written by ``mikata units``): each unit's synthetic image beside its top
    scanned images with their activation maps, embedded as data URIs."""
    from mikata.analysis.units import read_units

    card = read_units(run_dir)
    if card is None:
        return None
    for u in card["units"]:
        u["synthetic"] = _file_uri(u["synthetic"])
        u["overlays"] = [_file_uri(f) for f in u["overlays"]]
    return card


def scorecard(run_dir: Path) -> dict | None:
    """``RUN_DIR/evaluate/scorecard.json`` (written by ``mikata evaluate``) as ``sections.scorecard_table``,
    its figures embedded."""
    card = read_scorecard(run_dir)
    if card is None:
        return None
    out = scorecard_table(card)
    figures = []
    for rel in out["figures"]:
        f = scorecard_figure(run_dir, rel)
        if f is not None:
            figures.append({"title": str(rel), "uri": _file_uri(f)})
    out["figures"] = figures
    return out


# ------------------------------------------------------------------------------------------ report
_SCRIPT_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def _json_script(data: object) -> str:
    """JSON safe to put inside a ``<script type="application/json">`` element, and still JSON.

    ``<``, ``>`` and ``&`` can only occur inside JSON strings, where ``\\u003c`` means the same
    character: with none of them left, no class name can end the element (``</script>``) or switch
    the HTML parser into its comment-like script states (``<!--``, ``<script``). U+2028/9 are
    escaped too, for any code that still evaluates the text as JavaScript.
    """
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return text.translate(str.maketrans(_SCRIPT_ESCAPES))


def _predicted_class_maps(ov, d, with_maps: set[int]) -> list[tuple[int, int]]:
    """``(predicted class, id)`` of each least class-like image the model gives another class, for the classes
    drawn with maps: its map for the label class is often all zero, the predicted class's shows what it saw."""
    return [(int(d.preds[ov.row(i)]), int(i)) for c in ov.classes if c.index in with_maps
            for i in c.least_class_like if d.preds[ov.row(i)] != c.index]


def _maps_missing(run_dir: Path, wanted: list[tuple[int, int]], methods: Sequence[str]) -> bool:
    """Whether any (image, method, class) map of the galleries is not cached yet."""
    from mikata.presentation.maps import cache_method
    from mikata.runs.store import RunStore

    with RunStore.open(run_dir) as store:
        return any(store.get_map(i, cache_method(m), k) is None for k, i in wanted for m in methods)


def _load_quietly(service) -> None:
    try:
        service.handle_for()
    except Exception as e:  # the maps stage asks again and reports the error properly
        log.debug("loading the run's model in the background failed: %s", e)


def _topk(probs: np.ndarray, k: int) -> list[list]:
    k = min(k, probs.shape[0])
    top = np.argsort(-probs, kind="stable")[:k]
    return [[int(c), round(float(probs[c]), 4)] for c in top]


@dataclass(frozen=True)
class ReportOptions:
    """What ``write_report`` shows, apart from the run and the model (see ``write_report``)."""

    split: str | None = None
    groups: Mapping[str, str] | None = None
    methods: Sequence[str] = DEFAULT_METHODS
    maps: bool = True
    n: int = 3
    top_issues: int = 50
    thumb: int = 64
    max_points: int = 5000
    map_classes: int = 30
    max_matrix: int = 60
    workers: int | None = None
    batch_size: int = 32
    max_images: int = 50000
    max_cell: int = 200
    max_field_values: int = 50
    positive: int | str | None = None
    threshold: float = 0.5
    progress: bool = False

    def checked(self) -> "ReportOptions":
        """These options with the methods resolved; ``ReportError``/``ChoiceError`` before any work."""
        if self.thumb < 16 or self.thumb > 256:
            raise ReportError(f"thumbnail size {self.thumb} px is out of range; use 16..256 (64-96 keeps the file small)")
        methods: list[str] = []
        if self.maps:
            from mikata.attribution.engine import check_methods

            methods = check_methods(list(self.methods))
        if not 0.0 <= self.threshold <= 1.0:
            raise ReportError(f"threshold {self.threshold} is not a probability; give a value in [0, 1]")
        return replace(self, methods=tuple(methods), workers=self.workers or min(4, os.cpu_count() or 1))


_MODEL_SETTINGS = ("handle", "model", "device")  # write_report keywords that make its ModelSource


def write_report(run: "str | os.PathLike | RunView", out: str | os.PathLike | None = None,
                 options: ReportOptions | None = None, *, source: "ModelSource | None" = None,
                 **settings: Any) -> ReportResult:
    """Write the HTML report of a scanned run; returns where, how big and how long each stage took.

    ``options`` (a ``ReportOptions``) says what to show; any of its fields may also be given as a
    keyword (``write_report(run, out, maps=False)``), as may ``handle``/``model``/``device`` instead of
    ``source``. The stages: ``gather`` (overview, curves, manifest), ``report_maps``, ``report_sections``
    (galleries, confusion, embedding, thumbnails, attachments, concepts, charts, fields, dataset
    issues), ``render_report`` and the write; ``timings`` has one entry per step.

    ``methods``: attribution maps shown for each class's most and least class-like images (for
    that class), for at most ``map_classes`` classes (the lowest F1 first) — ``maps=False`` leaves
    them out (no model needed). ``thumb``: thumbnail size in pixels. ``max_points``: embedding
    points drawn. ``max_matrix``: most classes in the confusion matrix (those with the most errors
    are kept). Runs of more than ``max_images`` images list ``max_cell`` images per
    confusion cell, most confident first, and carry the thumbnails of the images they show, not of
    every row (a million thumbnails would be ~400 MB of HTML): the counts stay exact, and `mikata
    serve` lists every image. ``handle``: the model (default: loaded from the run's manifest, or from ``model``,
    a spec the user typed, when the manifest's cannot be used; see ``mikata.models.run_model``).
    Maps are computed on ``device``; ``source`` (a ``ModelSource``) says all of that in one object.
    ``run`` may be a ``RunView`` (its selection is the report's rows). A two-class run (or a ``positive`` class named on any run) gets
    its precision-recall and ROC curves, with the operating points at ``threshold`` and at the best
    F1 marked (``positive``: default the minority class; see ``mikata.analysis.binary``). A run
    scanned from a CSV manifest with extra columns gets a section per column (``analysis.fields``):
    accuracy, errors and per-class recall per value, worst first, at most ``max_field_values`` values.
    """
    from mikata.models.source import ModelSource

    model = {k: settings.pop(k) for k in _MODEL_SETTINGS if k in settings}
    opts = replace(options or ReportOptions(), **settings)  # TypeError names an unknown keyword
    if source is None:
        source = ModelSource(handle=model.get("handle"), spec=model.get("model"), device=model.get("device", "cpu"))
    clock = _Clock()
    layout, out_path = _output(run, out)
    opts = opts.checked()
    g = gather(run, layout, opts, clock)
    maps = report_maps(g, opts, source, clock)
    page = report_sections(g, maps, opts, source, clock)
    html = render_report(page)
    clock.lap("render")
    _write(out_path, html)
    clock.lap("write")
    clock.timings["total"] = time.perf_counter() - clock.t0
    return ReportResult(out_path.resolve(), len(g.d), page.thumbnails, len(maps.overlays),
                        out_path.stat().st_size, clock.timings, g.notes, maps.cam_layer, maps.map_size)


class _Clock:
    """Seconds per stage: ``lap(name)`` records the time since the previous lap."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self.t0 = self.tic = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = now - self.tic
        self.tic = now


def _output(run: "str | os.PathLike | RunView", out: str | os.PathLike | None) -> tuple[RunLayout, Path]:
    """The run's layout and the report's path, both checked before any work."""
    from mikata.analysis.view import RunView

    layout = RunLayout(run.run_dir if isinstance(run, RunView) else run)
    layout.check_database()
    if not layout.database.is_file():
        raise ReportError(f"{run} is not a mikata run directory (no run.sqlite inside); "
                          "make one with `mikata scan MODEL DATA_DIR --run RUN_DIR`")
    out_path = Path(out).expanduser() if out is not None else layout.report
    if out_path.is_dir() and not out_path.is_symlink():
        raise ReportError(f"--out {out_path} is a directory; give a file name such as {out_path / 'report.html'}")
    # a link at the output's name is refused before any work (it is never written through)
    RunLayout(out_path.parent).check_file(out_path.parent.resolve() / out_path.name,
                                          "remove it, or pass --out with another file")
    return layout, out_path


@dataclass
class Gathered:
    """The numbers a report shows, read once: the view, its overview and rows, the binary curves."""

    view: "RunView"
    ov: "Overview"
    curves: "Curves | None"
    manifest: dict
    run_dir: Path
    notes: list[str] = field(default_factory=list)  # sections left out, and why (every stage adds)

    @property
    def d(self):
        return self.ov.data

    @property
    def names(self) -> list[str]:
        return self.ov.class_names

    @property
    def identity(self) -> dict:
        return self.manifest.get("identity", {})


def gather(run: "str | os.PathLike | RunView", layout: RunLayout, opts: ReportOptions, clock: _Clock) -> Gathered:
    """The view of the report's rows, its overview, the binary curves and the manifest."""
    from mikata.analysis.binary import binary_curves
    from mikata.runs.store import RunStore
    from mikata.analysis.view import RunView, as_view

    view = as_view(run if isinstance(run, RunView) else layout.dir, opts.split)
    ov = view.overview(n=opts.n, top_issues=opts.top_issues, groups=opts.groups)
    curves = binary_curves(ov.data, opts.positive)  # ChoiceError for an unknown class, before any map is made
    with RunStore.open(layout.dir) as store:
        manifest = store.manifest
    clock.lap("overview")
    return Gathered(view, ov, curves, manifest, layout.dir)


@dataclass
class ReportMaps:
    """The galleries' maps: ``overlays[(id, method, class)] = (data URI, scale note)``, ``views[id]``."""

    with_maps: set[int] = field(default_factory=set)
    overlays: dict[tuple[int, str, int], tuple[str, str]] = field(default_factory=dict)
    views: dict[int, str] = field(default_factory=dict)
    cam_layer: str | None = None
    map_size: tuple[int, int] | None = None
    error: str | None = None


def report_maps(g: Gathered, opts: ReportOptions, source: "ModelSource", clock: _Clock) -> ReportMaps:
    """Maps of the most and least class-like images of the classes that need a look most (lowest F1)."""
    ov, run_dir, methods = g.ov, g.run_dir, list(opts.methods)
    rank = sorted(ov.classes, key=lambda c: (c.f1, c.index))
    out = ReportMaps(with_maps={c.index for c in rank[:max(0, opts.map_classes)]} if methods else set())
    wanted = [(c.index, i) for c in ov.classes if c.index in out.with_maps
              for i in dict.fromkeys(c.most_class_like + c.least_class_like)]
    wanted += _predicted_class_maps(ov, g.d, out.with_maps)
    service = None
    if wanted and source.handle is None and _maps_missing(run_dir, wanted, methods):
        # load the model while the thumbnails are made (the handle property waits for it)
        from mikata.presentation.maps import MapService

        try:
            service = MapService(run_dir, source=source)
            threading.Thread(target=_load_quietly, args=(service,), daemon=True).start()
        except MikataError:
            service = None  # reported below, where the maps are made

    log.info("report of %s: %d images, %d classes; thumbnails...", run_dir, len(g.d), len(ov.present))
    if out.with_maps:
        from mikata.presentation.maps import MapService, map_scale_of
        from mikata.display import overlay_scaled
        from mikata.progress import progress as progress_bar

        log.info("maps (%s) of the most / least class-like images of %d classes...", ", ".join(methods),
                 len(out.with_maps))
        try:
            service = service or MapService(run_dir, source=source)
            got = {}
            for c in progress_bar(sorted({k for k, _ in wanted}), desc=f"report: {', '.join(methods)} maps", unit="class",
                                  enabled=opts.progress, first="first class",
                                  plan=f"{len(wanted)} images of {len(out.with_maps)} classes x {len(methods)} methods"):
                ids = [i for k, i in wanted if k == c]
                if ids:
                    got.update(service.maps(ids, methods, c, batch_size=opts.batch_size))
            raw_views = service.model_views(sorted({i for _, i in wanted}))
            for i, v in raw_views.items():
                out.views[i] = _png_uri(v)
            for (i, m, k), a in got.items():  # colored as the web app and `mikata explain` color them
                scale = map_scale_of(a, m)
                out.overlays[(i, m, k)] = (_png_uri(overlay_scaled(raw_views[i], a, scale)), scale.note(g.names[k]))
            out.cam_layer, out.map_size = _cam_layer(service.handle_for(), methods)
        except MikataError as e:
            out.error = str(e)
            g.notes.append(f"attribution maps left out: {e}")
            out.overlays, out.views = {}, {}
        finally:
            if service is not None:
                service.close()  # its SQLite connection
    elif opts.maps and not methods:
        g.notes.append("attribution maps left out: no methods given")
    clock.lap("maps")
    return out


@dataclass
class ReportPage:
    """Every section of the page as template data (``context``: the template's keyword arguments) and
    how many thumbnails it embeds."""

    context: dict[str, Any]
    thumbnails: int


def report_sections(g: Gathered, maps: ReportMaps, opts: ReportOptions, source: "ModelSource",
                    clock: _Clock) -> ReportPage:
    """Every section of the page: galleries, confusion, embedding, thumbnails, attachments, concepts,
    charts, label issues, fields and dataset issues."""
    from mikata.attribution.baselines import method_baselines
    from mikata.attribution.registry import titles

    method_titles = titles()  # a method that starts from a baseline names it (the default: the image's mean colour)
    named = method_baselines(list(opts.methods), {})
    method_titles.update({m: f"{method_titles.get(m, m)} (baseline {b})" for m, b in named.items()})
    ov, d, names = g.ov, g.d, g.names
    capped = len(d) > opts.max_images
    classes = _class_galleries(g, maps, opts, method_titles)
    confusion = _confusion_section(g, opts, capped)
    clock.lap("confusion")
    emb = _embedding_section(g, opts)
    clock.lap("embedding")
    # ---- thumbnails: of every image the report can show (all of them in a run of ordinary size)
    if not capped:
        shown = d.ids.tolist()
    else:
        shown = sorted({int(i) for v in confusion["cells"].values() for i in v}
                       | {int(i) for c in ov.classes for i in c.most_class_like + c.least_class_like + c.confident_errors}
                       | {int(i["id"]) for i in ov.label_issues}
                       | ({int(i) for i in emb["ids"]} if emb else set())
                       | ({int(d.ids[r]) for r in ov.exceptional["rows"][:opts.max_cell]} if ov.exceptional else set()))
    thumbs = _thumbnail_table(g, shown, opts.thumb, opts)
    clock.lap("thumbnails")
    extras = _attachments(g)
    clock.lap("extras")
    from mikata.report.concepts import concepts_section

    concepts, more = concepts_section(g.run_dir, names, source=source, split=g.view.split)
    g.notes.extend(more)
    clock.lap("concepts")
    charts, colors = _charts(g, extras["history"])
    calibration = _calibration(g)
    binary = None
    if g.curves is not None:
        from mikata.report.svg import operating_charts

        binary = {**g.curves.summary(opts.threshold), "charts": operating_charts(g.curves, opts.threshold),
                  "threshold": opts.threshold, "named": opts.positive is not None,
                  "table_json": _json_script(g.curves.threshold_table(1000))}  # the slider's 1,001 stops
    ex = None
    if ov.exceptional is not None:
        ex = {"count": ov.exceptional["count"], "pairs": list(ov.exceptional["pairs"].items()),
              "ids": [int(d.ids[r]) for r in ov.exceptional["rows"][:opts.max_cell if capped else None]]}
    keep = np.searchsorted(d.ids, np.asarray(shown, np.int64))  # rows of the shown ids (ids ascending)
    data = {
        "classes": names, "colors": colors,
        "ids": d.ids[keep].tolist(), "labels": d.labels[keep].tolist(), "preds": d.preds[keep].tolist(),
        "pp": np.round(d.probs[keep, d.preds[keep]], 3).tolist(),
        "cells": confusion["cells"], "cell_totals": confusion["cut"], "emb": emb,
        "exceptional": ex["ids"] if ex else None, "pairs": [[a, b] for a, b, _, _ in ov.confused_pairs],
    }
    summary = {
        "images": len(d), "skipped": len(ov.skipped), "accuracy": ov.accuracy, "top5": ov.top5_accuracy,
        "errors": int((d.labels != d.preds).sum()), "classes": len(ov.present), "imbalance": ov.imbalance,
        "issues": ov.label_issues_total, "issues_listed": len(ov.label_issues), "accuracy_repr": repr(ov.accuracy),
        "top5_repr": repr(ov.top5_accuracy), "trained_note": ov.trained_note, "label_scope_note": ov.label_scope_note,
    }
    issues = _label_issue_cards(g, opts)
    field_groups = _field_sections(g, opts)
    clock.lap("fields")
    found, dataset_issues = _dataset_issues(g)
    concept_classes: list[dict] = concepts["classes"] if concepts else []
    strategy_ids = {i for c in concept_classes for s in c["strategies"] for i in s["exemplars"][:6]}
    extra = sorted(({e["id"] for t in dataset_issues for e in t["examples"]} | strategy_ids) - set(thumbs))
    if extra:  # a capped report (a big run) has not made these thumbnails yet
        thumbs.update(_thumbnail_table(g, extra, opts.thumb, opts))
    clock.lap("dataset issues")
    return ReportPage(dict(
        title=f"mikata report — {g.run_dir.name}", run_dir=str(g.run_dir), manifest=g.manifest, identity=g.identity,
        split=g.view.split, summary=summary, classes=classes, methods=[method_titles.get(m, m) for m in opts.methods],
        map_legends=_map_legends(opts.methods, method_titles) if maps.overlays else [],
        matrix=confusion["matrix"], cols=[{"index": p, "name": names[p]} for p in confusion["shown_cols"]],
        pairs=[{"a": names[a], "b": names[b], "ia": a, "ib": b, "ab": ab, "ba": ba} for a, b, ab, ba in ov.confused_pairs],
        issues=issues, field_groups=field_groups, dataset_issues=dataset_issues, issue_notes=found.notes,
        exceptional=ex, charts=charts, history=extras["history"], featurevis=extras["featurevis"],
        units=extras["units"], concepts=concepts, scorecard=extras["scorecard"], emb=emb, notes=g.notes,
        binary=binary, calibration=calibration, skipped=ov.skipped[:50], map_error=maps.error,
        created=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        data_json=_json_script(data), thumbs_json=_json_script(thumbs), colors=colors), len(thumbs))


def _class_galleries(g: Gathered, maps: ReportMaps, opts: ReportOptions, method_titles: dict[str, str]) -> list[dict]:
    """Each class's metrics and its most / least class-like images, with their maps where made."""
    ov, d, names, methods = g.ov, g.d, g.names, list(opts.methods)

    def card(i: int, c: int) -> dict:
        r = ov.row(i)
        return {"id": int(i), "label": names[d.labels[r]], "pred": names[d.preds[r]],
                "right": bool(d.labels[r] == d.preds[r]), "p_class": float(d.probs[r, c]),
                "topk": [(names[k], p) for k, p in _topk(d.probs[r], 3)],
                "view": maps.views.get(int(i)),
                "maps": [(method_titles.get(m, m), *maps.overlays[(int(i), m, c)]) for m in methods
                         if (int(i), m, c) in maps.overlays],
                # an image the model gives another class: that class's map beside (the label class's may be all zero)
                "pred_maps": [(method_titles.get(m, m), *maps.overlays[(int(i), m, int(d.preds[r]))]) for m in methods
                              if d.preds[r] != c and (int(i), m, int(d.preds[r])) in maps.overlays]}

    classes = [{"index": c.index, "name": c.name, "images": c.images, "precision": c.precision,
                "recall": c.recall, "f1": c.f1, "has_maps": c.index in maps.with_maps and not maps.error,
                "most": [card(i, c.index) for i in c.most_class_like],
                "least": [card(i, c.index) for i in c.least_class_like]} for c in ov.classes]
    if methods and len(ov.classes) > len(maps.with_maps) and not maps.error:
        g.notes.append(f"maps drawn for the {len(maps.with_maps)} classes with the lowest F1 of {len(ov.classes)} "
                       "(raise --map-classes for more)")
    return classes


def _confusion_section(g: Gathered, opts: ReportOptions, capped: bool) -> dict[str, Any]:
    """The confusion matrix (rows: true classes with images; columns: classes that occur at all) and
    each cell's image ids (cut to ``max_cell`` on a capped report)."""
    ov, d, names = g.ov, g.d, g.names
    cm, cmn = ov.confusion, ov.confusion_normalized
    shown_rows, shown_cols = confusion_view(cm, ov.present, opts.max_matrix)  # e.g. ImageNet: most errors
    used = len(set(ov.present) | set(d.preds.tolist()))
    if len(shown_cols) < used:
        g.notes.append(f"the confusion matrix shows the {len(shown_cols)} classes with the most errors "
                       f"of {used} (raise max_matrix for more)")
    matrix = [{"index": t, "name": names[t], "total": int(cm[t].sum()),
               "cells": [{"p": p, "count": int(cm[t, p]), "frac": float(cmn[t, p])} for p in shown_cols]}
              for t in shown_rows]
    cells = {f"{t},{p}": ids.tolist() for (t, p), ids in confusion_cells(d).items()}
    cut = {k: len(v) for k, v in cells.items() if len(v) > opts.max_cell} if capped else {}
    if cut:
        cells = {k: v[:opts.max_cell] for k, v in cells.items()}
        g.notes.append(f"{len(cut)} confusion cells list their {opts.max_cell} most confident images of up to "
                       f"{max(cut.values()):,} (raise max_cell for more, or open the run with `mikata serve`)")
    return {"matrix": matrix, "shown_cols": shown_cols, "cells": cells, "cut": cut}


def _embedding_section(g: Gathered, opts: ReportOptions) -> dict | None:
    """The 2-D PCA of the embeddings, scaled to the unit square, or None (and a note) without them."""
    from mikata.runs.store import RunStoreError

    try:
        eids, xy = g.ov.embedding_2d("pca", max_points=opts.max_points)
    except (RunStoreError, ValueError) as e:
        g.notes.append(f"embedding scatter left out: {e}")
        return None
    lo, hi = xy.min(0), xy.max(0)
    span = np.where(hi - lo > 0, hi - lo, 1)
    unit = np.round((xy - lo) / span, 4)
    return {"ids": eids.tolist(), "x": unit[:, 0].tolist(), "y": unit[:, 1].tolist(),
            "shown": len(eids), "total": len(g.d)}


def _thumbnail_table(g: Gathered, ids: Sequence[int], size: int, opts: ReportOptions) -> dict[int, str]:
    table, notes = _thumbnails(str(g.run_dir), ids, size, opts.workers or 1)
    g.notes.extend(notes)
    return table


def _attachments(g: Gathered) -> dict[str, Any]:
    """What other commands left in the run: training history, feature vis, scorecard, units."""
    out = {"history": training_history(g.identity, g.run_dir), "featurevis": featurevis_grids(g.run_dir),
           "scorecard": scorecard(g.run_dir), "units": units_section(g.run_dir)}
    g.notes.extend(attachment_notes(g.run_dir))  # a refused attachment: its section is left out, and this says why
    return out


def _charts(g: Gathered, history: dict[str, list[float]] | None) -> tuple[dict[str, str], list[str]]:
    """The class histogram and the training curves (when the checkpoint has them) as inline SVG."""
    from mikata.report.svg import bar_chart, class_colors, line_chart

    ov, names = g.ov, g.names
    colors = class_colors(len(names))
    charts = {
        "histogram": bar_chart([names[c] for c in ov.present], [int(ov.histogram[c]) for c in ov.present],
                               title="images per class (true label)",
                               color=[colors[c] for c in ov.present]),
    }
    if history:
        loss = {k.replace("_", " "): history[k] for k in ("train_loss", "val_loss") if history.get(k)}
        acc = {k.replace("_", " "): history[k] for k in ("train_accuracy", "val_accuracy") if history.get(k)}
        kept = training_best_epoch(g.identity, g.run_dir)  # the epoch whose weights the checkpoint holds
        mark = {"mark": kept, "mark_label": f"kept: epoch {kept}"} if kept else {}
        charts["loss"] = line_chart(loss, title="loss", **mark) if loss else ""
        charts["accuracy"] = line_chart(acc, title="accuracy", **mark) if acc else ""
    return charts, colors


def _calibration(g: Gathered) -> dict[str, Any]:
    """The view's calibration (``RunView.calibration``) with its reliability diagram as inline SVG."""
    from mikata.report.svg import reliability_chart

    calibration = {**g.view.calibration(), "chart": ""}
    calibration["chart"] = reliability_chart(calibration)
    if calibration["temperature"]:  # every probability of the report is the scaled one: said in the summary too
        g.notes.append(calibration["note"])
    return calibration


def _label_issue_cards(g: Gathered, opts: ReportOptions) -> list[dict]:
    """The suspected label errors the overview lists, each with a thumbnail big enough to judge it."""
    from mikata.analysis.audit import label_issue_evidence

    issues = [{**i, "label_prob": float(i["label_prob"]), "suggested_prob": float(i["suggested_prob"]),
               "name": os.path.basename(i["path"]), "evidence": label_issue_evidence(i)} for i in g.ov.label_issues]
    big = _thumbnail_table(g, [i["id"] for i in issues], ISSUE_THUMB, opts)
    for i in issues:
        t = big.get(int(i["id"]))
        i["thumb_uri"] = ("data:image/png;base64," if t[0] == "p" else "data:image/jpeg;base64,") + t[1:] if t else ""
    return issues


def _field_sections(g: Gathered, opts: ReportOptions) -> list[dict]:
    """One section per manifest column: its values, worst first."""
    from mikata.analysis.fields import group_by

    out = []
    for f, values in g.view.field_values().items():
        groups = group_by(g.d, f, values)
        out.append({"name": f, "groups": groups[:opts.max_field_values], "count": len(groups)})
    return out


def _dataset_issues(g: Gathered) -> "tuple[DatasetIssues, list[dict]]":
    """The whole run's dataset-issue flags of the view's rows: per type its count and worst examples."""
    from mikata.analysis.issues import issue_rows

    d, names = g.d, g.names
    found = g.view.issues()
    return found, [{"type": t.name, "description": t.description, "threshold": t.threshold,
                    "flagged": int(t.flag.sum()),
                    "examples": [{"id": int(d.ids[r]), "name": os.path.basename(d.paths[r]),
                                  "score": float(t.score[r]), "label": names[d.labels[r]], "pred": names[d.preds[r]]}
                                 for r in issue_rows(found, t.name)[:12]]} for t in found.types.values()]


def render_report(page: ReportPage) -> str:
    """The page: ``report.html.j2`` with its CSS and script inlined."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    from mikata.data.filenames import shown_in_template

    from mikata.presentation.templates import bytecode_cache

    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html", "j2"]),
                      finalize=shown_in_template,  # non-UTF-8 file names print as \xNN
                      bytecode_cache=bytecode_cache("report"))  # compiled once per process, not per page
    env.filters["pct"] = percent  # as `mikata audit` prints them
    return env.get_template("report.html.j2").render(
        **page.context,
        css=(TEMPLATES / "report.css").read_text(encoding="utf-8"),
        js=(TEMPLATES / "report.js").read_text(encoding="utf-8"), escape=escape)


def _write(out_path: Path, html: str) -> None:
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        write_output(out_path, html)  # whole, through a temporary file; never through a link
    except OSError as e:
        raise ReportError(f"cannot write {out_path}: {e.strerror or e}; choose another --out") from e


def _map_legends(methods: Sequence[str], method_titles: dict[str, str]) -> list[dict]:
    """One legend per method of the galleries (``display.legend_of_kind``: each map scaled to itself)."""
    from mikata.presentation.maps import LAYER_MAP_METHODS
    from mikata.attribution.registry import signed_map
    from mikata.display import legend_of_kind

    return [{"title": method_titles.get(m, m),
             **legend_of_kind(signed_map(m), saturate=m not in LAYER_MAP_METHODS, what="the row's class")}
            for m in methods]


def _cam_layer(handle, methods: Sequence[str]) -> tuple[str | None, tuple[int, int] | None]:
    """The layer the report's CAM maps come from and its map size, if any method is a layer method."""
    from mikata.presentation.maps import LAYER_MAP_METHODS
    from mikata.models.layers import cam_layer_size

    if not any(m in LAYER_MAP_METHODS for m in methods) or handle.default_layer is None:
        return None, None
    return handle.default_layer, cam_layer_size(handle.net, handle.in_channels, handle.input_size,
                                                handle.default_layer)
