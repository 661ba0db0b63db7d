"""Argument helpers shared by commands."""

from __future__ import annotations

import argparse
import json
import sys


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL",
                        help="efficientnet-lite0 (built in), torchvision:NAME, timm:NAME, a .safetensors "
                             "checkpoint, a TorchScript file, or package.module:factory")
    parser.add_argument("--trust", action="store_true",
                        help="allow unpickling a whole model from a file (runs its code: only your own files)")
    parser.add_argument("--arch", default=None, metavar="package.module:factory",
                        help="the architecture of a .safetensors checkpoint trained from your own factory model "
                             "(a checkpoint never chooses code to run by itself)")


def load_model_from_args(args: argparse.Namespace):
    from mikata.models import load_model

    return load_model(args.model, trust=args.trust, architecture=getattr(args, "arch", None))


def print_json(data: object) -> None:
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")


EXIT_CODES = ("exit status: 0 all good; 1 finished, but some items were skipped or failed (each named on stderr); "
              "2 refused: bad arguments, or a file, model or run mikata would not use (one line says why)")


def command_parser(sub, name: str, help: str, example: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, description=help, epilog=f"example:\n  {example}\n\n{EXIT_CODES}",
                          formatter_class=argparse.RawDescriptionHelpFormatter)
