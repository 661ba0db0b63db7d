"""What the web app keeps for one run: the overview (rebuilt when the run changes), maps, thumbnails.

``RunState`` is the only object the routes talk to. It caches the ``Overview`` per
``RunStore.version()`` — one cheap SQLite query per request — so a scan appending rows in another
process shows up on the next page load, and an unchanged run is never recomputed. Maps go through
``MapService`` (computed once per (image, method, class), cached in the run's SQLite); thumbnails
are cached in memory by id. Images are reached by row id only, through ``media.image_file``.

Example:
    >>> state = RunState("runs/fashion")                       # doctest: +SKIP
    >>> ov = state.overview(); ov.accuracy                       # doctest: +SKIP
    >>> png = state.thumbnail(12)                                # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import threading
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mikata.runs.attachments import (
    attachment_notes, featurevis_gallery, featurevis_images, featurevis_pngs, read_scorecard)
from mikata.presentation.maps import MapService
from mikata.presentation.media import UnknownImageError, encode, image_file, thumbnail
from mikata.analysis.overview import Overview
from mikata.runs.store import RunStore
from mikata.presentation.sections import scorecard_table
from mikata.analysis.view import RunView
from mikata.data.filenames import shown
from mikata.errors import ModelLoadError
from mikata.models.handle import ModelHandle
from mikata.models.source import ModelSource

if TYPE_CHECKING:
    from mikata.analysis.binary import Curves
    from mikata.server.compare_state import CompareState

log = logging.getLogger(__name__)
PER_CLASS = 12        # most / least class-like images kept per class
ISSUES = 200          # suspected label errors listed for review
EMBEDDING_POINTS = 20000  # most points the embedding scatter draws (a seeded sample beyond)


class RunState:
    """Per-run server state. Thread-safe: routes run in a thread pool."""

    def __init__(self, run_dir: str | os.PathLike, handle: ModelHandle | None = None, model: str | None = None,
                 thumb_cache: int = 8192, device: str | None = "cpu", positive: int | str | None = None,
                 split: str | None = None, source: ModelSource | None = None):
        """``positive``: the class whose precision-recall and ROC curves the dashboard shows (default on a
        two-class run: the minority class; see ``analysis.binary``). ``split``: every page shows only the
        rows of that split (e.g. ``test``), as ``mikata audit --split`` does. ``source``: the model for
        maps (``ModelSource``; built from ``handle``/``model``/``device`` when not given)."""
        source = source or ModelSource(handle=handle, spec=model, device=device)
        self.run_dir = Path(run_dir).expanduser().resolve()
        self.split = split or None
        self.store = RunStore.open(self.run_dir, annotate=True)  # also creates maps/reviews on old runs
        self.identity = self.store.manifest["identity"]
        self.store.classes  # a manifest without its class names: one clear DamagedRunError now, not a 500 later
        self._db_lock = threading.Lock()  # one sqlite connection shared by the worker threads
        self.maps = MapService(self.run_dir, store=self.store, lock=self._db_lock,
                               source=source)  # one connection for the app; maps on the source's device
        # the run and its row selection: overview, issues, curves, fields, embedding, cached per version
        self.view = RunView(self.run_dir, split=self.split, store=self.store, lock=self._db_lock)
        from mikata.analysis.binary import resolve_class

        self.positive = None if positive is None else resolve_class(self.class_names, positive)  # ChoiceError now
        self._curves_lock = threading.Lock()
        self._curves: tuple | None = None  # (Curves, the slider's JSON-ready data) of one run version
        self._emb_lock = threading.Lock()
        self._emb_json: tuple[dict, bytes] | None = None
        self._thumbs: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._thumbs_max = thumb_cache
        self._thumb_lock = threading.Lock()
        self.compare: "CompareState | None" = None  # run B of `mikata serve RUN_A --compare RUN_B`

    @property
    def overview_builds(self) -> int:
        return self.view.overview_builds

    @property
    def last_build_seconds(self) -> float:
        return self.view.last_build_seconds

    # ------------------------------------------------------------ run-level data
    @property
    def class_names(self) -> list[str]:
        return self.identity["classes"]

    def has_embeddings(self) -> bool:
        with self._db_lock:
            return "embed" in self.store.dims()

    def version(self) -> tuple[int, int, int]:
        """``RunStore.version()`` (``RunView.version``: asked again only after another connection committed)."""
        return self.view.version()

    def overview(self) -> Overview:
        """The overview of the committed rows, rebuilt only when ``RunStore.version()`` changed."""
        return self.view.overview(n=PER_CLASS, top_issues=ISSUES)

    def issues(self):
        """The run's dataset issues (``analysis.issues``) of the overview's rows (the whole run's flags),
        cached per version; the label issues are the overview's own list (one count everywhere)."""
        return self.view.issues()

    # ------------------------------------------------------ per-image fields (manifest columns)
    def field_names(self) -> list[str]:
        return self.view.field_names()

    def field_values(self, ov: Overview | None = None) -> dict[str, np.ndarray]:
        """``{field: (N,) values in the overview's row order}``, read once per run version."""
        return self.view.field_values()

    def field_groups(self, ov: Overview | None = None, max_values: int = 30) -> list[dict]:
        """Per field ``analysis.fields.group_by`` (worst ``max_values`` values): the dashboard's tables."""
        return self.view.field_groups(max_values)

    def image_fields(self, image_id: int) -> list[tuple[str, str]]:
        """``(field, value)`` of one image (the manifest's extra columns), for its page."""
        return self.view.image_fields(image_id, self.overview())

    def row_fields(self, rows) -> dict[int, str]:
        """overview row -> its fields as one short line (``analysis.fields.fields_text``) for tiles and
        review cards; {} for a run without fields."""
        from mikata.analysis.fields import row_fields

        return row_fields(self.field_values(), rows)

    def field_choices(self, max_values: int = 200) -> list[tuple[int, str, list[tuple[str, int]]]]:
        return self.view.field_choices(max_values)

    def field_mask(self, where: str, ov: Overview | None = None) -> tuple[np.ndarray | None, str]:
        """``RunView.field_mask``: the rows whose field matches ``where`` (``"K:VALUE"``), and a description."""
        return self.view.field_mask(where)

    def file_names(self, ids) -> dict[int, str]:
        """id -> the file's name (not its folder), for captions under thumbnails (one query)."""
        with self._db_lock:
            paths = self.store.paths([int(i) for i in ids])
        return {i: shown(os.path.basename(p)) for i, p in paths.items()}
    def curves(self) -> "tuple[Curves | None, dict | None]":
        """``(Curves | None, data)``: the positive class's curves (None on a run of more than two classes
        without a ``positive`` class) and what the threshold slider reads — the areas, both curves
        thinned for drawing, the counts at 1,001 thresholds 0, 0.001, ..., 1 — cached per version."""
        c = self.view.curves(self.positive)
        with self._curves_lock:
            if self._curves is None or self._curves[0] is not c:
                data = None if c is None else {**c.summary(), **c.curve_points(), "table": c.threshold_table(1000)}
                self._curves = (c, data)
            return self._curves[0], self._curves[1]

    def embedding(self, max_points: int = EMBEDDING_POINTS) -> dict:
        """Scatter data ``{ids, x, y, label, pred, fields}`` of a PCA projection, cached per version
        (``fields``: per manifest column its distinct ``values`` and each point's ``codes`` into them)."""
        return self.view.embedding(max_points)

    def embedding_points(self, max_points: int = EMBEDDING_POINTS) -> int:
        """How many points ``embedding()`` draws (known before the projection is computed)."""
        return min(len(self.overview().data), max_points)

    def embedding_json(self, max_points: int = EMBEDDING_POINTS) -> bytes:
        """``embedding()`` as JSON bytes, encoded once per run version (20,000 points are ~0.4 s of
        ``json.dumps`` here: every request would pay it)."""
        data = self.embedding(max_points)
        with self._emb_lock:
            if self._emb_json is None or self._emb_json[0] is not data:
                self._emb_json = (data, json.dumps(data, ensure_ascii=False, allow_nan=False,
                                                   separators=(",", ":")).encode("utf-8"))
            return self._emb_json[1]

    def grid_ids(self, true: int = -1, pred: int = -1, ov: Overview | None = None, where: str = "") -> np.ndarray:
        """``RunView.grid_ids`` of this app's overview: ids labeled ``true`` and predicted ``pred``, most
        confident first, of the images whose field matches ``where``."""
        return self.view.grid_ids(ov or self.overview(), true, pred, where)

    def image_row(self, image_id: int) -> dict:
        """The stored row of a scanned image with its full probability vector; UnknownImageError otherwise."""
        with self._db_lock:
            row = self.store.image(image_id, cam=True)  # the Grad-CAM too: a damaged one is named on the page
        if row is None or row["status"] != "ok":
            raise UnknownImageError(f"no scanned image with id {image_id}")
        row.pop("cam", None)
        self._check_split(row)
        ov = self.overview()
        try:
            r = ov.row(image_id)
            row["probs"] = ov.data.probs[r].tolist()
        except KeyError:  # committed after the overview was built (cannot happen: version changed) — be safe
            row["probs"] = None
        return row

    def neighbours(self, image_id: int) -> tuple[int | None, int | None]:
        """The previous and next scanned image ids (for arrow-key browsing)."""
        return self.view.neighbours(image_id, self.overview())

    # ----------------------------------------------------------------- images
    def image_path(self, image_id: int) -> Path:
        """The servable file of a scanned id (``media.image_file``: inside the dataset root, symlinks
        resolved); skipped rows (files that could not be decoded) are not servable either."""
        with self._db_lock:
            row = self.store.image(image_id)
            if row is None or row["status"] != "ok":
                raise UnknownImageError(f"no scanned image with id {image_id}")
            self._check_split(row)
            return image_file(self.store, image_id, row=row)

    def _check_split(self, row: dict) -> None:
        """Served with ``--split``: an image of another split is not found here (404), like every page."""
        if self.split is not None and row.get("split") != self.split:
            raise UnknownImageError(f"image {row['id']} is in split {row.get('split') or '(none)'!r}; this app "
                                    f"serves only split {self.split!r} (restart `mikata serve` without --split "
                                    "to see every split)")

    def thumbnail(self, image_id: int, size: int = 96) -> bytes:
        key = (int(image_id), int(size))
        with self._thumb_lock:
            data = self._thumbs.get(key)
            if data is not None:
                self._thumbs.move_to_end(key)
                return data
        data = thumbnail(self.image_path(image_id), size)
        with self._thumb_lock:
            self._thumbs[key] = data
            while len(self._thumbs) > self._thumbs_max:
                self._thumbs.popitem(last=False)
        return data

    def full_image(self, image_id: int) -> bytes:
        """The image re-encoded (never the raw file: the server only ever sends images it decoded)."""
        from mikata.data.images import load_image

        img = load_image(self.image_path(image_id))
        return encode(img, "PNG" if img.width * img.height <= 512 * 512 else "JPEG")

    def _in_split(self, image_id: int) -> None:
        """``_check_split`` for a bare id (maps and the model's view of an image)."""
        if self.split is None:
            return
        with self._db_lock:
            row = self.store.image(image_id)
        if row is not None:  # unknown ids are MapService's to refuse
            self._check_split(row)

    def model_view(self, image_id: int) -> bytes:
        self._in_split(image_id)
        with self._model_hint():  # MapService refuses unknown, skipped and unservable ids
            return encode(self.maps.model_view(image_id))

    def overlay(self, image_id: int, method: str, cls: int | str | None, layer: str | None = None) -> bytes:
        return self.overlay_with_legend(image_id, method, cls, layer)[0]

    def overlay_with_legend(self, image_id: int, method: str, cls: int | str | None,
                            layer: str | None = None) -> tuple[bytes, dict]:
        """The map PNG and its legend (``MapService.overlay``): the page shows the two side by side."""
        self._in_split(image_id)
        with self._model_hint():
            return self.maps.overlay(image_id, method, cls, layer)

    def map_estimate(self, image_id: int, method: str, cls: int | str | None, layer: str | None = None) -> dict:
        self._in_split(image_id)
        return self.maps.estimate(image_id, method, cls, layer)

    @contextmanager
    def _model_hint(self):
        try:
            yield
        except ModelLoadError as e:
            raise ModelLoadError(f"{e}; maps need the model this run was scanned with: restart with "
                                 f"`mikata serve {self.run_dir} --model PATH_OR_SPEC`") from e

    # ---------------------------------------------------------------- reviews
    def set_review(self, image_id: int, verdict: str | None, suggested: int | None) -> None:
        """Store a verdict; a "fine" verdict keeps the given label, so it never carries a suggested class."""
        if verdict != "wrong":
            suggested = None
        with self._db_lock:
            row = self.store.image(image_id)
            if row is None:
                raise UnknownImageError(f"no image with id {image_id}")
            self._check_split(row)
            self.store.set_review(image_id, verdict, suggested)

    def reviews(self) -> list[dict]:
        with self._db_lock:
            return self.store.reviews()

    def review(self, image_id: int) -> dict | None:
        """One image's review, or None (one lookup; the image page needs no other review)."""
        with self._db_lock:
            return self.store.review(image_id)

    def reviews_csv(self) -> str:
        """Every review as CSV: id, path, label, predicted, verdict, suggested (class names), updated, and
        reviewed_label: the given label for "fine", the reviewer's class for "wrong" (empty if none chosen).
        A "fine" row never carries a suggested class."""
        names = self.class_names
        name = lambda c: names[c] if c is not None and 0 <= c < len(names) else ""  # noqa: E731
        out = io.StringIO()
        w = csv.writer(out)
        w.writerow(["id", "path", "label", "predicted", "verdict", "suggested", "updated", "reviewed_label"])
        from mikata.analysis.audit import reviewed_label

        for r in self.reviews():
            suggested = "" if r["verdict"] == "fine" else name(r["suggested"])
            w.writerow([r["id"], shown(r["path"]), name(r["label"]), name(r["pred"]), r["verdict"], suggested,
                        r["updated"], name(reviewed_label(r, r["label"]))])
        return out.getvalue()

    # ------------------------------------------------------ files of the run
    def featurevis_files(self) -> list[Path]:
        """The run's feature-visualization images (``attachments.featurevis_images``), addressed by index."""
        return featurevis_images(self.run_dir)

    def featurevis_gallery(self) -> list[dict]:
        """``attachments.featurevis_gallery`` with each image as its index for ``featurevis_png``."""
        index = {p: i for i, p in enumerate(featurevis_pngs(self.run_dir))}
        return [{**e, "grid": index.get(e["grid"]), "units": [(index[p], label) for p, label in e["units"]]}
                for e in featurevis_gallery(self.run_dir)]

    def featurevis_png(self, index: int) -> bytes:
        """A PNG under RUN_DIR/featurevis/ by its index in ``attachments.featurevis_pngs`` (grids and units)."""
        files = featurevis_pngs(self.run_dir)
        if not 0 <= index < len(files):
            raise UnknownImageError(f"no feature visualization {index}")
        return files[index].read_bytes()

    def attachment_notes(self) -> list[str]:
        """``attachments.attachment_notes``: one line per attachment that is there but refused."""
        return attachment_notes(self.run_dir)

    def scorecard(self) -> dict | None:
        """RUN_DIR/evaluate/scorecard.json (written by `mikata evaluate`) as the report's table too
        (``sections.scorecard_table``), or None when absent or unreadable."""
        card = read_scorecard(self.run_dir)
        return None if card is None else scorecard_table(card)

    def close(self) -> None:
        self.store.close()
        if self.compare is not None:
            self.compare.close()
