"""Fashion-MNIST from the Debian package, as a class-folder dataset."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from mikata.data.idx import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, DataMissingError, read_idx, write_fashion_mnist


def test_read_idx_parses_a_handmade_file(tmp_path):
    data = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "x-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, 8, 3]) + struct.pack(">3I", 2, 3, 4) + data.tobytes())
    assert np.array_equal(read_idx(path), data)


def test_missing_package_says_how_to_install(tmp_path):
    with pytest.raises(DataMissingError, match="apt-get install dataset-fashion-mnist"):
        write_fashion_mnist(tmp_path / "out", per_class=1, root=tmp_path)


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_writes_a_seeded_class_folder_subset(tmp_path):
    from mikata.data import folder_dataset

    a = write_fashion_mnist(tmp_path / "a", per_class=3, seed=1, part="test")
    b = write_fashion_mnist(tmp_path / "b", per_class=3, seed=1, part="test")
    ds = folder_dataset(a)
    assert sorted(ds.classes) == sorted(FASHION_MNIST_CLASSES)
    assert set(ds.counts().values()) == {3}
    assert sorted(p.name for p in a.rglob("*.png")) == sorted(p.name for p in b.rglob("*.png"))
