"""The image decoder on every kind of real-world file, made in code."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from mikata.data import load_image
from mikata.errors import ImageDecodeError


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    path = tmp_path / "rotated.jpg"
    img.save(path, exif=exif.tobytes())
    assert load_image(path).size == (20, 40)


def test_cmyk_becomes_rgb(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("RGB", (16, 16), (0, 0, 255)).convert("CMYK").save(path, quality=100)
    out = np.asarray(load_image(path)).astype(int)
    assert out.shape == (16, 16, 3)
    assert np.abs(out[8, 8] - [0, 0, 255]).max() < 10


def test_16bit_is_scaled_not_clipped(tmp_path):
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    out = np.asarray(load_image(path, mode="L")).astype(int)
    assert out.min() == 0 and out.max() == 255
    assert len(np.unique(out)) > 200  # a full ramp survives, not a saturated block
    assert np.abs(out - ramp / 257).max() <= 1


def test_palette_transparency_composites_on_background_not_hidden_color(tmp_path):
    img = Image.new("P", (8, 8), 0)
    img.putpalette([255, 0, 0] + [0, 255, 0] + [0] * 762)  # index 0 is red, but transparent
    img.putpixel((0, 0), 1)
    path = tmp_path / "pal.png"
    img.save(path, transparency=0)
    out = np.asarray(load_image(path))
    assert tuple(out[4, 4]) == (255, 255, 255)
    assert tuple(out[0, 0]) == (0, 255, 0)


def test_rgba_hidden_color_does_not_leak(tmp_path):
    arr = np.zeros((8, 8, 4), np.uint8)
    arr[..., 0] = 255  # red everywhere, fully transparent
    path = tmp_path / "alpha.png"
    Image.fromarray(arr, "RGBA").save(path)
    assert tuple(np.asarray(load_image(path, background=(0, 0, 0)))[3, 3]) == (0, 0, 0)


def test_grayscale_to_rgb_and_l(tmp_path):
    path = tmp_path / "gray.png"
    Image.new("L", (8, 8), 77).save(path)
    assert np.asarray(load_image(path)).tolist()[0][0] == [77, 77, 77]
    assert load_image(path, mode="L").mode == "L"


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _truncated(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    path = tmp_path / "truncated.png"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return path


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda d: _write(d / "empty.jpg", b""), "empty"),
        (lambda d: _write(d / "notes.png", b"not an image at all"), "not an image"),
        (_truncated, "truncated"),
        (lambda d: d / "missing.png", "no such file"),
    ],
)
def test_bad_files_raise_one_error_naming_file_and_problem(tmp_path, make, reason):
    path = make(tmp_path)
    with pytest.raises(ImageDecodeError) as info:
        load_image(path)
    assert str(path) in str(info.value) and reason in str(info.value)


def test_decompression_bomb_is_refused(tmp_path):
    path = tmp_path / "bomb.png"
    Image.new("1", (10_000, 9_000)).save(path)  # 90 Mpx, a few KB on disk
    assert path.stat().st_size < 200_000
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        load_image(path)
