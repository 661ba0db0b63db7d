"""``explain``: every attribution method behind one call, sharing passes between methods and targets.

Methods that only need gradients (the Grad-CAM family, saliency, Gradient x Input, Guided Backprop,
Deconvnet, Guided Grad-CAM) and EigenCAM / Score-CAM's activations share ONE forward; the plain,
guided and deconv backwards all reuse its graph, and each target rank is one vector-Jacobian
product on it. The layer-only backward stops at the layer. Sampling methods (SmoothGrad and its
variants, IG, occlusion, Score-CAM, LIME) batch their samples under a memory budget.

Example:
    >>> handle = load_model("efficientnet-lite0")                               # doctest: +SKIP
    >>> x = handle.preprocess([load_image("chelsea.png")])                      # doctest: +SKIP
    >>> maps = explain(handle, x, ["gradcam", "guided-gradcam"], targets="top3")  # doctest: +SKIP
    >>> [(a.method, a.target_spec, a.targets) for a in maps][:2]                # doctest: +SKIP
    [('gradcam', 'top1', [282]), ('gradcam', 'top2', [281])]
"""

from __future__ import annotations

import time
from typing import Sequence

import torch

from mikata.attribution import cam
from mikata.attribution.batching import DEFAULT_BUDGET_MB
from mikata.attribution.passes import Pass, gradient_pass
from mikata.attribution.result import Attribution, reduce_channels, upsample
from mikata.attribution.targets import TargetSpec, resolve_targets
from mikata.errors import ChoiceError, MikataError
from mikata.hooks import get_layer, preserved
from mikata.models.handle import ModelHandle

# name -> how a pixel map is reduced over channels for display
PIXEL_GRADIENT = {"saliency": ("plain", "maxabs"), "saliency-signed": ("plain", "sum"),
                  "grad-x-input": ("plain", "sum"), "guided-backprop": ("guided", "maxabs"),
                  "deconv": ("deconv", "maxabs")}
LAYER_METHODS = ("gradcam", "gradcam++", "layercam", "xgradcam", "eigencam", "scorecam", "guided-gradcam")
SMOOTH = ("smoothgrad", "smoothgrad-squared", "vargrad")
OTHER = ("integrated-gradients", "deeplift", "occlusion", "lrp", "lime")
METHODS = ("gradcam", "gradcam++", "layercam", "xgradcam", "eigencam", "scorecam", "saliency",
           "saliency-signed", "grad-x-input", "guided-backprop", "deconv", "guided-gradcam",
           *SMOOTH, *OTHER)


class NotSpatialError(MikataError, ValueError):
    """A CAM method was pointed at a layer whose output is not a (C, h, w) map."""


def check_methods(methods: Sequence[str]) -> list[str]:
    """Lower-cased, de-duplicated method names; an unknown one raises ``ChoiceError`` listing all."""
    out = []
    for m in methods:
        m = m.strip().lower()
        if m not in METHODS:
            raise ChoiceError("method", m, list(METHODS))
        if m not in out:
            out.append(m)
    return out


def _spatial_error(handle: ModelHandle, layer: str, shape: object) -> NotSpatialError:
    from mikata.models.layers import spatial_layers, trace_layers

    good = spatial_layers(trace_layers(handle.net, handle.in_channels, handle.input_size))
    shown = ", ".join(good[-12:])
    return NotSpatialError(f"layer {layer!r} has output shape {shape}, not a spatial (C, h, w) map, so CAM "
                           f"methods cannot use it; layers that work (last {min(12, len(good))} of "
                           f"{len(good)}): {shown}")


def explain(
    handle: ModelHandle,
    images: torch.Tensor,
    methods: Sequence[str] = ("gradcam",),
    targets: TargetSpec = "top1",
    layer: str | None = None,
    options: dict[str, dict] | None = None,
    budget_mb: float = DEFAULT_BUDGET_MB,
    progress: bool = False,
) -> list[Attribution]:
    """Attributions for a batch ``images`` ``(N, C, H, W)`` (already preprocessed), one per
    (method, target rank), in method order then rank order.

    ``targets``: "top1" / "topk" (per image), a class id or name, or a list of them.
    ``layer``: for CAM methods, a layer name inside ``handle.net`` (default ``handle.default_layer``).
    ``options``: per-method keyword arguments, e.g. ``{"smoothgrad": {"samples": 32, "sigma": 0.1,
    "base": "grad-x-input"}, "integrated-gradients": {"steps": 64, "baseline": "blur"},
    "occlusion": {"window": 32, "stride": 16}, "lime": {"samples": 1000}, "lrp": {"rule": "zplus"}}``.

    The work runs on ``handle.device`` (``images`` are moved there once); the maps come back on the
    device ``images`` came from, so CPU tensors in give CPU maps out.
    """
    methods = check_methods(methods)
    home = images.device
    with preserved(handle.model):
        handle.model.eval()  # dropout off, batch-norm statistics frozen; modes restored afterwards
        results = _explain(handle, images.to(handle.device), methods, targets, layer, options, budget_mb, progress)
    if home != handle.device:
        for a in results:
            a.maps, a.raw = a.maps.to(home), a.raw.to(home)
    return results


def _explain(handle: ModelHandle, images: torch.Tensor, methods: list[str], targets: TargetSpec, layer: str | None,
             options: dict[str, dict] | None, budget_mb: float, progress: bool) -> list[Attribution]:
    options = {k.lower(): dict(v) for k, v in (options or {}).items()}
    bad = [k for k in options if k not in METHODS]
    if bad:
        raise ChoiceError("method in options", bad[0], list(METHODS))
    x = images.detach()
    if x.dim() != 4:
        raise ValueError(f"images must be a (N, C, H, W) batch, got shape {tuple(x.shape)}")
    size = tuple(x.shape[-2:])
    needs_layer = [m for m in methods if m in LAYER_METHODS]
    if needs_layer:
        layer = layer or handle.default_layer
        if layer is None:
            raise MikataError(f"{needs_layer[0]} needs a target layer and this model has no default; pass --layer")
        get_layer(handle.net, layer)  # ChoiceError listing valid names
    else:
        layer = None

    # ---- the shared pass: one forward; plain / guided / deconv backwards as the methods need
    modes: dict[str, set[str]] = {}
    for m in methods:
        if m in cam.GRADIENT_CAMS or m == "guided-gradcam":
            modes.setdefault("plain", set()).add("layer")
        if m in PIXEL_GRADIENT:
            modes.setdefault(PIXEL_GRADIENT[m][0], set()).add("input")
        if m == "guided-gradcam":
            modes.setdefault("guided", set()).add("input")
    tic = time.perf_counter()
    shared = gradient_pass(handle, x, lambda logits: resolve_targets(handle, logits, targets), layer,
                           {k: tuple(sorted(v)) for k, v in modes.items()})
    shared_s = time.perf_counter() - tic
    if layer is not None and (shared.activation is None or shared.activation.dim() != 4
                              or shared.activation.shape[-1] * shared.activation.shape[-2] <= 1):
        raise _spatial_error(handle, layer, None if shared.activation is None else tuple(shared.activation.shape[1:]))
    ids = shared.targets  # (N, T)

    results: list[Attribution] = []
    for m in methods:
        tic = time.perf_counter()
        opts = options.get(m, {})
        raws, info, shared_used = _run_method(m, handle, x, ids, shared, opts, budget_mb, progress, options)
        elapsed = time.perf_counter() - tic
        for k, raw in enumerate(raws):
            maps = upsample(raw, size) if raw.dim() == 3 else reduce_channels(raw, _reduction(m, opts))
            timings = {"method": elapsed / len(raws), "shared_pass": shared_s if shared_used else 0.0}
            results.append(Attribution(m, shared.labels[k], ids[:, k].tolist(), maps.detach(), raw.detach(),
                                       layer if m in LAYER_METHODS else None, timings,
                                       {key: (v[k] if isinstance(v, list) else v) for key, v in info.items()}))
    return results


def _reduction(method: str, opts: dict) -> str:
    if "reduce" in opts:
        return opts["reduce"]
    if method in PIXEL_GRADIENT:
        return PIXEL_GRADIENT[method][1]
    if method in ("guided-gradcam",):
        return "maxabs"
    if method in SMOOTH:
        return "maxabs" if opts.get("base", "saliency") in ("saliency", "guided-backprop", "deconv") else "sum"
    return "sum"


def _run_method(m: str, handle: ModelHandle, x: torch.Tensor, ids: torch.Tensor, shared: Pass, opts: dict,
                budget_mb: float, progress: bool, all_options: dict) -> tuple[list[torch.Tensor], dict, bool]:
    """Raw maps per target rank, extras for ``Attribution.info``, and whether the shared pass was used."""
    t = ids.shape[1]
    if m in cam.GRADIENT_CAMS:
        fn = cam.GRADIENT_CAMS[m]
        return [fn(shared.activation, shared.layer_grads["plain"][k]) for k in range(t)], {}, True
    if m == "eigencam":
        e = cam.eigencam(shared.activation)
        return [e] * t, {}, True
    if m == "scorecam":
        from mikata.attribution.scorecam import scorecam

        return scorecam(handle, x, ids, shared.activation, budget_mb, progress), {}, True
    if m in PIXEL_GRADIENT:
        mode = PIXEL_GRADIENT[m][0]
        grads = shared.input_grads[mode]
        if m == "saliency":
            return [g.abs() for g in grads], {}, True
        if m == "grad-x-input":
            return [g * x for g in grads], {}, True
        return list(grads), {}, True
    if m == "guided-gradcam":
        out = []
        for k in range(t):
            g = cam.gradcam(shared.activation, shared.layer_grads["plain"][k])  # (N, h, w)
            out.append(shared.input_grads["guided"][k] * upsample(g, tuple(x.shape[-2:]))[:, None])
        return out, {}, True
    if m in SMOOTH:
        from mikata.attribution.smoothgrad import smoothgrad

        # all three variants come from the same samples: compute once per option set
        key = repr(sorted(opts.items()))
        cache = all_options.setdefault("_smooth_cache", {})
        if key not in cache:
            cache[key] = smoothgrad(handle, x, ids, budget_mb=budget_mb, progress=progress,
                                    **{k: v for k, v in opts.items() if k != "reduce"})
        return cache[key][m], {"samples": opts.get("samples", 16), "base": opts.get("base", "saliency")}, False
    if m == "integrated-gradients":
        from mikata.attribution.integrated_gradients import integrated_gradients

        attrs, deltas = integrated_gradients(handle, x, ids, budget_mb=budget_mb, progress=progress,
                                             **{k: v for k, v in opts.items() if k != "reduce"})
        return attrs, {"completeness_delta": [d.tolist() for d in deltas]}, False
    if m == "deeplift":
        from mikata.attribution.deeplift import deeplift

        attrs, deltas = deeplift(handle, x, ids, **{k: v for k, v in opts.items() if k != "reduce"})
        return attrs, {"completeness_delta": [d.tolist() for d in deltas]}, False
    if m == "occlusion":
        from mikata.attribution.occlusion import occlusion

        return occlusion(handle, x, ids, budget_mb=budget_mb, progress=progress, **opts), {}, False
    if m == "lrp":
        from mikata.attribution.lrp import lrp

        return lrp(handle, x, ids, **{k: v for k, v in opts.items() if k != "reduce"}), {}, False
    if m == "lime":
        from mikata.attribution.lime import lime

        return lime(handle, x, ids, budget_mb=budget_mb, progress=progress, **opts), {}, False
    raise ChoiceError("method", m, list(METHODS))  # unreachable: check_methods ran first
