"""Attribution maps of a run's images, computed on demand and cached in the run's SQLite.

The web app asks for "Grad-CAM of image 812 for class 'shirt'" as a person clicks; the report
asks for the maps of each class's most and least class-like images. Both go through
``MapService.map``: a cache hit is one SQLite read; a miss decodes the image, runs ``explain``
once and stores the float16 map, so the next viewer (or the next report) gets it for free.

Concurrency: requests for the same (image, method, class) wait on one per-key lock and all but
the first find the map in the cache; one model lock keeps two computations from sharing the
module's hooks at once. The service keeps one SQLite connection (its own, or the web app's) for
its life and uses it under a lock, so worker threads share it while a scan appends rows in another
process (WAL mode: each read sees the latest commit). A request resolves its row once (the row
also carries the scan's Grad-CAM, which serves as the cached map of the predicted class at the
scan layer) and decodes the image at most once (the view of an overlay reuses it).

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
import torch

from mikata.presentation.media import UnknownImageError, encode, image_file
from mikata.runs.store import RunStore, as_cached_map
from mikata.attribution import registry
from mikata.data.preprocessing import Preprocessing
from mikata.display import MapScale, overlay_scaled
from mikata.models.handle import ModelHandle
from mikata.models.run_model import RunModelError, fold_models, load_run_model
from mikata.models.source import ModelSource

log = logging.getLogger(__name__)

# methods whose maps live at a layer's resolution; every other method gives a pixel-level map
LAYER_MAP_METHODS = registry.names(layer_resolution=True)
# methods whose map depends on a baseline (the reference input: IG, DeepLIFT; occlusion's window fill)
BASELINE_METHODS = ("integrated-gradients", "deeplift", "occlusion")


def cache_method(method: str, options: dict | None = None) -> str:
    """The name a map of ``method`` is cached under in the run: the method itself, or, when its map
    depends on settings (a baseline, or any option given), the method with those settings, so a map
    made with other settings (an older run's black-baseline IG, say) is never served as this one."""
    import json

    from mikata.attribution.baselines import DEFAULT, baseline_label

    settings = dict(options or {})
    if method in BASELINE_METHODS:
        settings["baseline"] = baseline_label(settings.get("baseline", DEFAULT))
    return f"{method} {json.dumps(settings, sort_keys=True, default=str)}" if settings else method


class MapService:
    """On-demand, cached attribution maps for one run. ``handle`` defaults to the run's own model.

    One long-lived ``RunStore`` connection serves every call (``store``/``lock``: share the
    caller's, as the web app does; otherwise the service opens its own, ``close()`` ends it).
    Every use of the connection holds ``lock``, so worker threads may call the service at once.
    """

    def __init__(self, run_dir: str | os.PathLike, handle: ModelHandle | None = None,
                 options: dict[str, dict] | None = None, model: str | None = None, trust: bool = False,
                 store: RunStore | None = None, lock: threading.Lock | None = None,
                 device: str | None = "cpu", source: ModelSource | None = None):
        """``source``: the model (``ModelSource``: handle or typed spec, trust, device, fold models); the
        loose ``handle``/``model``/``trust``/``device`` arguments build one when it is not given."""
        source = source or ModelSource(handle=handle, spec=model, trust=trust, device=device)
        handle, model, trust, device = source.handle, source.spec, source.trust, source.device
        self.source = source
        self.run_dir = Path(run_dir).expanduser().resolve()
        self._own_store = store is None
        self.store = store if store is not None else RunStore.open(self.run_dir, annotate=True)  # + cache tables
        self._db_lock = lock if lock is not None else threading.Lock()
        with self._db_lock:
            manifest = self.store.manifest  # read once, here
        self.identity = manifest["identity"]
        # a cross-validation run: fold name -> (checkpoint spec, weights sha1) of the model that made its rows
        self._folds: dict[str, tuple[str, str]] = {}
        self._folds_error: RunModelError | None = None  # a damaged crossval record: maps fail, the rest works
        if not source.given and source.folds:
            try:
                self._folds = fold_models(manifest)
            except RunModelError as e:
                self._folds_error = e
        self._fold_handles: dict[str, ModelHandle] = {}
        # the layer the model's default resolved to when the run was scanned (None on older runs)
        self._scan_default_layer = manifest.get("default_layer")
        self._handle = handle
        self.model, self.trust = model, trust  # a spec the user typed; else the run's own, checked
        self.device = device  # where the run's model is loaded and its maps computed
        self.options = options or {}
        self._model_lock = threading.Lock()
        self._keys_lock = threading.Lock()
        self._key_locks: dict[tuple, threading.Lock] = {}

    def close(self) -> None:
        """Close the store the service opened itself (a shared one belongs to its owner)."""
        if self._own_store:
            self.store.close()

    def __enter__(self) -> "MapService":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ model
    @property
    def preprocessing(self) -> Preprocessing:
        """The run's preprocessing, the given handle's, else the manifest's (no model load needed)."""
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

    def handle_for(self, row: dict | None = None) -> ModelHandle:
        """The model that made ``row``'s prediction: the run's model, or on a cross-validation run the
        fold model that never trained on the row (its split names the fold; ``row=None``: the first
        fold's, for what all folds share: layers, preprocessing). Each is loaded once, checked against
        the weights hash the run recorded."""
        if self._folds_error is not None:
            raise self._folds_error
        if not self._folds:
            return self.handle
        name = next(iter(self._folds)) if row is None else str(row.get("split") or "")
        if name not in self._folds:
            raise RunModelError(f"image {row.get('id')} has split {name!r}, which names none of this "
                                f"cross-validation run's fold models ({', '.join(self._folds)})")
        with self._model_lock:
            if name not in self._fold_handles:
                spec, sha1 = self._folds[name]
                self._fold_handles[name] = load_run_model({"model_spec": spec, "weights_sha1": sha1}, self.run_dir,
                                                          device=self.device)
            return self._fold_handles[name]

    @property
    def model_loaded(self) -> bool:
        return self._handle is not None or bool(self._fold_handles)

    # ------------------------------------------------------------------- rows
    def _row(self, image_id: int) -> dict:
        """The usable row of an id, with the scan's Grad-CAM when the run stored them: one lookup."""
        with self._db_lock:
            row = self.store.image(image_id, cam=bool(self.identity.get("gradcam")))
        if row is None or row["status"] != "ok":
            raise UnknownImageError(f"no scanned image with id {image_id} in this run")
        return row

    def _load(self, row: dict) -> torch.Tensor:
        """Decode and preprocess the row's file (inside the dataset root): ``(1, C, H, W)``."""
        return self.preprocessing.load([image_file(self.store, row["id"], row=row)])

    def class_index(self, cls: int | str | None, image_id: int, row: dict | None = None) -> int:
        """A class id from an id or name; ``None`` means the class the model predicted for the image."""
        if cls is None or cls == "":
            row = row if row is not None else self._row(image_id)
            if row["pred"] is None:
                raise UnknownImageError(f"no scanned image with id {image_id} in this run")
            return int(row["pred"])
        from mikata.models.classes import class_index

        return class_index(self.identity["classes"], cls)

    def _scan_cam(self, row: dict, method: str, cls: int, layer: str | None) -> np.ndarray | None:
        """The scan's stored Grad-CAM as this map, when it is the same map: ``(H, W)`` float32 or None.

        ``mikata scan --gradcam`` stores the Grad-CAM of each image's predicted class at the scan
        layer (through the same attribution code as ``explain``); upsampled like ``explain`` does,
        it is the map asked for, so it serves as the cache without loading the model.
        """
        if method != "gradcam" or row.get("cam") is None or row["pred"] is None or cls != int(row["pred"]):
            return None
        wanted = layer or (self._handle.default_layer if self._handle is not None else self._scan_default_layer)
        if wanted is None or wanted != self.identity.get("layer"):
            return None
        from mikata.attribution.result import upsample

        cam = torch.from_numpy(np.ascontiguousarray(row["cam"], dtype=np.float32))[None]  # (1, h, w)
        return upsample(cam, self.preprocessing.input_size)[0].numpy()  # (H, W)

    # ------------------------------------------------------------------- maps
    def map(self, image_id: int, method: str = "gradcam", cls: int | str | None = None,
            layer: str | None = None) -> np.ndarray:
        """The ``(H, W)`` float32 map (model input resolution, unnormalized) of one image for one class."""
        from mikata.attribution.engine import check_methods

        method = check_methods([method])[0]
        row = self._row(image_id)
        return self._map(row, method, self.class_index(cls, image_id, row), layer)[0]

    def _map(self, row: dict, method: str, k: int, layer: str | None,
             x: torch.Tensor | None = None) -> tuple[np.ndarray, torch.Tensor | None]:
        """The map and the decoded input when it had to be decoded (``x`` ``(1, C, H, W)``, else None)."""
        key = (int(row["id"]), cache_method(method, self.options.get(method)), k, layer or "")
        with self._db_lock:
            cached = self.store.get_map(*key)
        if cached is None:
            cached = self._scan_cam(row, method, k, layer)
        if cached is not None:
            return cached, x
        with self._keys_lock:
            lock = self._key_locks.setdefault(key, threading.Lock())
        with lock:
            with self._db_lock:
                cached = self.store.get_map(*key)  # computed by the request we waited for
            if cached is not None:
                return cached, x
            if x is None:
                path = image_file(self.store, row["id"], row=row)  # refused before any model is loaded
                h = self.handle_for(row)
                x = h.preprocessing.load([path])  # (1, C, H, W), the pixels explain sees
            else:
                h = self.handle_for(row)
            start = time.perf_counter()
            m = as_cached_map(self._compute(x, method, k, layer, h)).astype(np.float32)  # as cached
            seconds = time.perf_counter() - start
            self._cache(self.store.put_map, *key, m, seconds)
            log.debug("computed %s of image %s for class %s in %.3f s", method, row["id"], k, seconds)
        with self._keys_lock:
            self._key_locks.pop(key, None)
        return m, x

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
        missing: dict[tuple[str, int], dict[int, list[str]]] = {}  # (fold, class) -> image id -> methods to compute
        rows: dict[int, dict] = {}
        for image_id, cls in zip(ids, per_image):
            row = rows.get(image_id) or rows.setdefault(image_id, self._row(image_id))
            k = self.class_index(cls, image_id, row)
            for method in methods:
                with self._db_lock:
                    cached = self.store.get_map(image_id, cache_method(method, self.options.get(method)), k, layer_key)
                if cached is None:
                    cached = self._scan_cam(row, method, k, layer)
                if cached is not None:
                    out[(image_id, method, k)] = cached
                else:
                    todo = missing.setdefault((str(row.get("split") or "") if self._folds else "", k), {})
                    todo.setdefault(image_id, [])
                    if method not in todo[image_id]:
                        todo[image_id].append(method)
        paths = {i: image_file(self.store, i, row=rows[i]) for todo in missing.values() for i in todo}
        for (_, k), todo in missing.items():
            h = self.handle_for(rows[next(iter(todo))])  # the fold's model (every image of ``todo`` shares it)
            need = [m for m in methods if any(m in ms for ms in todo.values())]
            order = list(todo)
            for start in range(0, len(order), max(1, batch_size)):
                chunk = order[start:start + batch_size]
                tic = time.perf_counter()
                got = self._compute_batch([paths[i] for i in chunk], need, k, layer, h)  # method -> (n, H, W)
                seconds = (time.perf_counter() - tic) / max(1, len(chunk) * len(need))
                new = [(image_id, method, k, layer_key, got[method][j], seconds)
                       for j, image_id in enumerate(chunk) for method in todo[image_id]]
                self._cache(self.store.put_maps, [(i, cache_method(m, self.options.get(m)), *rest)
                                                  for i, m, *rest in new])
                for image_id, method, _, _, m, _ in new:
                    out[(image_id, method, k)] = as_cached_map(m).astype(np.float32)
                log.debug("computed %s for %d images of class %s", need, len(chunk), k)
        return out

    def _cache(self, put, *args) -> None:
        """Store computed maps; on a read-only or full disk the maps are still returned, just not cached."""
        import sqlite3

        from mikata.runs.store import ReadOnlyRunError

        try:
            with self._db_lock:
                put(*args)
        except ReadOnlyRunError:
            log.debug("read-only run: map computed, not cached")
        except sqlite3.OperationalError as e:  # "database or disk is full", "attempt to write a readonly database"
            log.warning("map computed but not cached (%s)", e)

    def _compute_batch(self, paths: list[Path], methods: list[str], cls: int, layer: str | None,
                       h: ModelHandle) -> dict[str, np.ndarray]:
        from mikata.attribution import explain

        x = h.preprocessing.load(paths)  # (n, C, H, W)
        options = {m: self.options[m] for m in methods if m in self.options} or None
        with self._model_lock:
            results = explain(h, x, methods, targets=[cls], layer=layer, options=options)
        return {a.method: a.maps.detach().float().cpu().numpy() for a in results}  # (n, H, W) each

    def _compute(self, x: torch.Tensor | Path, method: str, cls: int, layer: str | None,
                 h: ModelHandle | None = None) -> np.ndarray:
        """One map of a preprocessed image ``x`` ``(1, C, H, W)`` (or of a file, decoded here): ``(H, W)``."""
        from mikata.attribution import explain

        h = h or self.handle
        if not isinstance(x, torch.Tensor):
            x = h.preprocessing.load([x])  # (1, C, H, W)
        with self._model_lock:  # hooks on a shared module: one computation at a time
            a = explain(h, x, [method], targets=[cls], layer=layer,
                        options={method: self.options[method]} if method in self.options else None)[0]
        return a.maps[0].detach().float().cpu().numpy()  # (H, W)

    # ------------------------------------------------------------------ views
    def model_views(self, ids: list[int]) -> dict[int, np.ndarray]:
        """``model_view`` of many images: ``{id: (H, W, 3) uint8}``.

        Needs only the run's preprocessing, so when every map was cached the model is never loaded.
        """
        return {int(i): self._view(self._load(self._row(int(i)))) for i in ids}

    def model_view(self, image_id: int) -> np.ndarray:
        """The image as the model sees it (resized, center-cropped), ``(H, W, 3)`` uint8."""
        return self._view(self._load(self._row(image_id)))

    def _view(self, x: torch.Tensor) -> np.ndarray:
        from mikata.display import to_uint8_image

        return to_uint8_image(self.preprocessing.denormalize(x)[0])  # (H, W, 3)

    def estimate(self, image_id: int, method: str = "gradcam", cls: int | str | None = None,
                 layer: str | None = None) -> dict:
        """What asking for this map will cost, for the app to say while it computes: whether it is
        cached, the median seconds of the method's maps computed before in this run (``None`` when it
        is the first), how many that median is over, and whether the model must be loaded first."""
        from mikata.attribution.engine import check_methods

        method = check_methods([method])[0]
        row = self._row(image_id)
        k = self.class_index(cls, image_id, row)
        with self._db_lock:
            key = cache_method(method, self.options.get(method))
            cached = self.store.get_map(int(row["id"]), key, k, layer or "") is not None
            past = self.store.map_seconds(key)
        cached = cached or self._scan_cam(row, method, k, layer) is not None
        return {"method": method, "class": k, "cached": cached,
                "seconds": float(np.median(past)) if past else None, "measured": len(past),
                "model_loaded": self.model_loaded}

    def overlay_png(self, image_id: int, method: str = "gradcam", cls: int | str | None = None,
                    layer: str | None = None, alpha: float = 0.5) -> bytes:
        """PNG bytes of the map blended over the model's view of the image.

        One row lookup and at most one decode: the image decoded for a new map is the view too.
        """
        return self.overlay(image_id, method, cls, layer, alpha)[0]

    def overlay(self, image_id: int, method: str = "gradcam", cls: int | str | None = None,
                layer: str | None = None, alpha: float = 0.5) -> tuple[bytes, dict]:
        """``overlay_png`` and the map's legend (``MapScale.legend``: its colors, values and what they
        mean, or why nothing is drawn), from the same map."""
        from mikata.attribution.engine import check_methods

        method = check_methods([method])[0]
        row = self._row(image_id)
        k = self.class_index(cls, image_id, row)
        m, x = self._map(row, method, k, layer)
        view = self._view(x if x is not None else self._load(row))
        scale = self.scale(m, method)
        legend = {"method": method, "class": self.identity["classes"][k], "class_id": k,
                  **scale.legend(self.identity["classes"][k])}
        if method in BASELINE_METHODS:  # the map is relative to a baseline: the legend names it
            from mikata.attribution.baselines import DEFAULT, baseline_label

            legend["baseline"] = baseline_label((self.options.get(method) or {}).get("baseline", DEFAULT))
            legend["text"] += f" (baseline: {legend['baseline']})"
        return encode(overlay_scaled(view, m, scale, alpha)), legend

    def scale(self, m: np.ndarray, method: str) -> MapScale:
        """How this service's map of ``method`` is colored (with the service's options for it)."""
        return map_scale_of(m, method, self.options.get(method))


def map_scale_of(m: np.ndarray, method: str, options: dict | None = None) -> MapScale:
    """The ``display.MapScale`` of a map of ``method``: signed (diverging around zero) when the registry
    says so, saturated when it is a pixel-level map. The report and the web app color maps by it."""
    from mikata.display import map_scale

    return map_scale(m, registry.signed_map(method, options), saturate=method not in LAYER_MAP_METHODS)

