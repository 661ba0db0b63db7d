"""File names that are not valid UTF-8: kept exactly, shown readably.

On POSIX a file name is bytes. Python hands names that are not valid UTF-8 (``latin1_\\xe9t\\xe9.jpg``
from an old archive) to us as ``str`` with lone surrogates (PEP 383), which open the file fine but
which SQLite, ``print`` and JSON encoders refuse. mikata keeps such a name as that ``str`` in
memory, stores it in SQLite as the exact original bytes (a BLOB; valid names stay TEXT, so older
runs read the same), and shows it with ``\\xNN`` escapes wherever a person reads it.

Example:
    >>> p = b"latin1_\\xe9t\\xe9.png".decode("utf-8", "surrogateescape")
    >>> to_db(p), from_db(to_db(p)) == p, shown(p)
    (b'latin1_\\xe9t\\xe9.png', True, 'latin1_\\\\xe9t\\\\xe9.png')
    >>> to_db("plain.png")
    'plain.png'
"""

from __future__ import annotations

import functools
import os


def to_db(path: str | os.PathLike) -> str | bytes:
    """The value stored for ``path``: the text itself if it is valid UTF-8, else its exact bytes."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = text.decode("utf-8", "surrogateescape")
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape")


def from_db(value: str | bytes | None) -> str | None:
    """The path ``to_db`` stored, as the ``str`` the file system functions take (surrogate-escaped)."""
    if isinstance(value, (bytes, memoryview)):
        return bytes(value).decode("utf-8", "surrogateescape")
    return value


def shown(path: str | os.PathLike | None, keep: str = "") -> str:
    """``path`` for a person (terminal, HTML, CSV, JSON): undecodable bytes as ``\\xNN``, always printable;
    control characters (a terminal escape sequence's ESC, a newline that would forge a line) are escaped too,
    except those in ``keep``."""
    if path is None:
        return ""
    text = os.fspath(path)
    if isinstance(text, bytes):
        return escape_controls(text.decode("utf-8", "backslashreplace"), keep)
    return escape_controls(text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace"), keep)


# C0 controls, DEL, C1 controls (a terminal reads ESC [ ... and the single-byte CSI 0x9b as commands), and the
# bidirectional overrides that make a name display in another order than it is
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
_CONTROLS.update({c: f"\\u{c:04x}" for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))})


def escape_controls(text: str, keep: str = "") -> str:
    """``text`` with every control character written as its escape (``\\x1b``), except those in ``keep``:
    what a terminal prints instead of obeying a file name's escape sequences.

    Example:
        >>> escape_controls("evil\\x1b[2J.png"), escape_controls("a\\nb", keep="\\n")
        ('evil\\\\x1b[2J.png', 'a\\nb')
    """
    return text.translate(_controls_table(keep))


@functools.lru_cache(maxsize=16)
def _controls_table(keep: str) -> dict[int, str]:
    """``_CONTROLS`` less the characters in ``keep`` (built once per ``keep``: templates print many strings)."""
    return _CONTROLS if not keep else {c: v for c, v in _CONTROLS.items() if chr(c) not in keep}


def shown_in_template(value: object) -> object:
    """A Jinja ``finalize``: every plain string a template prints passes ``shown`` (markup is left alone).
    Newlines and tabs stay: HTML forges no line with them, and multi-line text (a feature-vis log in a
    ``<pre>``) keeps its lines."""
    from markupsafe import Markup

    if isinstance(value, str) and not isinstance(value, Markup):
        return shown(value, keep="\n\t")
    return value
