"""mikata units RUN: channels' synthetic images beside the scanned images that activate them most."""

from __future__ import annotations

from mikata.cli.common import add_device_arguments, command_parser, print_json


def register(sub) -> None:
    p = command_parser(sub, "units",
                       "Show units beside their dataset examples: each channel's synthetic image, the scanned "
                       "images that activate it most and where in them it fires.",
                       "mikata units runs/fashion --channels 0:8 --top 6   (then: mikata report / mikata serve)")
    p.add_argument("run", metavar="RUN_DIR", help="a run directory made by `mikata scan`")
    p.add_argument("--layer", default=None,
                   help="layer of the channels (default: the scan's layer, whose channel means the run stores; "
                        "another layer costs one pass over the run's images)")
    p.add_argument("--channels", default="0:8", help="channels: 0:8, 3,5,9 or a mix (default 0:8)")
    p.add_argument("--top", type=int, default=6, help="images per unit (default 6)")
    p.add_argument("--steps", type=int, default=48, help="optimization steps of the synthetic images (default 48)")
    p.add_argument("--size", type=int, default=None, help="synthetic image size (default: the model's input size)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic images (default 0)")
    p.add_argument("--model", default=None, metavar="SPEC",
                   help="the model, when the run's recorded one cannot be used (its weights hash is checked)")
    p.add_argument("--json", action="store_true", help="print the units and their images as JSON")
    add_device_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from mikata.analysis.units import unit_examples
    from mikata.cli.visualize import parse_channels
    from mikata.errors import MikataError
    from mikata.featurevis import RenderOptions

    try:
        channels = parse_channels(args.channels)
    except ValueError as e:
        raise MikataError(f"--channels {args.channels!r}: {e}") from None
    options = None
    if args.size or args.steps != 48 or args.seed:
        from mikata.runs.store import RunStore

        with RunStore.open(args.run) as store:
            size = args.size or max(store.manifest["identity"]["input_size"])
        options = RenderOptions(size=size, steps=args.steps, seed=args.seed)
    from mikata.cli.common import device_from_args
    from mikata.models.source import ModelSource

    source = ModelSource(spec=args.model, device=device_from_args(args))
    result = unit_examples(args.run, channels, args.layer, args.top, options=options, progress=not args.quiet,
                           source=source)
    path = result.save()
    if args.json:
        print_json({**result.summary(), "json": str(path), "grid": str(path.parent / "units.png")})
    else:
        print(f"{len(result.units)} units of {result.layer} ({result.map_size[0]}x{result.map_size[1]} maps, "
              f"ranked by the {'stored scan' if result.source == 'scan' else 'computed'} channel means): "
              f"{path.parent / 'units.png'}")
        for (c, _), note in zip(result.units, result.notes):
            if note:  # a flat rendering is said, never shown as if it were the unit
                print(f"  #{c}: {note}")
    return 0
