"""Time ``mikata demo`` step by step: wall and CPU seconds of each of its numbered steps, and the load.

    PYTHONPATH=src python benchmarks/demo_steps.py --out /tmp/demo-steps [--device cpu]

Runs ``mikata.demo.run_demo`` (the code ``mikata demo`` runs) in a fresh output folder (removed first,
so nothing is reused), and prints one row per step: wall seconds, CPU seconds (user + system of this
process and its finished children) and the 1-minute load average when the step ended. On a shared
machine wall time depends on the other jobs; CPU time much less so.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import shutil
import time


def cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="/tmp/demo-steps")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import mikata.demo.run as demo

    marks: list[tuple[str, float, float, float]] = []  # (step title, wall, cpu, load) at the step's start

    def step(title: str) -> None:
        marks.append((title, time.perf_counter(), cpu_seconds(), os.getloadavg()[0]))
        logging.getLogger("mikata.demo").info("\n== %s", title)

    demo.step = step  # run_demo looks the name up in its module at each call
    shutil.rmtree(args.out, ignore_errors=True)
    t0, c0 = time.perf_counter(), cpu_seconds()
    result = demo.run_demo(args.out, device=args.device)
    marks.append(("end", time.perf_counter(), cpu_seconds(), os.getloadavg()[0]))
    print(f"\n{'step':<60} {'wall s':>7} {'cpu s':>7} {'load':>5}")
    for (title, w, c, _), (_, w2, c2, load) in zip(marks, marks[1:]):
        print(f"{title[:60]:<60} {w2 - w:>7.1f} {c2 - c:>7.1f} {load:>5.1f}")
    print(f"{'total (incl. setup before step 1)':<60} {marks[-1][1] - t0:>7.1f} {marks[-1][2] - c0:>7.1f}")
    print(f"test accuracy {result.facts.get('test_accuracy')}, scan accuracy {result.facts.get('scan_accuracy')}")


if __name__ == "__main__":
    main()
