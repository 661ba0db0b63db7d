"""Feature visualization: what makes a channel, a neuron or a class logit fire.

Objectives × parameterizations × transforms × regularizers × optimizer × octaves, many units in
one batch, seeded. See ``render`` for the loop and ``units`` for one-call helpers.

Example:
    >>> from mikata.featurevis import visualize_classes, RenderOptions        # doctest: +SKIP
    >>> visualize_classes(handle, ["zebra", "castle"]).save("out/")           # doctest: +SKIP
"""

from mikata.featurevis.objectives import (
    INPUT, LOGITS, Objective, channel, class_logit, diversity, layer_energy, neuron,
)
from mikata.featurevis.params import FourierImage, PixelImage, octave_sizes
from mikata.featurevis.regularizers import blur_penalty, lp_norm, total_variation
from mikata.featurevis.optimize import OPTIMIZERS, Rendering, RenderOptions, format_log, render
from mikata.featurevis.top_images import TopImages, top_activating_images
from mikata.featurevis.units import (
    deepdream, load_start_image, visualize, visualize_channels, visualize_classes, visualize_neurons,
)

__all__ = [
    "INPUT", "LOGITS", "OPTIMIZERS", "FourierImage", "Objective", "PixelImage", "Rendering", "RenderOptions", "TopImages",
    "blur_penalty", "channel", "class_logit", "deepdream", "diversity", "format_log", "layer_energy",
    "load_start_image", "lp_norm", "neuron", "octave_sizes", "render", "top_activating_images",
    "total_variation", "visualize", "visualize_channels", "visualize_classes", "visualize_neurons",
]
