"""``Preprocessing``: how a classifier wants its pixels, as data apart from the network.

A model's input size, normalization, crop and resampling travel together: the ``ModelHandle``
holds one, a run's manifest stores one (``to_dict``), and code that only needs pixels (the web
app drawing the model's view of an image from a run, a scan's data loader worker) rebuilds it
from the manifest (``from_identity``) without loading the network. timm's ``PretrainedCfg`` is
the same idea.

Example:
    >>> pre = Preprocessing(input_size=(28, 28), mean=(0.5,), std=(0.5,), in_channels=1)
    >>> pre.mode
    'L'
    >>> x = pre.preprocess([Image.new("L", (40, 30))])    # (1, 1, 28, 28)
    >>> tuple(x.shape), float(pre.denormalize(x).max())
    ((1, 1, 28, 28), 0.0)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch  # imported where pixels become tensors: reading a run's preprocessing record needs no torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_RESAMPLE = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST}
# How an image reaches ``input_size`` before the center crop:
#   "shorter": the shorter side is scaled to ``size / crop_fraction`` and the aspect kept (ImageNet
#              evaluation; a non-square image loses the ends of its longer side);
#   "stretch": both sides are scaled to ``size / crop_fraction`` (the aspect changes, no pixel is lost
#              at crop_fraction 1.0). Chosen over padding for fine-tuning: training and every later
#              command use the same stretch, so the network learns the distorted shapes, and padding
#              would add borders that exist in no image (attribution maps light up on their edges)
#              while spending input pixels on nothing.
RESIZE_MODES = ("shorter", "stretch")
LEGACY_RESIZE = "shorter"  # what records written before ``resize`` existed meant
FIELDS = ("input_size", "mean", "std", "crop_fraction", "interpolation", "in_channels", "resize")
# fields a record may lack (written before they existed), with the behaviour it then had
OPTIONAL_FIELDS = {"resize": LEGACY_RESIZE}


@dataclass(frozen=True)
class Preprocessing:
    """Resize to ``size / crop_fraction`` (the shorter side, or each side with ``resize="stretch"``),
    center-crop ``input_size`` (h, w), normalize."""

    input_size: tuple[int, int] = (224, 224)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    crop_fraction: float = 0.875
    interpolation: str = "bicubic"
    in_channels: int = 3
    resize: str = LEGACY_RESIZE

    def __post_init__(self) -> None:
        # tuples whatever the caller passed (a manifest gives lists): frozen and hashable
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if self.interpolation not in _RESAMPLE:
            from mikata.errors import ChoiceError

            raise ChoiceError("interpolation", self.interpolation, list(_RESAMPLE))
        if self.resize not in RESIZE_MODES:
            from mikata.errors import ChoiceError

            raise ChoiceError("resize", self.resize, list(RESIZE_MODES))
        if not 0.05 <= float(self.crop_fraction) <= 1:
            from mikata.errors import MikataError

            raise MikataError(f"crop fraction {self.crop_fraction}: give a number in 0.05..1 (1 = the whole image)")

    def describe(self) -> str:
        """One line for logs: what part of each image the model sees, e.g. "whole image, stretched to 64x64"."""
        h, w = self.input_size
        if self.resize == "stretch":
            how = "whole image" if self.crop_fraction >= 1 else f"center {self.crop_fraction:g} of each side"
            return f"{how}, stretched to {w}x{h} ({self.interpolation})"
        how = "no crop" if self.crop_fraction >= 1 else f"center crop {self.crop_fraction:g}"
        return f"shorter side to {round(max(h, w) / self.crop_fraction)} px, {how} to {w}x{h} ({self.interpolation})"

    def geometry(self, width: int, height: int) -> tuple[int, int, int, int]:
        """``(resized_w, resized_h, left, top)`` for an original image of ``width`` x ``height``: the
        resize before the crop and the crop's corner, so boxes and masks can follow the pixels."""
        h, w = self.input_size
        if self.resize == "stretch":
            size = (max(w, round(w / self.crop_fraction)), max(h, round(h / self.crop_fraction)))
        else:
            scale = max(h, w) / self.crop_fraction / min(width, height)
            size = (max(w, round(width * scale)), max(h, round(height * scale)))
        return size[0], size[1], (size[0] - w) // 2, (size[1] - h) // 2

    @property
    def mode(self) -> str:
        """The PIL mode images are decoded to, ``"L"`` for one-channel models, else ``"RGB"``."""
        return "L" if self.in_channels == 1 else "RGB"

    # ------------------------------------------------------------------ pixels
    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Resize, center-crop and normalize PIL images: ``(N, C, H, W)`` float32 on the CPU."""
        import torch

        return torch.stack([self._one(img) for img in images])

    def load(self, paths: Sequence[str | os.PathLike]) -> torch.Tensor:
        """Decode files in this model's mode and preprocess them: ``(N, C, H, W)``.

        Raises ``ImageDecodeError`` (naming the file) for the first file that cannot be decoded or
        whose resize would be too large.
        """
        import torch

        from mikata.data.images import load_image
        from mikata.errors import ImageDecodeError

        out = []
        for p in paths:
            try:
                out.append(self._one(load_image(p, self.mode)))
            except ImageDecodeError as e:
                if e.path:
                    raise
                raise type(e)(p, e.reason) from e
        return torch.stack(out)

    def _one(self, img: Image.Image) -> torch.Tensor:
        import torch

        if img.mode != self.mode:
            from mikata.data.images import to_8bit

            img = to_8bit(img, self.mode)
        h, w = self.input_size
        rw, rh, left, top = self.geometry(img.width, img.height)
        from mikata.data.images import check_resize_plan

        check_resize_plan(img.width, img.height, (rw, rh))  # ImageTooLargeError before Pillow allocates it
        img = img.resize((rw, rh), _RESAMPLE[self.interpolation])
        img = img.crop((left, top, left + w, top + h))
        arr = np.asarray(img, dtype=np.float32) / 255.0
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)  # (C, H, W)
        x = torch.from_numpy(np.ascontiguousarray(arr))
        mean = torch.tensor(self.mean, dtype=torch.float32).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(-1, 1, 1)
        return (x - mean) / std

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``[0, 1]`` pixels ``(N, C, H, W)`` to model inputs, on ``x``'s device and dtype."""
        import torch

        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Model inputs back to ``[0, 1]`` pixels ``(N, C, H, W)``, on ``x``'s device and dtype."""
        import torch

        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return (x * std + mean).clamp(0, 1)

    # ------------------------------------------------------------------ as data
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields, as a run's manifest and a checkpoint's metadata store them."""
        return {"input_size": list(self.input_size), "mean": list(self.mean), "std": list(self.std),
                "crop_fraction": float(self.crop_fraction), "interpolation": self.interpolation,
                "in_channels": int(self.in_channels), "resize": self.resize}

    @classmethod
    def from_identity(cls, identity: Mapping[str, Any]) -> "Preprocessing":
        """From a run manifest's ``identity`` (or any mapping holding the fields; one written before
        ``resize`` existed gets today's meaning of its record, the shorter-side resize)."""
        missing = [k for k in FIELDS if k not in identity and k not in OPTIONAL_FIELDS]
        if missing:
            from mikata.errors import MikataError

            raise MikataError(f"the preprocessing record lacks {missing}; it was not written by mikata "
                              "(scan again into a new run directory)")
        return cls(tuple(identity["input_size"]), tuple(identity["mean"]), tuple(identity["std"]),
                   float(identity["crop_fraction"]), str(identity["interpolation"]), int(identity["in_channels"]),
                   str(identity.get("resize", LEGACY_RESIZE)))


def with_defaults(identity: Mapping[str, Any]) -> dict[str, Any]:
    """A run identity with the fields it may lack filled in as they meant when it was written, so an
    older run compares equal to the same setup written today (resume, merge)."""
    return {**OPTIONAL_FIELDS, **identity}
