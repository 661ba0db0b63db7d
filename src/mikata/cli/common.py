"""Argument helpers shared by commands."""

from __future__ import annotations

import argparse
import json
import logging
import sys

log = logging.getLogger("mikata.cli")


def add_model_argument(parser: argparse.ArgumentParser, precision: bool = False) -> None:
    parser.add_argument("model", metavar="MODEL",
                        help="efficientnet-lite0 (built in), torchvision:NAME, timm:NAME, a .safetensors "
                             "checkpoint, a TorchScript file, or package.module:factory")
    parser.add_argument("--trust", action="store_true",
                        help="allow unpickling a whole model from a file (runs its code: only your own files)")
    parser.add_argument("--arch", default=None, metavar="package.module:factory",
                        help="the architecture of a .safetensors checkpoint trained from your own factory model "
                             "(a checkpoint never chooses code to run by itself)")
    add_device_arguments(parser, precision)


def add_device_arguments(parser: argparse.ArgumentParser, precision: bool = False) -> None:
    """``--device`` for every command that computes; ``--precision`` for forward-only ones."""
    parser.add_argument("--device", default=None, metavar="DEVICE",
                        help="auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:N or mps "
                             "(default: $MIKATA_DEVICE, else auto)")
    if precision:
        parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                            help="forward-only work: auto = bf16 autocast on a CUDA GPU that supports it, "
                                 "fp32 on a CPU (default auto); gradients stay fp32")


def device_from_args(args: argparse.Namespace, announce: bool = True):
    """The command's one device, resolved (a clear error when unavailable); ``announce`` logs it once
    on stderr (not with ``--json``, whose runs keep stderr for per-item errors only)."""
    from mikata.devices import describe, resolve_device

    device = getattr(args, "_resolved_device", None)
    if device is None:
        device = resolve_device(getattr(args, "device", None))
        args._resolved_device = device
    if announce and not getattr(args, "_announced_device", False) and not getattr(args, "json", False):
        args._announced_device = True
        log.info("device: %s", describe(device))
    return device


def load_model_from_args(args: argparse.Namespace):
    """The command's model on its device; the device is checked first and announced once the model
    has loaded (so a failure stays one line)."""
    from mikata.models import load_model

    handle = load_model(args.model, trust=args.trust, architecture=getattr(args, "arch", None),
                        device=device_from_args(args, announce=False), precision=getattr(args, "precision", "auto"))
    device_from_args(args)
    announce_preprocessing(args, handle.preprocessing)
    return handle


def check_before_loading(args: argparse.Namespace, classes=None) -> None:
    """Class names or ids the user typed (``topK`` entries pass), checked before the model is built
    where its names can be read without building it: a checkpoint's metadata, the built-in models."""
    from mikata.models.precheck import check_class_targets, class_names_before_loading

    check_class_targets(class_names_before_loading(args.model), classes)


def check_after_loading(handle, classes=None, layer: str | None = None) -> None:
    """The same class check for models whose names only a built model knows, and ``layer``: right
    after loading, before any image is decoded."""
    from mikata.models.precheck import check_class_targets, check_layer

    check_class_targets(handle.class_names, classes)
    check_layer(handle.net, layer)


def announce_preprocessing(args: argparse.Namespace, pre) -> None:
    """One stderr line, once per command, saying what part of each image the model sees (crop or whole
    image, resize, input size): a center crop hides the image's border, and users must be able to tell."""
    from mikata.progress import notice

    if getattr(args, "_announced_preprocessing", False):
        return
    args._announced_preprocessing = True
    # the library functions the command calls (scan, explain) announce the same object's preprocessing
    # for Python users; through ``once`` it is said one time only, and never under --json
    notice("preprocessing: %s", pre.describe(), logger=log, once=pre, show=not getattr(args, "json", False))


def announce_run_preprocessing(args: argparse.Namespace, run_dir: str) -> None:
    """``announce_preprocessing`` for the preprocessing a run was scanned with (its manifest), for the
    commands that redo it (maps in a report, the web app). Says nothing when the manifest cannot be
    read: the command itself then reports the run's problem."""
    from mikata.runs.layout import RunLayout
    from mikata.data.preprocessing import Preprocessing

    try:  # never through a link or a FIFO named manifest.json (the command refuses it itself)
        layout = RunLayout(run_dir)
        identity = json.loads(layout.read_text(layout.manifest))["identity"]
        pre = Preprocessing.from_identity(identity)
    except Exception:  # noqa: BLE001 - only a log line; the command reports a damaged run itself
        return
    announce_preprocessing(args, pre)


def print_json(data: object) -> None:
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")


EXIT_CODES = ("exit status: 0 all good; 1 finished, but some items were skipped or failed (each named on stderr); "
              "2 refused: bad arguments, or a file, model or run mikata would not use (one line says why)")


class _DeprecatedAlias(argparse.Action):
    """An old spelling of an option: it still works, and says once which spelling to use."""

    def __init__(self, option_strings, dest, new: str = "", **kwargs):
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        log.warning("%s is deprecated; use %s (the same values)", option_string, self.new)
        setattr(namespace, self.dest, values)


def add_deprecated_alias(parser: argparse.ArgumentParser, old: str, new: str, dest: str) -> None:
    """``old`` keeps setting ``dest`` as ``new`` does, hidden from --help, with a warning when used."""
    parser.add_argument(old, dest=dest, action=_DeprecatedAlias, new=new, default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)


class LazyHelp(str):
    """A help text finished only when help is printed: it lists a registry (issue types, checks) whose
    modules are too costly to import on every start of the command line. ``str(self)`` is the text
    without the listing."""

    def __new__(cls, text: str, render):
        obj = super().__new__(cls, text)
        obj._render = render
        return obj

    def render(self) -> str:
        return self._render()


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description and example as written and adds "(default: X)" to every option whose
    default means something (not None, False or an empty text) and whose help does not already say it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help.render() if isinstance(action.help, LazyHelp) else (action.help or "")
        default = action.default
        if ("default" in text.lower() or default is None or default is False or default == "" or
                default is argparse.SUPPRESS or isinstance(action, (argparse._HelpAction, argparse._VersionAction))):
            return text
        if action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            text += " (default: %(default)s)"
        return text


def command_parser(sub, name: str, help: str, example: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, description=help, epilog=f"example:\n  {example}\n\n{EXIT_CODES}",
                          formatter_class=HelpFormatter)


def add_baseline_arguments(p, extra: str = "") -> None:
    """``--baseline`` and ``--baselines``: what IG and DeepLIFT start from and occlusion fills with."""
    p.add_argument("--baseline", default=None, metavar="NAME|FILE",
                   help="what integrated-gradients and deeplift start from and occlusion fills with: auto (default: "
                        "each image's mean colour, so dark and bright regions both show), black, white, mean, zero "
                        "(the normalization's mean colour), blur, uniform-noise, an image or .npy file (pixels in "
                        "[0, 1]), several with commas, or expected (all five named ones, averaged)" + extra)
    p.add_argument("--baselines", type=int, default=1, metavar="N",
                   help="draws of each random baseline (uniform-noise, expected) to average over (default 1)")
