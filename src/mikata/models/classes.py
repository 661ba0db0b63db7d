"""One rule for naming a class, used by every command, the web app, the report and the notebook.

A class is given as an id (an integer) or as text. Text is a class name when one matches,
case-insensitively; otherwise text of digits is an id. The name wins over the id: in a run whose
class folders are ``1, 10, 2`` the text ``"10"`` means the class named 10 (id 1), as a person means
it. An unknown name or an id out of range raises ``ChoiceError`` listing what is valid.

Example:
    >>> class_index(["cat", "dog"], "Dog"), class_index(["cat", "dog"], 1), class_index(["3", "8"], "8")
    (1, 1, 1)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from mikata.errors import ChoiceError


def class_index(names: Sequence[str], target: int | str, what: str = "class") -> int:
    """The id of class ``target`` among ``names``; ``what`` names the choice in the error ("positive class")."""
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        return _in_range(names, int(target), what)
    key = str(target).strip()
    lowered = {n.lower(): i for i, n in enumerate(names)}
    if key.lower() in lowered:
        return lowered[key.lower()]
    if key.isdigit():
        return _in_range(names, int(key), what)
    raise ChoiceError(what, target, list(names))


def _in_range(names: Sequence[str], i: int, what: str) -> int:
    if 0 <= i < len(names):
        return i
    raise ChoiceError(f"{what} id", i, [f"0..{len(names) - 1}"])
