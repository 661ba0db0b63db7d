"""Issue 17, class 8: numbers in images. High-depth pixels are scaled by the range their mode really holds:
a signed 32-bit TIFF is not crushed to three grey levels, a positive int32 image is not black."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mikata.data.images import load_image


def _ramp(lo: float, hi: float, dtype) -> np.ndarray:
    return np.linspace(lo, hi, 64 * 64).reshape(64, 64).astype(dtype)


@pytest.mark.parametrize("lo,hi", [(-992, 528), (-2**31, 2**31 - 1), (0, 100000), (70000, 2**31 - 1), (-5, -1),
                                   (-1, 0)])
def test_int32_tiffs_use_their_whole_range(tmp_path, lo, hi):
    p = tmp_path / "x.tif"
    Image.fromarray(_ramp(lo, hi, np.int32), "I").save(p)
    with Image.open(p) as im:
        assert im.mode == "I"
    a = np.asarray(load_image(p, "L")).astype(int)
    assert a.min() == 0 and a.max() == 255
    assert np.all(np.diff(a.ravel()) >= 0)  # the order of the values is kept
    distinct = len(np.unique(_ramp(lo, hi, np.int32)))
    assert len(np.unique(a)) == min(256, distinct) or len(np.unique(a)) > 200


@pytest.mark.parametrize("hi,expected", [(255, 255), (65535, 255), (4000, round(4000 / 65535 * 255))])
def test_unsigned_ranges_keep_their_depth(tmp_path, hi, expected):
    p = tmp_path / "x.tif"
    Image.fromarray(_ramp(0, hi, np.int32), "I").save(p)
    a = np.asarray(load_image(p, "L"))
    assert a.min() == 0 and int(a.max()) == expected


def test_16_bit_png_is_divided_by_65535(tmp_path):
    p = tmp_path / "x.png"
    Image.fromarray(_ramp(0, 65535, np.uint16)).save(p)
    a = np.asarray(load_image(p, "L"))
    assert a.min() == 0 and a.max() == 255


@pytest.mark.parametrize("values", [(-5.0, 5.0), (0.0, 1.0), (100.0, 300.0), (np.nan, 1.0), (-np.inf, np.inf),
                                    (3.0, 3.0)])
def test_float_tiffs(tmp_path, values):
    arr = _ramp(0, 1, np.float32)
    arr[0, 0], arr[-1, -1] = values
    p = tmp_path / "x.tif"
    Image.fromarray(arr, "F").save(p)
    a = np.asarray(load_image(p, "RGB"))
    assert a.dtype == np.uint8 and a.shape == (64, 64, 3)  # no crash, no warning turned error
