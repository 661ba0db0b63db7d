"""The built-in scorecard checks, one ``CheckSpec`` each (see ``check_registry``).

- faithfulness: deletion / insertion curves of each method's map against a random order's;
- randomization: the cascading model-weight randomization test (Adebayo et al.);
- random-logit: the map of the target class against the map of a random other class;
- stability: max-sensitivity under small input noise;
- localization: the pointing game and the energy inside a box or mask (needs them).
"""

from __future__ import annotations

import math

import torch

from mikata.evaluation.check_registry import CheckContext, CheckSpec, MetricSpec, check_names, register_check

PASS_THRESHOLD = 0.5  # a map that keeps a rank correlation of 0.5 with the original has not changed enough


def mean(v: torch.Tensor) -> float | None:
    """The mean of the defined (not NaN) values, or None when there are none."""
    v = torch.as_tensor(v).double()
    v = v[~torch.isnan(v)]
    return None if v.numel() == 0 else float(v.mean())


def fill_notes(fill: str, image_p: float, deleted_p: float, start_p: float) -> list[str]:
    """Warnings when a curve cannot tell orders apart: its fully filled image still shows the class
    (e.g. a blurred copy of an image with no fine detail). ``*_p``: mean target probability of the
    images, of the fully deleted images and of the insertion's start."""
    from mikata.evaluation.faithfulness import mode_fills

    fills, notes = mode_fills(fill), []
    for mode, p in (("deletion", deleted_p), ("insertion", start_p)):
        if p >= 0.5 * image_p:
            end = "ends" if mode == "deletion" else "starts"
            notes.append(f"{mode} {end} at an image filled with {fills[mode]!r} that the model still gives p {p:.2f} "
                         f"(the images: {image_p:.2f}): this curve can hardly tell a good order from a random one; "
                         f"try --fill deletion=road,insertion=mean")
    return notes


def _faithfulness(ctx: CheckContext) -> None:
    from mikata.evaluation.faithfulness import auc, perturbation_curves

    s, methods = ctx.settings, ctx.methods

    def curves(maps: torch.Tensor, name: str):
        return lambda: dict(perturbation_curves(
            ctx.handle, ctx.x, maps, ctx.ids, steps=s["steps"], fill=s["fill"], patch=s["patch"],
            budget_mb=ctx.budget_mb, base_probs=ctx.base_probs, generator=torch.Generator().manual_seed(s["seed"]),
            progress=ctx.progress, desc=f"evaluate: {name} deletion/insertion curves, {ctx.n} images", ends=ends))

    ends: dict[str, torch.Tensor] = {}  # the fully filled images' probabilities: the same for every map

    random_maps = torch.rand(ctx.original[methods[0]].shape, generator=torch.Generator().manual_seed(s["seed"]))
    aucs = {}
    found = ctx.arrays.setdefault("curves", {})
    for name in [*methods, "random"]:
        c = ctx.part(name, curves(random_maps if name == "random" else ctx.original[name], name))
        found[name] = {mode: c[mode] for mode in ("deletion", "insertion")}
        aucs[name] = {mode: mean(auc(v)) for mode, v in found[name].items()}
    rd, ri = aucs["random"]["deletion"], aucs["random"]["insertion"]
    ctx.extra["baseline"] = {"deletion-auc": rd, "insertion-auc": ri}
    ends = found["random"]
    for line in fill_notes(s["fill"], float(ctx.base_probs.mean()), float(ends["deletion"][:, -1].mean()),
                           float(ends["insertion"][:, 0].mean())):
        ctx.note(line)
    for m in methods:
        d, i = aucs[m]["deletion"], aucs[m]["insertion"]
        ctx.table[m].update({"deletion-auc": d, "insertion-auc": i, "deletion-vs-random": d - rd,
                             "insertion-vs-random": i - ri})
        ctx.passes[m]["deletion<random"] = bool(d < rd)
        ctx.passes[m]["insertion>random"] = bool(i > ri)


def _randomization(ctx: CheckContext) -> None:
    from mikata.evaluation.randomization import CascadeResult, cascade

    s, methods = ctx.settings, ctx.methods

    def one(m: str):
        def go() -> dict:
            res = cascade(ctx.handle, ctx.x, [m], ctx.ids, stages=s["stages"], layer=ctx.layer, options=ctx.options,
                          original={m: ctx.original[m]}, seed=s["seed"], budget_mb=ctx.budget_mb,
                          progress=ctx.progress)
            return {"stages": list(res.stages), "spearman": res.spearman[m], "ssim": res.ssim[m]}
        return go

    res = CascadeResult(stages=[])
    for m in methods:
        got = ctx.part(m, one(m))
        res.stages = list(got["stages"])
        res.spearman[m], res.ssim[m] = got["spearman"], got["ssim"]
    ctx.arrays["cascade"] = res
    half = max(1, math.ceil(len(res.stages) / 2))
    ctx.extra["cascade"] = {"stages": res.stages,
                            "spearman": {m: [mean(v) for v in res.spearman[m]] for m in methods},
                            "ssim": {m: [mean(v) for v in res.ssim[m]] for m in methods},
                            "top_half_stages": half}
    for m in methods:
        ctx.table[m]["randomization-spearman"] = mean(res.spearman[m])
        ctx.table[m]["randomization-ssim"] = mean(res.ssim[m])
        ctx.passes[m]["model-randomization"] = bool(mean(res.spearman[m][:half]) < PASS_THRESHOLD)


TWO_CLASS_NOTE = ("random-logit skipped: this model has two classes, so the \"random other class\" is always the "
                  "same one, and a softmax over two logits depends only on their difference: the evidence for one "
                  "class is the evidence against the other (training a 2-way softmax head moves the two classes' "
                  "weights by exactly opposite amounts), so a map of the other class is nearly the target's map "
                  "with its sign flipped, and on absolute values, which this check compares, the two coincide "
                  "by construction (a 2-class Integrated Gradients gets Spearman ~1 however well it explains). No "
                  "comparison between the two classes' maps can tell a class-sensitive map from a class-blind one "
                  "here; the randomization cascade is the sanity check that applies")


def two_classes(handle) -> str | None:
    """Why the random-logit check cannot run on ``handle`` (two classes), or None."""
    return TWO_CLASS_NOTE if int(handle.num_classes) == 2 else None


def _random_logit(ctx: CheckContext) -> None:
    from mikata.evaluation.randomization import random_logit


    def one(m: str):
        def go() -> dict:
            other, sims = random_logit(ctx.handle, ctx.x, [m], ctx.ids, layer=ctx.layer, options=ctx.options,
                                       original={m: ctx.original[m]}, seed=ctx.settings["seed"],
                                       budget_mb=ctx.budget_mb)
            return {"other": other, "spearman": sims[m][0], "ssim": sims[m][1]}
        return go

    for m in ctx.methods:
        got = ctx.part(m, one(m))
        ctx.table[m]["random-logit-spearman"] = mean(got["spearman"])
        ctx.table[m]["random-logit-ssim"] = mean(got["ssim"])
        ctx.passes[m]["random-logit"] = bool(mean(got["spearman"]) < PASS_THRESHOLD)


def _stability(ctx: CheckContext) -> None:
    from mikata.evaluation.stability import max_sensitivity

    s = ctx.settings

    def one(m: str):
        def go() -> dict:
            ms = max_sensitivity(ctx.handle, ctx.x, [m], ctx.ids, samples=s["samples"], radius=s["radius"],
                                 layer=ctx.layer, options=ctx.options, original={m: ctx.original[m]}, seed=s["seed"],
                                 budget_mb=ctx.budget_mb, progress=ctx.progress)
            return {"max_sensitivity": ms[m]}
        return go

    for m in ctx.methods:
        ms = torch.as_tensor(ctx.part(m, one(m))["max_sensitivity"])
        ctx.table[m]["max-sensitivity"] = mean(ms)
        undefined = int(torch.isnan(ms.double()).sum())
        if undefined:
            ctx.note(f"max-sensitivity of {m}: its map is all zero on {undefined} of {len(ms)} images, which are left "
                     "out of its mean (the relative change of an all-zero map is undefined)")


def _localization(ctx: CheckContext) -> None:
    from mikata.evaluation.localization import energy_inside, pointing_game

    for m in ctx.methods:
        ctx.table[m]["pointing-game"] = mean(pointing_game(ctx.original[m], ctx.masks))
        ctx.table[m]["energy-inside"] = mean(energy_inside(ctx.original[m], ctx.masks))


for _spec in (
    CheckSpec("faithfulness", "deletion and insertion curves: does removing the most attributed regions first "
              "drop the target's probability faster than a random order?",
              (MetricSpec("deletion-auc", "lower", "area under the target probability as the most attributed regions "
                          "are removed"),
               MetricSpec("insertion-auc", "higher", "area under the target probability as the most attributed "
                          "regions are revealed"),
               MetricSpec("deletion-vs-random", "lower", "deletion AUC minus the random order's (negative = better "
                          "than chance)"),
               MetricSpec("insertion-vs-random", "higher", "insertion AUC minus the random order's (positive = better "
                          "than chance)")),
              _faithfulness, (("deletion<random", "deletion AUC below the random order's"),
                              ("insertion>random", "insertion AUC above the random order's")),
              ("steps", "fill", "patch", "seed"), parts=lambda methods: [*methods, "random"]),
    CheckSpec("randomization", "cascading weight randomization (top layer down): a map that survives it does not "
              "depend on what the model learned",
              (MetricSpec("randomization-spearman", "lower", "mean Spearman rank correlation with the original map "
                          "over the cascading weight-randomization stages (top layer down)"),
               MetricSpec("randomization-ssim", "lower", "mean SSIM with the original map over the cascading "
                          "randomization stages")),
              _randomization, (("model-randomization", f"mean Spearman over the top half of the stages below "
                                f"{PASS_THRESHOLD}"),), ("stages", "seed")),
    CheckSpec("random-logit", "the map of the target class against the map of a random other class: a map that does "
              "not change does not explain the class",
              (MetricSpec("random-logit-spearman", "lower", "Spearman correlation between the map of the target "
                          "class and of a random other class"),
               MetricSpec("random-logit-ssim", "lower", "SSIM between the map of the target class and of a random "
                          "other class")),
              _random_logit, (("random-logit", f"Spearman below {PASS_THRESHOLD}"),), ("seed",), skip=two_classes),
    CheckSpec("stability", "max-sensitivity: how much the map moves under imperceptible input noise",
              (MetricSpec("max-sensitivity", "lower", "max over noisy copies (L-inf radius r) of ||map(x+d) - map(x)|| "
                          "/ ||map(x)||"),),
              _stability, (), ("samples", "radius", "seed")),
    CheckSpec("localization", "does the map fall on the object (a box or mask the user gives)?",
              (MetricSpec("pointing-game", "higher", "share of images whose map maximum lies inside the box or mask"),
               MetricSpec("energy-inside", "higher", "share of the map's positive mass inside the box or mask")),
              _localization, (), (), parts=None, needs_masks=True),
):
    if _spec.name not in check_names():  # a reload of this module keeps the first registration
        register_check(_spec)
