"""mikata audit RUN_DIR: accuracy, confusion, confused pairs, best/worst images, suspected label errors."""

from __future__ import annotations

from mikata.cli.common import command_parser, print_json


def register(sub) -> None:
    p = command_parser(sub, "audit", "Summarize a scanned run: accuracy, confusion, mutually confused classes, "
                       "per-class most/least class-like images and ranked suspected label errors.",
                       "mikata audit runs/pets --groups groups.json")
    p.add_argument("run", metavar="RUN_DIR", help="a run directory made by `mikata scan`")
    p.add_argument("--split", default=None, help="only rows of this split (e.g. test)")
    p.add_argument("--groups", default=None, metavar="FILE",
                   help='class -> group mapping for errors across groups: JSON {"cat": ["siamese", ...]} '
                        "or class,group lines")
    p.add_argument("--top", type=int, default=3, help="images per class in each list (default 3)")
    p.add_argument("--issues", type=int, default=20, help="how many suspected label errors to list (default 20)")
    p.add_argument("--json", action="store_true", help="print everything as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from mikata.analysis.audit import audit, load_groups

    groups = load_groups(args.groups) if args.groups else None
    r = audit(args.run, groups=groups, n=args.top, top_issues=args.issues, split=args.split)
    if args.json:
        print_json(r)
        return 0
    print(f"run {r['run']}: {r['images']} images, {len(r['skipped'])} skipped")
    print(f"accuracy {r['accuracy']:.2%}   top-5 {r['top5_accuracy']:.2%}   "
          f"class imbalance {r['imbalance']:.2f}x (largest / smallest class)")
    print("\nper class                     images  precision  recall     F1")
    for c in sorted(r["per_class"], key=lambda c: c["recall"]):
        print(f"  {c['class'][:28]:28s} {c['images']:6d}  {c['precision']:9.2%}  {c['recall']:6.2%}  {c['f1']:5.2f}")
    print("\nmost confused pairs (a as b / b as a)")
    for p in r["confused_pairs"]:
        print(f"  {p['a']} <-> {p['b']}: {p['a_as_b']} / {p['b_as_a']}")
    if "exceptional_errors" in r:
        ex = r["exceptional_errors"]
        print(f"\nerrors across groups: {ex['count']}  " + ", ".join(f"{k}: {v}" for k, v in ex["pairs"].items()))
        for im in ex["images"][:10]:
            print(f"  {im['path']}  {im['label']} -> {im['predicted']} ({im['prob']:.2f})")
    print("\nper class: most / least class-like images (P of the class)")
    for c in r["per_class"]:
        print(f"  {c['class']}")
        print("    most:  " + "  ".join(f"{i['path']} ({i['prob']:.2f})" for i in c["most_class_like"]))
        print("    least: " + "  ".join(f"{i['path']} ({i['prob']:.2f}, predicted {i['predicted']})"
                                        for i in c["least_class_like"]))
    print("\nsuspected label errors (confident learning; needs out-of-sample probabilities)")
    for i in r["label_issues"]:
        print(f"  {i['path']}  labeled {i['label']} ({i['label_prob']:.2f}) -> suggest {i['suggested']} "
              f"({i['suggested_prob']:.2f})")
    for s in r["skipped"]:
        print(f"skipped {s['path']}: {s['reason']}")
    return 0
