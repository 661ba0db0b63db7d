"""Concepts on a real ImageNet CNN (efficientnet-lite0, real weights) and real photos: the run's layer is a
linear bottleneck (signed activations: factorized sign-split), the preprocessing crops the center, and the
boxes and heatmaps come back in the original photos' pixels."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mikata.concepts import compute_atlas, concept_heatmap, image_decomposition


@pytest.fixture(scope="module")
def run(tmp_path_factory, lite0, photos):
    from mikata.scanning.scan import scan

    base = tmp_path_factory.mktemp("concepts_lite0")
    for name, cls in (("chelsea", "tiger cat"), ("coffee", "espresso")):
        img = Image.open(photos[name])
        w, h = img.size
        for i, box in enumerate([(0, 0, 0.9, 0.8), (0.1, 0.1, 1, 1), (0.05, 0, 0.95, 0.9)]):
            (base / "photos" / cls).mkdir(parents=True, exist_ok=True)
            img.crop((int(box[0] * w), int(box[1] * h), int(box[2] * w), int(box[3] * h))).save(
                base / "photos" / cls / f"{name}_{i}.png")
    scan(lite0, base / "photos", base / "run", workers=0, progress=False)
    return base / "run"


@pytest.mark.parametrize("layer, split", [(None, False), ("blocks.15", True)])
def test_lite0_concepts_sign_split_boxes_and_maps_in_original_pixels(run, lite0, layer, split):
    """The default layer (``head``: after its activation, non-negative: "auto" leaves it as it is); the last
    MBConv block (a linear bottleneck: signed) factorized sign-split."""
    atlas = compute_atlas(run, model=lite0, layer=layer, classes=["tiger cat"], per_class=2, sample=3, progress=False,
                          signed="split" if split else "auto")
    doc = atlas.to_json()
    assert doc["layer"] == (layer or lite0.default_layer)
    a = atlas.arrays("tiger cat")
    from mikata.hooks import capture

    x = lite0.preprocessing.load([sorted((run.parent / "photos" / "tiger cat").iterdir())[0]])
    with capture(lite0.net, [doc["layer"]]) as rec:
        lite0.net(x)
    channels = rec.activations[doc["layer"]].shape[1]
    assert a["W"].shape == (2, (2 if split else 1) * channels)
    entries = doc["classes"]["tiger cat"]
    assert sum(e["importance"] for e in entries) + doc["residual"]["tiger cat"] == pytest.approx(1.0, abs=1e-6)
    sizes = {int(i): tuple(int(v) for v in s) for i, s in zip(a["ids"], a["sizes"])}
    for e in entries:
        for ex in e["exemplars"]:
            w, h = sizes[ex["id"]]
            x0, y0, x1, y1 = ex["box"]
            # inside the part of the photo the center crop keeps (resized to rw x rh, cropped at left, top)
            rw, rh, left, top = lite0.preprocessing.geometry(w, h)
            H, W = lite0.preprocessing.input_size
            assert left * w / rw - 1 <= x0 < x1 <= (left + W) * w / rw + 1
            assert top * h / rh - 1 <= y0 < y1 <= (top + H) * h / rh + 1
            assert (left > 0 or top > 0) and 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
    i = int(a["ids"][0])
    m = concept_heatmap(run, i, "tiger cat/0", model=lite0)
    w, h = sizes[i]
    assert m.shape == (h, w) and float(m.max()) > 0
    # outside the crop the model never saw the photo: no concept there
    short = min(w, h)
    margin = int(0.03 * short)
    assert float(np.abs(m[:, :margin]).max()) == 0.0 and float(np.abs(m[:margin]).max()) == 0.0
    parts = image_decomposition(run, i, model=lite0)
    assert not parts or sum(s for _, s in parts) == pytest.approx(1.0)
