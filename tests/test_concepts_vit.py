"""Concepts on token and channels-last layers (a small random-weight ViT with register tokens, and Swin):
the layer's output is viewed as (N, C, h, w) where activations are captured, and the direction-removal
deletion test takes the concept off the output in its own layout."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mikata.concepts import compute_atlas, concept_heatmap


@pytest.mark.parametrize("name", ["vit_registers", "swin"])
def test_concepts_on_a_transformer(torchvision, tmp_path, name):
    import transformer_models
    from mikata.scanning.scan import scan

    h = getattr(transformer_models, name)()
    rng = np.random.default_rng(0)
    for cls in ("class_0", "class_1"):
        (tmp_path / "data" / cls).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "data" / cls / f"{i}.png")
    scan(h, tmp_path / "data", tmp_path / "run", workers=0, progress=False)
    atlas = compute_atlas(tmp_path / "run", model=h, per_class=2, sample=4, classes=["class_0"], progress=False)
    doc = atlas.to_json()
    layout = h.layout(doc["layer"])
    assert layout.kind in ("tokens", "nhwc") and layout.spatial
    a = atlas.arrays("class_0")
    assert a["U"].shape[1:3] == tuple(layout.grid)
    # random weights: the class's net evidence may be negative, then the shares sum to -1
    total = sum(e["importance"] for e in doc["classes"]["class_0"]) + doc["residual"]["class_0"]
    assert abs(total) == pytest.approx(1.0, abs=1e-5)
    removal = doc["deletion_direction"]["class_0"]
    assert all(np.isfinite(r["mean_drop"]) for r in removal)
    m = concept_heatmap(tmp_path / "run", int(a["ids"][0]), "class_0/0", model=h)
    assert m.shape == (64, 64) and np.isfinite(m).all()
