"""Issue 31, point 8: the smaller things a defect inspector met in a second week, each on real data.

``samples`` takes the CSV that train and scan take; the scan's "classes have no images in" line names
that CSV; the training line's "val acc" is the epoch just finished, not the one before.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from PIL import Image

from mikata.cli import main
from test_scan_support import digit_images, mnist_handle


def _csv_of_digits(root, n: int = 24, classes=(0, 1)) -> tuple:
    """``n`` real digits of ``classes`` under ``root/data/<class>/`` and ``root/cells.csv`` listing them."""
    images, labels = digit_images(200)
    lines = ["path,label,type"]
    counts = {str(c): 0 for c in classes}
    for i, (img, y) in enumerate(zip(images, labels)):
        if int(y) not in classes or sum(counts.values()) >= n:
            continue
        rel = f"data/{int(y)}/{i:05d}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        img.save(root / rel)
        lines.append(f"{rel},{int(y)},{'mono' if i % 2 else 'poly'}")
        counts[str(int(y))] += 1
    csv = root / "cells.csv"
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return csv, counts


def test_samples_accepts_a_csv_manifest(tmp_path, capsys):
    csv, counts = _csv_of_digits(tmp_path)
    out = tmp_path / "s.png"
    assert main(["samples", str(csv), "--n", "6", "--json", "--out", str(out)]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["counts"] == counts and len(got["samples"]) == 6
    assert all(s["path"].startswith(str(tmp_path / "data")) for s in got["samples"])
    assert all(s["class"] == s["path"].split("/")[-2] for s in got["samples"])  # the CSV's label, per file
    assert Image.open(out).format == "PNG"
    # a CSV naming a missing file: one line naming the manifest, exit 2
    (tmp_path / "bad.csv").write_text("path,label\nnope/x.png,0\n", encoding="utf-8")
    rc = main(["samples", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "b.png")])
    err = capsys.readouterr().err
    assert rc == 2 and "bad.csv" in err and "\n" not in err.strip()


def test_classes_without_images_are_said_of_the_csv_not_its_folder(tmp_path, caplog):
    from mikata.scanning.scan import scan

    csv, _ = _csv_of_digits(tmp_path, n=6)
    with caplog.at_level(logging.INFO, logger="mikata"):
        scan(mnist_handle(), csv, tmp_path / "run", workers=0, progress=False)
    line = next(r.getMessage() for r in caplog.records if "have no images in" in r.getMessage())
    assert line.startswith("8 of the model's 10 classes have no images in ") and line.split(" in ")[1].startswith(
        str(csv.resolve()) + " ")


def test_the_training_line_shows_the_val_acc_of_the_epoch_just_finished(tmp_path, lite0, monkeypatch):
    """Each count the epoch bar prints carries the val acc of the epoch it counts (it lagged by one)."""
    import mikata.training.loop as loop
    from mikata.training import train
    from test_train import write_digits

    shown: list[tuple[int, str]] = []

    class Recorder(loop.Progress):
        def update(self, n: int = 1) -> None:
            super().update(n)
            if self.unit == "epoch":
                shown.append((self.n, self._postfix))

    monkeypatch.setattr(loop, "Progress", Recorder)
    digits = write_digits(tmp_path / "digits", per_class=8, classes=(0, 1))
    result = train(digits, lite0, tmp_path / "m.safetensors", progress=True, epochs=3, batch_size=8, lr=0.05,
                   input_size=32, freeze_until="blocks.11", threads=1)
    assert [n for n, _ in shown] == [1, 2, 3]
    assert [p for _, p in shown] == [f"val acc {a:.3f}" for a in result.history["val_accuracy"]]
    assert np.isfinite(result.history["val_accuracy"]).all()


def test_the_explain_figure_bars_carry_their_numbers_and_titles_do_not_repeat_the_class():
    """The bars say their probability; a target asked for by class reads "class defective", a ranked one
    "top1: defective" (it read "defective: defective")."""
    import torch

    from mikata.attribution.figure import draw_figure, target_label
    from mikata.attribution.result import Attribution

    g = torch.Generator().manual_seed(0)
    names = ["defective", "functional"]
    atts = [Attribution("gradcam", spec, [0], torch.rand(1, 16, 16, generator=g), torch.rand(1, 4, 4, generator=g),
                        "layer") for spec in ("defective", "top1", "0")]
    image = (np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)
    probs = torch.tensor([0.8123, 0.1877])
    fig = draw_figure(image, atts, probs, names)
    bars = fig.axes[1]
    labels = sorted(t.get_text() for t in bars.texts)
    assert labels == ["0.188", "0.812"]
    # each number sits at the end of its own bar
    ends = {t.get_text(): t.xy[0] for t in bars.texts}  # bar_label's annotations point at the bar's end
    assert ends["0.812"] == pytest.approx(0.8123) and ends["0.188"] == pytest.approx(0.1877)
    titles = [a.get_title() for a in fig.axes[2::2]]
    assert titles[0] == "gradcam\nclass defective" and titles[1] == "gradcam\ntop1: defective"
    assert titles[2] == "gradcam\nclass defective" and not any("defective: defective" in t for t in titles)
    assert target_label("top2", "cat") == "top2: cat" and target_label("Cat", "cat") == "class cat"
    assert target_label("a very long class name indeed", "a very long class na") == "class a very long class na"
