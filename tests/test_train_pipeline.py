"""decode_split's ``then``: each run of decoded images is transformed while the workers decode the next ones."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

from mikata.data.datasets import load_dataset
from mikata.training import tensors
from mikata.training.tensors import decode_split


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / c).mkdir()
        for i in range(7):
            Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    (root / "b" / "broken.png").write_bytes(b"not a png")  # skipped, and never counted in a chunk
    return root


def test_then_sees_every_decoded_image_once_in_file_order_and_its_outputs_are_kept(folder, lite0):
    ds = load_dataset(folder)
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        plain = decode_split(ds, lite0, workers=2, progress=False)  # the reference: decode everything, keep images
    seen: list[torch.Tensor] = []

    def then(xb: torch.Tensor) -> torch.Tensor:  # (n, 3, H, W) float16 -> (n, 3) per-channel means
        seen.append(xb.clone())
        return xb.float().mean((2, 3))

    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        out = decode_split(ds, lite0, workers=2, progress=False, then=then, chunk=4)
    assert [len(s) for s in seen] == [4, 4, 4, 2]  # 14 readable images in runs of 4
    assert torch.equal(torch.cat(seen), plain.x)
    assert torch.allclose(out.x, plain.x.float().mean((2, 3)))
    assert torch.equal(out.y, plain.y) and [p for p, _ in out.skipped] == [p for p, _ in plain.skipped]


def test_the_workers_decode_ahead_while_then_runs(folder, lite0, monkeypatch):
    decoded_at: list[float] = []
    lock = threading.Lock()
    load = tensors.load_image

    def timed_load(path, mode):
        time.sleep(0.05)  # a slower decode, so that decoding is not over before the first run is transformed
        img = load(path, mode=mode)
        with lock:
            decoded_at.append(time.perf_counter())
        return img

    monkeypatch.setattr(tensors, "load_image", timed_load)
    calls: list[tuple[float, float]] = []

    def slow_then(xb: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        time.sleep(0.3)  # stands for the frozen layers' forward
        calls.append((start, time.perf_counter()))
        return xb

    with pytest.warns(UserWarning):
        decode_split(load_dataset(folder), lite0, workers=2, progress=False, then=slow_then, chunk=4)
    first_start, first_end = calls[0]
    # images after the first run were decoded while ``then`` was still busy with that run
    assert sum(first_start < t < first_end for t in decoded_at) >= 4
