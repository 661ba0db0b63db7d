"""Numbers for people: the one percent formatter of ``mikata audit``, the HTML report and the web app.

Python's two ways of printing a fraction as a percent disagree on ties: ``f"{100 * x:.2f}%"`` rounds
the product (131/160 gives 81.88%), ``f"{x:.2%}"`` the stored binary value (81.87%), so a run's
accuracy printed by the audit and shown by the app could differ in its last digit. Every surface
calls ``percent`` instead: it rounds the shortest decimal that names the value (``repr``: 0.81875,
the number a person gets from the counts) half up, so 131 of 160 is 81.88% everywhere, and 81.9%
where one decimal is shown.

Example:
    >>> percent(131 / 160), percent(131 / 160, 1), percent(float("nan"))
    ('81.88%', '81.9%', '–')
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal


def percent(x: float | None, digits: int = 2) -> str:
    """``x`` (a fraction, 0.8 for 80%) as a percent with ``digits`` decimals, ties rounded up; "–" for
    None or NaN (a class with no images has no recall)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    value = Decimal(repr(float(x))) * 100
    quantum = Decimal(1).scaleb(-digits) if digits > 0 else Decimal(1)
    return f"{value.quantize(quantum, rounding=ROUND_HALF_UP)}%"
