"""A toy dataset-issue type, as a plugin would write one: one module, one registry entry.

``unsure``: images the model gives no class a clear probability (its top probability is low).
"""

from __future__ import annotations

from mikata.analysis.issue_registry import IssueContext, IssueTypeSpec, Scored


def score(ctx: IssueContext) -> Scored:
    """The top class's probability: low means the model is unsure (lower is worse, as every type)."""
    return Scored(ctx.data.probs.max(1))


SPEC = IssueTypeSpec("unsure", "images whose most probable class is still improbable", score,
                     default_threshold=0.4, needs=("probs",), explained_by_maps=True)
