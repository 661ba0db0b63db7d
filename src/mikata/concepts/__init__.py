"""Concepts over a whole scanned dataset: per class, a factorization of the layer's activations into
concepts (CRAFT / DFF style NMF), their importance for the class logit, where they sit, exemplars,
strategies (SpRAy), concepts over-present in errors, concept-defined slices, suspected shortcuts with a
deletion test, and user-defined concepts (TCAV). Stored in the run (``RUN/concepts/``).

Example:
    >>> atlas = compute_atlas("runs/fashion", per_class=5, sample=300)    # doctest: +SKIP
    >>> atlas.to_json()["classes"]["Coat"][0]                            # doctest: +SKIP
    >>> concept_heatmap("runs/fashion", 812, "Coat/0").shape               # doctest: +SKIP

Pure math lives in ``nmf``, ``importance``, ``strategies`` and ``describe`` (torch / numpy only).
"""

from __future__ import annotations

from mikata.concepts.atlas import Atlas, load_atlas
from mikata.concepts.compute import compute_atlas
from mikata.concepts.ondemand import concept_heatmap, concept_images, concept_location_map, image_decomposition
from mikata.concepts.reviews import CONCEPT_VERDICTS, concept_reviews, set_concept_review

__all__ = ["Atlas", "compute_atlas", "load_atlas", "concept_heatmap", "image_decomposition", "concept_images",
           "concept_location_map", "set_concept_review", "concept_reviews", "CONCEPT_VERDICTS"]
