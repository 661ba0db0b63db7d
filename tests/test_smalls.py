"""Small things a user saw (issue 22, item 8): a one-line ModelHandle repr, 'valid classes' (not
'classs'), and `mikata predict` taking a folder as `mikata evaluate` does."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from cli_support import run_cli
from mikata.errors import ChoiceError, plural


def test_handle_repr_is_one_short_line_not_the_network():
    from test_scan_support import mnist_handle

    h = mnist_handle()
    text = repr(h)
    assert "\n" not in text and len(text) < 300 and "Conv2d" not in text and str(h) == text
    for part in ("test_scan_support:mnist_handle", "10 classes (0, 1, 2, …)", "28x28 grayscale", "resize (no crop)",
                 "bilinear", "default layer 'conv_layers.6'", "device cpu"):
        assert part in text, part
    assert "Conv2d" in repr(h.net)  # the network still prints itself when asked


def test_lite0_repr_names_its_crop(lite0):
    text = repr(lite0)
    assert "1000 classes (tench, goldfish, great white shark, …)" in text
    assert "224x224 RGB, resize + center crop 0.875, bicubic" in text and "\n" not in text


def test_choice_errors_spell_the_plural():
    assert [plural(w) for w in ("class", "class id", "layer", "device", "method in options", "box", "query")] == \
        ["classes", "class ids", "layers", "devices", "methods in options", "boxes", "queries"]
    with pytest.raises(ChoiceError, match="valid classes: cat, dog$"):
        raise ChoiceError("class", "cow", ["cat", "dog"])
    from mikata.models.handle import ModelHandle
    from test_scan_support import mnist_handle

    h: ModelHandle = mnist_handle()
    with pytest.raises(ChoiceError) as e:
        h.class_index("seven")
    assert "valid classes: 0, 1" in str(e.value) and "classs" not in str(e.value)


def _cli(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one torch thread, as the suite's workers use
    return subprocess.run([sys.executable, "-m", "mikata", *args], capture_output=True, text=True, timeout=300,
                          env=env)


def test_predict_takes_a_folder_as_evaluate_does(photos, tmp_path, capsys):
    folder = tmp_path / "photos"
    (folder / "inner").mkdir(parents=True)
    Image.open(photos["chelsea"]).save(folder / "b_cat.png")
    Image.open(photos["coffee"]).save(folder / "inner" / "a_coffee.jpg")
    (folder / "notes.txt").write_text("not an image")
    from mikata.evaluation.scorecard import expand_images

    expected = expand_images([str(folder)])
    assert [p.rsplit("/", 1)[-1] for p in expected] == ["b_cat.png", "a_coffee.jpg"]  # recursive, sorted, images only
    out = _cli("predict", "efficientnet-lite0", str(folder), str(photos["chelsea"]), "--top", "2", "--json")
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert [r["path"] for r in got] == expected + [str(photos["chelsea"])]
    assert got[1]["top"][0]["class"] == "espresso" and got[0]["top"][0]["class"] == got[2]["top"][0]["class"]
    (tmp_path / "empty").mkdir()
    # the refusals in this process (the command's exit code and stderr lines, as above)
    out = run_cli(capsys, "predict", "efficientnet-lite0", str(tmp_path / "empty"))
    assert out.returncode == 2 and "holds no image files" in out.stderr and out.stderr.count("\n") == 1
    out = run_cli(capsys, "predict", "efficientnet-lite0", str(tmp_path / "missing.png"), str(photos["coffee"]), "--json")
    assert out.returncode == 1 and "error" in json.loads(out.stdout)[0]  # a missing file stays that file's error
