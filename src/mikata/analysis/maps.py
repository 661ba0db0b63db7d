"""Attribution maps of a run's images, computed on demand and cached in the run's SQLite.

The web app asks for "Grad-CAM of image 812 for class 'shirt'" as a person clicks; the report
asks for the maps of each class's most and least class-like images. Both go through
``MapService.map``: a cache hit is one SQLite read; a miss decodes the image, runs ``explain``
once and stores the float16 map, so the next viewer (or the next report) gets it for free.

Concurrency: requests for the same (image, method, class) wait on one per-key lock and all but
the first find the map in the cache; one model lock keeps two computations from sharing the
module's hooks at once. Each call opens its own short-lived SQLite connection, so the service
can be used from a server's worker threads while a scan appends rows in another process.

Example:
    >>> maps = MapService("runs/fashion")                                   # doctest: +SKIP
    >>> m = maps.map(812, "gradcam", cls="shirt")                          # doctest: +SKIP
    >>> png = maps.overlay_png(812, "gradcam", cls="shirt")                # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import numpy as np

from mikata.analysis.media import encode, image_file
from mikata.analysis.runstore import RunStore, RunStoreError
from mikata.models.handle import ModelHandle

log = logging.getLogger(__name__)

# methods whose maps live at a layer's resolution; every other method gives a pixel-level map
LAYER_MAP_METHODS = ("gradcam", "gradcam++", "layercam", "xgradcam", "eigencam", "scorecam")


class MapService:
    """On-demand, cached attribution maps for one run. ``handle`` defaults to the run's own model."""

    def __init__(self, run_dir: str | os.PathLike, handle: ModelHandle | None = None,
                 options: dict[str, dict] | None = None):
        self.run_dir = Path(run_dir).expanduser().resolve()
        with RunStore.open(self.run_dir, annotate=True) as store:  # creates the cache tables if missing
            self.identity = store.manifest["identity"]
        self._handle = handle
        self.options = options or {}
        self._model_lock = threading.Lock()
        self._keys_lock = threading.Lock()
        self._key_locks: dict[tuple, threading.Lock] = {}

    # ------------------------------------------------------------------ model
    @property
    def handle(self) -> ModelHandle:
        """The model the run was scanned with, loaded on first use and checked against its weights hash."""
        if self._handle is None:
            with self._model_lock:
                if self._handle is None:
                    self._handle = load_run_model(self.identity)
        return self._handle

    def class_index(self, cls: int | str | None, image_id: int) -> int:
        """A class id from an id or name; ``None`` means the class the model predicted for the image."""
        if cls is None or cls == "":
            with RunStore.open(self.run_dir) as store:
                row = store.image(image_id)
            if row is None or row["pred"] is None:
                from mikata.analysis.media import UnknownImageError

                raise UnknownImageError(f"no scanned image with id {image_id} in this run")
            return int(row["pred"])
        from mikata.errors import ChoiceError

        classes = self.identity["classes"]
        if isinstance(cls, (int, np.integer)) or (isinstance(cls, str) and cls.strip().isdigit()):
            if not 0 <= int(cls) < len(classes):
                raise ChoiceError("class id", cls, [f"0..{len(classes) - 1}"])
            return int(cls)
        lower = {c.lower(): i for i, c in enumerate(classes)}
        if str(cls).lower() not in lower:
            raise ChoiceError("class", cls, classes)
        return lower[str(cls).lower()]

    # ------------------------------------------------------------------- maps
    def map(self, image_id: int, method: str = "gradcam", cls: int | str | None = None,
            layer: str | None = None) -> np.ndarray:
        """The ``(H, W)`` float32 map (model input resolution, unnormalized) of one image for one class."""
        from mikata.attribution.engine import check_methods

        method = check_methods([method])[0]
        k = self.class_index(cls, image_id)
        layer_key = layer or ""
        key = (int(image_id), method, k, layer_key)
        with RunStore.open(self.run_dir) as store:
            cached = store.get_map(*key)
        if cached is not None:
            return cached
        with self._keys_lock:
            lock = self._key_locks.setdefault(key, threading.Lock())
        with lock:
            with RunStore.open(self.run_dir) as store:
                cached = store.get_map(*key)  # computed by the request we waited for
                if cached is not None:
                    return cached
                path = image_file(store, image_id)
            start = time.perf_counter()
            m = self._compute(path, method, k, layer).astype(np.float16).astype(np.float32)  # as cached
            seconds = time.perf_counter() - start
            with RunStore.open(self.run_dir, annotate=True) as store:
                store.put_map(*key, m, seconds)
            log.debug("computed %s of image %s for class %s in %.3f s", method, image_id, k, seconds)
        with self._keys_lock:
            self._key_locks.pop(key, None)
        return m

    def _compute(self, path: Path, method: str, cls: int, layer: str | None) -> np.ndarray:
        from mikata.attribution import explain
        from mikata.data.images import load_image

        h = self.handle
        x = h.preprocess([load_image(path, "L" if h.in_channels == 1 else "RGB")])  # (1, C, H, W)
        with self._model_lock:  # hooks on a shared module: one computation at a time
            a = explain(h, x, [method], targets=[cls], layer=layer,
                        options={method: self.options[method]} if method in self.options else None)[0]
        return a.maps[0].detach().float().cpu().numpy()  # (H, W)

    def model_view(self, image_id: int) -> np.ndarray:
        """The image as the model sees it (resized, center-cropped), ``(H, W, 3)`` uint8."""
        from mikata.data.images import load_image
        from mikata.render import to_uint8_image

        with RunStore.open(self.run_dir) as store:
            path = image_file(store, image_id)
        h = self.handle
        x = h.preprocess([load_image(path, "L" if h.in_channels == 1 else "RGB")])
        return to_uint8_image(h.denormalize(x)[0])

    def overlay_png(self, image_id: int, method: str = "gradcam", cls: int | str | None = None,
                    layer: str | None = None, alpha: float = 0.5) -> bytes:
        """PNG bytes of the map blended over the model's view of the image."""
        from mikata.render import colorize, display_map

        m = self.map(image_id, method, cls, layer)
        shown = display_map(m, saturate=method not in LAYER_MAP_METHODS)
        base = self.model_view(image_id).astype(np.float64)
        return encode((alpha * colorize(shown) + (1 - alpha) * base).round().astype(np.uint8))


def load_run_model(identity: dict) -> ModelHandle:
    """Load the model a run was scanned with (``manifest["identity"]``), refusing changed weights."""
    from mikata.analysis.scan import weights_hash
    from mikata.models import load_model

    spec = identity["model_spec"]
    handle = load_model(spec)
    if weights_hash(handle.net) != identity["weights_sha1"]:
        raise RunStoreError(f"the model at {spec} is not the one this run was scanned with (its weights changed); "
                            "scan again into a new run directory to see maps for the new weights")
    return handle
