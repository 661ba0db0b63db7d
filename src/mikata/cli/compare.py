"""mikata compare RUN_A RUN_B: model B against model A over the images both runs scanned."""

from __future__ import annotations

from mikata.cli.common import add_device_arguments, command_parser, device_from_args, print_json


def register(sub) -> None:
    p = command_parser(sub, "compare", "Compare two runs over their shared images (matched by path and file hash): "
                       "accuracy, per-class recall and precision, per-field-value accuracy and two-class AUROC/AP as "
                       "A, B and B - A with seeded paired-bootstrap 95-percent intervals and McNemar's exact test; the "
                       "fixed and broken images, most confident first; dataset-issue counts side by side.",
                       "mikata compare runs/before runs/after --split test --out compare.html")
    p.add_argument("run_a", metavar="RUN_A", help="the run of the first model (the baseline)")
    p.add_argument("run_b", metavar="RUN_B", help="the run of the second model")
    p.add_argument("--split", default=None, help="only rows of this split in both runs (e.g. test)")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON (keys listed in the README)")
    p.add_argument("--out", default=None, metavar="FILE", help="also write a self-contained HTML page")
    p.add_argument("--flipped", type=int, default=10, metavar="N",
                   help="fixed and broken images listed (printed, in the JSON and on the page: 24 there at least)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling")
    p.add_argument("--replicates", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--positive", default=None, metavar="CLASS",
                   help="the class whose AUROC and average precision are compared (default on two-class runs: "
                        "the minority class)")
    p.add_argument("--no-issues", action="store_true",
                   help="leave out the dataset-issue counts (they need each run's issue search: slow on big runs)")
    p.add_argument("--maps", action="store_true",
                   help="on the --out page, each model's Grad-CAM of its prediction beside each flipped image "
                        "(loads both runs' models; computed on --device)")
    p.add_argument("--model-a", default=None, metavar="SPEC", help="run A's model when its recorded one is not found")
    p.add_argument("--model-b", default=None, metavar="SPEC", help="run B's model when its recorded one is not found")
    add_device_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from mikata.analysis.compare import compare, format_comparison
    from mikata.models.precheck import check_at_least

    check_at_least("flipped", args.flipped, 0)
    c = compare(args.run_a, args.run_b, split=args.split, seed=args.seed, replicates=args.replicates,
                positive=args.positive)
    issues = not args.no_issues
    page = None
    if args.out:
        from mikata.report.compare import write_comparison_report

        device = device_from_args(args) if args.maps else None
        page = write_comparison_report(c, args.out, flipped=max(24, args.flipped), maps=args.maps, device=device,
                                       model_a=args.model_a, model_b=args.model_b)
    if args.json:
        data = c.to_dict(flipped=args.flipped, issues=issues)
        if page is not None:
            data["report"] = page.summary()
        print_json(data)
    else:
        print("\n".join(format_comparison(c, flipped=args.flipped, issues=issues)))
        if page is not None:
            print(f"\nwrote {page.path} ({page.bytes / 1e6:.1f} MB, {page.flipped} flipped images, {page.maps} maps); "
                  "open it in a browser (works offline)")
    return 1 if page is not None and args.maps and any("maps left out" in n for n in page.notes) else 0
