"""Analyses of a scanned run: metrics and audits, binary curves, fields, dataset issues, the overview
and its cache, units, the run seen through a row selection (``RunView``), the notebook ``Run`` and export.

A run's files and store live in ``mikata.runs``; scanning in ``mikata.scanning``.
"""
