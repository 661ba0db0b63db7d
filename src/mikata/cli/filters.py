"""mikata filters MODEL [--layer NAME]: a convolution layer's learned filters as a labelled grid."""

from __future__ import annotations

from mikata.cli.common import add_model_argument, check_after_loading, command_parser, load_model_from_args


def register(sub) -> None:
    p = command_parser(
        sub, "filters", "Draw the learned weights of a convolution layer as a grid (RGB for a first layer, "
        "per input channel otherwise; gray = 0 so the sign shows).",
        "mikata filters efficientnet-lite0 --out filters/\n"
        "  mikata filters efficientnet-lite0 --layer blocks.1.depthwise.conv")
    add_model_argument(p)
    p.add_argument("--layer", help="an nn.Conv2d layer from `mikata layers MODEL` (default: the first convolution)")
    p.add_argument("--max-filters", type=int, default=64, help="draw at most this many output filters (default 64)")
    p.add_argument("--max-inputs", type=int, default=16,
                   help="draw at most this many input channels per filter (default 16)")
    p.add_argument("--out", default=".", metavar="DIR", help="folder for the PNG (default: current folder)")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from mikata.inspect import filter_grid

    handle = load_model_from_args(args)
    check_after_loading(handle, layer=args.layer)
    grid = filter_grid(handle, args.layer, max_filters=args.max_filters, max_inputs=args.max_inputs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{grid.layer}_filters.png"
    grid.save(path)
    print(path)
    return 0
