"""A toy evaluation check, as a plugin would write one: one module, one registry entry.

``concentration``: the share of a map's positive mass in its top 10% of pixels (a map that says
"here" rather than "everywhere"), per method, saved as a part like every check.
"""

from __future__ import annotations

import torch

from mikata.evaluation.check_registry import CheckContext, CheckSpec, MetricSpec


def top_mass(maps: torch.Tensor, share: float = 0.1) -> torch.Tensor:
    """``(N,)`` the share of each ``(N, H, W)`` map's positive mass in its top ``share`` of pixels."""
    flat = maps.flatten(1).clamp(min=0)
    k = max(1, int(round(share * flat.shape[1])))
    top = flat.topk(k, dim=1).values.sum(1)
    total = flat.sum(1)
    return torch.where(total > 0, top / total.clamp(min=1e-12), torch.full_like(total, float("nan")))


def run(ctx: CheckContext) -> None:
    for m in ctx.methods:
        got = ctx.part(m, lambda m=m: {"mass": top_mass(ctx.original[m].float())})
        v = got["mass"].double()
        mean = float(v[~torch.isnan(v)].mean()) if (~torch.isnan(v)).any() else None
        ctx.table[m]["top10-mass"] = mean
        ctx.passes[m]["concentrated"] = mean is not None and mean > 0.5


SPEC = CheckSpec("concentration", "how much of each map's mass sits in its top 10% of pixels",
                 (MetricSpec("top10-mass", "higher", "share of the map's positive mass in its top 10% of pixels"),),
                 run, (("concentrated", "top-10% mass above one half"),))
