"""What the web app keeps of a run's concept atlas: the shaped atlas (per run version and atlas file),
exemplar crops, heatmaps and decompositions made on demand with the app's model, and the reviews.

``ConceptPages`` sits beside ``RunState`` (one per app) and reaches everything through it: the run's
version, its model (``state.maps.handle_for()``, the model the maps use, so ``--model`` and
``--device`` hold here too) and its database lock. Images are reached by row id only; concepts by
(class index, concept number) only.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import OrderedDict
from typing import TYPE_CHECKING

import numpy as np

from mikata.presentation.media import UnknownImageError, encode
from mikata.errors import ModelLoadError

if TYPE_CHECKING:
    from mikata.server.state import RunState

log = logging.getLogger(__name__)
PNG_CACHE = 512  # rendered crops / heatmaps kept in memory


class ConceptPages:
    """Per-app concept state. Thread-safe: routes run in a thread pool."""

    def __init__(self, state: RunState):
        self.state = state
        self._view: tuple[tuple, dict | None] | None = None
        self._lock = threading.Lock()
        self._pngs: OrderedDict[tuple, bytes] = OrderedDict()
        self._png_lock = threading.Lock()

    # ------------------------------------------------------------------ the atlas
    def _key(self) -> tuple:
        path = self.state.run_dir / "concepts" / "atlas.json"
        try:
            st = path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        return (self.state.version(), stamp)

    def view(self) -> dict | None:
        """``surface.atlas_view`` of the run, read again when the run or its atlas file changed."""
        from mikata.concepts.surface import atlas_view

        key = self._key()
        with self._lock:
            if self._view is None or self._view[0] != key:
                self._view = (key, atlas_view(self.state.run_dir, self.state.class_names))
                with self._png_lock:
                    self._pngs.clear()  # a new atlas: new concepts, new crops
            return self._view[1]

    def require(self) -> dict:
        view = self.view()
        if view is None:
            raise UnknownImageError(f"this run has no current concepts (none computed, or the run changed since): "
                                    f"`mikata concepts {self.state.run_dir}` computes them")
        return view

    def concept(self, c: int, k: int) -> tuple[dict, dict]:
        """(class table, concept) of class index ``c`` and concept number ``k``; 404 when the atlas has neither."""
        from mikata.concepts.surface import find_concept

        try:
            return find_concept(self.require(), c, k)
        except KeyError as e:
            raise UnknownImageError(str(e.args[0])) from None

    def concept_images(self, c: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The class's sampled images that have the concept (ids, strength), strongest first
        (``concepts.concept_images``: the same presence rule as the accuracy with and without it)."""
        from mikata.concepts import concept_images

        _, concept = self.concept(c, k)
        ids, strength, present = concept_images(self.state.run_dir, concept["concept"])
        return ids[present], strength[present]

    # ------------------------------------------------------------------ pictures
    def _cached(self, key: tuple, make) -> bytes:
        with self._png_lock:
            got = self._pngs.get(key)
            if got is not None:
                self._pngs.move_to_end(key)
                return got
        data = make()
        with self._png_lock:
            self._pngs[key] = data
            while len(self._pngs) > PNG_CACHE:
                self._pngs.popitem(last=False)
        return data

    def _handle(self):
        try:
            return self.state.maps.handle_for()
        except ModelLoadError as e:
            raise ModelLoadError(f"{e}; concept heatmaps need the model this run was scanned with: restart with "
                                 f"`mikata serve {self.state.run_dir} --model PATH_OR_SPEC`") from e

    def exemplar_png(self, c: int, k: int, j: int, heat: bool) -> bytes:
        """Exemplar ``j`` of a concept: its crop, or (``heat``) the crop with the concept's heatmap over it."""
        from mikata.concepts.surface import crop_box, exemplar_overlay, original_image

        _, concept = self.concept(c, k)
        if not 0 <= j < len(concept["exemplars"]):
            raise UnknownImageError(f"concept {concept['concept']} has no exemplar {j}")
        e = concept["exemplars"][j]
        self.state.image_path(e["id"])  # 404 for ids that are not servable (gone, skipped, outside the data)

        def make() -> bytes:
            if heat:
                _, over = exemplar_overlay(self.state.run_dir, e["id"], concept["concept"], e["box"],
                                           model=self._handle(), device=self.state.maps.device)
                return encode(over)
            img = original_image(self.state.run_dir, e["id"])
            x0, y0, x1, y1 = crop_box(img.shape, e["box"])
            return encode(img[y0:y1, x0:x1])

        return self._cached(("exemplar", self._key(), c, k, j, heat), make)

    def heatmap_png(self, c: int, k: int, image_id: int) -> bytes:
        """The concept's heatmap over a whole scanned image."""
        from mikata.concepts.surface import exemplar_overlay

        _, concept = self.concept(c, k)
        self.state.image_path(image_id)

        def make() -> bytes:
            _, over = exemplar_overlay(self.state.run_dir, image_id, concept["concept"], None,
                                       model=self._handle(), device=self.state.maps.device)
            return encode(over)

        return self._cached(("heat", self._key(), c, k, int(image_id)), make)

    def location_png(self, c: int, k: int) -> bytes:
        from mikata.concepts.surface import location_image

        _, concept = self.concept(c, k)
        return self._cached(("location", self._key(), c, k),
                            lambda: encode(location_image(self.state.run_dir, concept["concept"], 128)))

    def decomposition(self, image_id: int) -> dict:
        """The concept decomposition of an image's prediction: ``{"class", "text", "shares": [[concept, share,
        class index, k, suspected shortcut], ...]}`` (``concepts.image_decomposition``), or ``{"shares": []}`` with a reason when the
        atlas has no concepts of the predicted class."""
        from mikata.concepts import image_decomposition
        from mikata.concepts.surface import concept_index, decomposition_text

        row = self.state.image_row(image_id)
        pred = int(row["pred"])
        name = self.state.class_names[pred]
        view = self.view()
        if view is None:
            return {"class": name, "shares": [], "text": "this run has no current concepts (none computed, or the run "
                                                         f"changed since): `mikata concepts {self.state.run_dir}`"}
        if not any(cl["index"] == pred for cl in view["classes"]):
            return {"class": name, "shares": [], "text": f"no concepts of {name} in this run's atlas"}
        shares = image_decomposition(self.state.run_dir, image_id, model=self._handle(), device=self.state.maps.device)
        ranked = sorted(((str(cn), float(s)) for cn, s in shares), key=lambda kv: -kv[1])
        suspects = {x["concept"] for x in view["shortcuts"]}
        return {"class": name, "class_index": pred, "text": decomposition_text(name, ranked),
                "shares": [[cn, round(s, 4), pred, concept_index(cn, j), cn in suspects]
                           for j, (cn, s) in enumerate(ranked)]}

    # ------------------------------------------------------------------ reviews
    def reviews(self) -> dict[str, dict]:
        from mikata.concepts import concept_reviews

        return concept_reviews(self.state.run_dir)

    def set_review(self, c: int, k: int, verdict: str | None) -> None:
        from mikata.concepts import set_concept_review

        _, concept = self.concept(c, k)
        set_concept_review(self.state.run_dir, concept["concept"], verdict)


_PAGES: weakref.WeakKeyDictionary[RunState, ConceptPages] = weakref.WeakKeyDictionary()
_PAGES_LOCK = threading.Lock()


def concept_pages(state: RunState) -> ConceptPages:
    """The one ``ConceptPages`` of an app's ``RunState`` (made on first use, gone with the state)."""
    with _PAGES_LOCK:
        pages = _PAGES.get(state)
        if pages is None:
            pages = _PAGES[state] = ConceptPages(state)
        return pages
