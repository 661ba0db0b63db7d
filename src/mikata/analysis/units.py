"""A unit beside its dataset examples: a channel's synthetic image next to the scanned images that
activate it most, each with that channel's activation map over the image.

A synthetic image alone shows what a unit *can* respond to; the real images that drive it and
where in them it fires show what it *does* respond to in the user's data. The scan already stored
every image's per-channel means of its layer (``channels.f16``), so for that layer the ranking
costs no forward pass; for another layer the run's images are streamed through the model once.

Written to ``RUN_DIR/units/``, where the report and the web app find it (one set: the latest
call's): ``units.json``, ``unit_{j}.png`` (synthetic image of the ``j``-th unit), ``unit_{j}_top_{r}.png``
(its ``r``-th image with the activation map over it) and ``units.png`` (everything as one grid).

Example:
    >>> res = unit_examples("runs/fashion", channels=[0, 1, 2], k=6)   # doctest: +SKIP
    >>> res.save()                                                       # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    from mikata.models.source import ModelSource
import torch
import torch.nn.functional as F
from PIL import Image

from mikata.runs.layout import UNITS, UNITS_CARD, RunLayout
from mikata.errors import ChoiceError, MikataError
from mikata.progress import one_line

log = logging.getLogger(__name__)

UNITS_DIR = UNITS
MAX_UNITS, MAX_TOP = 64, 16
PLATEAU = 8  # steps without gain after which a unit's rendering stops (RenderOptions.plateau)
CROP = "shown as its strongest dataset crop"


@dataclass
class UnitExample:
    image_id: int
    activation: float  # the channel's spatial mean on this image
    label: str
    pred: str


@dataclass
class UnitsResult:
    """``units[j]`` = (channel, its best examples); ``synthetic`` ``(U, 3, H, W)`` in [0, 1];
    ``overlays[j][r]`` = the ``r``-th example with its activation map, ``(H, W, 3)`` uint8."""

    run_dir: Path
    layer: str
    source: str  # "scan" (the stored channel means) or "computed" (a pass over the run's images)
    map_size: tuple[int, int]
    units: list[tuple[int, list[UnitExample]]]
    synthetic: torch.Tensor
    overlays: list[list[np.ndarray]] = field(default_factory=list)
    # per unit, how its synthetic image came to be when not by the plain rendering (None): rendered again
    # from its strongest image after a flat first try, or that image's strongest crop (see ``unit_examples``)
    notes: list[str | None] = field(default_factory=list)
    seconds: float = 0.0  # rendering time, retries included
    image_steps: int = 0  # forward and backward passes of one image that the renderings ran, retries included

    def summary(self) -> dict:
        notes = self.notes or [None] * len(self.units)
        return {"layer": self.layer, "source": self.source, "map_size": list(self.map_size),
                "units": [{"channel": c, "top": [{"id": e.image_id, "activation": round(e.activation, 5),
                                                  "label": e.label, "pred": e.pred} for e in ex],
                           **({"synthetic_note": note} if note else {})}
                          for (c, ex), note in zip(self.units, notes)]}

    def grid(self, thumb: int = 112) -> Image.Image:
        """One row per unit: the synthetic image, then its examples with their activation maps."""
        from mikata.display import tile, to_uint8_image

        k = max(len(ex) for _, ex in self.units)
        images, labels = [], []
        for j, (c, ex) in enumerate(self.units):
            images.append(to_uint8_image(self.synthetic[j]))
            note = self.notes[j] if j < len(self.notes) else None
            kind = "" if not note else " (dataset crop)" if note.startswith(CROP) else " (from its top image)"
            labels.append(f"{self.layer} #{c}{kind}")
            for r in range(k):
                if r < len(ex):
                    images.append(self.overlays[j][r])
                    labels.append(f"id {ex[r].image_id}: {ex[r].activation:.2f}")
                else:
                    images.append(np.full_like(self.overlays[j][0], 255))
                    labels.append("")
        return tile(images, labels=labels, thumb=thumb, cols=k + 1)

    def save(self, folder: str | os.PathLike | None = None) -> Path:
        """Write the files (see the module docstring); returns the path of ``units.json``."""
        from mikata.display import to_uint8_image

        if folder is None:  # inside the run: never through a link named units/
            out = RunLayout(self.run_dir).writable_folder(UNITS_DIR)
        else:
            out = Path(folder)
            out.mkdir(parents=True, exist_ok=True)
        for old in out.glob("unit_*.png"):  # a previous call's units must not show beside these
            old.unlink()
        for name in ("units.png", UNITS_CARD):  # written by name below: never through a link
            RunLayout(out).check_file(out / name, "remove it, then run `mikata units` again")
        for j in range(len(self.units)):
            Image.fromarray(to_uint8_image(self.synthetic[j])).save(out / f"unit_{j}.png")
            for r, img in enumerate(self.overlays[j]):
                Image.fromarray(img).save(out / f"unit_{j}_top_{r}.png")
        self.grid().save(out / "units.png")
        path = out / UNITS_CARD
        path.write_text(json.dumps(self.summary(), indent=1))
        return path


@one_line  # in a notebook, every step of the call on one line
def unit_examples(run_dir: str | os.PathLike, channels: Sequence[int], layer: str | None = None, k: int = 6,
                  handle=None, model: str | None = None, options=None, progress: bool | None = None,
                  source: "ModelSource | None" = None, device: str | None = "cpu") -> UnitsResult:
    """Channels ``channels`` of ``layer`` (default: the layer the run was scanned at) with the ``k``
    scanned images whose spatial mean of the channel is highest, their activation maps, and the
    channel's synthetic image (``options``: ``RenderOptions``; default: the model's input size).

    ``handle``: the model (default: the run's own, checked against its weights hash, or ``model``,
    a spec the user typed; or ``source``, a ``ModelSource`` holding either and the device). ``device``:
    where the model runs when no ``source`` says. ``progress``: bars for the pass over the run's images (when the channel
    means were not stored by the scan) and for the rendering (None: where a bar shows, see ``mikata.progress``)."""
    from mikata.presentation.maps import MapService
    from mikata.featurevis import RenderOptions
    from mikata.featurevis.top_images import top_k_rows

    channels = [int(c) for c in channels]
    if not channels or len(channels) > MAX_UNITS:
        raise MikataError(f"give 1..{MAX_UNITS} channels (got {len(channels)}); e.g. --channels 0:8")
    if not 1 <= k <= MAX_TOP:
        raise MikataError(f"--top {k} is out of range; show 1..{MAX_TOP} images per unit")
    from mikata.models.source import ModelSource

    source = source or ModelSource(handle=handle, spec=model, device=device)
    with MapService(run_dir, source=source) as service:
        scan_layer = service.identity.get("layer")
        layer = layer or scan_layer
        rows = service.store.rows(status="ok", columns=("id", "label", "pred", "vec_row"), tuples=True)
        if not rows:
            raise MikataError(f"{run_dir} holds no scanned images; run `mikata scan` first")
        h = service.handle
        from mikata.hooks import get_layer

        get_layer(h.net, layer)  # ChoiceError listing the layers for a typo
        if layer == scan_layer and "channels" in service.store.dims():
            means, source = _stored_means(service.store, rows), "scan"
        else:
            means, source = _computed_means(service, [r[0] for r in rows], layer, progress=progress), "computed"
        bad = [c for c in channels if not 0 <= c < means.shape[1]]
        if bad:
            raise ChoiceError(f"channel of {layer}", str(bad[0]), [f"0..{means.shape[1] - 1}"])
        names = h.class_names
        units = []
        for c in channels:
            best = top_k_rows(means[:, c], k)  # the one ranking of top-activating images
            units.append((c, [UnitExample(int(rows[i][0]), float(means[i, c]), names[rows[i][1]],
                                          names[rows[i][2]]) for i in best]))
        ids = sorted({e.image_id for _, ex in units for e in ex})
        acts, views, size, pixels = _activation_maps(service, ids, layer, channels)
        overlays = [[_overlay(acts[e.image_id][c], views[e.image_id]) for e in ex] for c, ex in units]
        import dataclasses

        opts = options or RenderOptions(size=max(h.input_size), seed=0)
        if progress is not None and opts.progress is None:
            opts = dataclasses.replace(opts, progress=progress)
        opts = dataclasses.replace(opts, plateau=PLATEAU if opts.plateau is None else opts.plateau)
        synthetic, notes, seconds, image_steps = _render_units(h, layer, units, opts, acts, pixels)
    return UnitsResult(Path(run_dir), layer, source, size, units, synthetic, overlays, notes, seconds, image_steps)


def _render_units(h, layer: str, units: list[tuple[int, list[UnitExample]]], opts,
                  acts: dict[int, dict[int, torch.Tensor]],
                  pixels: dict[int, torch.Tensor]) -> tuple[torch.Tensor, list[str | None], float, int]:
    """Every unit's synthetic image ``(U, C, H, W)`` in one batch, a note per unit whose image had to
    come from elsewhere, the rendering seconds and image steps (``Rendering.image_steps``). Each unit
    leaves the batch once its objective plateaus (a silent one after ``plateau`` steps). A rendering that
    failed to activate its unit (flat gray, or an objective that never rose above 0: ``featurevis.quality``)
    is rendered once more, all such units in one batch, from the unit's strongest dataset image (pixel
    parameterization, the next seed), where the unit is active and so has a gradient; if that fails too,
    the unit shows the crop of that image where it fires most, and the note says so."""
    import dataclasses

    from mikata.featurevis import visualize_channels
    from mikata.featurevis.quality import failed_renders

    channels = [c for c, _ in units]
    first = visualize_channels(h, layer, channels, opts)
    synthetic, seconds, image_steps = first.images.clone(), first.seconds, first.image_steps  # (U, C, H, W)
    notes: list[str | None] = [None] * len(units)
    failed = failed_renders(first)
    if not failed:
        return synthetic, notes, seconds, image_steps
    redo = sorted(failed)
    starts = torch.stack([pixels[units[j][1][0].image_id] for j in redo])  # (R, C, H, W) in [0, 1]
    retry_opts = dataclasses.replace(opts, seed=opts.seed + 1, param="pixel", progress=False)
    retry = visualize_channels(h, layer, [channels[j] for j in redo], retry_opts, start=starts)
    seconds += retry.seconds
    image_steps += retry.image_steps
    still = failed_renders(retry)
    for r, j in enumerate(redo):
        top = units[j][1][0].image_id
        if r not in still:
            synthetic[j] = _fit(retry.images[r], synthetic.shape[-2:])
            notes[j] = (f"the rendering from noise failed ({failed[j]}); rendered again from its top image "
                        f"(id {top}, pixel parameterization, seed {retry_opts.seed})")
        else:
            synthetic[j] = _fit(_strongest_crop(pixels[top], acts[top][channels[j]]), synthetic.shape[-2:])
            notes[j] = (f"the rendering failed ({failed[j]}; again from its top image: {still[r]}); {CROP} "
                        f"(id {top}, where the channel fires most)")
        log.warning("units: %s #%d: %s", layer, channels[j], notes[j])
    return synthetic, notes, seconds, image_steps


def _fit(img: torch.Tensor, size) -> torch.Tensor:
    """``(C, h, w)`` resized to ``size``."""
    if tuple(img.shape[-2:]) == tuple(size):
        return img
    return F.interpolate(img[None].float(), size=tuple(size), mode="bilinear", align_corners=False,
                         antialias=True)[0].clamp(0, 1)


def _strongest_crop(image: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    """The square half the size of ``image`` ``(C, H, W)`` centred where ``act`` ``(H, W)`` (the channel's
    map upsampled to the image) is highest, cut at the border."""
    _, hh, ww = image.shape
    side = max(1, min(hh, ww) // 2)
    y, x = divmod(int(torch.argmax(act)), act.shape[-1])
    top = min(max(0, y - side // 2), hh - side)
    left = min(max(0, x - side // 2), ww - side)
    return image[:, top:top + side, left:left + side]


def _stored_means(store, rows) -> np.ndarray:
    vec = store.vectors("channels")
    return np.asarray(vec[[r[3] for r in rows]], dtype=np.float32)  # (n, C)


def _computed_means(service, ids: list[int], layer: str, batch: int = 64, progress: bool = False) -> np.ndarray:
    """Per-channel spatial means of ``layer`` for every usable image: one streamed pass."""
    from mikata.progress import Progress

    out = []
    with Progress(len(ids), f"units: channel means of {layer}", "img", progress, first="first batch") as bar:
        for s in range(0, len(ids), batch):
            act = _forward(service, ids[s:s + batch], layer)[0]  # (n, C, h, w)
            out.append(act.mean(dim=(2, 3)).numpy())
            bar.update(len(ids[s:s + batch]))
    return np.concatenate(out).astype(np.float32)  # (N, C)


def _forward(service, ids: list[int], layer: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``layer``'s activations ``(n, C, h, w)`` and the preprocessed images ``(n, C, H, W)``."""
    from mikata.presentation.media import image_file
    from mikata.hooks import capture, preserved

    h = service.handle
    x = h.preprocessing.load([image_file(service.store, i) for i in ids])  # (n, C, H, W)
    with preserved(h.net), torch.inference_mode(), capture(h.net, [layer], layouts=h.layouts_for([layer])) as rec:
        h.net.eval()
        h.net(x)
        act = rec.activations[layer]
    if act.dim() != 4:
        raise MikataError(f"layer {layer} gives shape {tuple(act.shape)}, not a (C, h, w) map per image; "
                          "pick a convolutional layer (see `mikata layers MODEL`)")
    return act.float().cpu(), x


def _activation_maps(service, ids: list[int], layer: str, channels: Sequence[int]) -> tuple[
        dict[int, dict[int, torch.Tensor]], dict[int, np.ndarray], tuple[int, int], dict[int, torch.Tensor]]:
    """id -> channel -> its ``(H, W)`` map upsampled to the input (only ``channels``: a head's 1,280 maps
    at 224 px would be gigabytes), id -> the model's view ``(H, W, 3)``, the layer's own map size
    ``(h, w)``, and id -> the model's view as ``(C, H, W)`` pixels in [0, 1]."""
    from mikata.display import to_uint8_image

    act, x = _forward(service, ids, layer)  # (n, C, h, w), (n, C, H, W)
    wanted = sorted(set(channels))
    up = F.interpolate(act[:, wanted], size=x.shape[-2:], mode="bilinear", align_corners=False)  # (n, U, H, W)
    views = service.handle.preprocessing.denormalize(x)
    return ({i: {c: up[j, u] for u, c in enumerate(wanted)} for j, i in enumerate(ids)},
            {i: to_uint8_image(views[j]) for j, i in enumerate(ids)},
            tuple(act.shape[-2:]), {i: views[j].float().clamp(0, 1) for j, i in enumerate(ids)})


def _overlay(m: torch.Tensor, view: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Where in the image the channel fires: its map, min-max scaled, blended over the image."""
    from mikata.display import colorize, display_map

    shown = display_map(m.numpy())
    return (alpha * colorize(shown) + (1 - alpha) * view.astype(np.float64)).round().astype(np.uint8)


def read_units(run_dir: str | os.PathLike) -> dict | None:
    """``RUN_DIR/units/units.json`` checked field by field (it is data from a file), with each unit's
    image files as paths inside the folder; None when absent or unusable (with a warning)."""
    from mikata.runs.attachments import _inside, load_units_json

    root = RunLayout(run_dir).folder(UNITS_DIR)  # a link named units/ pointing elsewhere counts as absent
    path = (root or RunLayout(run_dir).units) / UNITS_CARD
    raw, _ = load_units_json(root)  # checked against its schema; a refused one is named by attachment_notes
    if raw is None:
        return None
    try:
        units = []
        for j, u in enumerate(raw["units"][:MAX_UNITS]):
            top = [{"id": int(t["id"]), "activation": float(t["activation"]), "label": str(t["label"]),
                    "pred": str(t["pred"])} for t in u["top"][:MAX_TOP]]
            files = [root / f"unit_{j}_top_{r}.png" for r in range(len(top))]
            units.append({"channel": int(u["channel"]), "top": top, "synthetic": root / f"unit_{j}.png",
                          "overlays": files})
        card = {"layer": str(raw["layer"]), "source": str(raw.get("source", "")),
                "map_size": [int(v) for v in raw.get("map_size", [])][:2], "units": units}
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("ignoring unreadable %s: %s", path, e)
        return None
    for u in card["units"]:
        if not _inside(root, u["synthetic"]) or not all(_inside(root, f) for f in u["overlays"]):
            log.warning("ignoring %s: its image files are missing (run `mikata units` again)", path)
            return None
    return card
