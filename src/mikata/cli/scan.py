"""mikata scan MODEL DATA_DIR --run RUN_DIR: stream a labeled dataset through a model into a run store."""

from __future__ import annotations

import sys

import errno
import sqlite3

from mikata.cli.common import add_model_argument, command_parser, load_model_from_args, print_json
from mikata.errors import MikataError


def register(sub) -> None:
    p = command_parser(sub, "scan", "Run a labeled image folder (or CSV manifest) through a model once and store "
                       "predictions, probabilities, embeddings and channel activations in a resumable run directory.",
                       "mikata scan efficientnet-lite0 pets/ --run runs/pets --split test --split-fractions 0.6,0.2,0.2\n"
                       "  mikata scan model.safetensors photos/ --run runs/big --engine ray --address auto "
                       "--gpus-per-actor 1")
    add_model_argument(p, precision=True)
    p.add_argument("data", metavar="DATA_DIR", help="folder with one subfolder per class, or a path,label CSV")
    p.add_argument("--run", required=True, metavar="RUN_DIR",
                   help="run directory (created; rerun to resume or to add new images)")
    p.add_argument("--split", default=None, metavar="SPLIT",
                   help="train, val, test, held-out (val+test) or all. A checkpoint from `mikata train` scanned "
                        "on its own training folder brings its split: by default only its held-out images "
                        "(val+test) are scanned; `all` scans everything and marks the rows it trained on. "
                        "Other data: scan only this split of --split-fractions (default: every image)")
    p.add_argument("--split-fractions", default=None, metavar="F,F,F",
                   help="per-class split fractions, e.g. 0.6,0.2,0.2 (train,val,test); each row records its split "
                        "(default: the checkpoint's, when it was trained on this data)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the per-class split (default: the checkpoint's when it was trained on this data, else 0)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes (default 2)")
    p.add_argument("--layer", default=None, help="layer whose per-channel mean activation (and Grad-CAM) is stored; "
                   "default: the model's default layer")
    p.add_argument("--gradcam", action="store_true", help="also store the predicted class's Grad-CAM per image")
    p.add_argument("--class-map", default=None, metavar="FOLDER=CLASS,...",
                   help="rename dataset folders to model classes, e.g. kitty=tabby,pup=beagle")
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="scan only slice I of N of the file list, counted from 0: the four shards of 4 are 0/4, 1/4, "
                   "2/4 and 3/4 (so a Slurm array's SLURM_ARRAY_TASK_ID with --array=0-3). One run per shard; "
                   "combine them with `mikata merge RUN SHARD_RUN...`")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local (default: this process and its DataLoader workers) or ray (a pool of Ray actors, each "
                   "decoding and inferring its batches; needs the [ray] extra)")
    p.add_argument("--address", default=None, metavar="auto|ray://HOST:PORT",
                   help="with --engine ray: the cluster to join (default: RAY_ADDRESS, else a local Ray instance "
                   "sized to this machine that stops with the command). An address that does not answer within "
                   "a few seconds is refused before the model loads")
    p.add_argument("--actors", type=int, default=None, help="with --engine ray: model actors (default: from the "
                   "cluster's GPUs with --gpus-per-actor, else one per CPU)")
    p.add_argument("--gpus-per-actor", type=float, default=0, metavar="G",
                   help="with --engine ray: GPUs per actor (0 = infer on CPUs)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=run)


def run(args) -> int:
    from mikata.scanning.scan import parse_class_map, scan
    from mikata.data.filenames import shown

    from mikata.cli.common import check_after_loading
    from mikata.models.precheck import check_at_least

    from mikata.runs.merge import parse_shard

    check_at_least("batch-size", args.batch_size, 1)  # every argument before the model loads
    class_map = parse_class_map(args.class_map)
    parse_shard(args.shard)
    if args.engine == "ray":  # the extra installed and the cluster answering, before the model loads
        from mikata.scanning.ray_scan import cluster_address, import_ray

        import_ray()
        cluster_address(args.address)
    handle = load_model_from_args(args)
    check_after_loading(handle, layer=args.layer)
    try:
        s = scan(handle, args.data, args.run, batch_size=args.batch_size, workers=args.workers, layer=args.layer,
                 gradcam=args.gradcam, split=args.split, fractions=args.split_fractions, seed=args.seed,
                 class_map=class_map, progress=not args.quiet,
                 shard=args.shard, engine=args.engine, address=args.address, actors=args.actors,
                 gpus_per_actor=args.gpus_per_actor)
    except (OSError, sqlite3.OperationalError) as e:
        full = isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT) or "disk is full" in str(e)
        if not full:
            raise
        raise MikataError(f"the disk is full ({e}); {_committed(args.run)} rows are committed in {args.run} and safe: "
                          "free some space and run the same command again, it resumes where it stopped") from e
    if args.json:
        print_json({"run": s.run_dir, "total": s.total, "computed": s.computed, "reused": s.reused,
                    "skipped": [{"path": p, "reason": r} for p, r in s.skipped_files], "seconds": round(s.seconds, 3)})
    else:
        print(f"{s.run_dir}: {s.computed} images scanned, {s.reused} already there, {s.skipped} skipped "
              f"({s.seconds:.1f} s). Next: mikata audit {s.run_dir}")
    for path, reason in s.skipped_files:
        print(f"mikata scan: skipped {shown(path)}: {reason}", file=sys.stderr)
    return 1 if s.skipped_files else 0  # finished, but some files could not be used (they are recorded)


def _committed(run: str) -> int | str:
    from mikata.runs.store import RunStore

    try:
        with RunStore.open(run) as store:
            return store.count()
    except Exception:  # noqa: BLE001 - only for the message
        return "the earlier"
