"""mikata samples DATA_DIR: random labelled images from a class-per-subfolder dataset or a CSV manifest, with the
class histogram."""

from __future__ import annotations

import sys

from mikata.cli.common import command_parser, print_json


def register(sub) -> None:
    p = command_parser(
        sub, "samples", "Draw random images of a labeled folder (one subfolder per class) or CSV manifest with their class "
        "names, beside the class histogram.",
        "mikata samples data/food --n 16 --seed 1 --out food_samples.png")
    p.add_argument("data_dir", metavar="DATA_DIR", help="a folder with one subfolder of images per class, or a CSV "
                   "manifest path,label (as train and scan take)")
    p.add_argument("--n", type=int, default=9, help="how many images (default 9)")
    p.add_argument("--seed", type=int, default=0, help="random seed: the same seed shows the same images (default 0)")
    p.add_argument("--thumb", type=int, default=128, help="tile size in pixels (default 128)")
    p.add_argument("--out", default="samples.png", metavar="FILE", help="output PNG (default samples.png)")
    p.add_argument("--json", action="store_true", help="print the class counts, samples and skipped files as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from mikata.inspect import sample_grid

    result = sample_grid(args.data_dir, n=args.n, seed=args.seed, thumb=args.thumb)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result.save(out)
    for path, reason in result.skipped:
        print(f"mikata samples: skipped {path}: {reason}", file=sys.stderr)
    if args.json:
        print_json({"path": str(out), "counts": result.counts,
                    "samples": [{"path": p, "class": c} for p, c in result.samples],
                    "skipped": [{"path": p, "reason": r} for p, r in result.skipped]})
    else:
        print(out)
    return 1 if result.skipped else 0  # finished, but some files could not be used
