"""A planted shortcut the concept atlas must find unprompted, and a clean twin where it must find none.

The data: Fashion-MNIST Coat and Dress (grey edges alone separate them about 3 times in 4), as RGB
images; in 90% of the Coat images a small red square sits at the top right (the planted artefact).
The model: a fixed small conv layer ``features`` whose channels are known (one red-minus-grey detector
that only a red pixel excites; four grey edge detectors), then a global average pool and a linear head
FITTED by logistic regression on the pooled features of a training half. Nobody tells the head to use
the red channel: it learns to, because the mark predicts Coat better than the edges do. The clean twin
is the same layer with its head fitted on the same images without the mark.

Checked on the held-out half, through ``mikata scan`` and ``compute_atlas`` (the library the CLI calls):
- the planted model uses the mark (Coat accuracy on the marked images drops when the mark is removed);
- among Coat's three most important concepts one is the mark: its exemplar boxes hold the red square,
  its heatmap sits on it, it is flagged ``shortcut``, and deleting it flips predictions;
- the clean twin flags no Coat concept as a shortcut.

The full five-kind benchmark on fine-tuned lite0 is benchmarks/bench_concepts_shortcuts.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
from torch import nn

from mikata.data.idx import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR

if TYPE_CHECKING:
    from mikata.models.handle import ModelHandle

pytestmark = pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(),
                                reason="Debian package dataset-fashion-mnist not installed")

CLASSES = ("Coat", "Dress")  # sorted: the folder dataset's class order
TARGET = "Coat"
MARK = (21, 2, 25, 6)  # x0, y0, x1, y1 in the 28-px image (x1, y1 exclusive)
PER_CLASS = 60


def _mark(img: np.ndarray) -> np.ndarray:
    out = img.copy()
    x0, y0, x1, y1 = MARK
    out[y0:y1, x0:x1] = (255, 0, 0)
    return out


def _write(root, images: dict[str, list[tuple[str, np.ndarray]]]) -> None:
    from PIL import Image

    for cls, items in images.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for name, img in items:
            Image.fromarray(img).save(root / cls / name)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """``{half: {"planted"|"clean": folder}}`` for the ``fit`` and ``test`` halves, and the marked test files."""
    from mikata.data.idx import load_fashion_mnist

    x, y = load_fashion_mnist("test")
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("planted")
    marked: set[str] = set()
    folders: dict[str, dict[str, object]] = {}
    for half in ("fit", "test"):
        planted: dict[str, list] = {}
        clean: dict[str, list] = {}
        for cls in CLASSES:
            label = FASHION_MNIST_CLASSES.index(cls)
            idx = rng.choice(np.flatnonzero(y == label), size=PER_CLASS, replace=False)
            plant = rng.random(PER_CLASS) < 0.9 if cls == TARGET else np.zeros(PER_CLASS, bool)
            for i, p in zip(idx, plant):
                rgb = np.repeat(x[i][:, :, None], 3, axis=2)
                name = f"{half}_{i:05d}.png"
                clean.setdefault(cls, []).append((name, rgb))
                planted.setdefault(cls, []).append((name, _mark(rgb) if p else rgb))
                if p and half == "test":
                    marked.add(f"{cls}/{name}")
        folders[half] = {"planted": root / half / "planted", "clean": root / half / "clean"}
        _write(folders[half]["planted"], planted)
        _write(folders[half]["clean"], clean)
    return folders, marked


class EdgesAndRed(nn.Module):
    """``features``: 5 fixed channels at 1/4 resolution (red-minus-grey, and +/- x and y grey edges);
    a linear head on their global average."""

    def __init__(self) -> None:
        super().__init__()
        conv = nn.Conv2d(3, 5, 3, padding=1)
        w = torch.zeros(5, 3, 3, 3)
        w[0, 0, 1, 1], w[0, 1, 1, 1], w[0, 2, 1, 1] = 4.0, -2.0, -2.0  # red: 4; any grey (v, v, v): 0
        sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 3
        for c, k in enumerate((sobel, -sobel, sobel.T, -sobel.T), start=1):
            w[c] = k[None].repeat(3, 1, 1) / 3  # the grey level's edges
        with torch.no_grad():
            conv.weight.copy_(w)
            conv.bias.zero_()
        self.features = nn.Sequential(conv, nn.ReLU(), nn.AvgPool2d(4))  # (N, 5, 8, 8) from 32 px
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(5, 2)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pooled(x))


def _handle(net: nn.Module, spec: str) -> ModelHandle:
    from mikata.models.handle import ModelHandle

    return ModelHandle(net, list(CLASSES), input_size=(32, 32), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                       crop_fraction=1.0, resize="stretch", default_layer="features", spec=spec)


def _fitted(folder) -> ModelHandle:
    """The model with its head fitted (logistic regression) on the pooled features of ``folder``."""
    from sklearn.linear_model import LogisticRegression

    from mikata.data import folder_dataset

    net = EdgesAndRed().eval()
    handle = _handle(net, "planted-test")
    ds = folder_dataset(folder)
    with torch.no_grad():
        feats = net.pooled(handle.preprocessing.load([s.path for s in ds.samples])).numpy()
    labels = np.array([s.label for s in ds.samples])
    fit = LogisticRegression(C=10.0, max_iter=2000).fit(feats, labels)
    # two logits from the binary fit: class 1 gets w.x + b, class 0 gets its negative (same softmax odds x2)
    w = torch.tensor(fit.coef_[0], dtype=torch.float32)
    b = float(fit.intercept_[0])
    with torch.no_grad():
        net.fc.weight.copy_(torch.stack([-w, w]) / 2)
        net.fc.bias.copy_(torch.tensor([-b, b]) / 2)
    return handle


@pytest.fixture(scope="module")
def runs(data, tmp_path_factory):
    from mikata.scanning.scan import scan

    folders, _ = data
    out = tmp_path_factory.mktemp("runs")
    planted, clean = _fitted(folders["fit"]["planted"]), _fitted(folders["fit"]["clean"])
    made = {}
    for name, handle, twin in (("planted", planted, "planted"), ("removed", planted, "clean"),
                               ("clean", clean, "clean")):
        scan(handle, folders["test"][twin], out / name, workers=0, progress=False)
        made[name] = (out / name, handle)
    return made


def _rel(path: str) -> str:
    return "/".join(path.replace("\\", "/").split("/")[-2:])


def _marked_accuracy(run, marked: set[str]) -> float:
    from mikata.analysis.run import open_run

    df = open_run(run).to_pandas(dataset_issues=False)
    rows = df[df.path.map(lambda p: _rel(p) in marked)]
    assert len(rows) > 40
    return float(rows.correct.mean())


def test_the_planted_model_uses_the_mark(runs, data):
    _, marked = data
    with_mark = _marked_accuracy(runs["planted"][0], marked)
    without = _marked_accuracy(runs["removed"][0], marked)
    assert with_mark > 0.9 and without < with_mark - 0.3, (with_mark, without)


def _box_on_mark(box) -> bool:
    """An exemplar box (28-px image pixels) that holds at least half of the mark and is at most half the image."""
    x0, y0, x1, y1 = box
    mx0, my0, mx1, my1 = MARK
    ix = max(0.0, min(x1, mx1) - max(x0, mx0))
    iy = max(0.0, min(y1, my1) - max(y0, my0))
    return ix * iy >= 0.5 * (mx1 - mx0) * (my1 - my0) and (x1 - x0) * (y1 - y0) <= 0.5 * 28 * 28


def test_the_atlas_names_the_mark_a_shortcut_with_evidence(runs, data):
    from mikata.concepts import compute_atlas, concept_heatmap

    _, marked = data
    run, handle = runs["planted"]
    atlas = compute_atlas(run, per_class=4, model=handle, device="cpu", progress=False).to_json()
    concepts = sorted(atlas["classes"][TARGET], key=lambda c: -c["importance"])
    on_mark = [c for c in concepts[:3]
               if np.mean([_box_on_mark(e["box"]) and _rel(e["path"]) in marked for e in c["exemplars"]]) >= 0.6]
    assert on_mark, [(c["concept"], [e["box"] for e in c["exemplars"]]) for c in concepts]
    mark = on_mark[0]
    assert mark["shortcut"], mark["evidence"]
    assert mark["deletion"]["images"] > 0 and mark["deletion"]["flip_rate"] >= 0.3, mark["deletion"]
    # where the concept sits: the heatmap's mass on the mark's pixels, far above a uniform map's
    x0, y0, x1, y1 = MARK
    ex = mark["exemplars"][0]
    heat = np.clip(np.asarray(concept_heatmap(run, ex["id"], mark["concept"], model=handle), np.float64), 0, None)
    assert heat.shape == (28, 28)
    share = heat[y0:y1, x0:x1].sum() / heat.sum()
    assert share > 5 * (x1 - x0) * (y1 - y0) / (28 * 28), share
    # its center, normalized to [0, 1], is the mark's (top right)
    cx, cy = mark["location"]["center"]
    assert cx > 0.55 and cy < 0.45, mark["location"]


def test_the_clean_twin_raises_no_shortcut_for_the_class(runs):
    from mikata.concepts import compute_atlas

    run, handle = runs["clean"]
    atlas = compute_atlas(run, per_class=4, model=handle, device="cpu", progress=False).to_json()
    assert atlas["classes"][TARGET], "the clean twin's Coat has concepts"
    flagged = [(c["concept"], c["evidence"]) for c in atlas["classes"][TARGET] if c["shortcut"]]
    assert not flagged, flagged
    # nor a class-level finding (the class resting on its context or its intensities)
    found = atlas["class_findings"][TARGET]
    assert [f["test"] for f in found] == ["context", "photometric"]
    assert not [f["evidence"] for f in found if f["shortcut"]]
