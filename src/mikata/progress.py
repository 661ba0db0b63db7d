"""One progress helper for every long step: a bar on a terminal, plain log lines elsewhere.

Why one helper: a 12-minute step with no output looks hung, a bar that does not say what it counts
does not help, and tqdm's nested bars written into a log file (stderr not a terminal) leave ``\\r``
and cursor-movement escape codes in it. So every long step goes through :func:`progress`:

- stderr is a terminal (or a Jupyter kernel): a tqdm bar named after what it does
  (``evaluate: integrated-gradients deletion curve``); nested bars vanish when done.
- stderr is not a terminal (a log file, CI, a pipe): plain lines, no ``\\r``, no escape codes, at
  most one line per 10% of the work and never more often than every ``MIN_GAP_S`` seconds (plus
  one every ``QUIET_S`` seconds while nothing crossed 10%), and a last line with the time it took.
  Short nested steps print nothing; their parent's lines say where the job is.
- the CLI's ``--quiet`` (:func:`set_quiet`) or ``MIKATA_PROGRESS=off``: nothing at all.
  ``MIKATA_PROGRESS=bar`` / ``lines`` forces one style.

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

import os
import sys
import time
from typing import Callable, Iterable, Iterator, TextIO, TypeVar

T = TypeVar("T")

ENV = "MIKATA_PROGRESS"
MODES = ("auto", "bar", "lines", "off")
STEP_FRACTION = 0.10  # a plain line per 10% of the work ...
MIN_GAP_S = 2.0  # ... but never two within this many seconds ...
QUIET_S = 60.0  # ... and one at least this often while the work goes on
NESTED_DONE_S = 10.0  # a nested step says "done" only when it took this long
ESTIMATE_MIN_S = 5.0  # the estimate line only for steps expected to take longer than this

_quiet = False
_active: list["Progress"] = []  # open bars, outermost first (nesting depth)


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
    """Jupyter's stderr is not a terminal but shows tqdm's widget bars well."""
    return "ipykernel" in sys.modules and type(stream).__module__.startswith("ipykernel")


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
    if mode == "bar" and any(p._bar is not None for p in _active):
        from tqdm import tqdm

        tqdm.write(message, file=stream)
    else:
        stream.write(message + "\n")
        stream.flush()


class Progress:
    """A bar or plain lines for ``total`` units of work named ``desc``; see the module docstring.

    ``plan`` replaces ``"{total} {unit}"`` in the estimate line (``"8 images x 6 methods"``);
    ``estimate`` (default: top-level bars only) prints it once the first unit is done.
    ``clock`` replaces ``time.monotonic`` (tests).
    """

    def __init__(self, total: int | None = None, desc: str = "", unit: str = "item", enabled: bool = True,
                 plan: str | None = None, estimate: bool | None = None, file: TextIO | None = None,
                 first: str = "first", clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.desc, self.unit, self.plan, self.first = total, desc, unit, plan, first
        self.n = 0
        self._file = file if file is not None else sys.stderr
        self._clock = clock
        self._mode = output_mode(self._file) if enabled else "off"
        self.depth = len(_active)
        self._estimate = (self.depth == 0) if estimate is None else estimate
        self._start = clock()
        self._last_line = self._start
        self._last_fraction = 0.0
        self._bar = None
        self._closed = False
        self._stage = ""
        self._postfix = ""
        if self._mode == "off":
            return
        _active.append(self)
        if self._mode == "bar":
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, leave=self.depth == 0, dynamic_ncols=True,
                             file=self._file)

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

    def set_stage(self, stage: str) -> None:
        """What the step does right now (``"integrated-gradients deletion curve"``), shown after its name."""
        self._stage = stage
        if self._bar is not None:
            self._bar.set_description(self.label, refresh=True)

    def set_postfix(self, text: str) -> None:
        """Figures that change as the work goes (``"loss 0.412, acc 0.871"``), shown after the count."""
        self._postfix = text
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)

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
        if self._bar is not None:
            self._bar.close()
        elapsed = self._clock() - self._start
        if self._mode == "lines" and (self.depth == 0 or elapsed >= NESTED_DONE_S):
            done = f"{self.n:,}/{self.total:,}" if self.total else f"{self.n:,}"
            early = stopped or (self.total is not None and self.n < self.total)
            what = f"stopped at {done} {self.unit} after" if early else f"done, {done} {self.unit} in"
            self._write(f"{self.desc or 'progress'}: {what} {format_seconds(elapsed)}"
                        + (f" ({self._postfix})" if self._postfix else ""))
        if self in _active:
            _active.remove(self)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, kind: object, *exc: object) -> None:
        self.close(stopped=kind is not None)

    # ------------------------------------------------------------------ lines
    def _write(self, line: str) -> None:
        self._file.write(line + "\n")
        self._file.flush()

    def _say_estimate(self, now: float) -> None:
        if not self._estimate or not self.total or self.total <= self.n:
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


def progress(iterable: Iterable[T] | None = None, *, total: int | None = None, desc: str = "", unit: str = "item",
             enabled: bool = True, plan: str | None = None, estimate: bool | None = None,
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
