"""Scanning a dataset into a run: the local and Ray engines, their shared per-batch steps, and
cross-validation (train per fold, scan each held-out fold, merge).
"""
