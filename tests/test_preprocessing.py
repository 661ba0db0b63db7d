"""One Preprocessing object: the handle's pixels, a run manifest's record, and the head resolved once."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from mikata.data.preprocessing import Preprocessing
from mikata.errors import ChoiceError
from mikata.models.handle import ModelHandle
from mikata.models.loading import replace_head


class CallOrder(nn.Module):
    """A head registered before the hidden Linear: registration order and call order disagree."""

    def __init__(self) -> None:
        super().__init__()
        self.classifier = nn.Linear(6, 3)
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.hidden = nn.Linear(4, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.relu(self.hidden(self.features(x))))


def test_manifest_round_trip_and_mode():
    pre = Preprocessing(input_size=[28, 28], mean=[0.5], std=[0.25], crop_fraction=1.0, in_channels=1)
    assert pre.mode == "L" and Preprocessing().mode == "RGB"
    back = Preprocessing.from_identity({**pre.to_dict(), "model_spec": "ignored"})
    assert back == pre and back.input_size == (28, 28) and back.mean == (0.5,)
    with pytest.raises(ChoiceError):
        Preprocessing(interpolation="lanczos7")


def test_normalize_and_denormalize_invert_each_other_on_the_inputs_dtype():
    pre = Preprocessing(input_size=(8, 8))
    x01 = torch.rand(2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x = pre.normalize(x01)  # (2, 3, 8, 8)
    assert x.dtype == torch.float64
    torch.testing.assert_close(pre.denormalize(x), x01)


def test_handle_delegates_to_its_preprocessing():
    net = nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 2))
    handle = ModelHandle(net, ["a", "b"], input_size=(12, 10), mean=(0.1, 0.2, 0.3), std=(0.5, 0.5, 0.5),
                         crop_fraction=0.9, interpolation="bilinear")
    pre = handle.preprocessing
    assert (handle.input_size, handle.mean, handle.crop_fraction, handle.interpolation, handle.mode) == \
        ((12, 10), (0.1, 0.2, 0.3), 0.9, "bilinear", "RGB")
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8))
    torch.testing.assert_close(handle.preprocess([img]), pre.preprocess([img]))
    assert handle.preprocess([img]).shape == (1, 3, 12, 10)
    # given as one object, the handle is the same
    same = ModelHandle(net, ["a", "b"], preprocessing=pre)
    assert same.preprocessing is pre and same.input_size == (12, 10)
    assert dataclasses.replace(handle, spec="x").preprocessing == pre


def test_head_is_the_last_linear_called_and_replace_head_swaps_that_one():
    handle = ModelHandle(CallOrder(), list("abc"), input_size=(9, 9), mean=(0.0,), std=(1.0,), in_channels=1)
    assert handle.head_layer == "classifier" and handle.embedding_layer == "classifier"
    # registration order alone would have picked "hidden"
    assert [n for n, m in handle.net.named_modules() if isinstance(m, nn.Linear)][-1] == "hidden"
    name = replace_head(handle.net, 5, handle.head_layer)
    assert name == "classifier" and handle.net.classifier.out_features == 5
    assert handle.net.hidden.out_features == 6
