"""``run.show(...)``: a notebook gallery of a run's rows, like FiftyOne's, with an optional map over each.

Each card is one scanned image: its thumbnail (the web app's and the report's, ``media.thumbnail``), or
the model's view of it with a map drawn over it (``MapService.overlay``, computed once and cached in
the run); its file name, its label, the prediction and its probability (red when wrong). A gallery of
maps has one legend under it (``display.legend_of_kind``: each map is scaled to itself). Every string
on a card comes from the run, so every one is escaped (``mikata.notebook``).

Example:
    >>> run = open_run("runs/a")                                               # doctest: +SKIP
    >>> run.show(run.label_issues().head(8), map="gradcam")                   # doctest: +SKIP
    >>> run.show(run.view.select(split="test", classes=["cat"]))             # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from mikata.presentation.media import image_files, thumbnail
from mikata.runs.store import RunStore

if TYPE_CHECKING:
    import pandas as pd

    from mikata.presentation.maps import MapService
    from mikata.analysis.overview import Overview
    from mikata.analysis.view import RunView

LIMIT = 48  # cards drawn by default: a gallery is for looking, a table for counting
THUMB = 112  # px


@dataclass
class Card:
    """One image of a gallery: its row id, the words under it and its picture (PNG or JPEG bytes)."""

    id: int
    name: str
    label: str
    predicted: str
    probability: float
    picture: bytes | None  # None: the file cannot be read any more
    note: str = ""  # why there is no map, or no picture

    @property
    def correct(self) -> bool:
        return self.label == self.predicted


@dataclass
class Gallery:
    """Cards of a run's rows; in Jupyter a grid of thumbnails. ``save(path)`` writes it as one HTML page."""

    run: str
    cards: list[Card]
    total: int  # rows asked for (more than ``cards`` when the limit cut them)
    map: str | None = None
    legend: dict | None = None
    missing: list[int] = field(default_factory=list)  # ids asked for that the run does not have

    @property
    def ids(self) -> list[int]:
        return [c.id for c in self.cards]

    def __len__(self) -> int:
        return len(self.cards)

    def __repr__(self) -> str:
        return (f"Gallery({len(self.cards)} of {self.total} image(s) of {self.run}"
                f"{f', map={self.map!r}' if self.map else ''})")

    def _repr_html_(self) -> str:
        from mikata.notebook import Raw, card_html, esc, gallery_html, img_tag, legend_html

        cards = []
        for c in self.cards:
            picture = img_tag(c.picture, alt=c.name, side=THUMB) if c.picture is not None else Raw("<div>(unreadable)</div>")
            pred = Raw(f'<div class="{"" if c.correct else "bad"}">predicted: {esc(c.predicted)} '
                       f'{c.probability:.3f}</div>')
            lines: list[str | Raw] = [f"#{c.id} {c.name}", f"label: {c.label}", pred]
            if c.note:
                lines.append(c.note)
            cards.append(card_html(Raw(f'<div style="height:{THUMB}px">{picture}</div>'), lines,
                                   title=f"{c.name}: label {c.label}, predicted {c.predicted}"))
        heading = (f"{len(self.cards)} of {self.total} image(s)" + (f", {self.map} maps" if self.map else "")
                   + (f"; not in the run: {self.missing[:10]}" if self.missing else ""))
        footer = legend_html(self.legend) if self.legend else ""
        return gallery_html(cards, heading, footer)

    def save(self, path: str | os.PathLike) -> Path:
        """The gallery as a standalone HTML page (pictures embedded)."""
        path = Path(path)
        path.write_text(f"<!doctype html><meta charset='utf-8'><title>mikata gallery</title>{self._repr_html_()}",
                        encoding="utf-8")
        return path


def wanted_ids(what: "Sequence[int] | int | pd.DataFrame | RunView | np.ndarray") -> list[int]:
    """The row ids to show: a list of ids, a DataFrame with an ``id`` column (``run.to_pandas()``,
    ``run.label_issues()``, ``run.errors()``, ...) or a ``RunView`` (its selected rows), in that order."""
    from mikata.analysis.view import RunView
    from mikata.errors import MikataError

    if isinstance(what, RunView):
        return [int(i) for i in what.overview(top_issues=None).data.ids]
    if hasattr(what, "columns") and hasattr(what, "__getitem__"):  # a DataFrame
        if "id" not in what.columns:
            raise MikataError("show() needs a DataFrame with an 'id' column (as run.to_pandas() and "
                              "run.label_issues() give), or a list of ids")
        return [int(i) for i in what["id"].tolist()]
    if isinstance(what, (int, np.integer)):
        return [int(what)]
    return [int(i) for i in what]


def build_gallery(run_dir: str | os.PathLike, whole: "Overview", ids: Sequence[int], map: str | None = None,
                  cls: int | str | None = None, maps: "MapService | None" = None, limit: int = LIMIT) -> Gallery:
    """The ``Gallery`` of ``ids`` (at most ``limit`` cards) from the run's overview of all rows ``whole``;
    ``map``: a method whose map of ``cls`` (default: each image's prediction) is drawn over each image."""
    from mikata.display import legend_of_kind

    d = whole.data
    where = {int(i): r for r, i in enumerate(d.ids)}
    missing = [i for i in ids if i not in where]
    shown = [i for i in ids if i in where][:max(0, int(limit))]
    with RunStore.open(run_dir) as store:
        files = image_files(store, shown)
    names = d.class_names
    cards, signed = [], None
    for i in shown:
        r = where[i]
        picture, note = None, ""
        if map is not None and maps is not None:
            try:
                picture, legend = maps.overlay(i, map, cls)
                signed = legend["signed"] if signed is None else signed
            except Exception as e:  # noqa: BLE001 - one card says why, the gallery goes on
                note = f"no map: {str(e).splitlines()[0][:120]}"
        if picture is None and i in files:
            try:
                picture = thumbnail(files[i], THUMB)
            except Exception as e:  # noqa: BLE001 - an unreadable file stays one card's note
                note = note or f"unreadable: {str(e).splitlines()[0][:120]}"
        cards.append(Card(i, os.path.basename(str(d.paths[r])), names[d.labels[r]], names[d.preds[r]],
                          float(d.probs[r, d.preds[r]]), picture, note))
    legend = None
    if map is not None and signed is not None:
        what = "the predicted class" if cls is None else str(cls)
        legend = legend_of_kind(signed, what=what)
    return Gallery(str(run_dir), cards, len(ids) - len(missing), map, legend, missing)
