"""Time the demo's training step (lite0 on a Fashion-MNIST subset) and print a table.

Usage: PYTHONPATH=src python benchmarks/train_demo.py [--threads 1 2] [--per-class 500]
Each row trains from scratch in a fresh temporary folder. On a shared machine the times are noisy:
compare rows of one run, not runs on different days.
"""

from __future__ import annotations

import argparse
import tempfile

from mikata.demo.training import train_demo_model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--per-class", type=int, default=500)
    args = parser.parse_args()
    rows = []
    for threads in args.threads:
        with tempfile.TemporaryDirectory() as tmp:
            _, accuracy, seconds = train_demo_model(tmp, per_class=args.per_class, progress=False, threads=threads)
            _, _, reuse = train_demo_model(tmp, per_class=args.per_class, progress=False)
        rows.append((threads, accuracy, seconds, reuse))
    print(f"{'threads':>7} | {'test accuracy':>13} | {'train s':>8} | {'reuse s':>7}")
    for threads, accuracy, seconds, reuse in rows:
        print(f"{threads:>7} | {accuracy:>13.3f} | {seconds:>8.1f} | {reuse:>7.2f}")


if __name__ == "__main__":
    main()
