"""What a training run is told to do: ``TrainOptions`` and the ``--augment`` mini-language.

Example:
    >>> parse_augment("flip,translate=4,scale=0.9-1.1")
    Augment(hflip=True, translate=4, scale=(0.9, 1.1))
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from mikata.errors import MikataError

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cosine", "constant")


class TrainingError(MikataError):
    """Training options or data that cannot work; the message says what to change."""


@dataclass(frozen=True)
class Augment:
    """Random per-image changes applied to each training batch (never to validation or test).

    ``translate`` is in pixels of the network input; ``scale`` is a zoom range (1.0 = none).
    """

    hflip: bool = False
    translate: int = 0
    scale: tuple[float, float] = (1.0, 1.0)

    @property
    def active(self) -> bool:
        return self.hflip or self.translate > 0 or self.scale != (1.0, 1.0)

    def to_text(self) -> str:
        parts = (["flip"] if self.hflip else []) + ([f"translate={self.translate}"] if self.translate else [])
        if self.scale != (1.0, 1.0):
            parts.append(f"scale={self.scale[0]:g}-{self.scale[1]:g}")
        return ",".join(parts) or "none"


def parse_augment(text: str | None) -> Augment:
    """``"flip,translate=4,scale=0.9-1.1"`` -> ``Augment``; ``""``/``"none"`` -> no augmentation."""
    if not text or text.strip().lower() == "none":
        return Augment()
    hflip, translate, scale = False, 0, (1.0, 1.0)
    for raw in text.split(","):
        key, _, value = raw.strip().partition("=")
        key = key.strip().lower()
        try:
            if key in ("flip", "hflip"):
                hflip = True
            elif key == "translate":
                translate = int(value)
                if translate < 0:
                    raise ValueError
            elif key == "scale":
                lo, _, hi = value.partition("-")
                scale = (float(lo), float(hi or lo))
                if not 0 < scale[0] <= scale[1]:
                    raise ValueError
            else:
                raise TrainingError(f"--augment: unknown item {raw.strip()!r}; use flip, translate=PIXELS, "
                                    "scale=LOW-HIGH, e.g. flip,translate=4,scale=0.9-1.1")
        except ValueError:
            raise TrainingError(f"--augment: bad value in {raw.strip()!r}; e.g. translate=4 (pixels >= 0) or "
                                "scale=0.9-1.1 (0 < low <= high)") from None
    return Augment(hflip, translate, scale)


@dataclass
class TrainOptions:
    """Every knob of ``train``; stored in the checkpoint so a run can be understood and resumed."""

    epochs: int = 10
    batch_size: int = 32
    lr: float = 0.01
    head_lr_factor: float = 10.0
    freeze_until: str | None = None
    augment: Augment = field(default_factory=Augment)
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"  # learning rate per epoch: "cosine" decay to 0, or "constant"
    split: tuple[float, ...] = (0.7, 0.15, 0.15)
    seed: int = 0
    early_stop: int | None = None
    workers: int = 2
    input_size: int | None = None
    channels_last: bool = True
    threads: int | None = None  # torch threads while training; 1 is fastest on a busy shared CPU
    cache_frozen: bool = True  # compute the frozen layers once per image when nothing is augmented
    # What the fine-tuned model sees of each image (stored in the checkpoint, used by every command):
    # the whole image by default (a base model's ImageNet center crop would hide the outer 6% of each
    # side, where e.g. edge defects are); crop=0.875, resize="shorter" is ImageNet's evaluation crop.
    crop: float = 1.0
    resize: str = "stretch"

    def check(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise TrainingError(f"epochs ({self.epochs}) and batch size ({self.batch_size}) must be at least 1")
        if self.lr <= 0 or self.head_lr_factor <= 0:
            raise TrainingError(f"learning rate ({self.lr}) and head factor ({self.head_lr_factor}) must be > 0")
        from mikata.errors import check_choices

        check_choices("optimizer", self.optimizer, OPTIMIZERS)
        check_choices("learning-rate schedule", self.schedule, SCHEDULES)
        if len(self.split) < 2 or self.split[1] <= 0:
            raise TrainingError(f"--split {list(self.split)}: give train,val[,test] fractions with val > 0, "
                                "e.g. 0.7,0.15,0.15")
        from mikata.data.preprocessing import RESIZE_MODES

        check_choices("resize", self.resize, RESIZE_MODES)
        if not 0.05 <= self.crop <= 1:
            raise TrainingError(f"--crop {self.crop}: give the fraction of each side the model sees, 0.05..1 "
                                "(1 = the whole image; 0.875 = ImageNet's center crop)")
        if self.early_stop is not None and self.early_stop < 1:
            raise TrainingError(f"--early-stop {self.early_stop}: give a patience of at least 1 epoch")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["augment"] = self.augment.to_text()
        d["split"] = list(self.split)
        return d
