"""Issue 31, point 8: the smaller things a defect inspector met in a second week, each on real data.

``samples`` takes the CSV that train and scan take; the scan's "classes have no images in" line names
that CSV; the training line's "val acc" is the epoch just finished, not the one before.
"""

from __future__ import annotations

import json
import logging

import numpy as np
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
    from mikata.analysis.scan import scan

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
