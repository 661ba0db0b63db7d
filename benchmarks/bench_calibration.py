"""Temperature scaling on real runs: T fitted on a seeded half of each run's rows, judged on the other half.

``mikata calibrate RUN --split val`` fits on a split the run has; this benchmark asks the same of runs
without splits (e.g. ``bench_review_loop.py``'s clean test scans) by halving their rows, so the ECE and
the negative log-likelihood after scaling are measured on rows the fit never saw.

Run:
    python benchmarks/bench_calibration.py /tmp/review-loop/test-a /tmp/review-loop/test-b
"""

from __future__ import annotations

import argparse

import numpy as np

from mikata.runs.data import load_run
from mikata.analysis.calibration import apply_temperature, expected_calibration_error, fit_temperature, nll


def halves(run: str, seed: int = 0) -> dict:
    d = load_run(run)
    perm = np.random.default_rng(seed).permutation(len(d))
    fit, held = perm[: len(d) // 2], perm[len(d) // 2:]
    t = fit_temperature(d.probs[fit], d.labels[fit])
    p, y = d.probs[held], d.labels[held]
    return {"run": run, "temperature": t, "fitted_on": len(fit), "judged_on": len(held),
            "ece_before": expected_calibration_error(p, y), "ece_after": expected_calibration_error(apply_temperature(p, t), y),
            "nll_before": nll(p, y), "nll_after": nll(p, y, t)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    print("| run | T | ECE before -> after | NLL before -> after |\n|---|---|---|---|")
    for run in args.runs:
        r = halves(run, args.seed)
        print(f"| {r['run']} | {r['temperature']:.3f} | {r['ece_before']:.4f} -> {r['ece_after']:.4f} | "
              f"{r['nll_before']:.4f} -> {r['nll_after']:.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
