"""mikata layers MODEL: names, types, output shapes, the map each layer gives (tokens and channels-last
read as (C, h, w)) and parameters; the default target layer marked."""

from __future__ import annotations

from mikata.cli.common import add_model_argument, command_parser, load_model_from_args, print_json


def register(sub) -> None:
    p = command_parser(sub, "layers", "List a model's layers with output shapes and parameter counts.",
                       "mikata layers efficientnet-lite0 --depth 1")
    add_model_argument(p)
    p.add_argument("--depth", type=int, default=None, help="show layers nested at most this deep (0 = top level)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args) -> int:
    from mikata.models import format_layer_table, list_layers

    handle = load_model_from_args(args)
    layers = list_layers(handle)
    if args.json:
        print_json({"model": handle.spec, "input": [handle.in_channels, *handle.input_size],
                    "default_layer": handle.default_layer, "layers": [l.to_dict() for l in layers]})
        return 0
    print(f"{handle.spec}: input {handle.in_channels}x{handle.input_size[0]}x{handle.input_size[1]}, "
          f"{handle.num_classes} classes, {sum(p.numel() for p in handle.net.parameters()):,} parameters")
    print(format_layer_table(layers, args.depth))
    default = next((l for l in layers if l.name == handle.default_layer), None)
    grid = f" ({default.layout.describe()} map)" if default is not None and default.layout.spatial else ""
    print(f"default target layer: {handle.default_layer}{grid}")
    print("map: the grid a CAM method gets from the layer; tokens N+hxw: N class/register tokens set aside, "
          "channels-last: read as (C, h, w)")
    return 0
