"""mikata export RUN_DIR --out FILE: every scanned row (predictions, scores, label issues, reviews) as a table."""

from __future__ import annotations

from mikata.cli.common import add_device_arguments, announce_run_preprocessing, command_parser, device_from_args


def register(sub) -> None:
    p = command_parser(sub, "export", "Write every scanned image of a run — label, prediction, probabilities, "
                       "margin, label quality, suspected label errors, reviews — as Parquet, CSV or JSON lines.",
                       "mikata export runs/a --out a.parquet")
    p.add_argument("run", metavar="RUN_DIR", help="a run directory made by `mikata scan`")
    p.add_argument("--out", default=None, metavar="FILE",
                   help="output file (default RUN_DIR/export.FORMAT); the suffix picks the format")
    p.add_argument("--format", default=None, choices=["parquet", "csv", "json"],
                   help="parquet (class names in the schema metadata), csv, or json (one object per line)")
    p.add_argument("--split", default=None, help="only rows of this split (e.g. test)")
    p.add_argument("--maps", default=None, metavar="DIR",
                   help="also write each image's map of its predicted class as DIR/ID_METHOD_CLASS.npy")
    p.add_argument("--map-method", default="gradcam", help="the method for --maps (default gradcam)")
    p.add_argument("--model", default=None, metavar="SPEC",
                   help="the run's model for --maps, when its manifest names one mikata does not load on a file's "
                        "word (a package.module:factory you type); its weights hash is still checked")
    add_device_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from mikata.analysis.export import export_format, export_run
    from mikata.runs.layout import RunLayout

    fmt = args.format or (export_format(args.out) if args.out else "parquet")
    out = args.out or str(RunLayout(args.run).export(fmt))
    if args.maps:
        announce_run_preprocessing(args, args.run)  # the maps redo the scan's preprocessing
    written = export_run(args.run, out, fmt, split=args.split, maps_dir=args.maps, map_method=args.map_method,
                         device=device_from_args(args) if args.maps else "cpu", model=args.model)
    print(written)
    return 0
