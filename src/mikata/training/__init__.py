"""Transfer learning: fine-tune a pretrained classifier on a folder of labeled images.

Example:
    >>> from mikata.training import train
    >>> result = train("flowers/", "efficientnet-lite0", "flowers.safetensors", epochs=5)  # doctest: +SKIP
"""

from mikata.training.augment import augment_batch
from mikata.training.freeze import freeze_until, set_training_mode
from mikata.training.loop import TrainResult, evaluate_split, plot_path, state_path, train
from mikata.training.options import Augment, TrainingError, TrainOptions, parse_augment
from mikata.training.plot import plot_history
from mikata.training.tensors import DecodedSplit, decode_split

__all__ = ["Augment", "DecodedSplit", "TrainOptions", "TrainResult", "TrainingError", "augment_batch", "decode_split",
           "evaluate_split", "freeze_until", "parse_augment", "plot_history", "plot_path", "set_training_mode",
           "state_path", "train"]
