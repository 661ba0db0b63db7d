"""predict(): decode + preprocess + forward, against the bare forward on ready tensors (its floor).

    PYTHONPATH=src python benchmarks/bench_predict.py [--batch 16] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def median_ms(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    from conftest import _photo_arrays
    from mikata.data import load_image
    from mikata.models import load_model
    from mikata.prediction import predict

    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    handle = load_model("efficientnet-lite0")
    folder = Path(tempfile.mkdtemp())
    photos = []
    for name, img in _photo_arrays().items():
        photos.append(folder / f"{name}.png")
        img.save(photos[-1])
    paths = (photos * (args.batch // len(photos) + 1))[: args.batch]
    x = handle.preprocess([load_image(p) for p in paths])

    def bare():
        with torch.inference_mode():
            handle.model(x).softmax(1).topk(5)

    floor = median_ms(bare, args.repeat)
    ours = median_ms(lambda: predict(handle, paths, top=5, batch_size=args.batch), args.repeat)
    decode = median_ms(lambda: handle.preprocess([load_image(p) for p in paths]), args.repeat)
    print(f"efficientnet-lite0, batch {args.batch}, {torch.get_num_threads()} threads (medians of {args.repeat})")
    print(f"| step | ms | / floor |\n|---|---|---|")
    print(f"| forward + softmax + top-k (floor) | {floor:.0f} | 1.00 |")
    print(f"| decode + preprocess only | {decode:.0f} | {decode / floor:.2f} |")
    print(f"| predict() end to end | {ours:.0f} | {ours / floor:.2f} |")


if __name__ == "__main__":
    main()
