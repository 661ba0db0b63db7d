"""The run format: a run folder's files (layout), its SQLite store and lock, the format version and
migrations, integrity checks, merging shards, attachment schemas, and which rows are held out.

Nothing here computes an analysis; ``mikata.analysis`` reads runs through it.
"""
