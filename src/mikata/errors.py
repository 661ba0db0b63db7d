"""The exceptions mikata raises on purpose. Each message says what happened and what to do."""

from __future__ import annotations


class MikataError(Exception):
    """Base class: the command line prints these as one line and exits non-zero."""


class ImageDecodeError(MikataError, ValueError):
    """An image file could not be turned into pixels. Names the file and the reason."""

    def __init__(self, path: str, reason: str):
        self.path = str(path) if path else ""
        self.reason = reason
        super().__init__(f"{self.path}: {reason}" if self.path else reason)


class ImageTooLargeError(ImageDecodeError):
    """An image whose resize for the model would need too much memory (e.g. a 65000x1 strip)."""


class ModelLoadError(MikataError):
    """A model spec could not be loaded."""


class ChoiceError(MikataError, ValueError):
    """An unknown name (layer, class, method, ...); the message lists the valid choices."""

    def __init__(self, kind: str, given: object, choices: list[str], hint: str = ""):
        import difflib

        self.kind, self.given, self.choices = kind, given, list(choices)
        close = difflib.get_close_matches(str(given), [str(c) for c in choices], n=3)
        shown = ", ".join(map(str, choices[:40])) + (f", … ({len(choices)} in all)" if len(choices) > 40 else "")
        msg = f"unknown {kind} {given!r}"
        if close:
            msg += f" (did you mean {', '.join(close)}?)"
        msg += f"; valid {plural(kind)}: {shown}"
        if hint:
            msg += f". {hint}"
        super().__init__(msg)


def plural(noun: str) -> str:
    """The plural of the last word of an English noun phrase, for messages ("class" -> "classes").

    Example:
        >>> plural("class"), plural("positive class"), plural("layer"), plural("method in options")
        ('classes', 'positive classes', 'layers', 'methods in options')
    """
    if " in " in noun:  # "method in options": the head noun takes the plural
        head, rest = noun.split(" in ", 1)
        return f"{plural(head)} in {rest}"
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def check_choices(kind: str, given: object, choices, hint: str = ""):
    """``given`` if it is one of ``choices``, else ``ChoiceError`` listing them (the one check for names).

    Example:
        >>> check_choices("optimizer", "adam", ("adam", "sgd"))
        'adam'
    """
    if given not in choices:
        raise ChoiceError(kind, given, [str(c) for c in choices], hint=hint)
    return given


class Interrupted(KeyboardInterrupt):
    """A command stopped by SIGINT or SIGTERM. ``exit_code`` is the shell's convention (128 + the signal
    number: 130 for SIGINT, 143 for SIGTERM); the message says what was kept and how to continue."""

    def __init__(self, signum: int, message: str = ""):
        import signal

        self.signum = int(signum)
        self.exit_code = 128 + self.signum
        try:
            self.signal_name = signal.Signals(self.signum).name
        except ValueError:
            self.signal_name = f"signal {self.signum}"
        super().__init__(message)

    def with_message(self, message: str) -> "Interrupted":
        """The same interruption, now saying what was kept and how to continue."""
        return Interrupted(self.signum, message)


_signal_state = {"deferring": 0, "pending": None}


def _raise_interrupted(signum: int, frame) -> None:
    if _signal_state["deferring"]:
        _signal_state["pending"] = signum  # raised when the write in progress has finished
        return
    raise Interrupted(signum)


def interrupt_on_signals():
    """A context in which SIGINT and SIGTERM raise ``Interrupted`` in the main thread, so a long job can
    save what it has and exit with one line (outside the main thread it changes nothing).

    SIGINT is caught even when the process started with it ignored (a shell script's ``cmd &``): a
    user who sends it asks the job to stop. The previous handlers come back on exit.

    Example:
        >>> with interrupt_on_signals():
        ...     pass
    """
    import contextlib
    import signal
    import threading

    @contextlib.contextmanager
    def installed():
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        before = {s: signal.signal(s, _raise_interrupted) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, handler in before.items():
                signal.signal(s, handler)

    return installed()


def signals_deferred():
    """A context during which ``interrupt_on_signals``'s signals wait: a file being written is finished
    first, then ``Interrupted`` is raised as the context exits.

    Example:
        >>> with signals_deferred():
        ...     pass
    """
    import contextlib

    @contextlib.contextmanager
    def deferred():
        _signal_state["deferring"] += 1
        try:
            yield
        finally:
            _signal_state["deferring"] -= 1
        if not _signal_state["deferring"] and _signal_state["pending"] is not None:
            signum, _signal_state["pending"] = _signal_state["pending"], None
            raise Interrupted(signum)

    return deferred()
