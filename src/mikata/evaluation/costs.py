"""What an evaluation will cost, known before it starts: a probe's timings scaled up, and cheaper settings.

``mikata evaluate`` times every method's maps on two images and one chunk of perturbed images before
the real work; ``evaluate_cost`` scales that to the whole run with the cost model of each check (a
cascade is ``stages`` map passes, max-sensitivity ``samples``, random-logit one, the curves
``2 x steps x N`` forwards per method and for the random order), and ``cost_message`` prints the total
up front with cheaper settings when it is long (over ``LONG`` seconds).

Example:
    >>> c = evaluate_cost({"gradcam": 0.1, "integrated-gradients": 4.0}, 6, ["faithfulness", "randomization"],
    ...                   curve_s=30.0, stages=8, samples=8)
    >>> round(c.maps, 1), round(c.parts["randomization"], 1), c.parts["faithfulness"], round(c.total, 1)
    (24.6, 196.8, 90.0, 311.4)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

LONG = 600.0  # seconds: an estimate above this comes with cheaper settings
MAP_PASSES = {"randomization": "stages", "random-logit": 1, "stability": "samples"}  # map passes per check


@dataclass
class EvaluateCost:
    """Seconds for the original maps and for each check, from a probe."""

    maps: float
    parts: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return self.maps + sum(self.parts.values())


def evaluate_cost(per_image: dict[str, float], n: int, checks: Sequence[str], curve_s: float = 0.0, stages: int = 8,
                  samples: int = 8) -> EvaluateCost:
    """``per_image``: seconds of one map per method; ``n`` images; ``curve_s``: one method's deletion and
    insertion curves over the ``n`` images (the random order costs as much again)."""
    maps = sum(per_image.values()) * n
    counts = {"stages": stages, "samples": samples}
    parts = {}
    for c in checks:
        if c == "faithfulness":
            parts[c] = curve_s * (len(per_image) + 1)
        elif c in MAP_PASSES:
            k = MAP_PASSES[c]
            parts[c] = (counts[k] if isinstance(k, str) else k) * maps
    return EvaluateCost(maps, parts)


def cheaper_settings(cost: EvaluateCost, per_image: dict[str, float], n: int, stages: int, samples: int,
                     ig_steps: int | None = None) -> list[str]:
    """Settings that cut the estimate, each with what it saves (the largest first); empty when it is not long."""
    from mikata.progress import format_seconds

    if cost.total <= LONG:
        return []
    out: list[tuple[float, str]] = []
    if cost.parts.get("randomization") and stages > 2:
        saved = cost.parts["randomization"] * (1 - 2 / stages)
        out.append((saved, f"--stages 2 (saves ~{format_seconds(saved)})"))
    if cost.parts.get("stability") and samples > 2:
        saved = cost.parts["stability"] * (1 - 2 / samples)
        out.append((saved, f"--samples 2 (saves ~{format_seconds(saved)})"))
    slow = max(per_image, key=per_image.get)
    share = per_image[slow] / max(1e-9, sum(per_image.values()))
    map_work = cost.maps + sum(v for k, v in cost.parts.items() if k in MAP_PASSES)
    if slow == "integrated-gradients" and (ig_steps or 32) > 16:
        saved = map_work * share * (1 - 16 / (ig_steps or 32))
        out.append((saved, f"--ig-steps 16 (integrated-gradients is {share:.0%} of the map work; saves "
                           f"~{format_seconds(saved)})"))
    elif share > 0.5 and len(per_image) > 1:
        saved = map_work * share
        out.append((saved, f"--methods without {slow} ({share:.0%} of the map work; saves ~{format_seconds(saved)})"))
    heavy = [c for c in ("randomization", "stability") if cost.parts.get(c)]
    if heavy:
        saved = sum(cost.parts[c] for c in heavy)
        kept = [c for c in cost.parts if c not in heavy]
        out.append((saved, f"--checks {','.join(kept) or 'faithfulness'} (leaves out {' and '.join(heavy)}; saves "
                           f"~{format_seconds(saved)})"))
    fit = int(n * LONG / cost.total)
    if 1 <= fit < n:
        out.append((cost.total * (1 - fit / n), f"--images-limit {fit} (about {format_seconds(LONG)})"))
    return [text for _, text in sorted(out, key=lambda t: -t[0])]


def cost_message(cost: EvaluateCost, n: int, methods: Sequence[str], probe_images: int,
                 suggestions: Sequence[str]) -> str:
    """The line printed before the work starts."""
    from mikata.progress import format_seconds

    parts = ", ".join(f"{k} {format_seconds(v)}" for k, v in cost.parts.items() if v > 0)
    line = (f"evaluate: about {format_seconds(cost.total)} in all for {n} images x {len(methods)} methods (maps "
            f"{format_seconds(cost.maps)}{', ' + parts if parts else ''}; timed on {probe_images} images before "
            "starting)")
    if suggestions:
        line += f"; that is long: cheaper settings: {'; '.join(suggestions)}"
    return line
