"""Concepts over a whole scanned dataset: per class, a factorization of the layer's activations into
concepts (CRAFT / DFF style NMF), their importance for the class logit, where they sit, exemplars,
strategies (SpRAy), concepts over-present in errors, concept-defined slices, suspected shortcuts with a
deletion test, and user-defined concepts (TCAV). Stored in the run (``RUN/concepts/``).

Example:
    >>> atlas = compute_atlas("runs/fashion", per_class=5, sample=300)    # doctest: +SKIP
    >>> atlas.to_json()["classes"]["Coat"][0]                            # doctest: +SKIP
    >>> concept_heatmap("runs/fashion", 812, "Coat/0").shape               # doctest: +SKIP

Pure math lives in ``nmf``, ``importance``, ``strategies`` and ``describe`` (torch / numpy only).
The names below resolve on first use: reading a stored atlas (``mikata.concepts.atlas``, as
``mikata audit`` does) needs no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mikata.lazy import lazy_names

if TYPE_CHECKING:
    from mikata.concepts.atlas import Atlas, load_atlas
    from mikata.concepts.compute import compute_atlas
    from mikata.concepts.ondemand import concept_heatmap, concept_images, concept_location_map, image_decomposition
    from mikata.concepts.reviews import CONCEPT_VERDICTS, concept_reviews, set_concept_review

# public name -> module, imported on first use (mikata.lazy)
_NAMES = {
    "Atlas": "mikata.concepts.atlas", "load_atlas": "mikata.concepts.atlas",
    "compute_atlas": "mikata.concepts.compute",
    **{name: "mikata.concepts.ondemand" for name in ("concept_heatmap", "concept_images", "concept_location_map",
                                                     "image_decomposition")},
    **{name: "mikata.concepts.reviews" for name in ("CONCEPT_VERDICTS", "concept_reviews", "set_concept_review")},
}

__all__ = ["Atlas", "compute_atlas", "load_atlas", "concept_heatmap", "image_decomposition", "concept_images",
           "concept_location_map", "set_concept_review", "concept_reviews", "CONCEPT_VERDICTS"]


__getattr__, __dir__ = lazy_names(__name__, _NAMES)
