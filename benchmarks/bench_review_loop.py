"""The planted proof of the review loop: noisy labels -> suspects -> reviewed -> retrained -> a better model?

1. A Fashion-MNIST subset (``--per-class`` images per class from the train part) written as a class
   folder, with ``--flip`` (10%) of its labels flipped to another class: the file goes into the wrong
   class folder. The truth is kept in ``OUT/truth.json``, outside the dataset. A clean test folder
   (``--test-per-class`` per class from the t10k part) is written beside it.
2. ``mikata crossval`` of the noisy folder: every image gets an out-of-sample prediction, so the label
   ranking covers the training images too.
3. ``mikata train`` model A on the noisy folder as it is.
4. A reviewer who knows the truth goes down the crossval run's label ranking (its ``--review`` top
   suspects) and posts a verdict for each through the web app's review API (``POST /api/review/ID``):
   "wrong" with the true class when the folder's label is wrong, "fine" otherwise.
5. ``mikata train --reviews CV_RUN`` model B: the same folder, options and split, with the verdicts.
6. ``mikata scan`` of the clean test folder with A and with B, ``mikata calibrate``-free ECE of both,
   and the comparison: accuracy A and B with 95% bootstrap intervals, the difference's interval and
   McNemar's exact p on the paired predictions (``mikata compare`` when this mikata has it, else computed
   here from the two runs with the same definitions).

Every step is skipped when its output is already there (rerun after an interruption). Training is
small (64 px, layers before ``blocks.9`` frozen and computed once, one torch thread), like the demo.

Run (about 15-30 min on a busy 2-core machine):
    nice -n 10 python benchmarks/bench_review_loop.py --out /tmp/review-loop
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

TRAIN = ["--model", "efficientnet-lite0", "--input-size", "64", "--freeze-until", "blocks.9", "--augment", "none",
         "--threads", "1", "--batch-size", "32", "--lr", "0.01"]


def run_cli(*args: str, capture: bool = False) -> str:
    """Run one mikata command (this checkout's, through PYTHONPATH) and fail loudly."""
    cmd = [sys.executable, "-m", "mikata", *args]
    print("$ mikata " + " ".join(args), flush=True)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.PIPE if capture else None, text=True)
    if done.returncode not in (0, 1):
        raise SystemExit(f"mikata {args[0]} failed with exit {done.returncode}")
    print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
    return done.stdout or ""


def finished(ckpt: Path) -> bool:
    """A checkpoint whose training completed (an interrupted one is resumed by ``train --resume``)."""
    from mikata.models.loading import read_checkpoint_metadata

    return ckpt.is_file() and bool(read_checkpoint_metadata(ckpt).get("training", {}).get("complete"))


def write_data(out: Path, per_class: int, test_per_class: int, flip: float, seed: int) -> dict:
    """The noisy training folder, the clean test folder and the truth (relative path -> true class)."""
    from PIL import Image

    from mikata.data.idx import FASHION_MNIST_CLASSES, load_fashion_mnist, write_fashion_mnist

    truth_path = out / "truth.json"
    if truth_path.is_file():
        return json.loads(truth_path.read_text())
    rng = np.random.default_rng(seed)
    x, y = load_fashion_mnist("train")
    chosen = np.concatenate([np.sort(rng.choice(np.flatnonzero(y == c), per_class, replace=False))
                             for c in range(len(FASHION_MNIST_CLASSES))])
    flipped = set(rng.choice(len(chosen), int(round(flip * len(chosen))), replace=False).tolist())
    truth, given = {}, {}
    for k, i in enumerate(chosen.tolist()):
        true = int(y[i])
        label = true if k not in flipped else int((true + 1 + rng.integers(0, len(FASHION_MNIST_CLASSES) - 1))
                                                   % len(FASHION_MNIST_CLASSES))
        rel = f"{FASHION_MNIST_CLASSES[label]}/train_{i:05d}.png"
        (out / "noisy" / FASHION_MNIST_CLASSES[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[i]).save(out / "noisy" / rel)
        truth[rel], given[rel] = true, label
    write_fashion_mnist(out / "test", per_class=test_per_class, seed=seed, part="test")
    record = {"classes": list(FASHION_MNIST_CLASSES), "truth": truth, "flipped": sorted(r for r in truth
                                                                                         if truth[r] != given[r])}
    truth_path.write_text(json.dumps(record, indent=1))
    return record


def review(cv_run: Path, noisy: Path, record: dict, top: int) -> dict:
    """Post a truthful verdict for each of the run's ``top`` most suspicious images through the review API."""
    from fastapi.testclient import TestClient

    from mikata.analysis.view import RunView
    from mikata.server import create_app

    view = RunView(cv_run)
    ov = view.overview()
    ranking = view.label_ranking()[:top]
    ids = ov.data.ids[ranking].tolist()
    names = ov.class_names
    token = "t" * 32
    client = TestClient(create_app(cv_run, token=token, port=8765), base_url="http://127.0.0.1:8765")
    assert client.get(f"/?token={token}").status_code == 200
    counts = {"wrong": 0, "fine": 0}
    for image_id, row in zip(ids, ranking.tolist()):
        rel = os.path.relpath(ov.data.paths[row], noisy.resolve())
        true_name = record["classes"][record["truth"][rel]]
        stored = names[int(ov.data.labels[row])]
        if stored != true_name:
            body = {"verdict": "wrong", "suggested": names.index(true_name)}
            counts["wrong"] += 1
        else:
            body = {"verdict": "fine"}
            counts["fine"] += 1
        r = client.post(f"/api/review/{image_id}", json=body, headers={"sec-fetch-site": "same-origin"})
        if r.status_code != 200:
            raise SystemExit(f"review API refused image {image_id}: {r.status_code} {r.text}")
    counts["flipped_total"] = len(record["flipped"])
    counts["reviewed"] = len(ids)
    return counts


def accuracy_interval(right: np.ndarray, rng: np.random.Generator, n_boot: int = 2000) -> tuple[float, float, float]:
    """Accuracy and its 95% percentile bootstrap interval."""
    boots = right[rng.integers(0, len(right), size=(n_boot, len(right)))].mean(axis=1)
    return float(right.mean()), float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))


def own_comparison(run_a: Path, run_b: Path, seed: int = 0) -> dict:
    """Accuracy A/B with bootstrap intervals, the paired difference's interval and McNemar's exact p,
    over the images both runs scanned (matched by path)."""
    from scipy.stats import binomtest

    from mikata.runs.data import load_run

    a, b = load_run(run_a), load_run(run_b)
    pa = {p: i for i, p in enumerate(a.paths)}
    pairs = [(pa[p], j) for j, p in enumerate(b.paths) if p in pa]
    ia, ib = (np.array(v, np.int64) for v in zip(*pairs))
    ra = a.preds[ia] == a.labels[ia]
    rb = b.preds[ib] == b.labels[ib]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(ra), size=(2000, len(ra)))
    diffs = rb[idx].mean(axis=1) - ra[idx].mean(axis=1)
    fixed, broken = int((~ra & rb).sum()), int((ra & ~rb).sum())
    p = binomtest(fixed, fixed + broken, 0.5).pvalue if fixed + broken else 1.0
    return {"shared": len(pairs), "accuracy_a": accuracy_interval(ra, np.random.default_rng(seed)),
            "accuracy_b": accuracy_interval(rb, np.random.default_rng(seed + 1)),
            "difference": (float(rb.mean() - ra.mean()), float(np.percentile(diffs, 2.5)),
                           float(np.percentile(diffs, 97.5))),
            "fixed": fixed, "broken": broken, "mcnemar_p": float(p), "source": "computed by this benchmark"}


def ece_of(run: Path) -> float:
    from mikata.runs.data import load_run
    from mikata.analysis.calibration import expected_calibration_error

    d = load_run(run)
    return expected_calibration_error(d.probs, d.labels)


def table(r: dict) -> str:
    """The markdown table of the notes and the README."""
    a, b, own = r["own"]["accuracy_a"], r["own"]["accuracy_b"], r["own"]
    diff, p = r["compare"]["difference"], r["compare"]["mcnemar_p"]
    rev, cor = r["reviewed"], r["corrections_in_checkpoint"]
    return "\n".join([
        "| | A (noisy labels) | B (after the review) |", "|---|---|---|",
        f"| labels flipped in the training folder | {rev['flipped_total']} | |",
        f"| suspects reviewed (top of the crossval ranking) | | {rev['reviewed']} ({rev['wrong']} wrong, "
        f"{rev['fine']} fine) |",
        f"| labels changed in training (checkpoint) | | {cor.get('relabeled')} |",
        f"| test accuracy, 95% bootstrap interval ({own['shared']} clean test images) | {a[0]:.2%} "
        f"[{a[1]:.2%}, {a[2]:.2%}] | {b[0]:.2%} [{b[1]:.2%}, {b[2]:.2%}] |",
        f"| B - A, paired 95% interval ({r['compare']['source']}) | | {diff[0]:+.2%} [{diff[1]:+.2%}, {diff[2]:+.2%}] |",
        f"| McNemar exact p (fixed {own['fixed']}, broken {own['broken']}) | | {p:.3g} |",
        f"| ECE (15 equal-mass bins) | {r['ece_a']:.4f} | {r['ece_b']:.4f} |"]
        + ([f"| ECE B - A, paired 95% interval (mikata compare) | | {e['diff']:+.4f} [{e['low']:+.4f}, "
            f"{e['high']:+.4f}] |" for e in [r["compare"]["ece"]]] if r["compare"].get("ece") else []))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="/tmp/review-loop")
    p.add_argument("--per-class", type=int, default=300)
    p.add_argument("--test-per-class", type=int, default=300)
    p.add_argument("--flip", type=float, default=0.10)
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--review", type=int, default=None, help="suspects to review (default: 1.5 x the flipped count)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--stop-after", choices=["data", "crossval", "train-a", "review", "train-b"], default=None)
    args = p.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    record = write_data(out, args.per_class, args.test_per_class, args.flip, args.seed)
    noisy, test = out / "noisy", out / "test"
    opts = [*TRAIN, "--epochs", str(args.epochs), "--seed", str(args.seed), "--device", args.device]
    if args.stop_after == "data":
        return 0
    cv = out / "cv"
    if not (cv / "run.sqlite").is_file():
        run_cli("crossval", str(noisy), "--folds", str(args.folds), "--run", str(cv), "--scan-workers", "0", *opts)
    if args.stop_after == "crossval":
        return 0
    a_ckpt, b_ckpt = out / "a.safetensors", out / "b.safetensors"
    fractions = ["--split-fractions", "0.85,0.15"]  # train, val: the clean test folder is the test
    if not finished(a_ckpt):
        run_cli("train", str(noisy), "--out", str(a_ckpt), *fractions, *opts, *(["--resume"] if a_ckpt.is_file() else []))
    if args.stop_after == "train-a":
        return 0
    reviewed_file = out / "reviewed.json"
    if not reviewed_file.is_file():
        top = args.review or int(round(1.5 * len(record["flipped"])))
        reviewed_file.write_text(json.dumps(review(cv, noisy, record, top)))
    reviewed = json.loads(reviewed_file.read_text())
    if args.stop_after == "review":
        return 0
    if not finished(b_ckpt):
        run_cli("train", str(noisy), "--out", str(b_ckpt), "--reviews", str(cv), *fractions, *opts,
                *(["--resume"] if b_ckpt.is_file() else []))
    if args.stop_after == "train-b":
        return 0
    runs = {}
    for name, ckpt in (("a", a_ckpt), ("b", b_ckpt)):
        runs[name] = out / f"test-{name}"
        if not (runs[name] / "run.sqlite").is_file():
            run_cli("scan", str(ckpt), str(test), "--run", str(runs[name]), "--split", "all", "--workers", "0",
                   "--device", args.device)
    own = own_comparison(runs["a"], runs["b"], args.seed)
    compared = {"source": own["source"], "difference": own["difference"], "mcnemar_p": own["mcnemar_p"]}
    try:
        import importlib

        importlib.import_module("mikata.analysis.compare")  # mikata compare, once it is part of this mikata
    except ImportError:
        pass
    else:
        raw = json.loads(run_cli("compare", str(runs["a"]), str(runs["b"]), "--json", capture=True))
        acc = next(m for m in raw["metrics"] if m["metric"] == "accuracy")
        compared = {"source": "mikata compare", "difference": (acc["diff"], acc["low"], acc["high"]),
                    "mcnemar_p": acc["mcnemar_p"], "shared": raw["images"]["shared"],
                    "fixed": raw["flipped"]["fixed"]["count"], "broken": raw["flipped"]["broken"]["count"]}
        ece = next((m for m in raw["metrics"] if m["metric"] == "ECE"), None)
        if ece is not None:
            compared["ece"] = {k: ece[k] for k in ("a", "b", "diff", "low", "high")}
    from mikata.models.loading import read_checkpoint_metadata

    corrections = read_checkpoint_metadata(b_ckpt).get("training", {}).get("corrections") or {}
    result = {"reviewed": reviewed, "corrections_in_checkpoint": corrections, "own": own, "compare": compared,
              "ece_a": ece_of(runs["a"]), "ece_b": ece_of(runs["b"]), "seconds": round(time.perf_counter() - t0)}
    (out / "result.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
