"""mikata train on transformers (timm ViT and Swin, random weights: nothing downloads), freezing up to a
block, and the checkpoint coming back as a transformer the attention methods and CAMs can explain."""

from __future__ import annotations

import pytest
import torch
from test_train import write_digits
from torchvision_compat import import_torchvision_declaring_ops


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    return write_digits(tmp_path_factory.mktemp("digits"), per_class=16, classes=(0, 1, 7))


@pytest.mark.parametrize("spec,size,freeze,layer", [
    ("timm:vit_tiny_patch16_224?weights=random", 32, "blocks.10", "blocks.11.norm1"),
    ("timm:swin_tiny_patch4_window7_224?weights=random", 64, "layers.3", "layers.3"),
])
def test_train_a_transformer_with_frozen_blocks(digits_dir, tmp_path, spec, size, freeze, layer):
    import_torchvision_declaring_ops()
    from mikata.attribution import explain
    from mikata.models import load_model
    from mikata.training import train

    out = tmp_path / "model.safetensors"
    result = train(digits_dir, spec, out, epochs=1, batch_size=16, lr=0.01, input_size=size, freeze_until=freeze,
                   threads=1, progress=False)
    assert result.epochs_run == 1 and out.is_file()
    handle = load_model(str(out))
    assert handle.class_names == ["digit_0", "digit_1", "digit_7"] and handle.input_size == (size, size)
    assert handle.default_layer == layer
    before = load_model(spec, input_size=size)  # the frozen blocks kept the base weights, the later ones moved
    frozen = dict(before.net.named_parameters())
    for name, p in handle.net.named_parameters():
        if name.startswith(("patch_embed", "blocks.0.", "layers.0.")):
            assert torch.equal(p, frozen[name]), name
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    methods = ["gradcam", "attention-rollout", "gradient-rollout"] if "vit" in spec else ["gradcam"]
    maps = explain(handle, x, methods)
    assert [m.method for m in maps] == methods and all(torch.isfinite(m.maps).all() for m in maps)
