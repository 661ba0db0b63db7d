"""mikata merge RUN SHARD_RUN...: combine the runs of a sharded scan (``--shard i/N``) into one run."""

from __future__ import annotations

from mikata.cli.common import command_parser, print_json


def register(sub) -> None:
    p = command_parser(sub, "merge", "Copy the rows and vectors of shard runs (from `mikata scan --shard I/N`) into "
                       "one run, exactly once per file (by path and hash): rerun it after an interruption.",
                       "mikata merge runs/all runs/part0 runs/part1 runs/part2 runs/part3")
    p.add_argument("run", metavar="RUN_DIR", help="the merged run (created when absent)")
    p.add_argument("shards", metavar="SHARD_RUN", nargs="+", help="shard runs, in shard order")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=run)


def run(args) -> int:
    from mikata.runs.merge import merge_runs

    s = merge_runs(args.run, args.shards)
    if args.json:
        print_json({"run": s.run_dir, "shards": s.shards, "added": s.added, "already": s.already, "rows": s.rows,
                    "bytes": s.bytes, "seconds": round(s.seconds, 3)})
    else:
        print(f"{s.run_dir}: {s.added} rows added from {s.shards} shards, {s.already} already there; "
              f"{s.rows} rows ({s.seconds:.1f} s). Next: mikata audit {s.run_dir}")
    return 0
