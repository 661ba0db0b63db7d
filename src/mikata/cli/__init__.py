"""The ``mikata`` command. Each command lives in its own module with ``register`` and ``run``.

Modules import heavy libraries inside ``run`` only, so ``mikata --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sqlite3
import sys

from mikata import __version__

COMMANDS = ["demo", "predict", "layers", "explain", "visualize", "activations", "filters", "samples", "train", "crossval", "scan", "audit", "calibrate",
            "report", "serve", "evaluate", "export", "units", "concepts", "check", "merge", "compare"]
DISK_ERRNOS = {28, 122, 30}  # ENOSPC, EDQUOT, EROFS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mikata",
        description="See what a CNN image classifier has learned and why it gets images wrong.",
        epilog="Run `mikata COMMAND --help` for each command's options and an example.",
    )
    parser.add_argument("--version", action="version", version=f"mikata {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"mikata.cli.{name.replace('-', '_')}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from mikata.errors import MikataError

    args = build_parser().parse_args(argv)
    _printable_stdout()
    before = list(logging.getLogger().handlers)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    for handler in logging.getLogger().handlers:
        if handler not in before:  # ours, not a host's (pytest, a notebook)
            handler.setFormatter(_TerminalFormatter("%(message)s"))
    from mikata.progress import set_quiet

    set_quiet(args.quiet)  # every bar, progress line and estimate respects --quiet
    try:
        return int(args.func(args) or 0)
    except MikataError as e:
        from mikata.data.filenames import escape_controls

        # one line, whatever file name it quotes (a name's escape sequences are shown, not obeyed)
        print(f"mikata {args.command}: error: {escape_controls(str(e))}", file=sys.stderr)
        return 2
    except sqlite3.DatabaseError as e:  # a run's database damaged in a way the first checks did not see
        run = getattr(args, "run", None) or "RUN_DIR"
        print(f"mikata {args.command}: error: the run's database cannot be read ({e}); `mikata check {run}` "
              "lists the problems; scan again into a new --run directory", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno not in DISK_ERRNOS:
            raise
        print(f"mikata {args.command}: error: {e.strerror} ({e.filename or 'while writing'}); free space or use a "
              "writable place, then run the same command again", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        from mikata.errors import Interrupted

        if isinstance(e, Interrupted):  # SIGINT or SIGTERM under interrupt_on_signals: 128 + the signal number
            said = str(e) or "nothing was saved yet; run the same command again"
            print(f"mikata {args.command}: interrupted by {e.signal_name}: {said}", file=sys.stderr)
            return e.exit_code
        print(f"mikata {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        set_quiet(False)  # --quiet is this call's: a host process (a notebook, a test) calling main again is not quiet


class _TerminalFormatter(logging.Formatter):
    """Log lines with control characters escaped (a file name in a message cannot drive the terminal);
    line breaks of multi-line messages stay."""

    def format(self, record: logging.LogRecord) -> str:
        from mikata.data.filenames import escape_controls

        return escape_controls(super().format(record), keep="\n")


def _printable_stdout() -> None:
    """A file name that is not valid UTF-8 must never crash a print: escape what stdout cannot encode."""
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


if __name__ == "__main__":
    sys.exit(main())
