"""The optimization loop: many units in one batch, octaves, regularizers, a per-iteration log.

``render`` optimizes a batch of images (one per unit of the objective) so that the objective's
per-image score rises, under random transforms, with image-space penalties subtracted. Octaves
(pyramid levels) run ``steps`` iterations at each size from small to ``size``, carrying the image
up between levels, like MATLAB's deepDreamImage. The same seed and options give the same image.

Each image of the batch is its own row: its own random start and transforms (a generator seeded with
the seed), its own optimizer state and its own plateau stop. So image ``i`` of a batch is the image
that rendering unit ``i`` alone would give (up to float noise, for objectives that score each image on
its own), and a row that has plateaued leaves the batch: the forward and backward run only on the rows
still rising.

Example:
    >>> res = render(handle, channel("stem.conv", list(range(32))), RenderOptions(size=96, steps=16))  # doctest: +SKIP
    >>> res.grid().save("grid.png"); res.save("out/")                                                  # doctest: +SKIP
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from mikata.featurevis import regularizers, transforms as T
from mikata.featurevis.forward import recording
from mikata.featurevis.objectives import INPUT, ROWS, Objective
from mikata.featurevis.params import PARAMETERIZATIONS, octave_sizes
from mikata.hooks import preserved
from mikata.models.handle import ModelHandle
from mikata.errors import check_choices


class Adam:
    """``torch.optim.Adam``'s update at its defaults (betas 0.9 / 0.999, eps 1e-8; its single-tensor path,
    the CPU's, op for op), for the image parameters. PyTorch's optimizers import ``torch._dynamo`` when
    first built, about a second of CPU per process: a quarter of a short ``mikata units`` call's start."""

    def __init__(self, params: list[torch.Tensor], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        self.params, self.lr, self.betas, self.eps = list(params), lr, betas, eps
        self.state = [{"step": 0, "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
                      for p in self.params]

    @torch.no_grad()
    def step(self) -> None:
        beta1, beta2 = self.betas
        for p, st in zip(self.params, self.state):
            if p.grad is None:
                continue
            st["step"] += 1
            st["exp_avg"].lerp_(p.grad, 1 - beta1)
            st["exp_avg_sq"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
            step_size = self.lr / (1 - beta1 ** st["step"])
            denom = (st["exp_avg_sq"].sqrt() / (1 - beta2 ** st["step"]) ** 0.5).add_(self.eps)
            p.addcdiv_(st["exp_avg"], denom, value=-step_size)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None


OPTIMIZERS = {"adam": Adam, "rmsprop": torch.optim.RMSprop, "sgd": torch.optim.SGD}


@dataclass
class RenderOptions:
    """Everything that shapes a rendering. Defaults render class logits the model recognizes.

    Example:
        >>> opts = mikata.RenderOptions(size=64, steps=4, octaves=2, tv=1e-3)
        >>> r = mikata.visualize(handle, "head", channels=[0, 1], options=opts)
        >>> tuple(r.images.shape)                                 # one rendering per channel
        (2, 3, 64, 64)
    """

    size: int = 224  # long side of the final image (pixels)
    steps: int = 48  # iterations per pyramid level
    octaves: int = 1  # pyramid levels
    octave_scale: float = 1.4  # size ratio between consecutive levels
    param: str = "fourier"  # "fourier" or "pixel"
    decorrelate: bool = True
    optimizer: str = "adam"  # "adam", "rmsprop" or "sgd"
    lr: float = 0.05
    jitter: int = 8  # 0 turns off all random transforms
    pad: int = 12
    scale: float = 0.1  # random scale range ±
    degrees: float = 10.0  # random rotation range ±
    tv: float = 0.0  # total-variation weight
    tv_beta: float = 2.0
    lp: float = 0.0  # Lp-norm weight
    lp_p: float = 6.0
    blur: float = 0.0  # blur-penalty weight
    seed: int = 0
    verbose: bool = False
    # a bar over the optimization steps (mikata.progress), with an estimate; None: where a bar shows
    # (a terminal or a notebook), nothing in a log file
    progress: bool | None = None
    # one gray channel shown to the model as three: None = when the model was trained on gray images
    # (its checkpoint says so), so a Fashion-MNIST model's class images are never painted in colours
    # it never saw; True / False force it
    grayscale: bool | None = None
    # stop early once the objective plateaus: after ``plateau`` steps of the last pyramid level in which no
    # image raised its best score by more than ``plateau_tol`` of it (a unit that never activated counts as
    # plateaued at once). None: the caller's default (off for ``render``; on for ``mikata units``); 0: off
    plateau: int | None = None
    plateau_tol: float = 0.01

    def validate(self) -> None:
        check_choices("parameterization", self.param, PARAMETERIZATIONS)
        check_choices("optimizer", self.optimizer, OPTIMIZERS)
        if self.size < 8 or self.steps < 1 or self.octaves < 1 or self.octave_scale <= 0:
            raise ValueError("size >= 8, steps >= 1, octaves >= 1 and octave_scale > 0 are required")


@dataclass
class Rendering:
    """The result: images ``(N, C, H, W)`` in [0, 1], a label per image, and the iteration log."""

    images: torch.Tensor
    labels: list[str]
    log: list[dict] = field(default_factory=list)
    options: RenderOptions | None = None
    seconds: float = 0.0
    stopped_at: int | None = None  # the step of the last level where the plateau stopped it (None: ran every step)
    # per image, the step of the last level where its plateau stopped it (None: it ran every step)
    stopped: list[int | None] = field(default_factory=list)

    @property
    def image_steps(self) -> int:
        """Forward and backward passes of one image that the rendering ran (an image that stopped at its
        plateau stops counting): what its compute is proportional to."""
        o = self.options
        if o is None:
            return len(self.log) * len(self.labels)
        full = o.steps * o.octaves
        return sum(full if s is None else full - o.steps + s for s in (self.stopped or [None] * len(self.labels)))

    def __repr__(self) -> str:
        return (f"Rendering({len(self.labels)} image(s) {tuple(self.images.shape[-2:])}, labels={self.labels[:6]}"
                f"{'...' if len(self.labels) > 6 else ''}, {len(self.log)} log rows, {self.seconds:.1f} s)")

    def _repr_png_(self) -> bytes:
        """Jupyter shows a rendering as its labelled grid."""
        import io

        buf = io.BytesIO()
        self.grid().save(buf, format="PNG")
        return buf.getvalue()

    def pil(self) -> list[Image.Image]:
        from mikata.display import to_uint8_image

        return [Image.fromarray(to_uint8_image(x)) for x in self.images]

    def grid(self, thumb: int = 128, cols: int | None = None) -> Image.Image:
        """A labelled tiled grid (like imtile)."""
        from mikata.display import tile

        return tile(self.pil(), labels=self.labels, thumb=thumb, cols=cols)

    def save(self, folder: str | os.PathLike, thumb: int = 128) -> list[Path]:
        """Write ``grid.png`` and ``<label>.png`` per image; returns the paths written.

        The PNGs carry what a gallery needs as text chunks (no extra files): ``grid.png`` has
        ``mikata-rendering`` (JSON: each image's file, its unit's label and final score, the options)
        and ``mikata-log`` (the per-iteration table); each unit's PNG has its ``mikata-label``. The web
        app's feature-vis gallery reads them (``runs.attachments.featurevis_gallery``).
        """
        import json
        from dataclasses import asdict

        from PIL.PngImagePlugin import PngInfo

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        final = self.log[-1]["units"] if self.log else [None] * len(self.labels)
        paths, units = [folder / "grid.png"], []
        for label, img, score in zip(self.labels, self.pil(), final):
            safe = "".join(ch if ch.isalnum() or ch in "-_.@" else "_" for ch in label) or "unit"
            paths.append(folder / f"{safe}.png")
            info = PngInfo()
            info.add_itxt("mikata-label", label)
            img.save(paths[-1], pnginfo=info)
            units.append({"file": paths[-1].name, "label": label, "score": score})
        info = PngInfo()
        info.add_itxt("mikata-rendering", json.dumps({"units": units, "seconds": round(self.seconds, 3),
                                                      "options": asdict(self.options) if self.options else None}),
                      zip=True)
        if self.log:
            info.add_itxt("mikata-log", format_log(self.log, self.labels), zip=True)
        self.grid(thumb).save(paths[0], pnginfo=info)
        return paths


def format_log(rows: list[dict], labels: list[str], max_units: int = 6) -> str:
    """deepDreamImage's verbose table: iteration, activation strength, pyramid level."""
    per_unit = len(labels) <= max_units
    cols = [f"{l[:10]:>10}" for l in labels] if per_unit else [f"{'mean':>10}", f"{'min':>10}", f"{'max':>10}"]
    head = f"{'iteration':>9} | {' '.join(cols)} | {'level':>5}"
    out = [head, "-" * len(head)]
    for r in rows:
        vals = r["units"] if per_unit else [r["mean"], min(r["units"]), max(r["units"])]
        out.append(f"{r['iteration']:>9} | {' '.join(f'{v:>10.3f}' for v in vals)} | {r['level']:>5}")
    return "\n".join(out)


def plateaued(scores: list[list[float]], patience: int, tol: float = 0.01) -> bool:
    """Whether no image's best score rose by more than ``tol`` of it over the last ``patience`` steps
    (``scores``: per step, one score per image). A score stuck at 0 (a unit that never activated) counts
    as plateaued: no step will move it."""
    if len(scores) <= patience:
        return False
    a = np.asarray(scores, dtype=np.float64)  # (steps, N)
    before, now = a[:-patience].max(0), a.max(0)
    return bool(np.all(now - before <= tol * np.maximum(np.abs(now), 1e-6)))


def trained_on_gray(handle: ModelHandle) -> bool:
    """Whether a 3-channel model only ever saw gray images (recorded by ``mikata train``)."""
    return bool(handle.metadata.get("grayscale_data"))


def _to_model_input(handle: ModelHandle, x01: torch.Tensor) -> torch.Tensor:
    return handle.preprocessing.normalize(x01)  # (N, C, H, W), on x01's device


def _forward(run, x: torch.Tensor, channels_last: bool) -> tuple[dict[str, torch.Tensor], bool]:
    """``run(x)``, on the CPU with ``x`` in channels-last memory: the convolutions then take oneDNN's
    channels-last path, forward and backward ~25% faster on EfficientNet-Lite0 at 64-128 px (same values
    up to float rounding). A model whose forward cannot take it (a ``view`` of a channels-last tensor)
    gets ``x`` as it is, from then on; an error there is the model's own."""
    if channels_last and x.dim() == 4:
        try:
            return run(x.contiguous(memory_format=torch.channels_last)), True
        except RuntimeError:
            pass
    return run(x), False


def render(
    handle: ModelHandle,
    objective: Objective,
    options: RenderOptions | None = None,
    n: int | None = None,
    start: torch.Tensor | None = None,
    labels: list[str] | None = None,
) -> Rendering:
    """Optimize ``n`` images (default: one per unit of ``objective``) to maximize it.

    ``start`` (``(N or 1, C, H, W)`` in [0, 1]) starts from an image instead of noise (DeepDream on
    a photo); its aspect ratio is kept with the long side at ``options.size``. The images are
    optimized on ``handle.device`` (random draws come from seeded CPU generators, one per image, so a
    seed gives the same start everywhere, and an image the same result alone or in a batch) and
    returned on the CPU. With ``options.plateau``, each image stops on its own once its score plateaus.
    """
    opt = options or RenderOptions()
    opt.validate()
    n = n or objective.units or (start.shape[0] if start is not None else 1)
    if objective.units is not None and n != objective.units:
        raise ValueError(f"the objective renders {objective.units} units; n={n} does not match")
    labels = labels or list(objective.labels or [f"{objective.name}#{i}" if n > 1 else objective.name
                                                 for i in range(n)])
    gens = [torch.Generator().manual_seed(opt.seed) for _ in range(n)]  # row i's random draws
    device = handle.device
    c = handle.in_channels
    gray = c == 3 and (opt.grayscale if opt.grayscale is not None else trained_on_gray(handle))
    pc = 1 if gray else c  # channels of the parameterization
    if start is not None:
        h0, w0 = start.shape[-2:]
        k = opt.size / max(h0, w0)
        final = (max(8, round(h0 * k)), max(8, round(w0 * k)))
    else:
        final = (opt.size, opt.size)
    sizes = octave_sizes(final, opt.octaves, opt.octave_scale)
    Param = PARAMETERIZATIONS[opt.param]
    decorrelate = opt.decorrelate and pc == 3
    if start is not None:
        start = start.float().mean(1, keepdim=True) if gray else start
        first = F.interpolate(start.float().to(device).expand(n, -1, -1, -1), size=sizes[0], mode="bilinear",
                              align_corners=False, antialias=True)
        images = [Param.from_image(first[i:i + 1], decorrelate=decorrelate) for i in range(n)]
    else:
        images = [Param.random(1, pc, *sizes[0], generator=g, decorrelate=decorrelate, device=device) for g in gens]
    tfs = T.standard_transforms(opt.jitter, opt.pad, opt.scale, opt.degrees) if opt.jitter else []

    penalties = regularizers.penalty(opt.tv, opt.tv_beta, opt.lp, opt.lp_p, opt.blur)  # an Objective on the input
    rows: list[dict] = []
    patience = opt.plateau or 0
    stopped: list[int | None] = [None] * n
    last = [0.0] * n  # each image's latest score (a stopped image keeps its last one in the log)
    t0 = time.perf_counter()
    net = handle.net
    channels_last = torch.device(device).type == "cpu"  # until a model's forward refuses it
    from mikata.progress import Progress

    bar = Progress(opt.steps * len(sizes), f"visualize: {objective.name} ({n} image{'s' if n != 1 else ''})",
                   "step", opt.progress, first="first step",
                   plan=f"{n} image(s) x {len(sizes)} octave(s) x {opt.steps} steps at {sizes[-1][0]}x{sizes[-1][1]} px")
    with preserved(net), bar:
        net.eval()
        for p in net.parameters():
            p.requires_grad_(False)  # no weight gradients: only the image is optimized
        with recording(handle, objective.layers) as run:
            for level, hw in enumerate(sizes):
                if level > 0:
                    with torch.no_grad():
                        images = [Param.from_image(F.interpolate(im(), size=hw, mode="bicubic",
                                                                 align_corners=False).clamp(0, 1),
                                                   decorrelate=decorrelate) for im in images]
                optimizers = [OPTIMIZERS[opt.optimizer](im.params, lr=opt.lr) for im in images]
                scores: list[list[float]] = [[] for _ in range(n)]  # per image, its scores at this level
                for it in range(1, opt.steps + 1):
                    active = [i for i in range(n) if stopped[i] is None]
                    if not active:
                        break
                    xs = [images[i]().expand(-1, c, -1, -1) for i in active]  # (1, C, h, w) each, in [0, 1]
                    seen = torch.cat([T.apply(tfs, x, gens[i]) for i, x in zip(active, xs)])  # each its own draws
                    acts, channels_last = _forward(run, _to_model_input(handle, seen), channels_last)
                    acts[INPUT] = torch.cat(xs)  # what objectives on the input (regularizers) read
                    if len(active) < n:
                        acts[ROWS] = torch.tensor(active)
                    score = objective(acts)  # (len(active),)
                    penalty = penalties(acts) if penalties is not None else score.new_zeros(len(active))
                    (penalty - score).sum().backward()
                    for i in active:
                        optimizers[i].step()
                        optimizers[i].zero_grad(set_to_none=True)
                    for i, v in zip(active, score.detach().tolist()):
                        last[i] = v
                        scores[i].append(v)
                    bar.update(1)
                    rows.append({"level": level + 1, "iteration": it, "mean": float(np.mean(last)),
                                 "units": list(last), "size": list(hw)})
                    if patience and level == len(sizes) - 1 and it < opt.steps:
                        for i in active:
                            if plateaued([[v] for v in scores[i]], patience, opt.plateau_tol):
                                stopped[i] = it  # this image leaves the batch
        with torch.no_grad():
            final_images = torch.cat([im() for im in images]).detach().expand(-1, c, -1, -1).contiguous().cpu()
    stopped_at = max(stopped) if n and all(s is not None for s in stopped) else None  # type: ignore[type-var]
    result = Rendering(final_images, labels, rows, opt, time.perf_counter() - t0, stopped_at, stopped)
    if opt.verbose:
        print(format_log(rows, labels))
    return result
