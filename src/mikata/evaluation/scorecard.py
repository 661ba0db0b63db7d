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
from mikata.models.handle import ModelHandle

CHECKS = ("faithfulness", "randomization", "random-logit", "stability", "localization")
PASS_THRESHOLD = 0.5

METRICS = {
    "deletion-auc": ("lower", "area under the target probability as the most attributed regions are removed"),
    "insertion-auc": ("higher", "area under the target probability as the most attributed regions are revealed"),
    "deletion-vs-random": ("lower", "deletion AUC minus the random order's (negative = better than chance)"),
    "insertion-vs-random": ("higher", "insertion AUC minus the random order's (positive = better than chance)"),
    "randomization-spearman": ("lower", "mean Spearman rank correlation with the original map over the "
                                        "cascading weight-randomization stages (top layer down)"),
    "randomization-ssim": ("lower", "mean SSIM with the original map over the cascading randomization stages"),
    "random-logit-spearman": ("lower", "Spearman correlation between the map of the target class and of a random other class"),
    "random-logit-ssim": ("lower", "SSIM between the map of the target class and of a random other class"),
    "max-sensitivity": ("lower", "max over noisy copies (L-inf radius r) of ||map(x+d) - map(x)|| / ||map(x)||"),
    "pointing-game": ("higher", "share of images whose map maximum lies inside the box or mask"),
    "energy-inside": ("higher", "share of the map's positive mass inside the box or mask"),
}
CHECK_METRICS = {"faithfulness": ["deletion-auc", "insertion-auc", "deletion-vs-random", "insertion-vs-random"],
                 "randomization": ["randomization-spearman", "randomization-ssim"],
                 "random-logit": ["random-logit-spearman", "random-logit-ssim"],
                 "stability": ["max-sensitivity"], "localization": ["pointing-game", "energy-inside"]}


@dataclass
class Evaluation:
    """The scorecard (``card``, JSON-ready) and the arrays behind it for figures."""

    card: dict
    curves: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)  # method|"random" -> mode -> (N, S+1)
    cascade: object | None = None  # CascadeResult
    maps: dict[str, torch.Tensor] = field(default_factory=dict)


def check_checks(checks: Sequence[str]) -> list[str]:
    from mikata.errors import check_choices

    out = []
    for c in checks:
        c = c.strip().lower()
        check_choices("check", c, CHECKS)
        if c not in out:
            out.append(c)
    return out


def _mean(v: torch.Tensor) -> float | None:
    v = v.double()
    v = v[~torch.isnan(v)]
    return None if v.numel() == 0 else float(v.mean())


def evaluate(
    handle: ModelHandle,
    x: torch.Tensor,
    methods: Sequence[str],
    targets: TargetSpec = "top1",
    layer: str | None = None,
    options: dict | None = None,
    checks: Sequence[str] = CHECKS,
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
    progress: bool = False,
) -> Evaluation:
    """Run the chosen ``checks`` for ``methods`` on preprocessed images ``x`` ``(N, C, H, W)``.

    ``masks`` ``(N, H, W)`` bool (object pixels) enables localization; without it that check is skipped.
    """
    from mikata.evaluation.faithfulness import auc, perturbation_curves
    from mikata.evaluation.localization import energy_inside, pointing_game
    from mikata.evaluation.randomization import cascade, compute_maps, random_logit
    from mikata.evaluation.stability import max_sensitivity

    methods = check_methods(methods)
    checks = check_checks(checks)
    if masks is None:
        checks = [c for c in checks if c != "localization"]
    if x.dim() != 4 or x.shape[0] == 0:
        raise MikataError("no images to evaluate")
    x = x.detach().float()  # stays where it is: every check moves it to handle.device for its passes
    seconds: dict[str, float] = {}
    tic = time.perf_counter()
    with torch.inference_mode(), handle.autocast():
        logits = handle.model(x.to(handle.device)).float().to(x.device)
    labels, ids = resolve_targets(handle, logits, targets)
    ids = ids[:, 0].clone()  # one target per image: the first rank asked for
    base_probs = torch.softmax(logits, 1).gather(1, ids.view(-1, 1))[:, 0].clone()
    original = compute_maps(handle, x, methods, ids, layer, options, budget_mb)
    seconds["maps"] = time.perf_counter() - tic
    table: dict[str, dict[str, float | None]] = {m: {} for m in methods}
    passes: dict[str, dict[str, bool]] = {m: {} for m in methods}
    result = Evaluation(card={}, maps=original)
    extra: dict = {}

    if "faithfulness" in checks:
        tic = time.perf_counter()
        gen = torch.Generator().manual_seed(seed)
        random_maps = torch.rand(original[methods[0]].shape, generator=gen)
        rows = {**{m: original[m] for m in methods}, "random": random_maps}
        aucs = {}
        for name, maps in rows.items():
            c = perturbation_curves(handle, x, maps, ids, steps=steps, fill=fill, patch=patch, budget_mb=budget_mb,
                                    base_probs=base_probs, generator=torch.Generator().manual_seed(seed),
                                    progress=progress)
            result.curves[name] = c
            aucs[name] = {mode: _mean(auc(v)) for mode, v in c.items()}
        rd, ri = aucs["random"]["deletion"], aucs["random"]["insertion"]
        extra["baseline"] = {"deletion-auc": rd, "insertion-auc": ri}
        for m in methods:
            d, i = aucs[m]["deletion"], aucs[m]["insertion"]
            table[m].update({"deletion-auc": d, "insertion-auc": i, "deletion-vs-random": d - rd,
                             "insertion-vs-random": i - ri})
            passes[m]["deletion<random"] = bool(d < rd)
            passes[m]["insertion>random"] = bool(i > ri)
        seconds["faithfulness"] = time.perf_counter() - tic

    if "randomization" in checks:
        tic = time.perf_counter()
        res = cascade(handle, x, methods, ids, stages=stages, layer=layer, options=options, original=original,
                      seed=seed, budget_mb=budget_mb, progress=progress)
        result.cascade = res
        half = max(1, math.ceil(len(res.stages) / 2))
        extra["cascade"] = {"stages": res.stages,
                            "spearman": {m: [_mean(s) for s in res.spearman[m]] for m in methods},
                            "ssim": {m: [_mean(s) for s in res.ssim[m]] for m in methods},
                            "top_half_stages": half}
        for m in methods:
            table[m]["randomization-spearman"] = _mean(res.spearman[m])
            table[m]["randomization-ssim"] = _mean(res.ssim[m])
            passes[m]["model-randomization"] = bool(_mean(res.spearman[m][:half]) < PASS_THRESHOLD)
        seconds["randomization"] = time.perf_counter() - tic

    if "random-logit" in checks:
        tic = time.perf_counter()
        other, sims = random_logit(handle, x, methods, ids, layer=layer, options=options, original=original,
                                   seed=seed, budget_mb=budget_mb)
        for m in methods:
            table[m]["random-logit-spearman"] = _mean(sims[m][0])
            table[m]["random-logit-ssim"] = _mean(sims[m][1])
            passes[m]["random-logit"] = bool(_mean(sims[m][0]) < PASS_THRESHOLD)
        seconds["random-logit"] = time.perf_counter() - tic

    if "stability" in checks:
        tic = time.perf_counter()
        ms = max_sensitivity(handle, x, methods, ids, samples=samples, radius=radius, layer=layer, options=options,
                             original=original, seed=seed, budget_mb=budget_mb, progress=progress)
        for m in methods:
            table[m]["max-sensitivity"] = _mean(ms[m])
        seconds["stability"] = time.perf_counter() - tic

    if "localization" in checks:
        tic = time.perf_counter()
        for m in methods:
            table[m]["pointing-game"] = _mean(pointing_game(original[m], masks))
            table[m]["energy-inside"] = _mean(energy_inside(original[m], masks))
        seconds["localization"] = time.perf_counter() - tic

    names = [k for c in checks for k in CHECK_METRICS[c]]
    result.card = {
        "model": model_name or handle.spec, "images": int(x.shape[0]),
        "target": str(targets) if not isinstance(targets, torch.Tensor) else "given", "methods": list(methods),
        "metrics": [{"name": k, "better": METRICS[k][0], "description": METRICS[k][1]} for k in names],
        "table": {m: {k: table[m].get(k) for k in names} for m in methods},
        "passes": passes, "figures": [],
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **extra,
        "settings": {"checks": checks, "steps": steps, "fill": fill, "patch": patch, "stages": stages,
                     "samples": samples, "radius": radius, "seed": seed, "layer": layer,
                     "pass_threshold_spearman": PASS_THRESHOLD},
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
    }
    return result


def format_scorecard(card: dict) -> str:
    """The scorecard as a plain-text table: one row per method, one column per metric, then checks."""
    names = [m["name"] for m in card["metrics"]]
    short = {n: n.replace("randomization", "rand").replace("random-logit", "rlogit") for n in names}
    width = max([len(m) for m in card["methods"]] + [8])
    cw = {n: max(8, len(short[n])) for n in names}
    head = " " * width + "  " + "  ".join(f"{short[n]:>{cw[n]}}" for n in names)
    lines = [f"model {card['model']}, {card['images']} images, target {card['target']}", head,
             " " * width + "  " + "  ".join(f"{('(' + card_better(card, n) + ')'):>{cw[n]}}" for n in names)]
    for m in card["methods"]:
        vals = [card["table"][m].get(n) for n in names]
        lines.append(f"{m:<{width}}  " + "  ".join(f"{'-' if v is None else f'{v:.3f}':>{cw[n]}}"
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
            lines.append(f"{m:<{width}}  " + "  ".join(f"{('pass' if p[c] else 'FAIL') if c in p else '-':>19}"
                                                       for c in checks))
    return "\n".join(lines)


def card_better(card: dict, name: str) -> str:
    return next(m["better"] for m in card["metrics"] if m["name"] == name)


# ------------------------------------------------------------------------------ inputs and files
def expand_images(paths: Sequence[str]) -> list[str]:
    """Image files from files and folders (folders: their image files, recursively, sorted);
    ``mikata.data.images.expand_image_paths``, which ``mikata predict`` uses too."""
    from mikata.data.images import expand_image_paths

    return expand_image_paths(paths)


def load_images(handle: ModelHandle, paths: Sequence[str]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Preprocessed batch ``(N, C, H, W)`` and each original size (w, h)."""
    from mikata.data.images import load_image

    mode = handle.mode
    imgs = [load_image(p, mode) for p in paths]
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
    from mikata.analysis.media import image_file
    from mikata.analysis.runstore import RunStore, RunStoreError

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
    from mikata.analysis.runstore import RunStore
    from mikata.models.run_model import load_run_model

    paths = sample_paths(run_dir, limit, seed)
    with RunStore.open(run_dir) as store:
        identity = dict(store.identity)
    return load_run_model(identity, run_dir, model, trust, device=device), paths, identity


def write_scorecard(result: Evaluation, out_dir: str, figure: bool = True) -> str:
    """``out_dir/scorecard.json`` (+ ``evaluate.png``); returns the JSON's path."""
    import json

    from mikata.evaluation.figure import draw_evaluation

    os.makedirs(out_dir, exist_ok=True)
    if figure and draw_evaluation(result, os.path.join(out_dir, "evaluate.png")) is not None:
        result.card["figures"] = ["evaluate.png"]
    path = os.path.join(out_dir, "scorecard.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result.card, f, indent=2, allow_nan=False, default=_json_default)
    os.replace(tmp, path)  # readers (report, server) never see half a file
    return path


def _json_default(o: object) -> object:
    if isinstance(o, torch.Tensor):
        return o.tolist()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")
