"""mikata train: a real (small) fine-tuning run, checkpoint round trip, resume, bad data folders."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from mikata.data.datasets import DatasetError
from mikata.errors import ChoiceError
from mikata.training import Augment, augment_batch, freeze_until, parse_augment, state_path, train
from mikata.training.frozen_features import check_shortcut
from mikata.training.options import TrainingError

DIGITS = (0, 1, 3, 7)
FAST = dict(epochs=3, batch_size=16, lr=0.01, input_size=32, freeze_until="blocks.11", threads=1)
# conftest's shared uninterrupted run ``digits_trained_2_epochs``; as `mikata train` options (lr is the default):
# --epochs 2 --batch-size 16 --input-size 32 --freeze-until blocks.11 --threads 1
TWO_EPOCHS = dict(FAST, epochs=2)


def write_digits(root, per_class: int = 40, classes=DIGITS):
    """scikit-learn's real handwritten digits (8x8, 0..16) as PNG class folders."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    for c in classes:
        folder = root / f"digit_{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for k, i in enumerate(np.flatnonzero(digits.target == c)[:per_class]):
            pixels = (digits.images[i] * (255 / 16)).round().astype(np.uint8)  # (8, 8)
            Image.fromarray(pixels).save(folder / f"{k:03d}.png")
    return root


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    return write_digits(tmp_path_factory.mktemp("digits"))


@pytest.fixture(scope="module")
def trained(digits_dir, tmp_path_factory, lite0):
    out = tmp_path_factory.mktemp("model") / "digits.safetensors"
    return train(digits_dir, lite0, out, progress=False, **FAST)


def test_short_training_lifts_validation_accuracy_well_above_chance(trained):
    chance = 1 / len(DIGITS)
    assert trained.val_accuracy >= chance + 0.35, trained.history
    assert trained.test_accuracy is not None and trained.test_accuracy >= chance + 0.3
    assert len(trained.history["val_accuracy"]) == trained.epochs_run == FAST["epochs"]
    assert trained.history["train_loss"][-1] < trained.history["train_loss"][0]
    with Image.open(trained.plot) as img:
        assert img.size[0] > 400
    assert not state_path(trained.checkpoint).exists()  # removed once training completed


def test_checkpoint_round_trips_through_load_model_and_predict(trained, digits_dir, lite0):
    from mikata.models import load_model
    from mikata.prediction import predict

    handle = load_model(str(trained.checkpoint))
    assert handle.class_names == [f"digit_{c}" for c in DIGITS]
    assert handle.input_size == (32, 32) and handle.metadata["architecture"] == "efficientnet-lite0"
    meta = handle.metadata["training"]
    assert meta["complete"] and meta["options"]["freeze_until"] == "blocks.11"
    assert meta["test_accuracy"] == pytest.approx(trained.test_accuracy)
    assert handle.metadata["grayscale_data"] is True  # the digits are gray: feature images will be too
    paths = sorted(digits_dir.glob("digit_*/*.png"))[::7]
    results = predict(handle, paths, top=1)
    hits = [r.top[0][0] == p.parent.name for r, p in zip(results, paths)]
    assert sum(hits) / len(hits) >= 0.6
    assert lite0.num_classes == 1000 and lite0.net.fc.out_features == 1000  # the base handle is untouched


def test_interrupted_run_resumes_from_the_saved_epoch_and_matches_an_uninterrupted_one(digits_trained_2_epochs,
                                                                                      tmp_path, lite0):
    from mikata.models.loading import read_checkpoint_metadata

    opts = TWO_EPOCHS
    digits_dir = digits_trained_2_epochs["digits"]  # the shared uninterrupted run: these options, this folder
    full_history = read_checkpoint_metadata(digits_trained_2_epochs["full"])["training"]["history"]

    def interrupt(epoch, history):
        if epoch == 1:
            raise KeyboardInterrupt

    out = tmp_path / "resumed.safetensors"
    with pytest.raises(KeyboardInterrupt):
        train(digits_dir, lite0, out, progress=False, on_epoch_end=interrupt, **opts)
    assert out.is_file() and state_path(out).is_file()
    state = torch.load(state_path(out), weights_only=True)
    assert state["epoch"] == 1 and len(state["history"]["val_accuracy"]) == 1
    seen = []
    resumed = train(digits_dir, lite0, out, progress=False, resume=True,
                    on_epoch_end=lambda e, h: seen.append(e), **opts)
    assert seen == [2]  # only the missing epoch ran
    for key in ("train_loss", "val_loss", "val_accuracy"):
        assert resumed.history[key] == pytest.approx(full_history[key], rel=1e-4, abs=1e-5)


def test_resume_without_a_saved_run_says_what_to_do(digits_dir, tmp_path, lite0):
    with pytest.raises(TrainingError, match="run without --resume"):
        train(digits_dir, lite0, tmp_path / "none.safetensors", resume=True, progress=False, **FAST)


def test_one_class_folder_is_a_clear_error(tmp_path, lite0):
    write_digits(tmp_path, per_class=5, classes=(1,))
    with pytest.raises(DatasetError, match="at least two class"):
        train(tmp_path, lite0, tmp_path / "m.safetensors", progress=False, **FAST)


def test_empty_class_folder_is_a_clear_error(tmp_path, lite0):
    write_digits(tmp_path, per_class=5, classes=(1, 2))
    (tmp_path / "digit_9").mkdir()
    with pytest.raises(DatasetError, match="digit_9"):
        train(tmp_path, lite0, tmp_path / "m.safetensors", progress=False, **FAST)


def test_unreadable_files_are_skipped_with_a_count(tmp_path, lite0):
    write_digits(tmp_path, per_class=12, classes=(0, 1))
    for k in range(3):
        (tmp_path / "digit_0" / f"broken{k}.png").write_bytes(b"not a png at all")
    with pytest.warns(UserWarning, match=r"skipped \d unreadable"):
        result = train(tmp_path, lite0, tmp_path / "m.safetensors", progress=False, **dict(FAST, epochs=1))
    assert len(result.skipped) == 3 and all("broken" in p for p, _ in result.skipped)


def test_a_class_with_only_unreadable_files_is_a_clear_error(tmp_path, lite0):
    write_digits(tmp_path, per_class=6, classes=(0,))
    (tmp_path / "junk").mkdir()
    for k in range(6):
        (tmp_path / "junk" / f"{k}.png").write_bytes(b"")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DatasetError, match="no readable training images for classes \\['junk'\\]"):
            train(tmp_path, lite0, tmp_path / "m.safetensors", progress=False, **FAST)


def test_freeze_until_freezes_everything_before_the_layer(lite0):
    import copy

    net = copy.deepcopy(lite0.net)
    frozen = freeze_until(net, "blocks.9")
    assert "stem" in frozen and "blocks.8" in frozen and "blocks" not in frozen
    assert not net.blocks[8].project.conv.weight.requires_grad and not net.stem.conv.weight.requires_grad
    assert net.blocks[9].expand.conv.weight.requires_grad and net.fc.weight.requires_grad
    with pytest.raises(ChoiceError, match="blocks.9"):
        freeze_until(net, "blocks.99")


def test_frozen_feature_shortcut_is_exact_at_a_block_and_refused_inside_a_residual_block(lite0):
    x = lite0.preprocess([Image.new("RGB", (40, 40), (200, 30, 30)), Image.new("RGB", (40, 40), (0, 90, 255))])
    assert check_shortcut(lite0, "blocks.9", x)
    assert not check_shortcut(lite0, "blocks.10.depthwise", x)  # blocks.10's skip connection bypasses it


def test_frozen_features_match_the_frozen_prefix_and_skip_the_layers_after_it(lite0):
    from mikata.training.frozen_features import boundary_inputs

    x = lite0.preprocess([Image.new("RGB", (40, 40), (200, 30, 30)), Image.new("RGB", (40, 40), (0, 90, 255)),
                          Image.new("RGB", (40, 40), (10, 200, 40))])  # (3, 3, H, W)
    net = lite0.net
    with torch.inference_mode():
        ref = torch.nn.Sequential(net.stem, *net.blocks[:9]).eval()(x)  # the input of blocks.9, computed directly
    calls = []
    handle = net.blocks[10].register_forward_hook(lambda *a: calls.append(1))
    try:
        feats = boundary_inputs(lite0, "blocks.9", x, batch_size=2)  # two batches: 2 + 1 images
    finally:
        handle.remove()
    assert feats.shape == ref.shape and torch.allclose(feats, ref, atol=1e-5)
    assert calls == []  # each pass stopped at blocks.9
    assert not feats.is_inference()  # usable as the input of layers that train


def test_parse_augment_and_flip():
    assert parse_augment("flip,translate=4,scale=0.9-1.1") == Augment(True, 4, (0.9, 1.1))
    assert parse_augment("none") == Augment() and not Augment().active
    with pytest.raises(TrainingError, match="translate=4"):
        parse_augment("translate=-2")
    with pytest.raises(TrainingError, match="unknown item"):
        parse_augment("rotate=10")
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    g = torch.Generator().manual_seed(0)
    flipped = torch.cat([augment_batch(x, Augment(hflip=True), g) for _ in range(8)])  # (16, 3, 4, 5)
    for got, ref in zip(flipped, x.repeat(8, 1, 1, 1)):
        assert torch.allclose(got, ref, atol=1e-5) or torch.allclose(got, ref.flip(-1), atol=1e-5)
    shifted = augment_batch(x, Augment(translate=1), torch.Generator().manual_seed(1))
    assert shifted.shape == x.shape


def test_cli_train_reports_a_bad_folder_and_exits_2(tmp_path, capsys):
    from mikata.cli import main

    write_digits(tmp_path, per_class=3, classes=(5,))
    code = main(["train", str(tmp_path), "--model", "efficientnet-lite0", "--out", str(tmp_path / "m.safetensors")])
    assert code == 2 and "at least two class" in capsys.readouterr().err
