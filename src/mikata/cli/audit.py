"""mikata audit RUN_DIR: accuracy, confusion, confused pairs, best/worst images, suspected label errors."""

from __future__ import annotations

from mikata.cli.common import LazyHelp, command_parser, print_json


def register(sub) -> None:
    p = command_parser(sub, "audit", "Summarize a scanned run: accuracy, confusion, mutually confused classes, "
                       "per-class most/least class-like images, ranked suspected label errors, and dataset issues (outliers, "
                       "duplicates and leaks across splits, dark/light/blurry/low-information/odd-size images, class "
                       "imbalance, groups where the model is much worse).",
                       "mikata audit runs/pets --groups groups.json\n"
                       "  mikata audit runs/inspection --positive defective --threshold 0.3\n"
                       "  mikata audit runs/cells --group-by cell_type")
    p.add_argument("run", metavar="RUN_DIR", help="a run directory made by `mikata scan`")
    p.add_argument("--split", default=None, help="only rows of this split (e.g. test)")
    p.add_argument("--groups", default=None, metavar="FILE",
                   help='class -> group mapping for errors across groups: JSON {"cat": ["siamese", ...]} '
                        "or class,group lines")
    p.add_argument("--group-by", default=None, metavar="COLUMN[,COLUMN]",
                   help="per value of these manifest columns (a CSV manifest path,label,COLUMN... scanned with "
                        "`mikata scan MODEL data.csv`): images, errors, accuracy and recall per class, worst first")
    p.add_argument("--top", type=int, default=3, help="images per class in each list (default 3)")
    p.add_argument("--issues", type=int, default=20, help="how many suspected label errors to list (default 20)")
    p.add_argument("--thresholds", default=None, metavar="TYPE=V,...",
                   help=LazyHelp("dataset-issue thresholds, e.g. outlier=0.2,dark=0.3", _threshold_help))
    p.add_argument("--no-dataset-issues", action="store_true",
                   help="skip outliers, duplicates, image quality and weak groups (faster on huge runs)")
    p.add_argument("--positive", default=None, metavar="CLASS",
                   help="the class whose precision-recall and ROC curves are reported (default on a two-class run: "
                        "the minority class; on more classes: its one-vs-rest curves)")
    p.add_argument("--threshold", type=float, default=None, metavar="T",
                   help="operating threshold: call an image positive when P(positive) >= T, and print the "
                        "confusion counts, precision and recall there (default 0.5; the best-F1 threshold is "
                        "printed beside it)")
    p.add_argument("--json", action="store_true", help="print everything as JSON")
    p.set_defaults(func=run)


def _threshold_help() -> str:
    """The --thresholds help, from the issue-type registry (types registered by plugins included)."""
    from mikata.analysis.issue_registry import issue_type_specs
    from mikata.analysis.issues import score_issues  # noqa: F401 - registers the built-in types

    types = ", ".join(s.name if s.default_threshold is None else f"{s.name} {s.default_threshold:g}"
                      for s in issue_type_specs())
    return ("dataset-issue thresholds, e.g. outlier=0.2,dark=0.3 (types and default thresholds: " + types +
            "; scores are in [0, 1], lower is worse; label flags by confident learning unless given one)")


def run(args) -> int:
    from mikata.analysis.audit import load_groups
    from mikata.analysis.issues import parse_thresholds
    from mikata.analysis.audit_summary import audit, format_audit

    thresholds = parse_thresholds(args.thresholds)  # before any work: a typo fails at once
    groups = load_groups(args.groups) if args.groups else None
    group_by = [c.strip() for c in (args.group_by or "").split(",") if c.strip()]
    r = audit(args.run, groups=groups, n=args.top, top_issues=args.issues, split=args.split,
              dataset_issues=not args.no_dataset_issues, thresholds=thresholds, positive=args.positive,
              threshold=args.threshold, group_by=group_by)
    if args.json:
        print_json(r)
    else:
        print(format_audit(r))
    return 0
