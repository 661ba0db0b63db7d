"""The headline property: class-logit images at default settings are recognized by the model itself."""

from __future__ import annotations

import pytest
import torch

from mikata.featurevis import RenderOptions, visualize_classes


@pytest.mark.slow
def test_class_logit_images_are_classified_as_their_classes(lite0):
    classes = ["zebra", "strawberry", "castle"]
    res = visualize_classes(lite0, classes, RenderOptions())  # defaults: 224 px, Fourier, Adam
    assert res.labels == classes
    with torch.inference_mode():
        probs = lite0.model(lite0.preprocess(res.pil())).softmax(1)  # (3, 1000), through the saved 8-bit pixels
    ids = [lite0.class_index(c) for c in classes]
    assert probs.argmax(1).tolist() == ids
    assert (probs[torch.arange(3), ids] >= 0.9).all(), probs[torch.arange(3), ids]
