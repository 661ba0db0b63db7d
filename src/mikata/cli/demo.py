"""mikata demo: the main job end to end on real data and a real pretrained model."""

from __future__ import annotations

from mikata.cli.common import add_device_arguments, command_parser, device_from_args


def register(sub) -> None:
    p = command_parser(sub, "demo", "Run mikata end to end on real photos and a real pretrained model.",
                       "mikata demo --out mikata-demo")
    p.add_argument("--out", default="mikata-demo", help="output folder (default mikata-demo)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run in seconds")
    add_device_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from mikata.demo import run_demo

    result = run_demo(args.out, quick=args.quick, device=device_from_args(args))
    print(f"\nmikata demo finished in {result.seconds:.0f} s. Outputs:")
    for what, path in result.outputs:
        print(f"  {what:<28} {path}")
    return 0
