"""mikata activations MODEL IMAGE --layer NAME: a layer's feature maps for one image as a labelled grid."""

from __future__ import annotations

from mikata.cli.common import add_model_argument, check_after_loading, command_parser, load_model_from_args, print_json


def register(sub) -> None:
    p = command_parser(
        sub, "activations", "Draw a layer's activation maps (feature maps) for an image as a labelled grid.",
        "mikata activations efficientnet-lite0 chelsea.png --layer blocks.3 --top 16 --overlay --out maps/\n"
        "  mikata activations efficientnet-lite0 chelsea.png --layer stem --channels 0:32 --shared-scale")
    add_model_argument(p)
    p.add_argument("image", metavar="IMAGE", help="an image file")
    p.add_argument("--layer", required=True, help="a layer name from `mikata layers MODEL`")
    pick = p.add_mutually_exclusive_group()
    pick.add_argument("--channels", help="channels to draw: 0:64, 0:64:2 or 3,17,40 (default: the first 64)")
    pick.add_argument("--top", type=int, help="draw the K channels with the highest mean activation, strongest first")
    p.add_argument("--shared-scale", action="store_true",
                   help="one color scale for all tiles (default: each channel scaled to its own min..max)")
    p.add_argument("--overlay", action="store_true", help="upsample each map and overlay it on the input image")
    p.add_argument("--thumb", type=int, default=96, help="tile size in pixels (default 96)")
    p.add_argument("--out", default=".", metavar="DIR", help="folder for the PNG (default: current folder)")
    p.add_argument("--json", action="store_true",
                   help="print the PNG path, layer shape, drawn channels and their mean activations as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from mikata.inspect import activation_grid

    handle = load_model_from_args(args)
    check_after_loading(handle, layer=args.layer)  # before the image is decoded
    grid = activation_grid(handle, args.image, args.layer, channels=args.channels, top=args.top,
                           shared_scale=args.shared_scale, overlay=args.overlay, thumb=args.thumb)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{Path(args.image).stem}_{args.layer}_activations.png"
    grid.save(path)
    if args.json:
        print_json({"path": str(path), "layer": grid.layer, "shape": list(grid.shape), "channels": grid.channels,
                    "mean_activation": [float(v) for v in grid.scores],
                    "shared_scale": list(grid.scale) if grid.scale else None})
    else:
        print(path)
    return 0
