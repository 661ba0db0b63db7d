"""mikata crossval DATA --model SPEC --folds K --run RUN: K-fold cross-validated, out-of-sample predictions."""

from __future__ import annotations

import sys

from mikata.cli.common import add_device_arguments, command_parser, device_from_args, print_json
from mikata.cli.train import add_training_options, skips_as_log_lines, training_options


def register(sub) -> None:
    p = command_parser(sub, "crossval", "K-fold cross-validation: fine-tune K models (each on K-1 folds of the data, "
                       "same options), scan each held-out fold with the model that never saw it, and write ONE run "
                       "whose every row has an out-of-sample prediction, so `mikata audit RUN` searches label issues "
                       "over the whole dataset. Resumable: rerun the same command after an interruption.",
                       "mikata crossval digits/ --model efficientnet-lite0 --folds 5 --run runs/digits-cv "
                       "--input-size 32 --freeze-until blocks.11 --epochs 3\n  mikata audit runs/digits-cv")
    p.add_argument("data", metavar="DATA_DIR", help="folder with one subfolder of images per class (or a .csv)")
    p.add_argument("--model", required=True, help="base model spec, e.g. efficientnet-lite0 or torchvision:resnet18")
    p.add_argument("--run", required=True, metavar="RUN_DIR", help="the combined run to write (rows: split fold1..foldK)")
    p.add_argument("--folds", type=int, default=5, metavar="K", help="number of folds (models to train)")
    p.add_argument("--work", default=None, metavar="DIR",
                   help="where the fold models and fold runs go (default: RUN_DIR.folds next to the run)")
    p.add_argument("--val-fraction", type=float, default=0.15, metavar="F",
                   help="fraction of each model's training folds that picks its kept epoch")
    add_training_options(p, split=False)
    p.add_argument("--scan-workers", type=int, default=2, help="DataLoader worker processes of the fold scans")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_device_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import logging

    from mikata.scanning.crossval import crossval
    from mikata.data.filenames import shown

    from mikata.errors import interrupt_on_signals

    progress = logging.getLogger().getEffectiveLevel() <= logging.INFO
    # SIGINT/SIGTERM: finished folds and epochs are kept, exit 130/143 with one line
    with interrupt_on_signals(), skips_as_log_lines("crossval"):
        s = crossval(args.data, args.model, args.run, folds=args.folds, work_dir=args.work, seed=args.seed,
                     val_fraction=args.val_fraction, progress=progress, device=device_from_args(args),
                     scan_batch_size=args.batch_size * 2, scan_workers=args.scan_workers, **training_options(args))
    if args.json:
        print_json(s.to_dict())
    else:
        folds = ", ".join(f"{a:.1%}" for a in s.fold_accuracy)
        print(f"{s.run_dir}: {s.rows} images, each predicted by the model that did not train on it: "
              f"accuracy {s.accuracy:.2%} (folds: {folds}); {len(s.trained)} fold(s) trained now, {len(s.reused)} "
              f"reused ({s.seconds:.0f} s). Next: mikata audit {s.run_dir}")
    for path, reason in s.skipped_files:
        print(f"mikata crossval: skipped {shown(path)}: {reason}", file=sys.stderr)
    return 1 if s.skipped_files else 0
