"""mikata calibrate RUN_DIR --split val: fit a temperature on a held-out split; every view then applies it."""

from __future__ import annotations

from mikata.cli.common import command_parser, print_json


def register(sub) -> None:
    p = command_parser(sub, "calibrate", "Temperature scaling: fit one temperature T on a held-out split's stored "
                       "probabilities (minimum negative log-likelihood) and store it in the run. From then on audit, "
                       "report, the web app and export show softmax(log p / T), with a note that T is applied; the "
                       "top-1 class of every image stays the same. Prints the ECE before and after on that split.",
                       "mikata calibrate runs/fashion --split val\n  mikata audit runs/fashion --split test\n"
                       "  mikata calibrate runs/fashion --clear")
    p.add_argument("run", metavar="RUN_DIR", help="a run directory made by `mikata scan`")
    p.add_argument("--split", default="val", help="the held-out split to fit on (default val; never the split the "
                                                  "model trained on)")
    p.add_argument("--bins", type=int, default=15, help="equal-mass bins of the ECE printed (default 15)")
    p.add_argument("--clear", action="store_true", help="remove the run's temperature (show the model's own "
                                                        "probabilities again)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from mikata.analysis.temperature import calibrate_run, clear_temperature
    from mikata.errors import MikataError

    if args.bins < 1:
        raise MikataError(f"--bins {args.bins}: give at least 1 bin (15 is usual)")
    if args.clear:
        had = clear_temperature(args.run)
        if args.json:
            print_json({"run": args.run, "cleared": had})
        else:
            print(f"{args.run}: " + ("temperature removed; views show the model's own probabilities" if had
                                     else "no temperature was stored"))
        return 0
    t = calibrate_run(args.run, split=args.split, bins=args.bins)
    if args.json:
        print_json({"run": args.run, **t.to_dict()})
    else:
        print(f"{args.run}: T = {t.value:.3f} fitted on split {t.split!r} ({t.images} images)\n"
              f"  NLL {t.nll_before:.4f} -> {t.nll_after:.4f}   ECE {t.ece_before:.4f} -> {t.ece_after:.4f} "
              f"(on the fitting split; judge it on another: mikata audit {args.run} --split test)\n"
              f"  every view of this run now shows: {t.note()}")
    return 0
