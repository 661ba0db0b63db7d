"""mikata.concepts on a run of a model whose activations are known mixtures (concepts_support): the
planted directions come back, importances sum as stated, heatmaps are the factorization, the stored
atlas follows the run's version, resumes per class, and the CLI's --json and refusals."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from concepts_support import COLOURS, MIX, mix_handle, mix_image, mix_run
from mikata.concepts import (compute_atlas, concept_heatmap, concept_images, concept_location_map,
                             concept_reviews, image_decomposition, load_atlas, set_concept_review)
from mikata.errors import ChoiceError, MikataError


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return mix_run(tmp_path_factory.mktemp("concepts"), per_class=24)


@pytest.fixture(scope="module")
def handle():
    return mix_handle()


@pytest.fixture(scope="module")
def atlas(run, handle):
    return compute_atlas(run, model=handle, per_class=2, sample=20, progress=False)


def _cos(W: np.ndarray, M: torch.Tensor) -> np.ndarray:
    Mn = (M / M.norm(dim=1, keepdim=True)).numpy()
    return W @ Mn.T  # (k, colours)


def test_the_planted_directions_come_back(atlas):
    # warm images are red and green cells, cool ones blue and green: each class's two concepts are those rows of MIX
    for cls, colours in (("warm", [0, 1]), ("cool", [2, 1])):
        cos = _cos(atlas.arrays(cls)["W"], MIX[colours])
        r, c = linear_sum_assignment(-cos)
        assert cos[r, c].min() > 0.999, cos
    # concept 0 is the most important: red for warm (its head likes red), blue for cool
    assert _cos(atlas.arrays("warm")["W"], MIX)[0].argmax() == 0
    assert _cos(atlas.arrays("cool")["W"], MIX)[0].argmax() == 2


def test_importances_sum_to_the_evidence_and_to_the_logit_minus_bias(atlas, run, handle):
    doc = atlas.to_json()
    for cls in ("warm", "cool"):
        total = sum(c["importance"] for c in doc["classes"][cls]) + doc["residual"][cls]
        assert total == pytest.approx(1.0, abs=1e-6)
        assert abs(doc["residual"][cls]) < 1e-3  # the mixtures are exactly non-negative: nothing is left over
    # per image: Σ_k contribution + residual = gradient x activation = logit - bias (linear head after a global pool)
    a = atlas.arrays("warm")
    from mikata.presentation.media import image_files
    from mikata.runs.store import RunStore

    with RunStore.open(run) as store:
        files = image_files(store, a["ids"][:5].tolist())
    x = handle.preprocessing.load([files[int(i)] for i in a["ids"][:5]])
    with torch.no_grad():
        logit = handle.net(x)[:, 0] - handle.net.head.bias[0]
    got = a["contrib"][:5].sum(1) + a["residual"][:5]
    assert np.allclose(got, logit.numpy(), atol=1e-5)
    assert np.allclose(a["total"][:5], logit.numpy(), atol=1e-5)


def test_heatmaps_are_the_factorization_and_the_projection_matches_it(atlas, run, handle):
    a = atlas.arrays("warm")
    i = int(a["ids"][0])
    red = int(np.argmax(_cos(a["W"], MIX)[:, 0]))
    m = concept_heatmap(run, i, f"warm/{red}", model=handle)
    assert m.shape == (16, 16)
    grid = torch.from_numpy(a["U"][0, :, :, red])[None, None]
    want = torch.nn.functional.interpolate(grid, size=(16, 16), mode="bilinear", align_corners=False)[0, 0]
    assert np.allclose(m, want.numpy(), atol=1e-6)
    # the coefficient of a pure red cell is the length of MIX's red row (unit directions carry the amplitude)
    assert float(a["U"][:, :, :, red].max()) == pytest.approx(float(MIX[0].norm()), rel=1e-3)
    # an image the atlas did not sample: NNLS projection onto the class's directions, one forward
    from mikata.runs.store import RunStore

    with RunStore.open(run) as store:
        rows = store.rows(status="ok", columns=("id", "label"), tuples=True)
    other = next(r[0] for r in rows if r[1] == 0 and r[0] not in set(a["ids"].tolist()))
    m2 = concept_heatmap(run, other, f"warm/{red}", model=handle)
    from PIL import Image

    from mikata.presentation.media import image_file

    with RunStore.open(run) as store:
        img = np.asarray(Image.open(image_file(store, other)).convert("RGB"))
    is_red = (img[::4, ::4] == COLOURS[0]).all(-1).astype(np.float32) * float(MIX[0].norm())  # (4, 4)
    want2 = torch.nn.functional.interpolate(torch.from_numpy(is_red)[None, None], size=(16, 16), mode="bilinear",
                                            align_corners=False)[0, 0].numpy()
    assert np.allclose(m2, want2, atol=1e-3)


def test_image_decomposition_sums_to_one_for_the_predicted_class(atlas, run, handle):
    i = int(atlas.arrays("warm")["ids"][0])
    parts = image_decomposition(run, i, model=handle)
    assert [n.split("/")[0] for n, _ in parts] == ["warm", "warm"]
    assert sum(s for _, s in parts) == pytest.approx(1.0)
    assert parts[0][1] >= parts[1][1]


def test_json_has_the_stable_schema(atlas):
    doc = json.loads(json.dumps(atlas.to_json()))
    assert set(doc) >= {"layer", "classes", "strategies", "errors", "slices"}
    assert doc["layer"] == "mix" and set(doc["classes"]) == {"warm", "cool"}
    for cls, entries in doc["classes"].items():
        assert [e["concept"] for e in entries] == [f"{cls}/0", f"{cls}/1"]
        for e in entries:
            assert set(e) == {"concept", "importance", "presence", "exemplars", "location", "area", "deletion",
                              "shortcut", "evidence"}
            assert isinstance(e["importance"], float) and 0 <= e["presence"] <= 1 and 0 <= e["area"] <= 1
            assert set(e["location"]) == {"center", "spread"} and all(0 <= v <= 1 for v in e["location"]["center"])
            assert set(e["deletion"]) == {"flip_rate", "mean_drop", "images"}
            assert isinstance(e["shortcut"], bool) and e["evidence"].startswith(e["concept"])
            for x in e["exemplars"]:
                assert set(x) == {"id", "path", "box"} and isinstance(x["id"], int)
                x0, y0, x1, y1 = x["box"]
                assert 0 <= x0 < x1 <= 16 and 0 <= y0 < y1 <= 16
    for cls, strategies in doc["strategies"].items():
        assert sum(s["size"] for s in strategies) == 20
        for s in strategies:
            assert {"strategy", "size", "accuracy", "exemplars", "concepts"} <= set(s)
    assert set(doc["errors"]) == {"per_class", "pairs"}
    for e in doc["errors"]["per_class"]["warm"]:
        assert e["with"]["images"] + e["without"]["images"] == 20


def test_deleting_the_red_concept_lowers_warm(atlas):
    entries = atlas.to_json()["classes"]["warm"]
    red = int(np.argmax(_cos(atlas.arrays("warm")["W"], MIX)[:, 0]))
    assert entries[red]["deletion"]["images"] > 0 and entries[red]["deletion"]["mean_drop"] > 0


def test_concept_images_location_map_and_reviews(atlas, run):
    ids, strength, has = concept_images(run, "warm/0")
    assert len(ids) == 20 and list(strength) == sorted(strength, reverse=True) and has.dtype == bool
    loc = concept_location_map(run, "warm/0")
    assert loc.shape == (4, 4) and float(loc.max()) == pytest.approx(1.0)
    set_concept_review(run, "warm/0", "artefact")
    assert concept_reviews(run)["warm/0"]["verdict"] == "artefact"
    set_concept_review(run, "warm/0", None)
    assert "warm/0" not in concept_reviews(run)
    with pytest.raises(Exception, match="object"):
        set_concept_review(run, "warm/0", "nonsense")
    with pytest.raises(ChoiceError):
        set_concept_review(run, "warm/7", "object")


def test_run_api(atlas, run, handle):
    from mikata.analysis.run import open_run

    r = open_run(run, model=handle)
    df = r.concepts()
    assert len(df) == 4 and set(df["class"]) == {"warm", "cool"}
    assert {"importance", "presence", "flip_rate", "shortcut", "evidence", "review"} <= set(df.columns)
    i = int(atlas.arrays("cool")["ids"][0])
    assert np.array_equal(r.concept_map(i, "cool/1"), concept_heatmap(run, i, "cool/1", model=handle))
    st = r.strategies("cool")
    assert st["size"].sum() == 20


def test_atlas_is_stale_after_a_rescan_and_resumes_per_class(tmp_path, handle, monkeypatch):
    run = mix_run(tmp_path, per_class=8)
    compute_atlas(run, model=handle, per_class=2, sample=8, progress=False)
    assert load_atlas(run) is not None
    # resume: a class whose part is gone is computed again, the other is kept
    from mikata.concepts import compute as C

    (run / "concepts" / "class_0001.json").unlink()
    calls = []
    real = C._class_part
    monkeypatch.setattr(C, "_class_part", lambda service, c, *a, **k: calls.append(c) or real(service, c, *a, **k))
    compute_atlas(run, model=handle, per_class=2, sample=8, progress=False)
    assert calls == [1]
    # other options: everything again
    calls.clear()
    compute_atlas(run, model=handle, per_class=2, sample=6, progress=False)
    assert calls == [0, 1]
    # new images scanned into the run: the atlas is stale
    from mikata.scanning.scan import scan

    rng = np.random.default_rng(5)
    for j in range(3):
        mix_image(rng, 0).save(tmp_path / "data" / "warm" / f"new{j}.png")
    scan(handle, tmp_path / "data", run, batch_size=32, workers=0, progress=False)
    assert load_atlas(run) is None
    with pytest.raises(MikataError, match="mikata concepts"):
        concept_heatmap(run, 1, "warm/0", model=handle)


def test_tcav_of_a_red_concept_is_high_for_warm_and_low_for_cool(tmp_path, run, handle):
    folder = tmp_path / "reds"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for j in range(8):
        a = np.zeros((16, 16, 3), np.uint8)
        a[rng.random((16, 16)) < 0.6] = COLOURS[0]
        from PIL import Image

        Image.fromarray(a).save(folder / f"r{j}.png")
    atlas = compute_atlas(run, model=handle, per_class=2, sample=12, progress=False, defines={"red": str(folder)})
    t = atlas.to_json()["tcav"]["red"]["classes"]
    assert t["warm"]["score"] == pytest.approx(1.0) and t["cool"]["score"] == pytest.approx(0.0)
    assert t["warm"]["significant"] and t["cool"]["significant"]
    assert 0 <= t["warm"]["random_mean"] <= 1


def test_cli_json_and_refusals(tmp_path, handle, capsys):
    from mikata.cli import main

    run = mix_run(tmp_path, per_class=6)
    args = ["concepts", str(run), "--model", "concepts_support:mix_handle", "--device", "cpu"]
    for bad, msg in ((["--per-class", "0"], "--per-class 0"), (["--classes", "hot"], "hot"),
                     (["--layer", "nope"], "nope"), (["--define", f"x={tmp_path / 'missing'}"], "not a folder"),
                     (["--define", "novalue"], "NAME=DIR"), (["--sample", "1"], "--sample 1")):
        assert main(args + bad) == 2
        assert msg in capsys.readouterr().err
        assert not (run / "concepts" / "atlas.json").exists()
    assert main(args + ["--per-class", "2", "--json", "--classes", "cool"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert list(doc["classes"]) == ["cool"] and doc["layer"] == "mix"
    assert [e["concept"] for e in doc["classes"]["cool"]] == ["cool/0", "cool/1"]
    assert main(["audit", str(run), "--json", "--no-dataset-issues"]) == 0
    assert isinstance(json.loads(capsys.readouterr().out)["shortcuts"], list)
    assert main(args + ["--per-class", "2", "--classes", "cool"]) == 0
    assert "cool/0" in capsys.readouterr().out


def test_a_layer_without_a_map_is_refused_and_leaves_no_hook(run, handle):
    with pytest.raises(MikataError, match="convolutional layer"):
        compute_atlas(run, model=handle, layer="flat", per_class=2, sample=4, progress=False)
    for m in handle.net.modules():
        assert not m._forward_hooks and not m._backward_hooks and not m._forward_pre_hooks
    assert not any(p.requires_grad is False for p in handle.net.parameters())  # put back as they were
    assert not handle.net.training


def test_an_image_that_no_longer_decodes_is_left_out_and_the_cli_says_1(tmp_path, capsys):
    from mikata.cli import main

    run = mix_run(tmp_path, per_class=6)
    (tmp_path / "data" / "cool" / "002.png").write_bytes(b"not a png any more")
    rc = main(["concepts", str(run), "--model", "concepts_support:mix_handle", "--device", "cpu", "--per-class", "2",
               "--json"])
    captured = capsys.readouterr()
    assert rc == 1 and "1 sampled images could not be decoded" in captured.err
    doc = json.loads(captured.out)
    assert sum(s["size"] for s in doc["strategies"]["cool"]) == 5


def test_removing_a_direction_equals_the_image_without_that_colour(atlas, run, handle):
    """On the mixture model, removing warm's red concept from the layer's activations is exactly the image with
    its red cells turned black: an independent computation of the direction-removal deletion test."""
    from PIL import Image

    from mikata.presentation.media import image_files
    from mikata.runs.store import RunStore

    a = atlas.arrays("warm")
    red = int(np.argmax(_cos(a["W"], MIX)[:, 0]))
    rows = np.nonzero(atlas.present("warm")[:, red])[0]
    with RunStore.open(run) as store:
        files = image_files(store, a["ids"][rows].tolist())
    imgs = []
    for i in a["ids"][rows]:
        img = np.asarray(Image.open(files[int(i)]).convert("RGB")).copy()
        img[(img == COLOURS[0]).all(-1)] = 0
        imgs.append(Image.fromarray(img))
    with torch.no_grad():
        after = torch.softmax(handle.net(handle.preprocessing.preprocess(imgs)), 1)[:, 0].numpy()
    got = atlas.to_json()["deletion_direction"]["warm"][red]
    assert got["images"] == len(rows)
    assert got["mean_drop"] == pytest.approx(float((a["prob"][rows] - after).mean()), abs=1e-4)


def test_cli_signed_split_factorizes_both_signs(tmp_path, capsys):
    """``--signed split`` reaches the library: the class is factorized as [A+, A-] (twice the channels; the mixture
    layer is non-negative, so every direction's negative half is 0) and the atlas records the choice."""
    from mikata.cli import main

    run = mix_run(tmp_path, per_class=6)
    args = ["concepts", str(run), "--model", "concepts_support:mix_handle", "--device", "cpu", "--per-class", "2"]
    with pytest.raises(SystemExit) as e:
        main(args + ["--signed", "both"])
    assert e.value.code == 2 and "--signed" in capsys.readouterr().err
    assert main(args + ["--signed", "split", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [e["concept"] for e in doc["classes"]["warm"]] == ["warm/0", "warm/1"]
    atlas = load_atlas(run)
    assert atlas.doc["options"]["signed"] == "split"
    W = atlas.arrays("warm")["W"]
    assert W.shape == (2, 2 * MIX.shape[1]) and np.abs(W[:, MIX.shape[1]:]).max() < 1e-6
    assert main(args + ["--json"]) == 0  # the default clamps: a new computation, not the split one kept
    capsys.readouterr()
    assert load_atlas(run).doc["options"]["signed"] == "clamp" and load_atlas(run).arrays("warm")["W"].shape[1] == 8
