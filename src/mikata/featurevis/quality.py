"""Which rendered images failed to show their unit: flat (no pixel contrast) or never activated.

An optimization that starts where a unit is silent (a ReLU / ReLU6 channel at zero for a near-gray
start) gets no gradient, so its image stays the start's flat gray: on EfficientNet-Lite0's head, 7 of
8 channels at 64 px. Such an image shows nothing of the unit, so callers say so and try again from
elsewhere (``mikata units`` restarts it from the unit's strongest dataset image, then falls back on
the crop of that image where the unit fires most).

Example:
    >>> failed = failed_renders(rendering)       # {index: "flat: pixel std 0.7/255, objective 0 -> 0"}  # doctest: +SKIP
"""

from __future__ import annotations

from mikata.featurevis.optimize import Rendering

FLAT_STD = 4 / 255  # pixel standard deviation (images in [0, 1]) below which a rendering reads as flat gray


def failed_renders(rendering: Rendering, min_std: float = FLAT_STD) -> dict[int, str]:
    """``{image index: why}`` for the images that failed: pixel std below ``min_std`` (flat), or an
    objective that never rose above 0 (the unit never activated)."""
    x = rendering.images.float()  # (N, C, H, W) in [0, 1]
    std = x.reshape(x.shape[0], -1).std(1)
    out = {}
    for i in range(x.shape[0]):
        scores = [r["units"][i] for r in rendering.log] or [0.0]
        first, last, best = scores[0], scores[-1], max(scores)
        trend = f"objective {first:.3g} -> {last:.3g}"
        if float(std[i]) < min_std:
            out[i] = f"flat: pixel std {float(std[i]) * 255:.1f}/255, {trend}"
        elif best <= 0:
            out[i] = f"the unit never activated: {trend}"
    return out
