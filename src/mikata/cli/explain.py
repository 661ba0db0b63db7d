"""mikata explain MODEL IMAGE...: attribution maps per image as a figure, raw .npy maps and JSON."""

from __future__ import annotations

import sys

from mikata.cli.common import (add_baseline_arguments, add_model_argument, check_after_loading, check_before_loading, command_parser,
                               load_model_from_args, print_json)

DEFAULT_METHODS = "gradcam,guided-gradcam,smoothgrad"


def register(sub) -> None:
    p = command_parser(sub, "explain",
                       "Show where the network looks: attribution maps beside the top-k probabilities.",
                       "mikata explain efficientnet-lite0 chelsea.png --methods gradcam,guided-gradcam,smoothgrad "
                       "--target top3 --out maps/")
    add_model_argument(p, precision=True)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument("--methods", default=None,
                   help=f"comma-separated methods (default {DEFAULT_METHODS}, less the ReLU-only ones on a "
                        "network without ReLUs); `--methods list` shows them all")
    p.add_argument("--target", default="top1",
                   help="top1, top3, ... (per image), or a class id or name; several with commas")
    p.add_argument("--layer", default=None, help="layer for CAM methods (default: the model's; see `mikata layers`)")
    p.add_argument("--out", default="explain", help="output folder (default ./explain)")
    p.add_argument("--cmap", default=None,
                   help="matplotlib colormap for unsigned maps, 0 to max (default jet)")
    p.add_argument("--signed-cmap", default=None,
                   help="diverging colormap for signed maps (integrated-gradients, deeplift, lrp, ...), "
                        "-max|v| .. 0 .. +max|v| (default bwr: zero is white)")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity (default 0.5)")
    p.add_argument("--top", type=int, default=5, help="classes in the probability chart (default 5)")
    p.add_argument("--samples", type=int, default=None, help="samples for smoothgrad / vargrad / lime")
    p.add_argument("--steps", type=int, default=None, help="steps for integrated-gradients")
    add_baseline_arguments(p)
    p.add_argument("--seed", type=int, default=0, help="seed for noise, baselines and LIME (default 0)")
    p.add_argument("--json", action="store_true", help="print the JSON summary")
    p.set_defaults(func=run)


def _options(args) -> dict:
    opts: dict[str, dict] = {}
    for m in ("smoothgrad", "smoothgrad-squared", "vargrad"):
        opts[m] = {"seed": args.seed, **({"samples": args.samples} if args.samples else {})}
    opts["lime"] = {"seed": args.seed, **({"samples": args.samples} if args.samples else {})}
    opts["integrated-gradients"] = {"seed": args.seed, **({"steps": args.steps} if args.steps else {})}
    for m, extra in baseline_options(args.baseline, args.baselines, args.seed).items():
        opts[m] = {**opts.get(m, {}), **extra}
    return opts


def baseline_options(baseline: str | None, draws: int, seed: int) -> dict[str, dict]:
    """The ``--baseline`` / ``--baselines`` options of the methods that take a baseline, checked (an unknown
    name or a missing file is one line before the model loads)."""
    import os

    from mikata.attribution.baselines import DEFAULT, check_draws, parse_baselines

    baseline = baseline or DEFAULT
    check_draws(baseline, draws)
    for name in parse_baselines(baseline):
        if name not in ("black", "white", "mean", "zero", "blur", "uniform-noise") and not os.path.isfile(name):
            from mikata.attribution.baselines import BaselineError

            raise BaselineError(f"baseline file {name}: no such file; give an image or a .npy of pixel values in [0, 1]")
    opts = {"baseline": baseline, "baselines": draws, "seed": seed}
    return {m: dict(opts) for m in ("integrated-gradients", "deeplift", "occlusion")}


def run(args) -> int:
    from mikata.attribution.engine import check_methods
    from mikata.attribution.registry import method_listing
    from mikata.data.filenames import shown

    chosen = args.methods is not None
    args.methods = args.methods if chosen else DEFAULT_METHODS
    if args.methods.strip() == "list":
        print(method_listing())
        return 0
    from mikata.attribution.files import explain_files

    methods = check_methods([m for m in args.methods.split(",") if m.strip()])  # fail before loading the model
    from mikata.display import check_colormap

    check_colormap(args.cmap)
    check_colormap(args.signed_cmap, "signed colormap")
    target = args.target if "," not in args.target else [t.strip() for t in args.target.split(",")]
    from mikata.models.precheck import check_at_least

    for name in ("samples", "steps"):
        check_at_least(name, getattr(args, name), 1)
    options = _options(args)  # a bad --baseline fails before the model loads
    check_before_loading(args, target)
    handle = load_model_from_args(args)
    check_after_loading(handle, target, args.layer)
    if not chosen:  # the defaults fit the model: guided-gradcam is left out on a GELU network, with a note
        from mikata.attribution.engine import fitting_methods

        methods, note = fitting_methods(handle, methods)
        if note:
            print(f"mikata explain: {note}", file=sys.stderr)
    summaries = explain_files(handle, args.images, methods, target, args.layer, args.out, options,
                              args.cmap, args.alpha, args.top, progress=not args.quiet,
                              signed_cmap=args.signed_cmap)
    if args.json:
        print_json(summaries)
    else:
        cam = next((m for s in summaries for m in s.get("maps", []) if len(m["raw_shape"]) == 3), None)
        if cam is not None:  # raw (N, h, w): a layer map
            from mikata.models.layers import describe_cam_layer

            print(describe_cam_layer(cam["layer"], tuple(cam["raw_shape"][1:])))
        for s in summaries:
            if "figure" in s:
                print(shown(s["figure"]))
    from mikata.attribution.rectifiers import hybrid_note

    for note in dict.fromkeys(hybrid_note(m["method"], m["info"]) for s in summaries for m in s.get("maps", [])):
        if note:  # a guided map on a network mixing ReLUs with GELU / SiLU: said, not only in --json
            print(f"mikata explain: {note}", file=sys.stderr)
    failed = [s for s in summaries if "error" in s]
    for s in failed:
        print(f"mikata explain: cannot read {shown(s['path'])}: {s['error']}", file=sys.stderr)
    return 1 if failed else 0
