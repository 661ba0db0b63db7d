"""mikata concepts RUN: per class, the concepts the model recognises it by, their importance, exemplars,
strategies, concepts over-present in errors, weak slices, suspected shortcuts with a deletion test, and
concepts you define by example images (TCAV)."""

from __future__ import annotations

from mikata.cli.common import add_device_arguments, command_parser, print_json


def register(sub) -> None:
    p = command_parser(sub, "concepts",
                       "Find the concepts a model recognises each class by (NMF of the class's activations at a "
                       "layer), how much each gives the class logit, where it sits, which are over-present in the "
                       "errors, the strategies (clusters of images recognised alike) and suspected shortcuts with "
                       "a deletion test. Stored in the run (RUN_DIR/concepts/) for mikata report / serve / audit.",
                       "mikata concepts runs/fashion --classes Coat,Shirt --per-class 6 --sample 300\n"
                       "  mikata concepts runs/fashion --define stripes=examples/stripes --json")
    p.add_argument("run", metavar="RUN_DIR", help="a run directory made by `mikata scan`")
    p.add_argument("--layer", default=None, help="layer to factorize (default: the layer the run was scanned at)")
    p.add_argument("--classes", default=None, metavar="A,B", help="only these classes (names or ids; default: all)")
    p.add_argument("--per-class", type=int, default=5, metavar="K", help="concepts per class (default 5)")
    p.add_argument("--sample", type=int, default=500, metavar="N",
                   help="images per class at most, a seeded sample (bounds time and memory on big runs; default 500)")
    p.add_argument("--define", action="append", default=None, metavar="NAME=DIR",
                   help="a concept you define by a folder of example images: its TCAV score per class against "
                        "random images of the run, with a significance test (repeatable)")
    p.add_argument("--split", default=None, metavar="NAME",
                   help="only the images of this split (e.g. test: the concepts of held-out images, as "
                        "`mikata report --split test` shows them; default: every image of the run)")
    p.add_argument("--signed", choices=("clamp", "split", "auto"), default="clamp",
                   help="negative activations (a layer with no rectifier after it): clamp them at 0 (default, as "
                        "CRAFT/DFF), split them into their own channels [A+, A-] (exact), or auto: split when they "
                        "carry over 10%% of the class's gradient x activation")
    p.add_argument("--model", default=None, metavar="SPEC",
                   help="the model, when the run's recorded one cannot be used (its weights hash is checked)")
    add_device_arguments(p)
    p.add_argument("--json", action="store_true", help="print the atlas as JSON (the stable schema)")
    p.set_defaults(func=run)


def parse_defines(items: list[str] | None) -> dict[str, str]:
    from mikata.errors import MikataError

    out: dict[str, str] = {}
    for item in items or []:
        name, sep, folder = item.partition("=")
        if not sep or not name.strip() or not folder.strip():
            raise MikataError(f"--define {item!r}: write NAME=DIR, e.g. --define stripes=examples/stripes")
        if name.strip() in out:
            raise MikataError(f"--define {name.strip()} is given twice")
        out[name.strip()] = folder.strip()
    return out


def run(args) -> int:
    from mikata.cli.common import announce_run_preprocessing, device_from_args
    from mikata.concepts import compute_atlas
    from mikata.concepts.compute import check_arguments

    defines = parse_defines(args.define)
    check_arguments(args.per_class, args.sample, defines)  # refused before the run or the model is opened
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    device = device_from_args(args)
    announce_run_preprocessing(args, args.run)
    atlas = compute_atlas(args.run, layer=args.layer, classes=classes, per_class=args.per_class, sample=args.sample,
                          device=str(device), model=args.model, progress=not args.quiet and not args.json,
                          defines=defines, signed=args.signed, split=args.split)
    if args.json:
        print_json(atlas.to_json())
    else:
        print(format_atlas(atlas))
    if atlas.skipped:
        import sys

        print(f"mikata concepts: {atlas.skipped} sampled images could not be decoded and were left out "
              "(each named above)", file=sys.stderr)
        return 1
    return 0


def format_atlas(atlas) -> str:
    doc = atlas.to_json()
    scope = f"the images of split {atlas.split!r}" if atlas.split is not None else "every image of the run"
    lines = [f"concepts of {doc['layer']}, on {scope} (stored in {atlas.run_dir / 'concepts'})"]
    for cls, entries in doc["classes"].items():
        lines.append(f"\n{cls}  (unexplained by the concepts: {100 * doc['residual'][cls]:.0f}% of the evidence)")
        for e in entries:
            d = e["deletion"]
            flag = "  SUSPECTED SHORTCUT" if e["shortcut"] else ""
            lines.append(f"  {e['concept']:<16} importance {100 * e['importance']:5.1f}%  in {100 * e['presence']:3.0f}% "
                         f"of images  area {100 * e['area']:3.0f}%  deletion: flips {100 * d['flip_rate']:3.0f}%, "
                         f"P drops {d['mean_drop']:+.2f}{flag}")
        strategies = doc["strategies"].get(cls, [])
        if len(strategies) > 1:
            lines.append("  strategies: " + "; ".join(
                f"#{s['strategy']} {s['size']} images, {100 * s['accuracy']:.0f}% accurate"
                + (" (small and tight: Clever-Hans candidate)" if s.get("clever_hans") else "") for s in strategies))
    shortcuts = atlas.shortcuts()
    if shortcuts:
        lines.append("\nsuspected shortcuts (judge them: mikata serve RUN -> Concepts):")
        lines += [f"  {s['evidence']}" for s in shortcuts]
    if doc["slices"]:
        lines.append("\nweakest concept slices:")
        lines += [f"  {s['text']}" for s in doc["slices"][:10]]
    for name, t in doc.get("tcav", {}).items():
        lines.append(f"\nTCAV {name}: " + ", ".join(
            f"{cls} {v['score']:.2f}{'*' if v['significant'] else ''}" for cls, v in t["classes"].items())
            + "  (* significant vs random directions, p < 0.05)")
    return "\n".join(lines)
