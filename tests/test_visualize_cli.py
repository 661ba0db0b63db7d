"""`mikata visualize` writes a labelled grid and one PNG per unit; mistakes exit 2 with what is valid."""

from __future__ import annotations

from PIL import Image

from mikata.cli import main
from mikata.cli.visualize import parse_channels


def test_parse_channels():
    assert parse_channels("0:4") == [0, 1, 2, 3]
    assert parse_channels("3,5,0:2") == [3, 5, 0, 1]


def test_channels_write_grid_and_one_png_per_channel(tmp_path, capsys):
    rc = main(["visualize", "efficientnet-lite0", "--layer", "stem.act", "--channels", "0:4", "--size", "48",
               "--steps", "2", "--out", str(tmp_path), "--verbose"])
    assert rc == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.png", "1.png", "2.png", "3.png", "grid.png"]
    assert Image.open(tmp_path / "0.png").size == (48, 48)
    assert "iteration" in capsys.readouterr().out


def test_classes_neuron_and_deepdream(tmp_path, photos):
    assert main(["visualize", "efficientnet-lite0", "--classes", "zebra,castle", "--size", "48", "--steps", "1",
                 "--out", str(tmp_path / "c")]) == 0
    assert {p.name for p in (tmp_path / "c").iterdir()} == {"zebra.png", "castle.png", "grid.png"}
    assert main(["visualize", "efficientnet-lite0", "--layer", "blocks.3", "--neuron", "2,1,1", "--size", "48",
                 "--steps", "1", "--out", str(tmp_path / "n")]) == 0
    assert (tmp_path / "n" / "grid.png").exists()
    assert main(["visualize", "efficientnet-lite0", "--layer", "blocks.5", "--deepdream", "--image",
                 str(photos["coffee"]), "--size", "48", "--steps", "1", "--out", str(tmp_path / "d")]) == 0
    assert (tmp_path / "d" / "deepdream-blocks.5.png").exists()


def test_out_of_range_channels_and_unknown_class_exit_2(tmp_path, capsys):
    assert main(["visualize", "efficientnet-lite0", "--layer", "stem.conv", "--channels", "0:36", "--size", "32",
                 "--steps", "1", "--out", str(tmp_path)]) == 2
    assert "0..31" in capsys.readouterr().err
    assert main(["visualize", "efficientnet-lite0", "--classes", "zebar", "--out", str(tmp_path)]) == 2
    assert "zebra" in capsys.readouterr().err
    assert main(["visualize", "efficientnet-lite0", "--channels", "0:2", "--out", str(tmp_path)]) == 2


def test_bad_arguments_exit_2_before_loading_anything(tmp_path, capsys):
    assert main(["visualize", "efficientnet-lite0", "--layer", "stem.conv", "--neuron", "1,2",
                 "--out", str(tmp_path)]) == 2
    assert "C,Y,X" in capsys.readouterr().err
    assert main(["visualize", "efficientnet-lite0", "--layer", "stem.conv", "--channels", "0:4", "--steps", "0",
                 "--out", str(tmp_path)]) == 2
