"""mikata predict MODEL IMAGE|FOLDER...: top-k classes per image; bad files reported, exit 1 if any."""

from __future__ import annotations

import sys

from mikata.cli.common import add_model_argument, command_parser, load_model_from_args, print_json


def register(sub) -> None:
    p = command_parser(sub, "predict", "Print the top-k classes and probabilities for each image.",
                       "mikata predict efficientnet-lite0 chelsea.png coffee.png --top 5\n"
                       "  mikata predict model.safetensors photos/          # every image in the folder, recursively")
    add_model_argument(p, precision=True)
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image files or folders (a folder: its image files, recursively, sorted; as mikata evaluate)")
    p.add_argument("--top", type=int, default=5,
                   help="how many classes per image (default 5; a model with fewer classes lists all of them)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from mikata.data.filenames import shown
    from mikata.data.images import expand_image_paths
    from mikata.models.precheck import check_at_least
    from mikata.prediction import predict

    check_at_least("top", args.top, 1)
    check_at_least("batch-size", args.batch_size, 1)
    paths = expand_image_paths(args.images, missing_ok=True)  # an empty folder fails before the model loads
    handle = load_model_from_args(args)
    results = predict(handle, paths, top=args.top, batch_size=args.batch_size)
    failed = [r for r in results if r.error]
    if args.json:
        print_json([r.to_dict() for r in results])
    else:
        for r in results:
            if r.error:
                continue
            print(shown(r.path))
            for name, _, prob in r.top:
                print(f"  {prob:7.2%}  {name}")
    for r in failed:
        print(f"mikata predict: cannot read {shown(r.path)}: {r.error}", file=sys.stderr)
    return 1 if failed else 0
