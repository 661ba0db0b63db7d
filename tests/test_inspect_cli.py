"""The activations, filters and samples commands end to end: PNG files written, errors exit 2."""

from __future__ import annotations

import shutil

from PIL import Image

from mikata.cli import main


def test_activations_filters_samples_write_pngs(tmp_path, photos, capsys, lite0, monkeypatch):
    import mikata.cli.filters

    out = tmp_path / "out"
    # `activations` loads the model for real; `filters` reuses the session's copy (one load is enough).
    monkeypatch.setattr(mikata.cli.filters, "load_model_from_args", lambda args: lite0)
    assert main(["activations", "efficientnet-lite0", str(photos["astronaut"]), "--layer", "blocks.2",
                 "--top", "4", "--overlay", "--out", str(out)]) == 0
    png = out / "astronaut_blocks.2_activations.png"
    assert Image.open(png).format == "PNG"
    assert main(["filters", "efficientnet-lite0", "--out", str(out)]) == 0
    assert Image.open(out / "stem.conv_filters.png").format == "PNG"
    data = tmp_path / "data"
    for cls, names in {"space": ["astronaut", "rocket"], "cat": ["chelsea"]}.items():
        (data / cls).mkdir(parents=True)
        for n in names:
            shutil.copy(photos[n], data / cls)
    assert main(["samples", str(data), "--n", "3", "--out", str(out / "samples.png")]) == 0
    assert Image.open(out / "samples.png").format == "PNG"
    printed = capsys.readouterr().out.split()
    assert printed == [str(png), str(out / "stem.conv_filters.png"), str(out / "samples.png")]


def test_bad_choices_exit_2_with_the_valid_ones(photos, capsys, lite0, monkeypatch):
    # The model loads for real in the test above; here the session's copy saves two loads.
    import mikata.cli.activations
    import mikata.cli.filters

    for module in (mikata.cli.activations, mikata.cli.filters):
        monkeypatch.setattr(module, "load_model_from_args", lambda args: lite0)
    assert main(["filters", "efficientnet-lite0", "--layer", "stem.bn"]) == 2
    assert "valid convolution layers: stem.conv" in capsys.readouterr().err
    assert main(["activations", "efficientnet-lite0", str(photos["chelsea"]), "--layer", "stem",
                 "--channels", "99"]) == 2
    assert "valid channels: 0..31" in capsys.readouterr().err


def test_json_output_names_channels_and_counts(photos, tmp_path, capsys, lite0, monkeypatch):
    import json

    import mikata.cli.activations

    monkeypatch.setattr(mikata.cli.activations, "load_model_from_args", lambda args: lite0)
    assert main(["activations", "efficientnet-lite0", str(photos["flower"]), "--layer", "head", "--top", "3",
                 "--json", "--out", str(tmp_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["shape"] == [1280, 7, 7] and len(report["channels"]) == 3
    assert report["mean_activation"] == sorted(report["mean_activation"], reverse=True)
    data = tmp_path / "data"
    (data / "flower").mkdir(parents=True)
    shutil.copy(photos["flower"], data / "flower")
    (data / "flower" / "bad.jpg").write_bytes(b"nope")
    # exit 1: finished, with bad.jpg skipped (issue 17's rule: 0 only when every file was used)
    assert main(["samples", str(data), "--json", "--out", str(tmp_path / "s.png")]) == 1
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["counts"] == {"flower": 2} and len(report["samples"]) == 1
    assert report["skipped"][0]["path"].endswith("bad.jpg") and "bad.jpg" in captured.err
