"""``evaluate``: every check on one batch of images, as a scorecard (method x metric) + pass/fail.

The scorecard is what ``mikata evaluate`` prints and writes as ``scorecard.json`` (read by
``mikata report`` and ``mikata serve``). Its keys (kept stable)::

    {"model", "images", "target", "methods", "metrics": [{"name", "better", "description"}],
     "table": {method: {metric: float | null}}, "passes": {method: {check: bool}},
     "figures": [png paths relative to the scorecard's folder], "created"}

plus ``baseline`` (the random order's AUCs), ``cascade`` (per-stage mean similarities),
``settings`` and ``seconds``.

Checks and when a method passes:
``deletion<random`` / ``insertion>random``: its mean AUC beats the random order's;
``model-randomization``: mean Spearman over the top half of the cascade stages < 0.5 (similarity
fell clearly while the top layers were randomized; Guided Backprop famously stays near 1);
``random-logit``: mean Spearman between the target's map and a random other class's map < 0.5.

Example:
    >>> res = evaluate(handle, x, ["gradcam", "saliency"], steps=50)          # doctest: +SKIP
    >>> res.card["table"]["gradcam"]["insertion-auc"], res.card["passes"]["gradcam"]  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Sequence

import torch

from mikata.attribution.batching import DEFAULT_BUDGET_MB
from mikata.attribution.engine import check_methods
from mikata.attribution.targets import TargetSpec, resolve_targets
from mikata.errors import MikataError
from mikata.evaluation import checks as _builtin_checks  # noqa: F401 - registers the built-in checks
from mikata.evaluation.check_registry import CheckContext, check_names, check_spec, check_specs, metric_specs
from mikata.evaluation.checks import PASS_THRESHOLD
from mikata.models.handle import ModelHandle
from mikata.progress import one_line

log = logging.getLogger(__name__)

# the built-in checks' specs (the registry is the authority: ``check_registry``; these are derived from it)
CHECKS = check_names()
METRICS = {m.name: (m.better, m.description) for m in metric_specs()}
CHECK_METRICS = {s.name: [m.name for m in s.metrics] for s in check_specs()}


@dataclass
class Evaluation:
    """The scorecard (``card``, JSON-ready) and the arrays behind it for figures."""

    card: dict
    curves: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)  # method|"random" -> mode -> (N, S+1)
    cascade: object | None = None  # CascadeResult
    maps: dict[str, torch.Tensor] = field(default_factory=dict)


def check_checks(checks: Sequence[str]) -> list[str]:
    """The checks asked for, checked against the registry (asked at call time: checks registered
    later count), without repeats."""
    out = []
    for c in checks:
        c = check_spec(c.strip().lower()).name
        if c not in out:
            out.append(c)
    return out


@one_line  # in a notebook, every step of the call on one line
def evaluate(
    handle: ModelHandle,
    x: torch.Tensor,
    methods: Sequence[str],
    targets: TargetSpec = "top1",
    layer: str | None = None,
    options: dict | None = None,
    checks: Sequence[str] | None = None,
    steps: int = 50,
    fill: str = "blur",
    patch: int | None = None,
    stages: int = 8,
    samples: int = 8,
    radius: float = 0.02,
    masks: torch.Tensor | None = None,
    seed: int = 0,
    model_name: str | None = None,
    budget_mb: float = DEFAULT_BUDGET_MB,
    progress: bool | None = None,
    parts_dir: str | os.PathLike | None = None,
) -> Evaluation:
    """Run the chosen ``checks`` (default every registered check) for ``methods`` on preprocessed images
    ``x`` ``(N, C, H, W)``. The stages: the targets, the original maps, each check in registry order
    (``check_registry``: one ``CheckSpec`` each), the card.

    ``masks`` ``(N, H, W)`` bool (object pixels) enables localization; without it that check is skipped.
    ``parts_dir``: where each finished part (a method's maps, a (check, method) pair, the random
    order's curves) is saved as it completes; a later call with the same model, images and options
    loads them instead of computing them again (see ``mikata.evaluation.parts``). Every check runs
    one method at a time, so an interruption loses at most the part in progress.

    Example:
        >>> x = handle.preprocessing.preprocess([mikata.load_image("chelsea.png")])
        >>> card = mikata.evaluate(handle, x, ["gradcam", "saliency"], checks=["faithfulness"], steps=4)
        >>> card.card["methods"]
        ['gradcam', 'saliency']
    """
    from mikata.evaluation.parts import PartStore
    from mikata.progress import Progress, format_rate, format_seconds, note

    methods = check_methods(methods)
    checks = check_checks(check_names() if checks is None else checks)
    if masks is None:
        checks = [c for c in checks if not check_spec(c).needs_masks]
    if x.dim() != 4 or x.shape[0] == 0:
        raise MikataError("no images to evaluate")
    skipped = {c: reason for c in checks if check_spec(c).skip and (reason := check_spec(c).skip(handle))}
    checks = [c for c in checks if c not in skipped]
    x = x.detach().float()  # stays where it is: every check moves it to handle.device for its passes
    n = int(x.shape[0])
    seconds: dict[str, float] = {}
    tic = time.perf_counter()
    with torch.inference_mode(), handle.autocast():
        logits = handle.model(x.to(handle.device)).float().to(x.device)
    labels, ids = resolve_targets(handle, logits, targets)
    ids = ids[:, 0].clone()  # one target per image: the first rank asked for
    base_probs = torch.softmax(logits, 1).gather(1, ids.view(-1, 1))[:, 0].clone()
    per_method = options or {}
    options = options or None
    store = PartStore(parts_dir, _common_key(handle, x, ids, layer) if parts_dir is not None else {})
    values = {"steps": steps, "fill": fill, "patch": patch, "stages": stages, "samples": samples, "radius": radius,
              "seed": seed}
    settings = {"maps": {}, **{c: {k: values[k] for k in check_spec(c).settings} for c in checks}}

    def part_settings(check: str, method: str) -> dict:
        return {**settings[check], "options": per_method.get(method)}

    saved_checks = [c for c in checks if check_spec(c).parts is not None]
    plan = [("maps", m) for m in methods] + [(c, m) for c in saved_checks for m in check_spec(c).parts(methods)]
    done = [(c, m) for c, m in plan if store.has(c, m, part_settings(c, m))]
    if done:
        log.info("evaluate: %d of %d parts already done in %s (same model, images and options), reused: %s",
                 len(done), len(plan), store.folder, ", ".join(f"{m} {c}" for c, m in done))
    bar = Progress(len(plan), "evaluate", "part", progress, estimate=False)
    table: dict[str, dict[str, float | None]] = {m: {} for m in methods}
    passes: dict[str, dict[str, bool]] = {m: {} for m in methods}
    result = Evaluation(card={})
    extra: dict = {"notes": list(skipped.values()), "skipped_checks": sorted(skipped)} if skipped else {}
    arrays: dict = {}
    from mikata.evaluation.faithfulness import channels_last

    probe = x[:2].repeat(2 // min(2, n), 1, 1, 1).to(handle.device)
    # every pass in channels-last memory where the net allows it (its forward is probed): Integrated Gradients
    # through EfficientNet-Lite0 at 160 px took 15% less CPU time on a 2-core CPU, with the same maps
    with bar, channels_last(handle.model, probe=probe):
        # ---- the original maps: every check compares against them
        original: dict[str, torch.Tensor] = {}
        map_seconds: dict[str, float] = {}
        completeness: dict[str, torch.Tensor] = {}  # method -> (N,) relative completeness error, where it has one
        for m in methods:
            got = store.load("maps", m, part_settings("maps", m))
            if got is not None and tuple(got.get("maps", torch.empty(0)).shape[:1]) == (n,):
                original[m], map_seconds[m] = got["maps"].float(), float(got.get("seconds", 0.0))
                if "completeness" in got:
                    completeness[m] = got["completeness"]
                bar.update(1)
        missing = [m for m in methods if m not in original]
        if progress and missing and n > PROBE_IMAGES:
            _announce_cost(handle, x, ids, methods, missing, map_seconds, n, plan, done, layer, options, budget_mb,
                           steps, stages, samples, per_method)
        if missing:
            bar.set_stage(f"{', '.join(missing)} maps of {n} images")
            tic = time.perf_counter()
            fresh, took = _timed_maps(handle, x, missing, ids, layer, options, budget_mb, completeness)
            for m in missing:
                original[m], map_seconds[m] = fresh[m], took[m]
                store.save("maps", m, part_settings("maps", m),
                           {"maps": fresh[m], "seconds": took[m],
                            **({"completeness": completeness[m]} if m in completeness else {})})
                bar.update(1)
            seconds["maps"] = time.perf_counter() - tic
        for m in methods:
            if m in completeness:
                extra.setdefault("notes", []).append(completeness_note(m, completeness[m]))
        result.maps = original
        todo = [(c, m) for c, m in plan if c != "maps" and (c, m) not in done]
        if progress and todo:
            curve_s = _curve_seconds(handle, x, steps, budget_mb) if any(c == "faithfulness" for c, _ in todo) else 0.0
            est = _estimate(todo, map_seconds, curve_s, _stage_count(handle, stages), samples)
            per_map = sum(map_seconds.values()) / max(1, n * len(methods))
            slowest = max(methods, key=lambda m: map_seconds[m])
            note(f"evaluate: {n} images x {len(methods)} methods x {len(saved_checks)} checks "
                 f"({len(todo)} parts to compute{f', {len(done)} reused' if done else ''}); about "
                 f"{format_seconds(est)} at {format_rate(per_map, 'map')} (measured on the first maps; "
                 f"slowest {slowest} {format_rate(map_seconds[slowest] / n, 'map')})")

        def run_part(check: str, method: str, compute) -> dict:
            got = store.load(check, method, part_settings(check, method))
            if got is None:
                bar.set_stage(f"{method} {check}" + (f", {n} images" if n > 1 else ""))
                t = time.perf_counter()
                got = compute()
                got["seconds"] = time.perf_counter() - t
                store.save(check, method, part_settings(check, method), got)
                seconds[check] = seconds.get(check, 0.0) + got["seconds"]
            bar.update(1)
            return got

        for name in [c for c in check_names() if c in checks]:  # registry order, each over every method
            spec = check_spec(name)
            ctx = CheckContext(handle, x, ids, base_probs, list(methods), original, options, layer,
                               settings.get(name, {}), masks=masks, budget_mb=budget_mb, progress=progress, table=table, passes=passes,
                               extra=extra, arrays=arrays,
                               part=lambda method, compute, name=name: run_part(name, method, compute))
            tic = time.perf_counter()
            spec.run(ctx)
            if spec.parts is None:  # not saved in parts: timed here
                seconds[name] = time.perf_counter() - tic
    result.curves = arrays.get("curves", {})
    from mikata.attribution.baselines import method_baselines

    named = method_baselines(methods, per_method)
    result.cascade = arrays.get("cascade")

    metrics = [k for c in checks for k in check_spec(c).metrics]
    names = [k.name for k in metrics]
    result.card = {
        "model": model_name or handle.spec, "images": n,
        "target": str(targets) if not isinstance(targets, torch.Tensor) else "given", "methods": list(methods),
        "metrics": [{"name": k.name, "better": k.better, "description": k.description} for k in metrics],
        "table": {m: {k: table[m].get(k) for k in names} for m in methods},
        "passes": passes, "figures": [],
        **({"baselines": named} if named else {}),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **extra,
        "settings": {"checks": checks, "steps": steps, "fill": fill, "patch": patch, "stages": stages,
                     "samples": samples, "radius": radius, "seed": seed, "layer": layer,
                     "pass_threshold_spearman": PASS_THRESHOLD},
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "parts": {"total": len(plan), "reused": len(done)},
    }
    return result


PROBE_IMAGES = 2  # the up-front estimate times every method on this many images (one would be 10-20x slower
# per image on this CPU build of EfficientNet-Lite0)


def _announce_cost(handle: ModelHandle, x: torch.Tensor, ids: torch.Tensor, methods: Sequence[str],
                   missing: Sequence[str], map_seconds: dict[str, float], n: int, plan, done, layer: str | None,
                   options: dict | None, budget_mb: float, steps: int, stages: int, samples: int,
                   per_method: dict) -> None:
    """Time the missing methods' maps on ``PROBE_IMAGES`` images and one chunk of perturbed images, then
    print the whole evaluation's estimate (``evaluation.costs``), with cheaper settings when it is long."""
    from mikata.evaluation.costs import cheaper_settings, cost_message, evaluate_cost
    from mikata.progress import note

    k = PROBE_IMAGES
    _, took = _timed_maps(handle, x[:k], missing, ids[:k], layer, options, budget_mb)
    per_image = {m: (took[m] / k if m in missing else map_seconds[m] / n) for m in methods}
    todo = [c for c, m in plan if c != "maps" and (c, m) not in done]
    curve_s = _curve_seconds(handle, x, steps, budget_mb) if "faithfulness" in todo else 0.0
    checks = list(dict.fromkeys(todo))
    cost = evaluate_cost({m: per_image[m] for m in methods}, n, checks, curve_s, _stage_count(handle, stages),
                         samples)
    cost.maps = sum(per_image[m] for m in missing) * n
    ig = (per_method.get("integrated-gradients") or {}).get("steps")
    note(cost_message(cost, n, methods, k, cheaper_settings(cost, per_image, n, stages, samples, ig)))


def _common_key(handle: ModelHandle, x: torch.Tensor, ids: torch.Tensor, layer: str | None) -> dict:
    """What every saved part depends on: the weights, the images as the model sees them, the
    target classes, the layer, where and at which precision it ran."""
    from mikata.evaluation.parts import tensor_digest
    from mikata.models.run_model import weights_hash

    return {"weights": weights_hash(handle.net), "images": tensor_digest(x), "targets": tensor_digest(ids),
            "layer": layer, "device": handle.device.type, "precision": handle.precision}


COMPLETENESS_GOAL = 0.05  # Sundararajan et al. 2017: the attributions should add up to within 5% of f(x) - f(x0)


def completeness_note(method: str, errors: torch.Tensor) -> str:
    """The scorecard's line on how well a method's original maps add up (``errors``: per image
    ``|sum of the map - (f(x) - f(x0))| / |f(x) - f(x0)|``)."""
    e = torch.as_tensor(errors).double()
    over = int((e > COMPLETENESS_GOAL).sum())
    return (f"{method}: its maps add up to f(x) - f(x0) within {float(e.median()):.1%} (median) and {float(e.max()):.1%} "
            f"(worst) over the {len(e)} images; {over} of {len(e)} miss the {COMPLETENESS_GOAL:.0%} that Integrated "
            "Gradients' authors ask for" + (" (more steps bring it down)" if over else ""))


def _timed_maps(handle: ModelHandle, x: torch.Tensor, methods: Sequence[str], ids: torch.Tensor, layer: str | None,
                options: dict | None, budget_mb: float, completeness: dict[str, torch.Tensor] | None = None
                ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """``{method: (N, H, W)}`` on the CPU (one ``explain`` call, passes shared) and each method's
    seconds (its own work plus any shared pass it used), for the estimate and later resumes.
    ``completeness``: filled with ``{method: (N,)}`` relative completeness errors of the methods that
    report a completeness delta (Integrated Gradients, DeepLIFT)."""
    from mikata.attribution.engine import explain

    res = explain(handle, x, list(methods), targets=ids.view(-1, 1), layer=layer, options=options,
                  budget_mb=budget_mb)
    maps = {a.method: a.maps.float().cpu() for a in res}
    for a in res:
        if completeness is not None and "completeness_delta" in a.info:
            delta = torch.as_tensor(a.info["completeness_delta"], dtype=torch.float64).view(-1)
            gap = a.raw.detach().double().flatten(1).sum(1).cpu() - delta  # f(x) - f(x0)
            completeness[a.method] = delta.abs() / gap.abs().clamp_min(1e-12)
    took = {a.method: float(a.timings.get("method", 0.0) + a.timings.get("shared_pass", 0.0)) for a in res}
    return maps, took


def _curve_seconds(handle: ModelHandle, x: torch.Tensor, steps: int, budget_mb: float) -> float:
    """Seconds one method's deletion + insertion curves should take: ``2 x steps x N`` perturbed
    images in chunks sized as ``perturbation_curves`` sizes them, timed on one warm chunk."""
    from mikata.attribution.batching import chunk_size

    jobs = 2 * steps * x.shape[0]
    size = min(jobs, chunk_size(x, budget_mb, with_grad=False, cap=64))
    batch = x[torch.arange(size) % x.shape[0]].to(handle.device)  # (size, C, H, W)
    with torch.inference_mode(), handle.autocast():
        handle.model(batch[:2])  # warm-up (the first forward of a shape is slow)
        t = time.perf_counter()
        handle.model(batch)
        took = time.perf_counter() - t
    return took * math.ceil(jobs / size)


def _stage_count(handle: ModelHandle, stages: int) -> int:
    """How many cascade stages this network has for ``--stages`` (a small net has fewer units)."""
    from mikata.evaluation.randomization import parametrized_units, stage_groups

    return len(stage_groups(parametrized_units(handle.net), stages))


def _estimate(todo: Sequence[tuple[str, str]], map_seconds: dict[str, float], curve_s: float, stages: int,
              samples: int) -> float:
    """Seconds the remaining parts should take, from one measured map pass per method (N images)
    and one timed chunk of perturbed images: a cascade costs ``stages`` map passes, stability
    ``samples``, random-logit one; faithfulness ``curve_s`` per method and for the random order."""
    cost = {"randomization": stages, "random-logit": 1, "stability": samples}
    total = 0.0
    for check, method in todo:
        if check == "faithfulness":
            total += curve_s
        else:
            total += cost.get(check, 0) * map_seconds.get(method, 0.0)
    return total


def format_scorecard(card: dict) -> str:
    """The scorecard as a plain-text table: one row per method, one column per metric, then checks."""
    names = [m["name"] for m in card["metrics"]]
    short = {n: n.replace("randomization", "rand").replace("random-logit", "rlogit") for n in names}
    rows = {m: row_name(card, m) for m in card["methods"]}
    width = max([len(r) for r in rows.values()] + [8])
    cw = {n: max(8, len(short[n])) for n in names}
    head = " " * width + "  " + "  ".join(f"{short[n]:>{cw[n]}}" for n in names)
    fill = (card.get("settings") or {}).get("fill")
    lines = [f"model {card['model']}, {card['images']} images, target {card['target']}"
             + (f", curves filled with {fill}" if fill and card.get("baseline") else ""), head,
             " " * width + "  " + "  ".join(f"{('(' + card_better(card, n) + ')'):>{cw[n]}}" for n in names)]
    for m in card["methods"]:
        vals = [card["table"][m].get(n) for n in names]
        lines.append(f"{rows[m]:<{width}}  " + "  ".join(f"{'-' if v is None else f'{v:.3f}':>{cw[n]}}"
                                                   for n, v in zip(names, vals)))
    if card.get("baseline"):
        b = card["baseline"]
        lines.append((f"{'random':<{width}}  " + "  ".join(
            f"{(f'{b[n]:.3f}' if n in b and b[n] is not None else ''):>{cw[n]}}" for n in names)).rstrip())
    checks = sorted({c for m in card["methods"] for c in card["passes"].get(m, {})},
                    key=["deletion<random", "insertion>random", "model-randomization", "random-logit"].index)
    if checks:
        lines.append("")
        lines.append(" " * width + "  " + "  ".join(f"{c:>19}" for c in checks))
        for m in card["methods"]:
            p = card["passes"].get(m, {})
            lines.append(f"{rows[m]:<{width}}  " + "  ".join(f"{('pass' if p[c] else 'FAIL') if c in p else '-':>19}"
                                                       for c in checks))
    lines += [f"note: {n}" for n in card.get("notes", [])]
    return "\n".join(lines)


def row_name(card: dict, method: str) -> str:
    """A method's row in the scorecard: its name, and the baseline it started from where it has one
    (``integrated-gradients (mean)``)."""
    base = (card.get("baselines") or {}).get(method)
    return f"{method} ({base})" if base else method


def card_better(card: dict, name: str) -> str:
    return next(m["better"] for m in card["metrics"] if m["name"] == name)


# ------------------------------------------------------------------------------ inputs and files
def expand_images(paths: Sequence[str]) -> list[str]:
    """Image files from files and folders (folders: their image files, recursively, sorted);
    ``mikata.data.images.expand_image_paths``, which ``mikata predict`` uses too."""
    from mikata.data.images import expand_image_paths

    return expand_image_paths(paths)


def load_images(handle: ModelHandle, paths: Sequence[str],
                skipped: list[tuple[str, str]] | None = None) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Preprocessed batch ``(N, C, H, W)`` and each original size (w, h).

    ``skipped``: a list to collect ``(path, reason)`` of files that cannot be decoded, which are then left
    out (the batch holds the others, in order); without it the first such file raises ``ImageDecodeError``.
    """
    from mikata.data.images import load_image
    from mikata.errors import ImageDecodeError

    mode = handle.mode
    imgs = []
    for p in paths:
        try:
            imgs.append(load_image(p, mode))
        except ImageDecodeError as e:
            if skipped is None:
                raise
            skipped.append((str(p), e.reason))
    if not imgs:
        raise ImageDecodeError("", f"none of the {len(paths)} images could be decoded (e.g. {skipped[0][0]}: "
                                   f"{skipped[0][1]}); give images that open" if skipped else "no images given")
    return handle.preprocess(imgs), [im.size for im in imgs]


def make_masks(handle: ModelHandle, paths: Sequence[str], sizes: Sequence[tuple[int, int]],
               boxes: str | None = None, masks_dir: str | None = None) -> torch.Tensor | None:
    """``(N, H, W)`` object masks from a boxes CSV and/or a folder of mask PNGs named like the images."""
    from mikata.evaluation.localization import BoxesError, box_mask, mask_from_png, read_boxes

    if boxes is None and masks_dir is None:
        return None
    table = read_boxes(boxes) if boxes else {}
    h, w = handle.input_size
    out = torch.zeros(len(paths), h, w, dtype=torch.bool)
    found = 0
    for i, (p, size) in enumerate(zip(paths, sizes)):
        b = table.get(p) or table.get(os.path.basename(p))
        if b:
            out[i] |= box_mask(handle, size, b)
            found += 1
        if masks_dir:
            stem = os.path.splitext(os.path.basename(p))[0]
            mp = os.path.join(masks_dir, stem + ".png")
            if os.path.isfile(mp):
                out[i] |= mask_from_png(handle, mp, size)
                found += 1
    if not found:
        raise BoxesError("no box or mask matches any image (boxes are matched by file name or path as given, "
                         "masks by <image stem>.png)")
    return out


def sample_paths(run_dir: str | os.PathLike, limit: int = 16, seed: int = 0) -> list[str]:
    """A seeded sample of ``limit`` of a run's scanned image files, in scan order."""
    from mikata.presentation.media import image_file
    from mikata.runs.store import RunStore, RunStoreError

    with RunStore.open(run_dir) as store:
        ids = store.ids(status="ok")
        if not ids:
            raise RunStoreError(f"{run_dir} holds no scanned images; run `mikata scan` first")
        order = torch.randperm(len(ids), generator=torch.Generator().manual_seed(seed))[:limit].tolist()
        return [str(image_file(store, ids[k])) for k in sorted(order)]


def sample_run(run_dir: str, limit: int = 16, seed: int = 0, model: str | None = None,
               trust: bool = False, device: str | None = "cpu") -> tuple[ModelHandle, list[str], dict]:
    """The model a run was scanned with and a seeded sample of ``limit`` of its scanned image files.

    ``model``: a spec the user typed, used instead of the run's recorded one (which may not name code).
    ``device``: where the model is loaded.
    """
    from mikata.runs.store import RunStore
    from mikata.models.run_model import load_run_model

    paths = sample_paths(run_dir, limit, seed)
    with RunStore.open(run_dir) as store:
        identity = dict(store.identity)
    return load_run_model(identity, run_dir, model, trust, device=device), paths, identity


def write_scorecard(result: Evaluation, out_dir: str, figure: bool = True) -> str:
    """``out_dir/scorecard.json`` (+ ``evaluate.png``); returns the JSON's path."""
    import json

    from mikata.evaluation.figure import draw_evaluation

    from mikata.runs.layout import SCORECARD, RunLayout

    os.makedirs(out_dir, exist_ok=True)
    folder = RunLayout(out_dir)
    figure_path = folder.dir / "evaluate.png"
    folder.check_file(figure_path, "remove it, then evaluate again")  # matplotlib would write through a link
    if figure and draw_evaluation(result, str(figure_path)) is not None:
        result.card["figures"] = ["evaluate.png"]
    path = folder.dir / SCORECARD
    with folder.replacing(path, binary=False) as f:  # readers (report, server) never see half a file
        json.dump(result.card, f, indent=2, allow_nan=False, default=_json_default)
    return str(path)


def _json_default(o: object) -> object:
    if isinstance(o, torch.Tensor):
        return o.tolist()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")
