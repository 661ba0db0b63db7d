"""mikata visualize MODEL: synthetic images that maximize channels, neurons or class logits."""

from __future__ import annotations

from mikata.cli.common import add_model_argument, command_parser


def parse_channels(text: str) -> list[int]:
    """``0:36`` (a range, end excluded), ``3,5,9`` or a mix like ``0:4,10``."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if ":" in part:
            a, b = part.split(":", 1)
            out.extend(range(int(a or 0), int(b)))
        elif part:
            out.append(int(part))
    if not out:
        raise ValueError(f"no channels in {text!r}; write e.g. 0:36 or 3,5,9")
    return out


def register(sub) -> None:
    p = command_parser(sub, "visualize",
                       "Render images that maximize channels, a neuron or class logits (feature visualization).",
                       "mikata visualize efficientnet-lite0 --classes zebra,strawberry,castle --out out/\n"
                       "  mikata visualize efficientnet-lite0 --layer stem.conv --channels 0:32 --rectify --param pixel "
                       "--size 96 --out edges/")
    add_model_argument(p)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--channels", help="channels of --layer: 0:36, 3,5,9 (one image each, one batch)")
    what.add_argument("--classes", help="class names or ids, comma separated (pre-softmax logits)")
    what.add_argument("--neuron", metavar="C,Y,X", help="one channel at one spatial position of --layer")
    what.add_argument("--deepdream", action="store_true", help="amplify the whole --layer (use with --image)")
    p.add_argument("--layer", help="layer name (see `mikata layers MODEL`); default for --classes: the logits")
    p.add_argument("--out", required=True, help="folder for grid.png and one PNG per unit")
    p.add_argument("--rectify", action="store_true",
                   help="--channels: maximize the mean positive part (for layers without an activation, "
                        "e.g. a first conv, whose plain mean only yields flat colors)")
    p.add_argument("--image", help="start from this image instead of noise (DeepDream on a photo)")
    p.add_argument("--size", type=int, default=224, help="long side of the images in pixels (default 224)")
    p.add_argument("--steps", type=int, default=48, help="iterations per pyramid level (default 48)")
    p.add_argument("--octaves", type=int, default=1, help="pyramid levels (default 1)")
    p.add_argument("--octave-scale", type=float, default=1.4, help="size ratio between levels (default 1.4)")
    p.add_argument("--param", choices=["fourier", "pixel"], default="fourier")
    p.add_argument("--optimizer", choices=["adam", "rmsprop", "sgd"], default="adam")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--tv", type=float, default=0.0, help="total-variation weight")
    p.add_argument("--tv-beta", type=float, default=2.0)
    p.add_argument("--lp", type=float, default=0.0, help="Lp-norm weight")
    p.add_argument("--lp-p", type=float, default=6.0)
    p.add_argument("--blur", type=float, default=0.0, help="blur-penalty weight")
    p.add_argument("--jitter", type=int, default=8, help="jitter in pixels; 0 turns all random transforms off")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--thumb", type=int, default=128, help="thumbnail size in the grid")
    p.add_argument("--verbose", action="store_true", help="print the per-iteration table")
    p.set_defaults(func=run)


def run(args) -> int:
    import logging

    from mikata.cli.common import check_after_loading, check_before_loading, load_model_from_args
    from mikata.errors import MikataError
    from mikata.featurevis import RenderOptions, visualize

    opts = RenderOptions(size=args.size, steps=args.steps, octaves=args.octaves, octave_scale=args.octave_scale,
                         param=args.param, optimizer=args.optimizer, lr=args.lr, tv=args.tv, tv_beta=args.tv_beta,
                         lp=args.lp, lp_p=args.lp_p, blur=args.blur, jitter=args.jitter, seed=args.seed,
                         verbose=args.verbose, progress=not args.quiet)
    try:
        opts.validate()
        channels = parse_channels(args.channels) if args.channels else None
        neuron = tuple(int(v) for v in args.neuron.split(",")) if args.neuron else None
        if neuron is not None and len(neuron) != 3:
            raise ValueError(f"--neuron takes C,Y,X, not {args.neuron!r}")
    except ValueError as e:
        raise MikataError(f"{e}") from e
    if not args.classes and not args.layer:
        raise MikataError("--channels, --neuron and --deepdream need --layer NAME; `mikata layers MODEL` lists them")
    if args.classes and args.image:
        logging.getLogger(__name__).warning("--image is used only with --channels, --neuron and --deepdream")
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    check_before_loading(args, classes)
    handle = load_model_from_args(args)
    check_after_loading(handle, classes, args.layer)  # before any optimization step
    result = visualize(handle, layer=args.layer, channels=channels,
                       classes=[c for c in args.classes.split(",") if c.strip()] if args.classes else None,
                       neuron=neuron, deepdream=args.deepdream, image=args.image, options=opts, rectify=args.rectify)
    paths = result.save(args.out, thumb=args.thumb)
    print(f"wrote {paths[0]} and {len(paths) - 1} image(s) in {result.seconds:.1f} s")
    return 0
