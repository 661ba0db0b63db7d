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
