"""mikata train DATA_DIR --model SPEC --out model.safetensors: fine-tune a classifier on a class folder."""

from __future__ import annotations

import argparse
import contextlib
import sys

from mikata.cli.common import add_deprecated_alias, add_device_arguments, command_parser, device_from_args, print_json


def register(sub) -> None:
    p = command_parser(sub, "train", "Fine-tune a pretrained classifier on a folder of images (one subfolder "
                       "per class); writes a .safetensors checkpoint every command accepts as MODEL. The model sees "
                       "the whole image (no center crop) unless --crop says otherwise.",
                       "mikata train fashion/ --model efficientnet-lite0 --out fashion.safetensors "
                       "--input-size 64 --freeze-until blocks.9 --epochs 6 --augment none")
    p.add_argument("data", metavar="DATA_DIR", help="folder with one subfolder of images per class (or a .csv)")
    p.add_argument("--model", required=True, help="base model spec, e.g. efficientnet-lite0 or torchvision:resnet18")
    p.add_argument("--out", required=True, help="checkpoint to write (.safetensors); the progress plot goes "
                                                "next to it as NAME.training.png")
    add_training_options(p)
    p.add_argument("--resume", action="store_true", help="continue an interrupted run of the same --out")
    fix = p.add_mutually_exclusive_group()
    fix.add_argument("--reviews", metavar="RUN_DIR",
                     help="train with the label review stored in this run (the web app's Label review): 'label "
                          "wrong' with a chosen class trains under that class, wrong without one leaves the image "
                          "out, 'label fine' keeps it; the dataset folder is never changed")
    fix.add_argument("--corrections", metavar="FILE.csv",
                     help="the same from a CSV with the header path,label (path inside DATA_DIR or absolute; an "
                          "empty label leaves the image out); the checkpoint records its sha256")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_device_arguments(p)
    p.set_defaults(func=run)


def add_training_options(p: argparse.ArgumentParser, split: bool = True) -> None:
    """The fine-tuning options ``train`` and ``crossval`` share (``split``: the train,val,test fractions)."""
    p.add_argument("--epochs", type=int, default=10, help="passes over the training split")
    p.add_argument("--batch-size", type=int, default=32, help="images per optimizer step")
    p.add_argument("--lr", type=float, default=0.01, help="learning rate of the pretrained layers (default 0.01)")
    p.add_argument("--head-lr-factor", type=float, default=10.0, help="the new head learns this much faster")
    p.add_argument("--freeze-until", metavar="LAYER",
                   help="freeze every layer before LAYER (see `mikata layers MODEL`); LAYER and later ones train")
    p.add_argument("--augment", default="none", help="e.g. flip,translate=4,scale=0.9-1.1 (default none)")
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"], help="sgd (momentum 0.9) or adam")
    p.add_argument("--weight-decay", type=float, default=0.0, help="L2 penalty on the trained weights")
    p.add_argument("--schedule", default="cosine", choices=["cosine", "constant"],
                   help="learning rate per epoch: cosine decay to 0 (default) or constant")
    if split:
        p.add_argument("--split-fractions", dest="split", default="0.7,0.15,0.15", metavar="FRACTIONS",
                       help="train,val[,test] fractions per class; the checkpoint records them, so `mikata scan` of "
                            "this folder scans only the held-out val and test images unless told otherwise")
        add_deprecated_alias(p, "--split", "--split-fractions", "split")  # deprecated spelling, still accepted
    p.add_argument("--seed", type=int, default=0, help="seed of the split, the new head and the batch order")
    p.add_argument("--crop", type=float, default=1.0, metavar="F",
                   help="fraction of each side the model sees, centered: 1 = the whole image; 0.875 with "
                        "--resize shorter = ImageNet's center crop")
    p.add_argument("--resize", default="stretch", choices=["stretch", "shorter"],
                   help="stretch: each side to the input size (no pixel lost, the aspect changes); shorter: the "
                        "shorter side to it, keeping the aspect (a non-square image loses the ends of its longer side)")
    p.add_argument("--early-stop", type=int, metavar="N", help="stop after N epochs without better val accuracy")
    p.add_argument("--input-size", type=int, metavar="PIXELS", help="train and predict at this size (e.g. 64)")
    p.add_argument("--workers", type=int, default=2, help="threads decoding images")
    p.add_argument("--threads", type=int, help="torch threads (1 is fastest on a busy shared CPU)")


def training_options(args: argparse.Namespace) -> dict:
    """``train``'s keyword options from the parsed ``add_training_options`` (without split and seed)."""
    return dict(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, head_lr_factor=args.head_lr_factor,
                freeze_until=args.freeze_until, augment=args.augment, optimizer=args.optimizer,
                weight_decay=args.weight_decay, schedule=args.schedule, early_stop=args.early_stop,
                input_size=args.input_size, workers=args.workers, threads=args.threads, crop=args.crop,
                resize=args.resize)


@contextlib.contextmanager
def skips_as_log_lines(command: str):
    """The library's "skipped N unreadable file(s)" warnings as one plain ``mikata COMMAND:`` log line each
    (shown unless -q) instead of Python's two-line UserWarning; every skipped file is named at the end."""
    import logging
    import warnings

    log = logging.getLogger("mikata.cli")

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        log.info("mikata %s: %s", command, message)

    with warnings.catch_warnings():
        warnings.simplefilter("default", UserWarning)
        warnings.showwarning = show
        yield


def run(args) -> int:
    import logging

    from mikata.data.datasets import parse_fractions
    from mikata.data.filenames import shown
    from mikata.training import train

    from mikata.errors import interrupt_on_signals

    progress = logging.getLogger().getEffectiveLevel() <= logging.INFO
    corrections = None
    if args.reviews or args.corrections:  # read and checked before any model is loaded
        from mikata.training.corrections import from_csv, from_reviews

        corrections = from_reviews(args.reviews) if args.reviews else from_csv(args.corrections)
    with interrupt_on_signals(), skips_as_log_lines("train"):
        # SIGINT/SIGTERM: the last finished epoch is kept, exit 130/143 with one line
        result = train(args.data, args.model, args.out, resume=args.resume, progress=progress,
                       split=parse_fractions(args.split), seed=args.seed, device=device_from_args(args),
                       corrections=corrections, **training_options(args))
    if args.json:
        print_json(result.to_dict())
    else:
        test = "n/a" if result.test_accuracy is None else f"{result.test_accuracy:.2%}"
        print(f"checkpoint: {result.checkpoint}\nprogress plot: {result.plot}\n"
              f"best epoch {result.best_epoch}/{result.epochs_run}: val accuracy {result.val_accuracy:.2%}, "
              f"test accuracy {test} ({result.seconds:.0f} s)")
        if result.corrections:
            from mikata.training.corrections import describe

            print(describe(result.corrections))
    for path, reason in result.skipped:
        print(f"mikata train: skipped {shown(path)}: {reason}", file=sys.stderr)
    return 1 if result.skipped else 0  # finished, but some files could not be used
