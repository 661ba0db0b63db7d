"""Run ``mikata ...`` inside the test process, as a fresh ``python -m mikata`` would, without its start-up cost.

A subprocess pays ~3 s of CPU importing torch and the rest before the command runs. Where a test
checks a command's exit code, stdout and stderr (and not the process itself: signals, imports, the
environment), ``run_cli`` gives the same three: the root logger is emptied for the call so that
``main``'s own ``logging.basicConfig`` installs its stderr handler as in a new process (pytest's
capture handlers are put back afterwards), ``--quiet``'s global switch is reset, and ``SystemExit``
(argparse's usage errors) becomes the exit code. Python warnings are written to stderr as a new process
would show them (its default filters hide the deprecation, import and resource warnings), so a test of
"one line on stderr" still sees them. An uncaught exception propagates: the test fails with the
traceback where a process would have printed it and exited 1.

Keep one real subprocess per command where the process is what is tested (``python -m mikata``
exits with the code ``main`` returns: see ``mikata/__main__.py``).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

# the categories Python's default warning filters ignore outside ``__main__``
HIDDEN = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_cli(capsys, *args: str) -> CliResult:
    """``mikata ARGS`` in this process; ``capsys`` is the test's fixture (what was printed before is dropped)."""
    from mikata.cli import main
    from mikata.progress import set_quiet

    capsys.readouterr()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    root.handlers[:] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            try:
                code = main(list(args))
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        for handler in root.handlers:  # the stderr handler main installed for this call
            handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
        set_quiet(False)
    out = capsys.readouterr()
    shown = "".join(warnings.formatwarning(w.message, w.category, w.filename, w.lineno, w.line)
                    for w in caught if not issubclass(w.category, HIDDEN))
    return CliResult(int(code), out.out, out.err + shown)
