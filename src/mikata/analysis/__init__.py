"""Dataset-level analysis: ``scan`` streams a dataset through a model into a ``RunStore``; audits read it.

Example:
    >>> from mikata.analysis import RunStore, scan                 # doctest: +SKIP
    >>> scan(handle, "digits/", "runs/digits", batch_size=64)       # doctest: +SKIP
    >>> from mikata.analysis.audit import load_run, accuracy        # doctest: +SKIP
"""

from mikata.analysis.runstore import RunStore, RunStoreError

__all__ = ["RunStore", "RunStoreError"]


def __getattr__(name: str):
    if name == "scan":
        from mikata.analysis.scan import scan

        return scan
    raise AttributeError(name)
