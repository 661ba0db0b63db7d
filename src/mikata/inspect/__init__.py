"""Looking inside: feature maps for an image, learned convolution filters, and a sample of the dataset.

Each function returns a result object holding the labelled figure (``.image``, shown by Jupyter,
``.save(path)``) and the numbers that were drawn.

Example:
    >>> from mikata.inspect import activation_grid, filter_grid, sample_grid   # doctest: +SKIP
    >>> activation_grid(handle, "chelsea.png", "blocks.3", top=16).save("maps.png")  # doctest: +SKIP
"""

from mikata.inspect.activations import ActivationGrid, activation_grid, parse_channels
from mikata.inspect.filters import FilterGrid, conv_layers, filter_grid
from mikata.inspect.samples import SampleGrid, class_histogram, list_labeled_images, sample_grid

__all__ = [
    "ActivationGrid", "FilterGrid", "SampleGrid", "activation_grid", "class_histogram", "conv_layers",
    "filter_grid", "list_labeled_images", "parse_channels", "sample_grid",
]
