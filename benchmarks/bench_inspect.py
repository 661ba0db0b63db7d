"""How much an activation grid costs over the forward pass it cannot avoid (lite0, one 224 px photo).

Run: PYTHONPATH=src python benchmarks/bench_inspect.py
Prints medians in ms and the ratio to one bare forward, measured side by side in this process.
The machine is shared: absolute numbers are noisy, ratios less so.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image


def median_ms(fn, repeats: int = 7) -> float:
    fn()  # warm up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    from skimage import data

    from mikata.data import load_image
    from mikata.inspect import activation_grid, filter_grid
    from mikata.models import load_model

    torch.set_num_threads(2)
    handle = load_model("efficientnet-lite0")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chelsea.png"
        Image.fromarray(data.chelsea()).save(path)

        def forward():
            x = handle.preprocess([load_image(path)])
            with torch.inference_mode():
                handle.model(x)

        floor = median_ms(forward)
        rows = [("load + preprocess + forward (floor)", floor)]
        cases = {
            "activations head --top 16": dict(layer="head", top=16),
            "activations blocks.3 (40 maps)": dict(layer="blocks.3"),
            "activations stem 0:64 --overlay": dict(layer="stem", channels="0:64", overlay=True),
            "activations flatten --top 32 (bars)": dict(layer="flatten", top=32),
        }
        for name, kw in cases.items():
            rows.append((name, median_ms(lambda kw=kw: activation_grid(handle, path, **kw))))
        rows.append(("filters stem.conv (no forward)", median_ms(lambda: filter_grid(handle))))
    print(f"{'case':40s} {'ms':>8s} {'/ floor':>8s}")
    for name, ms in rows:
        print(f"{name:40s} {ms:8.1f} {ms / floor:8.2f}")


if __name__ == "__main__":
    main()
