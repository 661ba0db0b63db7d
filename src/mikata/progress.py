"""One progress helper for every long step: a bar on a terminal, plain log lines elsewhere.

Why one helper: a 12-minute step with no output looks hung, a bar that does not say what it counts
does not help, and tqdm's nested bars written into a log file (stderr not a terminal) leave ``\\r``
and cursor-movement escape codes in it. So every long step goes through :func:`progress`:

- stderr is a terminal: a tqdm bar named after what it does
  (``evaluate: integrated-gradients deletion curve``); nested bars vanish when done.
- a Jupyter kernel: one updating line per long call (:func:`one_line`) or top-level step, never more (Jupyter drops the cursor-up
  codes of nested terminal bars, so each of their redraws would be a new line). It is tqdm's widget
  when ipywidgets is installed, else a single text line that rewrites itself in place (an IPython
  display update, so no ``TqdmWarning: IProgress not found``). A nested step does not draw a line of
  its own: the top-level line shows it (``train: 357 images 1/3 epoch · epoch 2/3 5/12 batch``), and its
  estimate is the line's time left.
- stderr is not a terminal (a log file, CI, a pipe): plain lines, no ``\\r``, no escape codes, at
  most one line per 10% of the work and never more often than every ``MIN_GAP_S`` seconds (plus
  one every ``QUIET_S`` seconds while nothing crossed 10%), and a last line with the time it took.
  Short nested steps print nothing; their parent's lines say where the job is.
- the CLI's ``--quiet`` (:func:`set_quiet`) or ``MIKATA_PROGRESS=off``: nothing at all.
  ``MIKATA_PROGRESS=bar`` / ``lines`` forces one style.
- ``enabled=None`` (the Python API's default for long calls such as ``visualize`` and ``evaluate``):
  a bar where one shows (a terminal, a notebook), nothing in a log file.

One-line notices about what a call chose for the user (the held-out split of a checkpoint's own
folder, the CAM layer, the preprocessing) go through :func:`notice`: a log record that the CLI prints,
and, in Python where logging shows nothing (a notebook), the same one line on stderr.

An estimate up front: once the first item (or batch) of a top-level step is done, one line says how
much work there is and how long it will take at the measured rate, e.g.
``scan: 2,600 img; about 3.2 min at 13.5 img/s (measured on the first batch)``.

Example:
    >>> for path in progress(["a.png", "b.png"], desc="explain", unit="image", enabled=False):
    ...     pass
    >>> format_seconds(754)
    '13 min'
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import weakref
from typing import Callable, Iterable, Iterator, TextIO, TypeVar

T = TypeVar("T")

ENV = "MIKATA_PROGRESS"
MODES = ("auto", "bar", "lines", "off")
STEP_FRACTION = 0.10  # a plain line per 10% of the work ...
MIN_GAP_S = 2.0  # ... but never two within this many seconds ...
QUIET_S = 60.0  # ... and one at least this often while the work goes on
BAR_WIDTH = 20  # characters of a notebook line's text bar
NOTEBOOK_GAP_S = 0.25  # a notebook line is redrawn at most this often (each redraw is a kernel message)
NESTED_DONE_S = 10.0  # a nested step says "done" only when it took this long
ESTIMATE_MIN_S = 5.0  # the estimate line only for steps expected to take longer than this

_quiet = False
_active: list["Progress"] = []  # open bars, outermost first (nesting depth)
# a one_line call in progress, and the notebook line (or tqdm widget) its steps share
_call: dict = {"depth": 0, "line": None, "bar": None}
F = TypeVar("F", bound=Callable)


def set_quiet(quiet: bool) -> None:
    """The CLI's ``--quiet``: no bars, no progress lines, no estimates anywhere."""
    global _quiet
    _quiet = bool(quiet)


def output_mode(stream: TextIO | None = None) -> str:
    """``bar``, ``lines`` or ``off`` for ``stream`` (default stderr): what progress will look like."""
    if _quiet:
        return "off"
    forced = (os.environ.get(ENV) or "auto").strip().lower()
    if forced in ("bar", "lines", "off"):
        return forced
    stream = stream if stream is not None else sys.stderr
    if stream is None:
        return "off"
    try:
        tty = bool(stream.isatty())
    except (AttributeError, ValueError):
        tty = False
    if tty and os.environ.get("TERM", "") != "dumb":
        return "bar"
    if _in_notebook(stream):
        return "bar"
    return "lines"


def _in_notebook(stream: TextIO) -> bool:
    """Jupyter's stderr is not a terminal but can show one updating line (see the module docstring)."""
    return "ipykernel" in sys.modules and type(stream).__module__.startswith("ipykernel")


def _has_widgets() -> bool:
    """Whether tqdm's notebook widget can draw (ipywidgets importable); without it tqdm warns and falls back."""
    import importlib.util

    return importlib.util.find_spec("ipywidgets") is not None


def one_line(fn: F) -> F:
    """Decorator for a long public call (``train``, ``scan``, ``visualize``, ...): in a notebook, the
    steps it runs one after another (decode, cache, epochs) share one line instead of one each."""
    import functools

    @functools.wraps(fn)
    def call(*args, **kwargs):
        _call["depth"] += 1
        try:
            return fn(*args, **kwargs)
        finally:
            _call["depth"] -= 1
            if _call["depth"] == 0:
                if _call["bar"] is not None:
                    _call["bar"].close()
                _call["line"] = _call["bar"] = None

    return call  # type: ignore[return-value]


@contextlib.contextmanager
def quiet_tqdm_import() -> Iterator[None]:
    """Import a library that imports ``tqdm.auto`` at import time (cleanlab) without tqdm's
    ``TqdmWarning: IProgress not found`` in a notebook that has no ipywidgets (mikata never draws
    tqdm's notebook bar there, see ``Progress``)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        yield


# (message, id(once)) of the notices said; an entry goes when its object is collected (so its id is never
# mistaken for a new object's), or holds the object when it cannot be weakly referenced
_announced: dict[tuple[str, int], object] = {}


def notice(message: str, *args: object, logger: logging.Logger | str = "mikata", once: object = None,
           show: bool = True) -> None:
    """A one-line notice about what a call chose for the user (``"scanning the held-out split ..."``).

    Always a log record (INFO, ``%``-style ``args``) on ``logger``: the CLI's log handler prints it, and
    an application that configured logging gets it there. Where nothing would show it (Python with
    no logging handler at all, e.g. a notebook), the same line goes to stderr, so the Python API
    never says less than the command line. Nothing under ``--quiet`` / ``MIKATA_PROGRESS=off``.

    ``once``: an object the notice is about (a model's ``Preprocessing``): a second notice with the same
    text about the same object says nothing, so a command and the library function it calls never
    both print it. ``show=False`` only records it as said (the CLI's ``--json``).
    """
    text = message % args if args else message
    if once is not None:
        key = (text, id(once))
        if key in _announced:
            return
        try:
            weakref.finalize(once, _announced.pop, key, None)
            _announced[key] = None
        except TypeError:  # not weakly referable: kept alive instead
            _announced[key] = once
    if not show:
        return
    log = logging.getLogger(logger) if isinstance(logger, str) else logger
    log.info(message, *args)
    if log.hasHandlers() or _quiet or (os.environ.get(ENV) or "").strip().lower() == "off":
        return
    stream = sys.stderr
    if stream is not None:
        stream.write(f"mikata: {text}\n")
        stream.flush()


def format_seconds(s: float) -> str:
    """``754`` -> ``'13 min'``; ``42.4`` -> ``'42 s'``; ``0.31`` -> ``'0.3 s'``; ``7300`` -> ``'2.0 h'``."""
    if s < 10:
        return f"{s:.1f} s"
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        m = s / 60
        return f"{m:.1f} min" if m < 10 else f"{m:.0f} min"
    return f"{s / 3600:.1f} h"


def format_rate(seconds_per_unit: float, unit: str) -> str:
    """``1.4 s/map`` for slow work, ``35 img/s`` for fast work."""
    if seconds_per_unit <= 0:
        return f"- {unit}/s"
    if seconds_per_unit >= 1:
        return f"{format_seconds(seconds_per_unit)}/{unit}"
    per_s = 1 / seconds_per_unit
    return f"{per_s:.1f} {unit}/s" if per_s < 100 else f"{per_s:,.0f} {unit}/s"


def note(message: str, file: TextIO | None = None) -> None:
    """One line for the user about a long job (an estimate, what a resume skipped) that never
    garbles an open bar; nothing under ``--quiet``."""
    stream = file if file is not None else sys.stderr
    mode = output_mode(stream)
    if mode == "off" or stream is None:
        return
    if mode == "bar" and any(p._bar is not None and p._line is None for p in _active):
        from tqdm import tqdm

        tqdm.write(message, file=stream)
    else:
        stream.write(message + "\n")
        stream.flush()


class Progress:
    """A bar or plain lines for ``total`` units of work named ``desc``; see the module docstring.

    ``enabled``: True, False, or None (a bar where one shows, nothing in a log file).
    ``plan`` replaces ``"{total} {unit}"`` in the estimate line (``"8 images x 6 methods"``);
    ``estimate`` (default: top-level bars only) prints it once the first unit is done.
    ``clock`` replaces ``time.monotonic`` (tests).
    """

    def __init__(self, total: int | None = None, desc: str = "", unit: str = "item", enabled: bool | None = True,
                 plan: str | None = None, estimate: bool | None = None, file: TextIO | None = None,
                 first: str = "first", clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.desc, self.unit, self.plan, self.first = total, desc, unit, plan, first
        self.n = 0
        self._file = file if file is not None else sys.stderr
        self._clock = clock
        self._mode = output_mode(self._file) if enabled or enabled is None else "off"
        if enabled is None and self._mode != "bar":
            self._mode = "off"  # the Python API's default: a bar where one shows, no lines in a log
        self.depth = len(_active)
        self._estimate = (self.depth == 0) if estimate is None else estimate
        self._start = clock()
        self._last_line = self._start
        self._last_fraction = 0.0
        self._bar = None
        self._line: _NotebookLine | None = None  # a notebook's one updating text line (no ipywidgets)
        self._parent: Progress | None = None  # the notebook step whose line shows this nested one
        self._child: Progress | None = None  # the nested step this notebook line shows
        self._notebook = False
        self._shared_bar = False  # a one_line call's tqdm widget, which the next step reuses
        self._closed = False
        self._stage = ""
        self._postfix = ""
        if self._mode == "off":
            return
        if self._mode == "bar" and _in_notebook(self._file):
            self._notebook = True
            self._estimate = False  # the line's own "about ... left" is the estimate
            self._parent = next((p for p in _active if p._notebook and p._parent is None), None)
        _active.append(self)
        if self._mode != "bar" or self._parent is not None:
            return
        if not self._notebook:
            from tqdm.std import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, leave=self.depth == 0, dynamic_ncols=True,
                             file=self._file)
        elif _has_widgets():
            from tqdm.notebook import tqdm as notebook_tqdm

            if _call["depth"] and _call["bar"] is not None:  # the next step of the same call: the same widget
                self._bar = _call["bar"]
                self._bar.reset(total=total)
                self._bar.unit = unit
                self._bar.set_description(desc, refresh=True)
            else:
                self._bar = notebook_tqdm(total=total, desc=desc, unit=unit, leave=True)
                if _call["depth"]:
                    _call["bar"] = self._bar
            self._shared_bar = bool(_call["depth"])  # closed when the call ends
        elif _call["depth"] and _call["line"] is not None:
            self._line = _call["line"]  # the next step of the same call: the same line
        else:
            self._line = _NotebookLine(self)
            if _call["depth"]:
                _call["line"] = self._line

    # ------------------------------------------------------------------ updates
    def update(self, n: int = 1) -> None:
        """``n`` more units done."""
        if self._mode == "off" or self._closed:
            return
        first = self.n == 0
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        now = self._clock()
        if first and n > 0:
            self._say_estimate(now)
        if self._mode == "lines":
            self._maybe_line(now)
        self._redraw()

    def set_stage(self, stage: str) -> None:
        """What the step does right now (``"integrated-gradients deletion curve"``), shown after its name."""
        self._stage = stage
        if self._bar is not None:
            self._bar.set_description(self.label, refresh=True)
        self._redraw()

    def set_postfix(self, text: str) -> None:
        """Figures that change as the work goes (``"loss 0.412, acc 0.871"``), shown after the count."""
        self._postfix = text
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)
        self._redraw()

    @property
    def label(self) -> str:
        return f"{self.desc}: {self._stage}" if self._stage and self.desc else (self._stage or self.desc)

    def close(self, stopped: bool = False) -> None:
        """Finish: the bar is closed (a nested one disappears); plain mode says how long it took, or
        where it stopped (``stopped``: an exception or Ctrl-C ended the step, or it ended early)."""
        if self._closed or self._mode == "off":
            self._closed = True
            return
        self._closed = True
        if self._bar is not None and not self._shared_bar:
            self._bar.close()
        elif self._bar is not None:
            self._bar.set_postfix_str(self.status(stopped, final=True).split(": ", 1)[-1], refresh=True)
        elapsed = self._clock() - self._start
        if self._line is not None:
            self._line.show(self.status(stopped, final=True), force=True)
        if self._parent is not None and self._parent._child is self:
            self._parent._child = None
            self._parent._redraw()
        if self._mode == "lines" and (self.depth == 0 or elapsed >= NESTED_DONE_S):
            self._write(self.status(stopped, final=True))
        if self in _active:
            _active.remove(self)

    def status(self, stopped: bool = False, final: bool = False) -> str:
        """The step in one line: while it runs, a text bar with the count, the time so far and the time
        left (a notebook's line); ``final``, how it ended (``scan: done, 357/357 img in 12 s``)."""
        elapsed = self._clock() - self._start
        done = f"{self.n:,}/{self.total:,}" if self.total else f"{self.n:,}"
        post = f" ({self._postfix})" if self._postfix else ""
        if final:
            early = stopped or (self.total is not None and self.n < self.total)
            what = f"stopped at {done} {self.unit} after" if early else f"done, {done} {self.unit} in"
            return f"{self.desc or 'progress'}: {what} {format_seconds(elapsed)}{post}"
        text = f"{self.label or 'progress'}: "
        if self.total:
            fraction = min(self.n / self.total, 1.0)
            filled = round(BAR_WIDTH * fraction)
            text += f"{'#' * filled}{'.' * (BAR_WIDTH - filled)} {100 * fraction:3.0f}% "
        text += f"{done} {self.unit}, {format_seconds(elapsed)}"
        if self.total and self.n:
            text += f", about {format_seconds(elapsed / self.n * (self.total - self.n))} left"
        text += post
        child = self._child
        if child is not None and not child._closed:
            count = f"{child.n:,}/{child.total:,}" if child.total else f"{child.n:,}"
            text += f" · {child.label}: {count} {child.unit}" + (f" ({child._postfix})" if child._postfix else "")
        return text

    def _redraw(self) -> None:
        """A notebook: this step's line, or the line of the step it is nested in, shows the new state."""
        if self._parent is not None:
            self._parent._child = self
            self._parent._redraw()
        elif self._line is not None:
            self._line.show(self.status())
        elif self._bar is not None and self._notebook and self._child is not None:
            child = self._child
            self._bar.set_postfix_str(" · ".join(x for x in (self._postfix, f"{child.label} {child.n}/{child.total}")
                                                 if x), refresh=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, kind: object, *exc: object) -> None:
        self.close(stopped=kind is not None)

    # ------------------------------------------------------------------ lines
    def _write(self, line: str) -> None:
        self._file.write(line + "\n")
        self._file.flush()

    def _say_estimate(self, now: float) -> None:
        if not self._estimate or self._notebook or not self.total or self.total <= self.n:
            return
        per = (now - self._start) / self.n
        total_s = per * self.total
        if total_s < ESTIMATE_MIN_S:
            return
        what = self.plan or f"{self.total:,} {self.unit}"
        line = (f"{self.desc}: {what}; about {format_seconds(total_s)} at {format_rate(per, self.unit)} "
                f"(measured on the {self.first})")
        if self._bar is not None:
            from tqdm import tqdm

            tqdm.write(line, file=self._file)
        else:
            self._write(line)

    def _maybe_line(self, now: float) -> None:
        if self.total and self.n >= self.total:
            return  # close() says done
        since = now - self._last_line
        fraction = self.n / self.total if self.total else 0.0
        crossed = bool(self.total) and fraction - self._last_fraction >= STEP_FRACTION
        if not ((crossed and since >= MIN_GAP_S) or since >= QUIET_S):
            return
        if self.depth > 0 and now - self._start < NESTED_DONE_S:
            return  # a short nested step stays silent; its parent reports
        self._last_line, self._last_fraction = now, fraction
        elapsed = now - self._start
        if self.total:
            left = elapsed / self.n * (self.total - self.n) if self.n else 0.0
            text = (f"{self.label}: {self.n:,}/{self.total:,} {self.unit} ({100 * fraction:.0f}%), "
                    f"{format_seconds(elapsed)} so far, about {format_seconds(left)} left")
        else:
            text = f"{self.label}: {self.n:,} {self.unit}, {format_seconds(elapsed)} so far"
        self._write(text + (f" ({self._postfix})" if self._postfix else ""))


class _NotebookLine:
    """One text line in a notebook cell that rewrites itself (an IPython display with an id, updated in
    place): one output per step however many updates, and no widget library needed."""

    def __init__(self, owner: Progress) -> None:
        from IPython.display import display

        self._clock = owner._clock
        self._last = owner._clock()
        self._handle = display({"text/plain": owner.status()}, raw=True, display_id=True)

    def show(self, text: str, force: bool = False) -> None:
        now = self._clock()
        if self._handle is None or (not force and now - self._last < NOTEBOOK_GAP_S):
            return
        self._last = now
        self._handle.update({"text/plain": text}, raw=True)


def progress(iterable: Iterable[T] | None = None, *, total: int | None = None, desc: str = "", unit: str = "item",
             enabled: bool | None = True, plan: str | None = None, estimate: bool | None = None,
             first: str = "first", file: TextIO | None = None) -> "Iterator[T] | Progress":
    """A :class:`Progress` (use as a context manager, call ``update``), or, given an ``iterable``, an
    iterator over it that counts one unit per item and closes when exhausted or abandoned."""
    if iterable is None:
        return Progress(total, desc, unit, enabled, plan, estimate, file, first)
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    return _iterate(iterable, Progress(total, desc, unit, enabled, plan, estimate, file, first))


def _iterate(iterable: Iterable[T], bar: Progress) -> Iterator[T]:
    try:
        for item in iterable:
            yield item
            bar.update(1)
    finally:
        bar.close()
