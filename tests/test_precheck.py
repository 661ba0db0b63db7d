"""Arguments are checked before expensive work: a bad class name fails before the model is built
(checkpoint metadata and the built-in models know their classes), a bad layer before any image is
decoded, bad counts and thresholds before anything loads — in every command that takes them."""

from __future__ import annotations

import pytest

from mikata.cli import main


def _no_loading(monkeypatch):
    """Make every way of loading a model fail loudly: the checks must come first."""
    def refuse(*a, **k):
        raise AssertionError("the model was loaded before the arguments were checked")

    import mikata.models
    import mikata.models.loading
    import mikata.models.run_model

    monkeypatch.setattr(mikata.models, "load_model", refuse)
    monkeypatch.setattr(mikata.models.loading, "load_model", refuse)
    monkeypatch.setattr(mikata.models.loading, "load_checkpoint", refuse)
    monkeypatch.setattr(mikata.models.run_model, "load_run_model", refuse)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A real mikata checkpoint: the MNIST CNN with its class names 0..9 renamed to words."""
    from mikata.models import save_checkpoint
    from test_scan_support import mnist_handle

    h = mnist_handle()
    h.class_names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    h.metadata["architecture"] = "test_scan_support:mnist_handle"  # loading it would need --arch
    return save_checkpoint(h, tmp_path_factory.mktemp("ckpt") / "digits.safetensors")


@pytest.mark.parametrize("command", [
    ["explain", "efficientnet-lite0", "IMG", "--target", "tabbby"],
    ["evaluate", "efficientnet-lite0", "IMG", "--target", "tabbby"],
    ["visualize", "efficientnet-lite0", "--classes", "zebra,tabbby", "--out", "OUT"],
])
def test_a_bad_class_name_fails_before_the_builtin_model_loads(command, photos, tmp_path, monkeypatch, capsys):
    _no_loading(monkeypatch)
    swap = {"IMG": str(photos["chelsea"]), "OUT": str(tmp_path / "out")}
    assert main([swap.get(a, a) for a in command]) == 2
    err = capsys.readouterr().err
    assert "unknown class 'tabbby'" in err and "tabby" in err  # with a did-you-mean


def test_a_bad_class_name_fails_before_a_checkpoint_is_built(checkpoint, photos, monkeypatch, capsys):
    from mikata.models.precheck import class_names_before_loading

    assert class_names_before_loading(checkpoint)[:2] == ("zero", "one")
    _no_loading(monkeypatch)
    for command in (["explain", str(checkpoint), str(photos["chelsea"]), "--target", "elevn"],
                    ["evaluate", str(checkpoint), str(photos["chelsea"]), "--target", "elevn"],
                    ["visualize", str(checkpoint), "--classes", "elevn", "--out", str(checkpoint.parent / "vis")]):
        assert main(command) == 2
        assert "unknown class 'elevn'" in capsys.readouterr().err
    assert main(["explain", str(checkpoint), str(photos["chelsea"]), "--target", "12"]) == 2
    assert "unknown class id 12" in capsys.readouterr().err


def test_a_bad_class_name_fails_before_a_runs_model_loads(tmp_path, monkeypatch, capsys):
    from mikata.scanning.scan import scan
    from test_scan_support import digit_images, mnist_handle, write_folder

    images, labels = digit_images(6)
    write_folder(tmp_path / "digits", images, labels)
    scan(mnist_handle(), tmp_path / "digits", tmp_path / "run", batch_size=8, workers=0, progress=False)
    _no_loading(monkeypatch)
    assert main(["evaluate", str(tmp_path / "run"), "--target", "eleven", "--model", "test_scan_support:mnist_handle"]) == 2
    assert "unknown class 'eleven'" in capsys.readouterr().err


def test_a_bad_layer_fails_before_any_image_is_decoded(photos, monkeypatch, capsys):
    import mikata.attribution.files
    import mikata.data.images
    import mikata.evaluation.scorecard
    import mikata.inspect.activations
    import mikata.scanning.scan

    def refuse(*a, **k):
        raise AssertionError("an image was decoded before the layer was checked")

    # the commands' modules are imported before the patch, and those that bind load_image at import are patched
    # (and so restored after): one imported first under the patch would keep the refusing function for later tests
    for mod in (mikata.evaluation.scorecard, mikata.data.images, mikata.attribution.files, mikata.inspect.activations):
        if hasattr(mod, "load_image"):
            monkeypatch.setattr(mod, "load_image", refuse)
    monkeypatch.setattr(mikata.evaluation.scorecard, "load_images", refuse)
    img = str(photos["chelsea"])
    monkeypatch.setattr(mikata.scanning.scan, "scan", refuse)
    for command in (["scan", "efficientnet-lite0", str(photos["chelsea"].parent), "--run", "/nonexistent/run",
                     "--layer", "blocks.99"],
                    ["explain", "efficientnet-lite0", img, "--layer", "blocks.99"],
                    ["evaluate", "efficientnet-lite0", img, "--layer", "blocks.99"],
                    ["activations", "efficientnet-lite0", img, "--layer", "blocks.99"]):
        assert main(command) == 2, command
        assert "unknown layer 'blocks.99'" in capsys.readouterr().err


@pytest.mark.parametrize("command, message", [
    (["evaluate", "efficientnet-lite0", "IMG", "--radius", "3"], "--radius must lie in 0.0..1.0"),
    (["evaluate", "efficientnet-lite0", "IMG", "--ig-steps", "0"], "--ig-steps must be at least 1"),
    (["evaluate", "efficientnet-lite0", "IMG", "--patch", "0"], "--patch must be at least 1"),
    (["evaluate", "efficientnet-lite0", "IMG", "--boxes", "/nonexistent/boxes.csv"], "no such file"),
    (["explain", "efficientnet-lite0", "IMG", "--steps", "0"], "--steps must be at least 1"),
    (["predict", "efficientnet-lite0", "IMG", "--top", "0"], "--top must be at least 1"),
    (["report", "RUN", "--methods", "gradcam,gradcma"], "unknown method 'gradcma'"),
    (["report", "RUN", "--top", "0"], "--top must be at least 1"),
    (["report", "RUN", "--threshold", "1.5"], "--threshold must lie in 0.0..1.0"),
    (["scan", "efficientnet-lite0", "RUN", "--run", "RUN", "--batch-size", "0"], "--batch-size must be at least 1"),
    (["scan", "efficientnet-lite0", "RUN", "--run", "RUN", "--class-map", "nonsense"], "--class-map"),
])
def test_bad_counts_and_thresholds_fail_before_loading(command, message, photos, tmp_path, monkeypatch, capsys):
    _no_loading(monkeypatch)
    args = [str(photos["chelsea"]) if a == "IMG" else str(tmp_path / "run") if a == "RUN" else a for a in command]
    assert main(args) == 2
    assert message in capsys.readouterr().err
