"""mikata evaluate MODEL IMAGES... | RUN_DIR: which attribution map to believe, measured.

Deletion/insertion AUC against a random order, the model-randomization cascade and the random-logit
sanity checks, max-sensitivity, and the pointing game / energy inside boxes or masks when given.
Prints a scorecard (method x metric, pass/fail per check) and writes scorecard.json + evaluate.png.

Long runs survive interruption: each finished (method, check) part is saved in OUT/parts as it
completes, and the same command run again reuses what was finished with the same model, images and
options (and says so); ``--restart`` recomputes everything. Every argument (methods, checks, class,
layer, counts, radius, boxes/masks paths) is checked before the model loads or an image decodes.
"""

from __future__ import annotations

import logging
import os
import sys

from mikata.cli.common import (LazyHelp, add_baseline_arguments, add_device_arguments, announce_preprocessing, command_parser, device_from_args,
                               print_json)

log = logging.getLogger(__name__)

DEFAULT_METHODS = "gradcam,saliency,guided-backprop,integrated-gradients"
DEFAULT_CHECKS = "faithfulness,randomization,random-logit,stability,localization"


def _checks_help() -> str:
    """The --checks help, from the check registry (checks registered by plugins included)."""
    from mikata.evaluation.check_registry import check_listing, check_names, check_specs
    from mikata.evaluation.scorecard import evaluate  # noqa: F401 - registers the built-in checks

    masks = [s.name for s in check_specs() if s.needs_masks]
    return (f"comma-separated checks (default all: {','.join(check_names())}"
            f"{'; ' + ', '.join(masks) + ' needs --boxes or --masks' if masks else ''}). Each adds: {check_listing()}")


def register(sub) -> None:
    p = command_parser(sub, "evaluate",
                       "Measure attribution maps on your model and images: faithfulness, sanity checks, "
                       "localization, stability.",
                       "mikata evaluate efficientnet-lite0 photos/ --methods gradcam,saliency,guided-backprop\n"
                       "  mikata evaluate runs/fashion --images-limit 16      (a scanned run: writes runs/fashion/evaluate/)")
    p.add_argument("source", metavar="MODEL|RUN_DIR",
                   help="a model spec (efficientnet-lite0, torchvision:NAME, a .safetensors checkpoint, ...) "
                        "followed by images, or a run directory made by `mikata scan`")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files or folders (with a MODEL)")
    p.add_argument("--model", default=None, metavar="SPEC",
                   help="with a RUN_DIR: the model it was scanned with, when its recorded spec is code "
                        "(package.module:factory) or not found beside the run; its weights must be the scanned ones")
    p.add_argument("--trust", action="store_true",
                   help="allow unpickling a whole model from a file (runs its code: only your own files)")
    p.add_argument("--methods", default=DEFAULT_METHODS, help=f"comma-separated methods (default {DEFAULT_METHODS})")
    p.add_argument("--checks", default=DEFAULT_CHECKS,
                   help=LazyHelp(f"comma-separated checks (default all: {DEFAULT_CHECKS}; localization needs "
                                 "--boxes or --masks)", _checks_help))
    p.add_argument("--target", default="top1", help="top1 (default) or a class id or name")
    p.add_argument("--layer", default=None, help="layer for CAM methods (default: the model's)")
    p.add_argument("--out", default=None, help="output folder (default ./evaluate, or RUN_DIR/evaluate)")
    p.add_argument("--images-limit", type=int, default=16,
                   help="how many images (a seeded sample of a run; the first N files otherwise; default 16)")
    p.add_argument("--steps", type=int, default=50, help="deletion/insertion steps (default 50)")
    p.add_argument("--fill", default="blur", type=fill_text,
                   help="what removed regions become: blur, mean, zero, road, black, white, uniform-noise, auto (zero "
                        "for deletion, blur for insertion as in RISE), or one per curve, e.g. "
                        "deletion=road,insertion=mean (default blur; road = ROAD noisy linear imputation, slow: use "
                        "few --steps)")
    p.add_argument("--patch", type=int, default=None,
                   help="region side in pixels for deletion/insertion (default: a 14x14 grid; 1 = single pixels)")
    p.add_argument("--stages", type=int, default=8, help="randomization cascade stages (default 8)")
    p.add_argument("--samples", type=int, default=8, help="noisy copies for max-sensitivity (default 8)")
    p.add_argument("--radius", type=float, default=0.02, help="max-sensitivity noise radius in [0,1] pixels (default 0.02)")
    add_baseline_arguments(p, "; named in every scorecard row. The curves' own fill is --fill (which takes black, white and uniform-noise too)")
    p.add_argument("--ig-steps", type=int, default=None, help="steps for integrated-gradients (default the method's)")
    p.add_argument("--boxes", default=None, help="CSV rows file,x0,y0,x1,y1 in original image pixels")
    p.add_argument("--masks", default=None, help="folder of mask PNGs named <image stem>.png (non-zero = object)")
    p.add_argument("--seed", type=int, default=0, help="seed for the random order, noise and classes (default 0)")
    p.add_argument("--restart", action="store_true",
                   help="recompute everything: delete the parts saved by earlier runs in OUT/parts (by default "
                        "each finished (method, check) part is saved there as it completes, and running the same "
                        "command again, e.g. after Ctrl-C, reuses the parts made with the same model, images and "
                        "options)")
    p.add_argument("--json", action="store_true", help="print the scorecard JSON instead of the table")
    add_device_arguments(p, precision=True)
    p.set_defaults(func=run)


def fill_text(text: str) -> str:
    """``--fill``, checked while parsing (a typo exits 2 before the model loads)."""
    import argparse

    from mikata.evaluation.faithfulness import mode_fills

    try:
        mode_fills(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def run(args) -> int:
    from mikata.attribution.engine import check_methods
    from mikata.errors import MikataError
    from mikata.evaluation.scorecard import (check_checks, evaluate, expand_images, format_scorecard, load_images,
                                           make_masks, sample_run, write_scorecard)

    from mikata.models.precheck import (check_at_least, check_between, check_class_targets, check_layer,
                                        class_names_before_loading)

    # every argument is checked before anything loads or decodes: a typo costs a second, not the run
    methods = check_methods([m for m in args.methods.split(",") if m.strip()])
    checks = check_checks([c for c in args.checks.split(",") if c.strip()])
    if not methods:
        raise MikataError("no methods given; e.g. --methods gradcam,saliency")
    for name in ("steps", "stages", "samples", "images_limit", "ig_steps", "patch"):
        check_at_least(name.replace("_", "-"), getattr(args, name), 1)
    check_between("radius", args.radius, 0.0, 1.0, "it is a fraction of the pixel range")
    for flag, path in (("boxes", args.boxes), ("masks", args.masks)):
        if path and not os.path.exists(path):
            raise MikataError(f"--{flag} {path}: no such file or folder")
    target = args.target if not args.target.strip().isdigit() else int(args.target)
    from mikata.cli.explain import baseline_options

    options = {m: o for m, o in baseline_options(args.baseline, args.baselines, args.seed).items() if m in methods}
    from mikata.runs.layout import EVALUATE, PARTS, RunLayout

    is_run = os.path.isdir(args.source) and os.path.lexists(RunLayout(args.source).database)
    if is_run:
        if args.images:
            raise MikataError("give either a run directory or a MODEL with images, not both")
        from mikata.runs.store import RunStore

        with RunStore.open(args.source) as store:
            check_class_targets(store.identity.get("classes"), target)  # the run knows its model's classes
        handle, paths, identity = sample_run(args.source, args.images_limit, args.seed, args.model, args.trust,
                                             device=device_from_args(args, announce=False))
        handle.precision = args.precision
        if args.out:
            out = args.out
        else:  # the run's own evaluate/ folder: refused if it is a link or not a folder (runs.layout)
            out = str(RunLayout(args.source).writable_folder(EVALUATE))
            RunLayout(args.source).writable_folder(f"{EVALUATE}/{PARTS}")
        model_name = identity["model_spec"]
    else:
        if not args.images:
            if os.path.isdir(args.source):
                raise MikataError(f"{args.source} is a folder but not a mikata run (no run.sqlite); "
                                  "give a MODEL then the images, e.g. mikata evaluate efficientnet-lite0 photos/")
            raise MikataError("give images after the model, e.g. mikata evaluate efficientnet-lite0 photos/")
        paths = expand_images(args.images)[: args.images_limit]  # missing files fail before the model loads
        check_class_targets(class_names_before_loading(args.source), target)
        from mikata.models import load_model

        handle = load_model(args.source, trust=args.trust, device=device_from_args(args, announce=False),
                            precision=args.precision)
        out = args.out or EVALUATE
        model_name = args.source
    check_class_targets(handle.class_names, target)  # specs whose names only a built model knows
    check_layer(handle.net, args.layer)
    device_from_args(args)  # announced once the model has loaded
    announce_preprocessing(args, handle.preprocessing)
    skipped: list[tuple[str, str]] = []
    x, sizes = load_images(handle, paths, skipped)  # an undecodable file is skipped and named, not the job
    if skipped:
        gone = {p for p, _ in skipped}
        paths = [p for p in paths if str(p) not in gone]
    masks = make_masks(handle, paths, sizes, args.boxes, args.masks)
    if "integrated-gradients" in methods:
        options["integrated-gradients"].update({"seed": args.seed, **({"steps": args.ig_steps} if args.ig_steps
                                                                      else {})})
    parts = os.path.join(out, PARTS)
    if args.restart:
        from mikata.evaluation.parts import PartStore

        gone = PartStore(parts, {}).clear()
        if gone:
            log.info("--restart: deleted %d saved part(s) in %s", gone, parts)
    try:
        result = evaluate(handle, x, methods, target, args.layer, options, checks, steps=args.steps, fill=args.fill,
                          patch=args.patch, stages=args.stages, samples=args.samples, radius=args.radius,
                          masks=masks, seed=args.seed, model_name=model_name, progress=not args.quiet,
                          parts_dir=parts)
    except KeyboardInterrupt:
        log.warning("interrupted: every finished part is saved in %s; run the same command again to continue "
                    "where it stopped", parts)
        raise
    if skipped:
        result.card["skipped"] = [[p, reason] for p, reason in skipped]
    path = write_scorecard(result, out)
    if args.json:
        print_json(result.card)
    else:
        print(format_scorecard(result.card))
        print(f"\nwrote {path}" + "".join(f", {os.path.join(out, f)}" for f in result.card["figures"]))
    from mikata.data.filenames import shown

    for p, reason in skipped:
        print(f"mikata evaluate: skipped {shown(p)}: {reason}", file=sys.stderr)
    return 1 if skipped else 0  # finished, but some images could not be used
