"""``Attribution``: one method's maps for one target rank over a batch, with what produced them."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


@dataclass
class Attribution:
    """Maps for a batch of N images, one method, one target per image.

    ``maps`` are at input resolution ``(N, H, W)`` (layer maps upsampled bilinearly, pixel maps
    reduced over channels); ``raw`` is what the method computed before that: ``(N, h, w)`` at the
    layer for CAM methods, ``(N, C, H, W)`` for pixel methods. Nothing is normalized: use
    ``mikata.display.normalize_map`` for display.

    Example:
        >>> a = mikata.explain(handle, "chelsea.png", ["gradcam"])[0]
        >>> a.maps.shape, a.raw.shape, a.targets
        (torch.Size([1, 224, 224]), torch.Size([1, 7, 7]), [282])
    """

    method: str
    target_spec: str  # "top1", "top2", ... or the class id / name asked for
    targets: list[int]  # the class id each image was explained for
    maps: torch.Tensor  # (N, H, W)
    raw: torch.Tensor  # (N, h, w) or (N, C, H, W)
    layer: str | None = None
    timings: dict[str, float] = field(default_factory=dict)  # seconds
    info: dict = field(default_factory=dict)  # method extras, e.g. IG completeness delta
    signed: bool = False  # the sign means something (registry ``signed_map``): drawn diverging around zero

    def summary(self, class_names: list[str] | None = None) -> dict:
        """A JSON-ready description (no arrays)."""
        return {
            "method": self.method, "target": self.target_spec, "layer": self.layer,
            "targets": [{"id": t, "name": class_names[t] if class_names else None} for t in self.targets],
            "raw_shape": list(self.raw.shape), "timings_s": self.timings, "signed": self.signed,
            "info": {k: v for k, v in self.info.items() if isinstance(v, (int, float, str, list, bool))},
        }


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(N, h, w)`` -> ``(N, H, W)`` bilinearly (half-pixel centers, like cv2.resize)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]


def reduce_channels(attr: torch.Tensor, how: str) -> torch.Tensor:
    """``(N, C, H, W)`` pixel attribution -> ``(N, H, W)``: "sum" keeps sign, "maxabs" like Simonyan et al."""
    if how == "sum":
        return attr.sum(1)
    if how == "maxabs":
        return attr.abs().amax(1)
    if how == "abssum":
        return attr.abs().sum(1)
    raise ValueError(f"unknown channel reduction {how!r}; use sum, maxabs or abssum")
