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
from mikata.analysis.runstore import RunStore
from mikata.attribution import registry
from mikata.data.preprocessing import Preprocessing
from mikata.models.handle import ModelHandle
from mikata.models.run_model import load_run_model

log = logging.getLogger(__name__)

# methods whose maps live at a layer's resolution; every other method gives a pixel-level map
LAYER_MAP_METHODS = registry.names(layer_resolution=True)


class MapService:
    """On-demand, cached attribution maps for one run. ``handle`` defaults to the run's own model."""

    def __init__(self, run_dir: str | os.PathLike, handle: ModelHandle | None = None,
                 options: dict[str, dict] | None = None, model: str | None = None, trust: bool = False,
                 device: str | None = "cpu"):
        self.run_dir = Path(run_dir).expanduser().resolve()
        with RunStore.open(self.run_dir, annotate=True) as store:  # creates the cache tables if missing
            self.identity = store.manifest["identity"]
        self._handle = handle
        self.model, self.trust = model, trust  # a spec the user typed; else the run's own, checked
        self.device = device  # where the run's model is loaded and its maps computed
        self.options = options or {}
        self._model_lock = threading.Lock()
        self._keys_lock = threading.Lock()
        self._key_locks: dict[tuple, threading.Lock] = {}

    # ------------------------------------------------------------------ model
    @property
    def preprocessing(self) -> Preprocessing:
        """The run's pixels: the given handle's, else the manifest's (no model load needed)."""
        return self._handle.preprocessing if self._handle is not None else Preprocessing.from_identity(self.identity)

    @property
    def handle(self) -> ModelHandle:
        """The model the run was scanned with, loaded on first use and checked against its weights hash."""
        if self._handle is None:
            with self._model_lock:
                if self._handle is None:
                    self._handle = load_run_model(self.identity, self.run_dir, self.model, self.trust,
                                                  device=self.device)
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

    def maps(self, ids: list[int], methods: list[str] | tuple[str, ...] = ("gradcam",),
             classes: list[int | str | None] | int | str | None = None, layer: str | None = None,
             batch_size: int = 32) -> dict[tuple[int, str, int], np.ndarray]:
        """Many maps at once: ``{(image id, method, class id): (H, W) float32}``, missing ones computed in batches.

        ``classes``: one per id, or one for all (``None``: each image's predicted class). Images
        that share a class share each ``explain`` call (one forward and the backwards every method
        needs, for up to ``batch_size`` images), and all the new maps are stored in one transaction.
        ``map()`` stays the call for one map at a time.
        """
        from mikata.attribution.engine import check_methods

        methods = check_methods(list(methods))
        ids = [int(i) for i in ids]
        per_image = list(classes) if isinstance(classes, (list, tuple)) else [classes] * len(ids)
        if len(per_image) != len(ids):
            raise ValueError(f"classes has {len(per_image)} entries for {len(ids)} images")
        layer_key = layer or ""
        out: dict[tuple[int, str, int], np.ndarray] = {}
        missing: dict[int, dict[int, list[str]]] = {}  # class -> image id -> methods to compute
        with RunStore.open(self.run_dir) as store:
            for image_id, cls in zip(ids, per_image):
                k = self.class_index(cls, image_id)
                for method in methods:
                    cached = store.get_map(image_id, method, k, layer_key)
                    if cached is not None:
                        out[(image_id, method, k)] = cached
                    else:
                        missing.setdefault(k, {}).setdefault(image_id, [])
                        if method not in missing[k][image_id]:
                            missing[k][image_id].append(method)
            paths = {i: image_file(store, i) for todo in missing.values() for i in todo}
        for k, todo in missing.items():
            need = [m for m in methods if any(m in ms for ms in todo.values())]
            order = list(todo)
            for start in range(0, len(order), max(1, batch_size)):
                chunk = order[start:start + batch_size]
                tic = time.perf_counter()
                got = self._compute_batch([paths[i] for i in chunk], need, k, layer)  # method -> (n, H, W)
                seconds = (time.perf_counter() - tic) / max(1, len(chunk) * len(need))
                with RunStore.open(self.run_dir, annotate=True) as store, store._transaction():
                    for j, image_id in enumerate(chunk):
                        for method in todo[image_id]:
                            m16 = np.clip(got[method][j], -65504, 65504).astype(np.float16)  # (H, W) as cached
                            store.db.execute("INSERT OR REPLACE INTO maps VALUES (?,?,?,?,?,?,?,?)",
                                             (image_id, method, k, layer_key, m16.shape[0], m16.shape[1],
                                              m16.tobytes(), seconds))
                            out[(image_id, method, k)] = m16.astype(np.float32)
                log.debug("computed %s for %d images of class %s", need, len(chunk), k)
        return out

    def _compute_batch(self, paths: list[Path], methods: list[str], cls: int, layer: str | None) -> dict[str, np.ndarray]:
        from mikata.attribution import explain

        h = self.handle
        x = h.preprocessing.load(paths)  # (n, C, H, W)
        options = {m: self.options[m] for m in methods if m in self.options} or None
        with self._model_lock:
            results = explain(h, x, methods, targets=[cls], layer=layer, options=options)
        return {a.method: a.maps.detach().float().cpu().numpy() for a in results}  # (n, H, W) each

    def model_views(self, ids: list[int]) -> dict[int, np.ndarray]:
        """``model_view`` of many images: ``{id: (H, W, 3) uint8}``.

        Needs only the run's preprocessing, so when every map was cached the model is never loaded.
        """
        from mikata.render import to_uint8_image

        with RunStore.open(self.run_dir) as store:
            paths = {int(i): image_file(store, int(i)) for i in ids}
        pre = self.preprocessing
        return {i: to_uint8_image(pre.denormalize(pre.load([p]))[0]) for i, p in paths.items()}

    def _compute(self, path: Path, method: str, cls: int, layer: str | None) -> np.ndarray:
        from mikata.attribution import explain

        h = self.handle
        x = h.preprocessing.load([path])  # (1, C, H, W)
        with self._model_lock:  # hooks on a shared module: one computation at a time
            a = explain(h, x, [method], targets=[cls], layer=layer,
                        options={method: self.options[method]} if method in self.options else None)[0]
        return a.maps[0].detach().float().cpu().numpy()  # (H, W)

    def model_view(self, image_id: int) -> np.ndarray:
        """The image as the model sees it (resized, center-cropped), ``(H, W, 3)`` uint8."""
        from mikata.render import to_uint8_image

        with RunStore.open(self.run_dir) as store:
            path = image_file(store, image_id)
        pre = self.preprocessing
        return to_uint8_image(pre.denormalize(pre.load([path]))[0])

    def overlay_png(self, image_id: int, method: str = "gradcam", cls: int | str | None = None,
                    layer: str | None = None, alpha: float = 0.5) -> bytes:
        """PNG bytes of the map blended over the model's view of the image."""
        m = self.map(image_id, method, cls, layer)
        return encode(overlay_array(m, self.model_view(image_id), method, alpha))


def overlay_array(m: np.ndarray, view: np.ndarray, method: str, alpha: float = 0.5) -> np.ndarray:
    """A map blended over the model's view of its image, ``(H, W, 3)`` uint8 (how ``overlay_png`` draws)."""
    from mikata.render import colorize, display_map

    shown = display_map(m, saturate=method not in LAYER_MAP_METHODS)
    return (alpha * colorize(shown) + (1 - alpha) * view.astype(np.float64)).round().astype(np.uint8)
