"""Concepts of a cross-validation run: each row goes through the fold model that made its prediction.

A crossval run records no single model (its manifest's model_spec is a sentence); before, ``mikata concepts``
on it needed ``--model`` and used that one model for every row. Now each sampled row's activations, gradients,
P(class) and deletion tests come from its own fold's model (``MapService.handle_for``), checked here against the
fold checkpoints loaded independently.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_train import write_digits

pytestmark = pytest.mark.slow  # trains two lite0 folds (about 1 min on an idle core)

FAST = dict(epochs=1, batch_size=16, lr=0.02, input_size=32, freeze_until="blocks.11", threads=1)
PER_CLASS = 12


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory, lite0):
    from mikata.scanning.crossval import crossval

    root = tmp_path_factory.mktemp("cv")
    digits = write_digits(root / "digits", per_class=PER_CLASS)
    run = root / "cv"
    crossval(digits, lite0, run, folds=2, progress=False, scan_workers=0, **FAST)
    return run


def test_concepts_of_a_crossval_run_use_each_rows_fold_model(cv_run):
    from mikata.runs.data import load_run
    from mikata.concepts import compute_atlas, concept_heatmap
    from mikata.models import load_model

    atlas = compute_atlas(cv_run, per_class=2, sample=500, progress=False)  # no --model: the folds' own
    d = load_run(cv_run)
    split_of = dict(zip(d.ids.tolist(), d.splits.tolist()))
    path_of = dict(zip(d.ids.tolist(), d.paths))
    folds = {f: load_model(str(cv_run.parent / "cv.folds" / f"{f}.safetensors")) for f in ("fold1", "fold2")}
    differ = 0
    for cls in atlas.class_names:
        c = atlas.class_id(cls)
        a = atlas.arrays(c)
        assert set(split_of[int(i)] for i in a["ids"]) == {"fold1", "fold2"}
        for i, p in zip(a["ids"], a["prob"]):
            h = folds[split_of[int(i)]]
            with torch.no_grad():
                x = h.preprocessing.load([path_of[int(i)]])
                mine = float(torch.softmax(h.net(x), 1)[0, c])
                other = folds["fold2" if split_of[int(i)] == "fold1" else "fold1"]
                theirs = float(torch.softmax(other.net(x), 1)[0, c])
            assert p == pytest.approx(mine, abs=1e-4), (cls, int(i))
            differ += abs(mine - theirs) > 1e-3
        # the stored predictions are the run's rows' (made by the same fold models)
        assert np.array_equal(a["preds"], np.array([int(d.preds[d.ids == i][0]) for i in a["ids"]]))
    assert differ > 0  # the two fold models really disagree somewhere, so the check above can fail
    for cls, found in atlas.to_json()["class_findings"].items():
        assert [f["test"] for f in found] == ["context", "photometric"]
    # a heatmap on demand for a sampled image, again without --model
    cls = atlas.class_names[0]
    image_id = int(atlas.arrays(cls)["ids"][0])
    heat = concept_heatmap(cv_run, image_id, f"{cls}/0")
    assert heat.shape == (8, 8) and np.isfinite(heat).all()
