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

from mikata.attribution import registry
from mikata.attribution.batching import DEFAULT_BUDGET_MB
from mikata.attribution.passes import gradient_pass
from mikata.attribution.registry import MethodContext
from mikata.attribution.result import Attribution, reduce_channels, upsample
from mikata.attribution.targets import TargetSpec, resolve_targets
from mikata.errors import ChoiceError, MikataError
from mikata.hooks import get_layer, preserved
from mikata.models.handle import ModelHandle

class NotSpatialError(MikataError, ValueError):
    """A CAM method was pointed at a layer whose output is not a (C, h, w) map."""


def check_methods(methods: Sequence[str]) -> list[str]:
    """Lower-cased, de-duplicated method names; an unknown one raises ``ChoiceError`` listing all."""
    out = []
    for m in methods:
        m = m.strip().lower()
        registry.get(m)  # ChoiceError listing every registered method
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
    for k in options:
        if k not in registry.names():
            raise ChoiceError("method in options", k, list(registry.names()))
    specs = [registry.get(m) for m in methods]
    x = images.detach()
    if x.dim() != 4:
        raise ValueError(f"images must be a (N, C, H, W) batch, got shape {tuple(x.shape)}")
    size = tuple(x.shape[-2:])
    needs_layer = [s.name for s in specs if s.layer_needed(options.get(s.name))]
    if needs_layer:
        layer = layer or handle.default_layer
        if layer is None:
            raise MikataError(f"{needs_layer[0]} needs a target layer and this model has no default; pass --layer")
        get_layer(handle.net, layer)  # ChoiceError listing valid names
    else:
        layer = None

    # ---- the shared pass: one forward; plain / guided / deconv backwards as the methods need
    modes: dict[str, set[str]] = {}
    asked_by: dict[str, list[str]] = {}
    for s in specs:
        for mode, where in s.backwards:
            modes.setdefault(mode, set()).add(where)
            asked_by.setdefault(mode, []).append(s.name)
    attention = max((s.attention for s in specs), key=("", "probs", "grads").index)
    tic = time.perf_counter()
    shared = gradient_pass(handle, x, lambda logits: resolve_targets(handle, logits, targets), layer,
                           {k: tuple(sorted(v)) for k, v in modes.items()},
                           asked_by={k: ", ".join(v) for k, v in asked_by.items()}, attention=attention)
    shared_s = time.perf_counter() - tic
    if layer is not None and (shared.activation is None or shared.activation.dim() != 4
                              or shared.activation.shape[-1] * shared.activation.shape[-2] <= 1):
        raise _spatial_error(handle, layer, None if shared.activation is None else tuple(shared.activation.shape[1:]))
    ids = shared.targets  # (N, T)

    results: list[Attribution] = []
    cache: dict = {}  # methods that share samples (SmoothGrad's variants) keep them here for this call
    for s in specs:
        tic = time.perf_counter()
        opts = options.get(s.name, {})
        ctx = MethodContext(handle, x, ids, shared, {k: v for k, v in opts.items() if k != "reduce"}, layer,
                            budget_mb, progress, cache)
        raws, info = s.run(ctx)
        elapsed = time.perf_counter() - tic
        for k, raw in enumerate(raws):
            maps = upsample(raw, size) if raw.dim() == 3 else reduce_channels(raw, s.reduction(opts))
            timings = {"method": elapsed / len(raws), "shared_pass": shared_s if s.uses_shared else 0.0}
            results.append(Attribution(s.name, shared.labels[k], ids[:, k].tolist(), maps.detach(), raw.detach(),
                                       layer if s.layer_needed(opts) else None, timings,
                                       {key: (v[k] if isinstance(v, list) else v) for key, v in info.items()},
                                       s.is_signed(opts)))
    return results



def fitting_methods(handle: ModelHandle, methods: Sequence[str]) -> tuple[list[str], str | None]:
    """``methods`` less those the model cannot run because they are defined only for rectifiers and its
    forward runs none (a GELU / SiLU network), with a note naming what was dropped and why (None when
    nothing was). For default method lists: an explicit request keeps refusing (``RectifierError``)."""
    from mikata.attribution.rectifiers import Rectifiers

    methods = check_methods(methods)
    needs = [m for m in methods if registry.get(m).rectifiers]
    if not needs:
        return methods, None
    seen = Rectifiers(lambda t, upper: t.clamp(0.0, upper))
    with preserved(handle.net), torch.enable_grad(), seen:  # the mode counts rectifiers under grad mode only
        for p in handle.net.parameters():
            p.requires_grad_(False)
        handle.model(torch.zeros(1, handle.in_channels, *handle.input_size, device=handle.device))
    if seen.count:
        return methods, None
    kept = [m for m in methods if m not in needs]
    runs = ", ".join(sorted(seen.others)) or "no ReLU-like activation"
    return kept, (f"left out {', '.join(needs)}: defined for ReLU-like activations only, and this model runs "
                  f"{runs} (ask for them with --methods to see the refusal)")
