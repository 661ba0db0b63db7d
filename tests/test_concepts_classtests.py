"""Class-level shortcut tests (``mikata.concepts.classtests``): a class resting on its context or its intensities.

Hand-made models with known behaviour on 16 px images: class "a" is a big centered square, class "b" a small
square anywhere in the middle (so the other class varies over the middle and the outer ring is the context).
Planted: a grey 2 px frame, or a dimmer and flatter image, in most "a" images. The "frame" model reads the
outer ring, the "contrast" model the image's intensity range, the "shape" model the middle. A test must flag
exactly the model that rests on what it removes; the context test's flip rate is checked against an
independent computation (numpy context mask and median, the model run by hand).
"""

from __future__ import annotations

import json
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from mikata.concepts import classtests as T

SIZE = 16


class Reader(nn.Module):
    """``features``: the image itself (a 1x1 identity conv, the layer the concepts factorize); the logit of "a"
    from one statistic of it (frame: the outer 2 px ring's mean; contrast: the intensity range; shape: the
    middle 8x8's mean); "b" gets its negative."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.features = nn.Conv2d(3, 3, 1, bias=False)
        with torch.no_grad():
            self.features.weight.copy_(torch.eye(3)[:, :, None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.features(x).mean(1)  # (n, H, W)
        if self.kind == "frame":
            ring = torch.ones(SIZE, SIZE, dtype=torch.bool)
            ring[2:-2, 2:-2] = False
            logit = 12 * (g[:, ring].mean(1) - 0.15)
        elif self.kind == "contrast":
            flat = g.flatten(1)
            logit = 12 * (0.65 - (flat.amax(1) - flat.amin(1)))
        else:
            logit = 12 * (g[:, 4:12, 4:12].mean((1, 2)) - 0.5)
        return torch.stack([logit, -logit], 1)


def _handle(kind: str):
    from mikata.models.handle import ModelHandle

    return ModelHandle(net=Reader(kind).eval(), class_names=["a", "b"], input_size=(SIZE, SIZE),
                       mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), crop_fraction=1.0, interpolation="nearest",
                       in_channels=3, default_layer="features", spec=f"reader-{kind}")


def _images(kind: str, per_class: int = 24, seed: int = 0) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    out: dict[str, list[np.ndarray]] = {"a": [], "b": []}
    for _ in range(per_class):
        a = np.zeros((SIZE, SIZE), np.float32)
        dy, dx = rng.integers(-1, 2, 2)
        a[4 + dy:12 + dy, 4 + dx:12 + dx] = rng.uniform(0.8, 1.0)
        if rng.random() < 0.9:  # the plant, in most "a" images
            if kind == "frame":
                a[:2], a[-2:], a[:, :2], a[:, -2:] = 0.6, 0.6, 0.6, 0.6
            else:
                a = 0.14 + 0.45 * a
        out["a"].append(a)
        b = np.zeros((SIZE, SIZE), np.float32)
        y, x = rng.integers(3, 10, 2)
        b[y:y + 4, x:x + 4] = rng.uniform(0.8, 1.0)
        out["b"].append(b)
    return out


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    roots = {}
    for kind in ("frame", "dim"):
        root = tmp_path_factory.mktemp(kind) / "data"
        for cls, images in _images(kind).items():
            (root / cls).mkdir(parents=True)
            for i, img in enumerate(images):
                Image.fromarray((np.repeat(img[:, :, None], 3, 2) * 255).round().astype(np.uint8)).save(
                    root / cls / f"{i:03d}.png")
        roots[kind] = root
    return roots


def _atlas(datasets, tmp_path, data: str, model: str):
    from mikata.scanning.scan import scan
    from mikata.concepts import compute_atlas

    handle = _handle(model)
    scan(handle, datasets[data], tmp_path / "run", batch_size=32, workers=0, progress=False)
    atlas = compute_atlas(tmp_path / "run", model=handle, per_class=2, sample=500, progress=False)
    return atlas, handle, {f["test"]: f for f in atlas.to_json()["class_findings"]["a"]}


# ------------------------------------------------------------------------------------------- the edits
def test_photometric_maps_each_images_quantiles_onto_the_target():
    x = torch.rand(5, 3, 12, 12) * torch.tensor([0.3, 0.5, 1.0, 2.0, 0.1])[:, None, None, None] + 0.2
    y = T.photometric(x, (-0.5, 0.75))
    q = T.quantiles(y)
    assert torch.allclose(q[:, 0], torch.full((5,), -0.5), atol=1e-4)
    assert torch.allclose(q[:, 1], torch.full((5,), 0.75), atol=1e-4)
    # one affine map per image: the order of the pixels is kept and the map is exactly linear
    for i in range(5):
        a, b = x[i].flatten(), y[i].flatten()
        slope = (b[1:] - b[0]) / (a[1:] - a[0])
        assert torch.allclose(slope, slope.mean().expand_as(slope), rtol=1e-3, atol=1e-4)
    flat = torch.full((1, 3, 4, 4), 0.3)
    assert torch.allclose(T.photometric(flat, (0.0, 1.0)), torch.zeros_like(flat))  # only shifted, no NaN


def test_context_fill_keeps_the_rest_and_fills_the_context():
    x = torch.rand(2, 3, 8, 8)
    context = np.zeros((8, 8), np.float32)
    context[0], context[:, -1] = 1, 1
    mean = np.full((3, 8, 8), 0.25, np.float32)
    y = T.context_fill(x, mean, context)
    m = torch.from_numpy(context).bool()
    assert torch.equal(y[:, :, ~m], x[:, :, ~m]) and torch.allclose(y[:, :, m], torch.full_like(y[:, :, m], 0.25))


def test_findings_use_the_concepts_thresholds():
    from mikata.concepts.shortcuts import USED_DROP, USED_FLIP

    got = T.findings({"context": {"flip_rate": USED_FLIP, "mean_drop": 0.0, "images": 10},
                      "photometric": {"flip_rate": USED_FLIP - 0.01, "mean_drop": USED_DROP - 0.01, "images": 10}},
                     "Coat", 0.25, [("Coat/3", 0.6)])
    context, photo = got
    assert context["shortcut"] and "rests on its context" in context["evidence"] and context["concepts"] == ["Coat/3"]
    assert "25% of the image" in context["evidence"]
    assert not photo["shortcut"] and "Suspected" not in photo["evidence"]


# ------------------------------------------------------------------------------------------- planted models
def test_a_model_that_reads_the_frame_rests_on_the_context(datasets, tmp_path):
    atlas, handle, found = _atlas(datasets, tmp_path, "frame", "frame")
    assert found["context"]["shortcut"] and found["context"]["deletion"]["flip_rate"] >= 0.9, found["context"]
    assert not found["photometric"]["shortcut"], found["photometric"]
    assert any(s["class"] == "a" and s["test"] == "context" for s in atlas.class_shortcuts())
    assert "context" in atlas.arrays("a")
    # independently: the context is where the "b" images' std is at most CLASS_CONTEXT_STD of the largest,
    # filled with their per-pixel median, on the "a" images the model predicts as "a"
    from mikata.concepts.compute import CLASS_CONTEXT_STD

    def load(cls):
        files = sorted((datasets["frame"] / cls).glob("*.png"))
        return np.stack([np.asarray(Image.open(f).convert("RGB"), np.float64).transpose(2, 0, 1) / 255 for f in files])

    b, a = load("b"), load("a")
    std = np.sqrt(b.var(0).mean(0))  # (H, W): the channels' mean variance
    context = std <= CLASS_CONTEXT_STD * std.max()
    assert context[:2].all() and context[:, :2].all() and not context[6:10, 6:10].any()
    filled = np.where(context[None, None], np.median(b, 0)[None], a)
    with torch.no_grad():
        before = torch.softmax(handle.net(torch.tensor(a, dtype=torch.float32)), 1).numpy()
        after = torch.softmax(handle.net(torch.tensor(filled, dtype=torch.float32)), 1).numpy()
    was = before.argmax(1) == 0
    want_flip = float((after[was].argmax(1) != 0).mean())
    want_drop = float((before[was, 0] - after[was, 0]).mean())
    d = found["context"]["deletion"]
    assert d["images"] == int(was.sum())
    assert d["flip_rate"] == pytest.approx(want_flip) and d["mean_drop"] == pytest.approx(want_drop, abs=1e-4)


def test_a_model_that_reads_the_object_is_not_flagged_on_framed_images(datasets, tmp_path):
    _, _, found = _atlas(datasets, tmp_path, "frame", "shape")
    assert not found["context"]["shortcut"] and not found["photometric"]["shortcut"], found


def test_a_model_that_reads_the_contrast_rests_on_the_intensities(datasets, tmp_path):
    atlas, _, found = _atlas(datasets, tmp_path, "dim", "contrast")
    assert found["photometric"]["shortcut"] and found["photometric"]["deletion"]["flip_rate"] >= 0.9, found
    assert not found["context"]["shortcut"], found["context"]
    assert "brightness or contrast" in found["photometric"]["evidence"]


def test_a_model_that_reads_the_object_is_not_flagged_on_dim_images(datasets, tmp_path):
    _, _, found = _atlas(datasets, tmp_path, "dim", "shape")
    assert not found["context"]["shortcut"] and not found["photometric"]["shortcut"], found


def test_class_findings_are_in_the_json_the_audit_and_the_text(datasets, tmp_path, capsys):
    from mikata.cli import main
    from mikata.cli.concepts import format_atlas

    atlas, _, _ = _atlas(datasets, tmp_path, "frame", "frame")
    doc = json.loads(json.dumps(atlas.to_json()))
    for f in doc["class_findings"]["a"]:
        assert set(f) == {"test", "deletion", "shortcut", "concepts", "evidence"}
        assert set(f["deletion"]) == {"flip_rate", "mean_drop", "images"}
    assert "a rests on its context" in format_atlas(atlas)
    assert main(["audit", str(tmp_path / "run"), "--json", "--no-dataset-issues"]) == 0
    shortcuts = json.loads(capsys.readouterr().out)["shortcuts"]
    assert any(s["concept"] is None and s["test"] == "context" for s in shortcuts)
