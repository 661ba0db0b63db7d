"""The self-contained HTML report of a scanned run (``mikata report``).

Example:
    >>> from mikata.report import write_report
    >>> write_report("runs/fashion", "fashion.html").path              # doctest: +SKIP
"""

from __future__ import annotations

from mikata.report.build import ReportError, ReportOptions, ReportResult, write_report

__all__ = ["ReportError", "ReportOptions", "ReportResult", "write_report"]
