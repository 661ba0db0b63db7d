"""A person's verdict on a concept: the ``object`` the class is about, or an ``artefact`` (a shortcut).

Stored in the run's annotation tables beside the label reviews (``RunStore.set_concept_review``), so it
survives a recomputation of the atlas for the same concept name; the tool never sets it itself.
"""

from __future__ import annotations

import os

from mikata.runs.store import CONCEPT_VERDICTS, RunStore

__all__ = ["CONCEPT_VERDICTS", "set_concept_review", "concept_reviews"]


def set_concept_review(run_dir: str | os.PathLike, concept: str, verdict: str | None) -> None:
    """Record (or with ``None`` clear) the verdict on ``concept`` ("Coat/2"): "object" or "artefact"."""
    from mikata.concepts.atlas import load_atlas
    from mikata.errors import MikataError

    atlas = load_atlas(run_dir)
    if atlas is None:
        raise MikataError(f"{run_dir} has no current concepts; run `mikata concepts {run_dir}` first")
    atlas.concept(concept)  # an unknown concept is refused
    with RunStore.open(run_dir, annotate=True) as store:
        store.set_concept_review(concept, verdict)


def concept_reviews(run_dir: str | os.PathLike) -> dict[str, dict]:
    """``{concept: {"verdict": "object" | "artefact", "updated": ISO time}}``."""
    with RunStore.open(run_dir) as store:
        return store.concept_reviews()
