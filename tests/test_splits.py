"""Honest splits (issue 22, items 1-2): fine-tuned models see the whole image, a checkpoint's scan of its
own training folder keeps to held-out images (or marks the training rows), K-fold cross-validation
gives every image an out-of-sample prediction, and resuming with changed options names them."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest
from PIL import Image

from test_train import write_digits

from mikata.runs.data import load_run
from mikata.runs.store import RunStore
from mikata.data.preprocessing import Preprocessing
from mikata.errors import MikataError
from mikata.training import state_path, train
from mikata.training.options import TrainingError

FAST = dict(epochs=1, batch_size=16, lr=0.02, input_size=32, freeze_until="blocks.11", threads=1)
PER_CLASS = 12  # 4 classes: 8 train / 2 val / 2 test each with the default 0.7,0.15,0.15


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return write_digits(tmp_path_factory.mktemp("digits"), per_class=PER_CLASS)


@pytest.fixture(scope="module")
def model(digits, tmp_path_factory, lite0):
    out = tmp_path_factory.mktemp("model") / "digits.safetensors"
    train(digits, lite0, out, progress=False, **FAST)
    from mikata.models import load_model

    return load_model(str(out))


@pytest.fixture(scope="module")
def scanned(model, digits, tmp_path_factory):
    """The same checkpoint scanned on its own training folder: by default, and with split="all"."""
    from mikata.scanning.scan import scan

    base = tmp_path_factory.mktemp("runs")
    scan(model, digits, base / "default", workers=0, progress=False)
    scan(model, digits, base / "all", workers=0, progress=False, split="all")
    return base


# ------------------------------------------------------------------------------- 1. what is seen
def _edge_image() -> Image.Image:
    """40x20 gray image: black, with a white 2-px column at the left and right borders."""
    a = np.zeros((20, 40), np.uint8)
    a[:, :2] = a[:, -2:] = 255
    return Image.fromarray(a)


def test_whole_image_stretch_keeps_the_border_that_the_imagenet_crop_loses():
    whole = Preprocessing((16, 16), (0.0,), (1.0,), crop_fraction=1.0, interpolation="bilinear", in_channels=1,
                          resize="stretch")
    imagenet = Preprocessing((16, 16), (0.0,), (1.0,), crop_fraction=0.875, interpolation="bilinear", in_channels=1)
    x = whole.preprocess([_edge_image()])[0, 0]  # (16, 16)
    y = imagenet.preprocess([_edge_image()])[0, 0]
    assert x[:, 0].min() > 0.4 and x[:, -1].min() > 0.4  # both border columns reach the model
    assert float(y[:, 0].max()) == 0.0 and float(y[:, -1].max()) == 0.0  # the shorter-side crop cut them off
    assert whole.geometry(40, 20) == (16, 16, 0, 0)
    assert "whole image, stretched to 16x16" in whole.describe()
    assert "center crop 0.875" in imagenet.describe()


def test_records_without_resize_keep_todays_shorter_side_behaviour(model, tmp_path):
    ident = Preprocessing((32, 32), crop_fraction=0.875).to_dict()
    assert ident["resize"] == "shorter"
    old = {k: v for k, v in ident.items() if k != "resize"}
    assert Preprocessing.from_identity(old).resize == "shorter"
    # an older checkpoint (no "resize" in its metadata) loads as shorter-side-then-crop
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from mikata.models import load_model

    with safe_open(model.spec, framework="pt") as f:
        meta = json.loads(f.metadata()["mikata"])
    meta.pop("resize")
    old_ckpt = tmp_path / "old.safetensors"
    save_file(load_file(model.spec), str(old_ckpt), metadata={"mikata": json.dumps(meta)})
    assert load_model(str(old_ckpt)).preprocessing.resize == "shorter"


def test_fine_tuning_defaults_to_the_whole_image_and_crop_is_asked_for(model):
    assert model.crop_fraction == 1.0 and model.preprocessing.resize == "stretch"  # not the base's 0.875
    assert model.metadata["training"]["options"]["crop"] == 1.0


def test_an_older_run_without_resize_still_checks_intact_and_resumes(scanned, model, digits):
    from mikata.runs.integrity import check_run
    from mikata.scanning.scan import scan

    run = scanned / "default"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["identity"]["resize"] == "stretch"
    # what a run written before the field existed looks like, with a shorter-side model
    legacy = scanned / "legacy"
    import shutil

    shutil.copytree(run, legacy)
    import dataclasses

    shorter = dataclasses.replace(model, preprocessing=dataclasses.replace(model.preprocessing, resize="shorter"))
    m = json.loads((legacy / "manifest.json").read_text())
    m["identity"].pop("resize")
    m["format"] = "mikata-run/1"  # such runs were format 1: the run format's migration fills the field in
    m.pop("data_roots")
    (legacy / "manifest.json").write_text(json.dumps(m))
    assert check_run(legacy).ok, check_run(legacy).format()
    s = scan(shorter, digits, legacy, workers=0, progress=False)  # same setup: resumes, nothing refused
    assert s.reused == s.total


def test_every_command_that_preprocesses_says_its_crop(model, scanned, caplog, capsys):
    import argparse

    from mikata.cli import main
    from mikata.cli.common import announce_run_preprocessing

    with caplog.at_level(logging.INFO):
        assert main(["layers", model.spec]) == 0  # every MODEL command: load_model_from_args
    assert caplog.text.count("preprocessing: whole image, stretched to 32x32") == 1
    caplog.clear()
    with caplog.at_level(logging.INFO):  # report (with maps), serve and export --maps: the run's preprocessing
        announce_run_preprocessing(argparse.Namespace(), str(scanned / "default"))
    assert "preprocessing: whole image, stretched to 32x32 (bicubic)" in caplog.text


# ------------------------------------------------------------------------------- 2. help defaults
def test_every_command_help_shows_its_defaults():
    import argparse

    from mikata.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        text = p.format_help()
        assert "(default: None)" not in text and "(default: False)" not in text, name
        for a in p._actions:
            if a.option_strings and a.default not in (None, False, "", argparse.SUPPRESS) and \
                    not isinstance(a, argparse._HelpAction):
                assert a.help and "default" in p._get_formatter()._get_help_string(a).lower(), (name, a.dest)
    train_help = sub.choices["train"].format_help()
    assert "(default: 10)" in train_help and "(default: 0.7,0.15,0.15)" in train_help
    assert "(default: 1.0)" in train_help and "(default: stretch)" in train_help


# ------------------------------------------------------------------------------- 2. held-out scan
def test_checkpoint_records_its_split(model, digits):
    rec = model.metadata["training"]["split_record"]
    assert rec["fractions"] == [0.7, 0.15, 0.15] and rec["seed"] == 0
    assert rec["source"] == str(digits.resolve()) and rec["files"] == 4 * PER_CLASS
    assert rec["sizes"] == {"train": 32, "val": 8, "test": 8} and len(rec["train_sha1"]) == 40


def test_scan_of_the_training_folder_defaults_to_the_held_out_splits(scanned):
    d = load_run(scanned / "default")
    assert sorted(set(d.splits.tolist())) == ["test", "val"] and len(d) == 16
    with RunStore.open(scanned / "default") as store:
        assert store.manifest["trained_on"]["split"] == "train" and store.manifest["trained_on"]["verified"]
    from mikata.analysis.overview import overview

    ov = overview(scanned / "default")
    assert ov.trained_rows == 0 and ov.trained_note is None
    assert ov.label_scope["used"] == 16


def test_split_all_marks_training_rows_warns_and_keeps_them_out_of_label_issues(scanned):
    from mikata.analysis.issues import find_issues
    from mikata.analysis.audit_summary import audit, format_audit
    from mikata.analysis.overview import overview

    d = load_run(scanned / "all")
    assert len(d) == 48 and int((d.splits == "train").sum()) == 32
    ov = overview(scanned / "all")
    assert ov.trained_rows == 32
    assert "32 of 48 rows were used to train this model; their accuracy and label issues are not out-of-sample" \
        in ov.trained_note
    assert ov.label_scope["used"] == 16
    assert ov.label_scope["left_out"]["rows the model was trained on (in-sample probabilities)"] == 32
    assert all(d.splits[i["row"]] != "train" for i in ov.label_issues)
    text = format_audit(audit(scanned / "all", dataset_issues=False))
    assert "WARNING: 32 of 48 rows were used to train this model" in text
    assert "label issues searched over 16 of 48 scanned rows; left out: 32 rows the model was trained on" in text
    found = find_issues(scanned / "all")
    assert not found.types["label"].flag[d.splits == "train"].any()


def test_the_held_out_label_ranking_is_cached_with_the_run(scanned, monkeypatch):
    """A run with training rows ranks its held-out rows once per run version, not on every open."""
    from mikata.analysis import overview_cache
    from mikata.analysis.overview import overview

    first = overview(scanned / "all").label_ranking

    def fail(d):
        raise AssertionError("the label-issue ranking was recomputed")

    monkeypatch.setattr(overview_cache, "label_issue_ranking", fail)
    again = overview(scanned / "all")
    assert np.array_equal(again.label_ranking, first)
    assert all(again.data.splits[i] != "train" for i in again.label_ranking)


def test_report_and_app_state_the_training_rows(scanned, model):
    from fastapi.testclient import TestClient

    from mikata.report import write_report
    from mikata.server import create_app

    r = write_report(scanned / "all", scanned / "all.html", maps=False)
    html = r.path.read_text(encoding="utf-8")
    assert 'id="trained-rows"' in html and "32 of 48 rows were used to train this model" in html
    assert "label issues searched over 16 of 48 scanned rows" in html
    app = create_app(scanned / "all", token="t0123456789abcdef", port=8799, handle=model)
    client = TestClient(app, base_url="http://127.0.0.1:8799")
    page = client.get("/?token=t0123456789abcdef")
    assert page.status_code == 200 and "32 of 48 rows were used to train this model" in page.text
    assert "label issues searched over 16 of 48" in client.get("/reviews").text


def test_the_app_shows_one_split_and_an_unknown_split_names_the_runs_splits(scanned, model, capsys):
    """`mikata serve RUN --split test`: every page keeps to the held-out test rows of a --split all run."""
    from fastapi.testclient import TestClient

    from mikata.analysis.overview import overview
    from mikata.runs.store import RunStoreError
    from mikata.cli import main
    from mikata.server import create_app

    app = create_app(scanned / "all", token="t0123456789abcdef", port=8799, handle=model, split="test")
    client = TestClient(app, base_url="http://127.0.0.1:8799")
    page = client.get("/?token=t0123456789abcdef")
    assert page.status_code == 200 and 'split <b id="run-split">test</b> · 8 images' in page.text
    assert "were used to train this model" not in page.text  # no training rows among the test rows
    assert sorted(set(app.run.overview().data.splits.tolist())) == ["test"]
    with pytest.raises(RunStoreError, match=r"no images in split 'tset'; its splits are 'test', 'train', 'val'"):
        overview(scanned / "all", split="tset")
    assert main(["audit", str(scanned / "all"), "--split", "tset"]) == 2
    assert "its splits are 'test', 'train', 'val'" in capsys.readouterr().err


def test_another_split_of_the_training_folder_is_refused(model, digits, tmp_path):
    from mikata.scanning.scan import scan

    with pytest.raises(MikataError, match="trained on .* with the split fractions 0.7,0.15,0.15, seed 0"):
        scan(model, digits, tmp_path / "r", fractions=(0.5, 0.5), workers=0, progress=False)


def test_other_data_scans_as_before(model, digits, tmp_path):
    """A folder the model was not trained on: every image, no split, no in-sample rows. (Its images are
    the training digits inverted: byte copies would be recognised by content as the training images.)"""
    from mikata.scanning.scan import scan

    other = tmp_path / "other"
    for c in ("digit_0", "digit_1"):
        (other / c).mkdir(parents=True)
        for p in sorted((digits / c).glob("*.png"))[:3]:
            Image.fromarray(255 - np.asarray(Image.open(p))).save(other / c / p.name)
    s = scan(model, other, tmp_path / "r", workers=0, progress=False)
    assert s.total == 6
    with RunStore.open(tmp_path / "r") as store:
        assert "trained_on" not in store.manifest


def test_a_copy_of_the_dataset_elsewhere_splits_the_same_and_keeps_its_held_out_scan(model, digits, tmp_path):
    """The split hashes each file's path inside the folder, so it does not depend on where the folder
    lies (it did: a pytest tmp folder's number changed which digits trained); a scan of a moved copy
    with the checkpoint still keeps to the held-out images."""
    import shutil

    from mikata.scanning.scan import scan
    from mikata.data.datasets import folder_dataset, split_dataset

    copy = shutil.copytree(digits, tmp_path / "deeper" / "copy")
    here, there = split_dataset(folder_dataset(digits)), split_dataset(folder_dataset(copy))
    for name in ("train", "val", "test"):
        assert [p.rsplit("/", 2)[-2:] for p in (s.path for s in here[name].samples)] == \
               [p.rsplit("/", 2)[-2:] for p in (s.path for s in there[name].samples)]
    scan(model, copy, tmp_path / "r", workers=0, progress=False)
    d = load_run(tmp_path / "r")
    assert sorted(set(d.splits.tolist())) == ["test", "val"] and len(d) == 16
    # one image fewer: not the training data any more by path; a checkpoint without content hashes
    # (before 2026-12) then scans it as other data (every image)
    import dataclasses

    next((copy / "digit_0").glob("*.png")).unlink()
    rec = {k: v for k, v in model.metadata["training"]["split_record"].items() if k != "content"}
    old = dataclasses.replace(model, metadata={**model.metadata, "training": {"split_record": rec}})
    assert scan(old, copy, tmp_path / "r2", workers=0, progress=False).total == 4 * PER_CLASS - 1
    # with content hashes the images are recognised: only the held-out ones are scanned
    s = scan(model, copy, tmp_path / "r3", workers=0, progress=False)
    d = load_run(tmp_path / "r3")
    assert sorted(set(d.splits.tolist())) == ["test", "val"] and s.total in (15, 16)


def test_a_checkpoint_from_before_relative_keys_recomputes_its_absolute_split(model, digits):
    """Records without "keys" hashed absolute paths: their split is recomputed that way and verifies."""
    from mikata.runs.heldout import plan_scan
    from mikata.data.datasets import folder_dataset, split_dataset
    from mikata.data.splits import TrainingSplit, files_sha1

    ds = folder_dataset(digits)
    parts = split_dataset(ds, (0.7, 0.15, 0.15), 0, keys="absolute")
    rec = dict(model.metadata["training"]["split_record"], train_sha1=files_sha1(parts["train"], "absolute"))
    rec.pop("keys")
    assert TrainingSplit.from_metadata({"training": {"split_record": rec}}).keys == "absolute"
    import dataclasses

    old = dataclasses.replace(model, metadata={**model.metadata, "training": {"split_record": rec}})
    plan = plan_scan(old, digits, ds, split=None, fractions=None, seed=None)
    assert plan.trained_on["verified"] and plan.names == ["val", "test"]
    held = {s.path for s, _ in plan.chosen}
    assert held == {s.path for n in ("val", "test") for s in parts[n].samples}


# ------------------------------------------------------------------------------- 1b. recognised by content
def _manifest(path, rows, header=True):
    """A ``path,label`` CSV of ``rows`` (path relative to the CSV's folder, label)."""
    lines = (["path,label"] if header else []) + [f"{p},{label}" for p, label in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _folder_rows(folder, prefix):
    return [(f"{prefix}/{p.parent.name}/{p.name}", p.parent.name) for p in sorted(folder.glob("*/*.png"))]


def test_checkpoint_records_a_content_hash_per_file_the_same_the_scan_stores(model, digits, scanned):
    """The content keys are the leading digits of the sha1 a scan stores per row."""
    from mikata.data.splits import CONTENT_DIGITS, TrainingSplit

    rec = TrainingSplit.from_metadata(model.metadata)
    assert sorted(rec.content) == ["test", "train", "val"]
    assert sum(len(v) // CONTENT_DIGITS for v in rec.content.values()) <= 4 * PER_CLASS
    known = rec.split_by_content()
    d = load_run(scanned / "all")
    with RunStore.open(scanned / "all") as store:
        digests = {r["path"]: r["hash"] for r in store.rows(columns=["path", "hash"])}
    # every scanned row's sha1 is known, and in the split the path-based record gives it (or in train,
    # for a byte-identical duplicate of a training image)
    for path, split in zip(d.paths, d.splits):
        assert known[digests[path][:CONTENT_DIGITS]] in (split, "train")


def test_a_csv_of_the_training_folder_is_recognised_by_content(model, digits, tmp_path, caplog):
    """Trained on a folder, scanned through a CSV whose paths differ: the training images are recognised
    by content; the scan keeps to the held-out ones and says so in one line; --split all marks them."""
    from mikata.analysis.overview import overview
    from mikata.scanning.scan import scan

    csv = _manifest(tmp_path / "cells.csv", _folder_rows(digits, os.path.relpath(digits, tmp_path)))
    with caplog.at_level(logging.INFO, logger="mikata"):
        scan(model, csv, tmp_path / "held", workers=0, progress=False)
    said = [r.getMessage() for r in caplog.records if "recognised by content" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith(f"48 of the 48 images of {csv}")
    assert "its 32 training images are left out" in said[0]
    held = load_run(tmp_path / "held")
    assert sorted(set(held.splits.tolist())) == ["test", "val"] and len(held) == 16
    with RunStore.open(tmp_path / "held") as store:
        trained_on = store.manifest["trained_on"]
        assert trained_on["matched"] == "content" and "content" not in trained_on
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mikata"):
        scan(model, csv, tmp_path / "all", workers=0, progress=False, split="all")
    assert any(r.levelno == logging.WARNING and "32 training images are marked split=train" in r.getMessage()
               for r in caplog.records)
    ov = overview(tmp_path / "all")
    assert len(load_run(tmp_path / "all")) == 48 and ov.trained_rows == 32 and ov.label_scope["used"] == 16
    with pytest.raises(MikataError, match="recognised by content.*Leave out --split-fractions"):
        scan(model, csv, tmp_path / "r", fractions=(0.5, 0.5), workers=0, progress=False)


def test_trained_on_a_csv_scanned_as_the_folder_with_other_paths(digits, lite0, tmp_path):
    """The issue's case: train on ``cells.csv`` (paths ``data/digit_0/...``), scan ``data/`` (paths
    ``digit_0/...``): the held-out split is present and the training rows are counted, not 100% accuracy
    on images the model trained on. A new image in the folder is scanned as ``new``."""
    import shutil

    from mikata.analysis.overview import overview
    from mikata.scanning.scan import scan
    from mikata.models import load_model

    data = shutil.copytree(digits, tmp_path / "data")
    csv = _manifest(tmp_path / "cells.csv", _folder_rows(data, "data"))
    ckpt = tmp_path / "cells.safetensors"
    train(csv, lite0, ckpt, progress=False, **FAST)
    m = load_model(str(ckpt))
    sizes = m.metadata["training"]["split_record"]["sizes"]
    Image.fromarray((np.arange(64, dtype=np.uint8).reshape(8, 8) * 3)).save(data / "digit_0" / "new.png")
    scan(m, data, tmp_path / "held", workers=0, progress=False)
    held = load_run(tmp_path / "held")
    assert sorted(set(held.splits.tolist())) == ["new", "test", "val"]
    assert int((held.splits == "new").sum()) == 1
    assert int((held.splits != "new").sum()) == sizes["val"] + sizes["test"]
    scan(m, data, tmp_path / "all", workers=0, progress=False, split="all")
    ov = overview(tmp_path / "all")
    assert len(load_run(tmp_path / "all")) == 49 and ov.trained_rows == sizes["train"]
    from mikata.analysis.audit_summary import audit, format_audit

    text = format_audit(audit(tmp_path / "all", dataset_issues=False))
    assert f"WARNING: {sizes['train']} of 49 rows were used to train this model" in text


# ------------------------------------------------------------------------------- 2. resume options
def test_resume_with_changed_options_names_them(digits, tmp_path, lite0):
    out = tmp_path / "r.safetensors"

    def stop(epoch, history):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(digits, lite0, out, progress=False, on_epoch_end=stop, **dict(FAST, epochs=2))
    assert state_path(out).is_file()
    with pytest.raises(TrainingError, match=r"--lr 0.05 \(was 0.02\), --crop 0.875 \(was 1\)"):
        train(digits, lite0, out, progress=False, resume=True, **dict(FAST, epochs=2, lr=0.05, crop=0.875))
    resumed = train(digits, lite0, out, progress=False, resume=True, **dict(FAST, epochs=2, workers=1))
    assert resumed.epochs_run == 2  # --workers may change


# ------------------------------------------------------------------------------- 2. cross-validation
@pytest.mark.slow  # trains lite0 three times
def test_crossval_gives_every_row_an_out_of_sample_prediction_and_resumes_only_unfinished_folds(
        digits, tmp_path, lite0):
    from mikata.scanning.crossval import crossval
    from mikata.analysis.overview import overview

    run = tmp_path / "cv"
    s = crossval(digits, lite0, run, folds=2, progress=False, scan_workers=0, **FAST)
    assert s.rows == 4 * PER_CLASS and s.trained == [1, 2] and s.reused == [] and len(s.fold_accuracy) == 2
    d = load_run(run)
    assert sorted(set(d.splits.tolist())) == ["fold1", "fold2"] and len(set(d.paths)) == len(d)
    assert int((d.splits == "fold1").sum()) == 2 * PER_CLASS
    # each row's probabilities are those of the fold model that never trained on it
    work = tmp_path / "cv.folds"
    for fold in ("fold1", "fold2"):
        f = load_run(work / f"{fold}-run")
        by_path = dict(zip(d.paths, d.probs))
        assert np.allclose(np.stack([by_path[p] for p in f.paths]), f.probs)
    assert s.accuracy == pytest.approx(float((d.labels == d.preds).mean()))
    with RunStore.open(run) as store:
        assert store.manifest["crossval"]["folds"] == 2 and "trained_on" not in store.manifest
    ov = overview(run)
    assert ov.trained_rows == 0 and ov.label_scope["used"] == 4 * PER_CLASS
    # killed after fold 1: only fold 2 runs again
    first = (work / "fold1.safetensors").stat().st_mtime_ns
    (work / "fold2.safetensors").unlink()
    import shutil

    shutil.rmtree(work / "fold2-run")
    again = crossval(digits, lite0, run, folds=2, progress=False, scan_workers=0, **FAST)
    assert again.trained == [2] and again.reused == [1] and again.rows == 4 * PER_CLASS
    assert (work / "fold1.safetensors").stat().st_mtime_ns == first
    # maps on demand: each row's map comes from the fold model that made its prediction
    from mikata.presentation.maps import MapService
    from mikata.attribution import explain
    from mikata.models import load_model

    d = load_run(run)
    with MapService(run) as service:
        for fold in ("fold1", "fold2"):
            i = int(d.ids[d.splits == fold][0])
            got = service.maps([i], ["gradcam"], classes=[0])[(i, "gradcam", 0)]
            assert np.allclose(service.map(i, "gradcam", 0), got)  # the cached one
            h = load_model(str(work / f"{fold}.safetensors"))
            row = service.store.image(i)
            want = explain(h, h.preprocessing.load([row["path"]]), ["gradcam"], targets=[0])[0].maps[0].numpy()
            assert np.allclose(got, want, atol=1e-3 * max(1e-6, float(np.abs(want).max()))), fold
        assert set(service._fold_handles) == {"fold1", "fold2"}
    with pytest.raises(MikataError, match="other settings"):
        crossval(digits, lite0, run, folds=3, progress=False, scan_workers=0, **FAST)


def test_crossval_of_a_csv_keeps_its_fields_in_the_run_audit_report_export_and_app(digits, tmp_path, lite0, capsys):
    """The manifest's extra columns travel through crossval: ``audit --group-by type`` works on the combined
    run, and its report, export and app show them."""
    import csv as csvlib

    from fastapi.testclient import TestClient

    from mikata.scanning.crossval import crossval
    from mikata.analysis.export import export_run
    from mikata.analysis.fields import field_values, group_by
    from mikata.cli import main
    from mikata.report.build import write_report
    from mikata.server import create_app

    rows = _folder_rows(digits, os.path.relpath(digits, tmp_path))
    lines = ["path,label,type,defect_prob"] + [f"{p},{c},{'mono' if k % 3 else 'poly'},{k % 4 / 3:.3f}"
                                               for k, (p, c) in enumerate(rows)]
    csv = tmp_path / "cells.csv"
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    run = tmp_path / "cv"
    crossval(csv, lite0, run, folds=2, progress=False, scan_workers=0, **FAST)
    with RunStore.open(run) as store:
        assert store.field_names() == ["type", "defect_prob"]
    d = load_run(run)
    want = {os.path.normpath(os.path.join(tmp_path, p)): "mono" if k % 3 else "poly" for k, (p, _) in enumerate(rows)}
    assert [want[p] for p in d.paths] == field_values(d, "type").tolist()
    assert main(["audit", str(run), "--group-by", "type", "--json", "--no-dataset-issues"]) == 0
    assert json.loads(capsys.readouterr().out)["groups"]["type"] == group_by(d, "type")
    out = export_run(run, tmp_path / "e.csv")
    exported = list(csvlib.DictReader(open(out, encoding="utf-8")))
    assert {r["type"] for r in exported} == {"mono", "poly"} and len(exported) == len(d)
    write_report(run, tmp_path / "r.html", maps=False)
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert 'class="field-section" data-field="type"' in html and 'data-field="defect_prob"' in html
    app = create_app(run, token="t", port=8765)
    page = TestClient(app, base_url="http://127.0.0.1:8765").get("/?token=t").text
    assert 'data-field="type"' in page and 'data-field="defect_prob"' in page


def test_a_run_without_fields_says_why_not_valid_fields_none(scanned, capsys):
    """A folder scan has no fields: the message says where its images came from and what gives fields."""
    from mikata.cli import main

    assert main(["audit", str(scanned / "default"), "--group-by", "type", "--no-dataset-issues"]) == 2
    err = capsys.readouterr().err
    assert "has no fields (asked for 'type')" in err and "came without extra columns" in err
    assert "path,label,FIELD" in err and "valid fields: none" not in err


def test_crossval_cli_is_a_thin_command(digits, tmp_path, capsys):
    from mikata.cli import main

    rc = main(["crossval", str(digits), "--model", "efficientnet-lite0", "--folds", "2", "--run", str(tmp_path / "cv"),
               "--input-size", "32", "--epochs", "1", "--freeze-until", "blocks.11", "--threads", "1",
               "--batch-size", "16", "--scan-workers", "0", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["rows"] == 4 * PER_CLASS and out["folds"] == 2 and out["trained"] == [1, 2]
