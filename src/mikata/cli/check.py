"""mikata check RUN_DIR: verify a run's integrity (manifest, database, vectors, rows, image files)."""

from __future__ import annotations

from mikata.cli.common import command_parser, print_json


def register(sub) -> None:
    p = command_parser(sub, "check", "Verify that a run directory is intact: the manifest's fields, SQLite's own check, "
                       "each vector file against the committed count, every row's vector row, class ids against the "
                       "classes, and the image files (size and time; --hashes: sha1). Lists every problem with what "
                       "to do.", "mikata check runs/fashion --hashes")
    p.add_argument("run", metavar="RUN_DIR", help="a run directory made by `mikata scan`")
    p.add_argument("--hashes", action="store_true", help="also re-hash every image file (reads them all)")
    p.add_argument("--json", action="store_true", help="print the findings as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from mikata.runs.integrity import check_run

    report = check_run(args.run, hashes=args.hashes)
    if args.json:
        print_json(report.to_dict())
    else:
        print(report.format())
    return 0 if report.ok else 1
