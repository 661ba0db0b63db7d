"""Benchmark: dataset issues — planted precision/recall on Fashion-MNIST, agreement with cleanlab's
Datalab and cleanvision, and the cost at 70k and 1M images.

1. Planted cases on real data: 600 Fashion-MNIST test images (Debian dataset-fashion-mnist, 60 per
   class) with real photos from scikit-image filed as garments (outliers), byte copies and lightly
   edited copies (5% darker, JPEG), darkened, blurred, tiny and stretched images; scanned with the
   built-in EfficientNet-Lite0 (real ImageNet weights, 64 px) into a two-split run. Precision and
   recall of each type at its default threshold.
2. The same embeddings and probabilities through cleanlab's Datalab (outlier and near-duplicate
   scores: Spearman rank correlation with ours), and the same files through cleanvision (flags:
   agreement per type).
3. Cost of ``find_issues`` on runs of 70,000 and 1,000,000 rows whose vectors are the real scan's rows
   repeated with small noise (the k-NN search dominates; exact up to 50k, faiss HNSW above).

    PYTHONPATH=src python benchmarks/bench_issues.py --work /tmp/bench-issues [--skip-1m]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

PHOTOS = ("astronaut", "camera", "chelsea", "clock", "coffee", "coins", "horse", "moon", "page", "rocket", "text",
          "brick", "grass", "gravel", "hubble_deep_field")
IMAGENET = ["jersey", "trench coat", "sweatshirt", "overskirt", "trench coat", "sandal", "cardigan", "running shoe",
            "purse", "cowboy boot"]  # a model class for each Fashion-MNIST folder (the labels only need to be fixed)


def planted(work: Path, keep: bool = False) -> dict:
    """Write the planted folder (the same files for the same seed); ``keep`` leaves an existing run alone."""
    from skimage import data as skd

    from mikata.data.idx import FASHION_MNIST_CLASSES, load_fashion_mnist

    root = work / "data"
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    x, y = load_fashion_mnist("test")
    rng = np.random.default_rng(0)
    truth: dict[str, set[str]] = {k: set() for k in ("outlier", "exact_duplicate", "near_duplicate", "dark", "blurry",
                                                    "odd_size", "odd_aspect")}
    base = []
    for c, name in enumerate(FASHION_MNIST_CLASSES):
        for i in rng.choice(np.flatnonzero(y == c), 60, replace=False):
            p = root / name / f"{i:05d}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            if not keep:
                Image.fromarray(x[i]).save(p)
            base.append((str(p), x[i], name))
    order = iter(rng.permutation(len(base)).tolist())

    def pick():
        return base[next(order)]

    for k in range(20):
        p, a, name = pick()
        q = root / name / f"copy_{k}.png"
        shutil.copyfile(p, q)
        truth["exact_duplicate"] |= {p, str(q)}
        p, a, name = pick()
        q = root / name / f"edit_{k}.jpg"
        Image.fromarray((a * 0.95).astype(np.uint8)).save(q, quality=90)
        truth["near_duplicate"] |= {p, str(q)}
    truth["near_duplicate"] |= truth["exact_duplicate"]
    for k, photo in enumerate(PHOTOS):
        q = root / FASHION_MNIST_CLASSES[k % 10] / f"photo_{photo}.png"
        Image.fromarray(getattr(skd, photo)()).convert("L").resize((28, 28)).save(q)
        truth["outlier"].add(str(q))
    for k in range(12):
        p, a, name = pick()
        q = root / name / f"dark_{k}.png"
        Image.fromarray((a * 0.12).astype(np.uint8)).save(q)
        truth["dark"].add(str(q))
        truth["near_duplicate"] |= {p, str(q)}  # the same picture, darker
        p, a, name = pick()
        q = root / name / f"blur_{k}.png"
        Image.fromarray(a).filter(ImageFilter.GaussianBlur(2.5)).save(q)
        truth["blurry"].add(str(q))
        p, a, name = pick()
        q = root / name / f"tiny_{k}.png"
        Image.fromarray(a).resize((8, 8)).save(q)
        truth["odd_size"].add(str(q))
        truth["blurry"].add(str(q))
        p, a, name = pick()
        q = root / name / f"wide_{k}.png"
        Image.fromarray(a).resize((84, 28)).save(q)
        truth["odd_aspect"].add(str(q))
    return {"root": root, "truth": truth, "class_map": dict(zip(FASHION_MNIST_CLASSES, IMAGENET))}


def precision_recall(found: set, truth: set) -> tuple[float, float]:
    tp = len(found & truth)
    return (tp / len(found) if found else 1.0), (tp / len(truth) if truth else 1.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/bench-issues")
    ap.add_argument("--skip-1m", action="store_true")
    ap.add_argument("--reuse", action="store_true", help="reuse WORK/run from an earlier call (no new scan)")
    args = ap.parse_args()
    import torch

    from mikata.analysis.issues import find_issues
    from mikata.scanning.scan import scan
    from mikata.models import load_model

    torch.set_num_threads(2)
    work = Path(args.work)
    case = planted(work, keep=args.reuse)
    if not args.reuse:
        handle = load_model("efficientnet-lite0", input_size=64)
        tic = time.perf_counter()
        scan(handle, case["root"], work / "run", workers=0, progress=False, class_map=case["class_map"],
             fractions=(0.5, 0.5))
        print(f"scan of {sum(1 for _ in case['root'].rglob('*.*'))} images: {time.perf_counter() - tic:.1f} s")
    tic = time.perf_counter()
    found = find_issues(work / "run")
    print(f"find_issues: {time.perf_counter() - tic:.2f} s")
    paths = np.asarray(found.data.paths)
    print("\n| type | precision | recall | flagged | planted |\n|---|---|---|---|---|")
    for name, truth in case["truth"].items():
        flagged = set(paths[found.types[name].flag])
        p, r = precision_recall(flagged, truth)
        print(f"| {name} | {p:.2f} | {r:.2f} | {len(flagged)} | {len(truth)} |")
    from sklearn.metrics import roc_auc_score

    is_photo = np.isin(paths, sorted(case["truth"]["outlier"]))
    print(f"\noutlier AUROC (photos vs garments): {roc_auc_score(is_photo, -found.types['outlier'].score):.3f}")
    compare_cleanlab(work / "run", found)
    compare_cleanvision(found)
    cost(work / "run", [70_000] + ([] if args.skip_1m else [1_000_000]))


def compare_cleanlab(run: Path, found) -> None:
    """Outlier scores against cleanlab's ``OutOfDistribution`` on the same embeddings (k-NN distances, the
    definition Datalab's outlier check uses; Datalab itself needs the ``cleanlab[datalab]`` extras)."""
    from cleanlab.outlier import OutOfDistribution
    from scipy.stats import spearmanr

    from mikata.analysis.issues import embedding_features, embedding_outlier_z
    from mikata.runs.store import RunStore

    d = found.data
    with RunStore.open(run) as store:
        emb = np.asarray(store.vectors("embed")[d.vec_rows], np.float32)
    feats = embedding_features(emb)
    theirs = OutOfDistribution({"k": 10}).fit_score(features=feats)
    ours = -embedding_outlier_z(feats, 10)  # the embedding half of our score: the definition theirs matches
    rho = spearmanr(ours, theirs).statistic
    full = spearmanr(found.types["outlier"].score, theirs).statistic
    print(f"\nagreement with cleanlab OutOfDistribution (k = 10, same features): Spearman {rho:.3f} of the embedding "
          f"k-NN scores; {full:.3f} of our outlier score (which also asks for pixels unlike every other image)")


def compare_cleanvision(found) -> None:
    try:
        from cleanvision import Imagelab
    except ImportError:
        print("cleanvision not installed (pip install -c constraints.txt cleanvision): skipped")
        return
    paths = list(found.data.paths)
    lab = Imagelab(filepaths=paths)
    lab.find_issues(verbose=False)
    res = lab.issues
    print("\nagreement with cleanvision's flags on the same files (Jaccard of the flagged sets)")
    for ours, theirs in (("dark", "dark"), ("light", "light"), ("blurry", "blurry"), ("low_information",
                         "low_information"), ("odd_aspect", "odd_aspect_ratio"), ("odd_size", "odd_size"),
                         ("exact_duplicate", "exact_duplicates"), ("near_duplicate", "near_duplicates")):
        col = f"is_{theirs}_issue"
        if col not in res:
            continue
        a = set(np.asarray(paths)[found.types[ours].flag])
        b = set(np.asarray(paths)[res[col].to_numpy()])
        j = len(a & b) / max(1, len(a | b))
        print(f"  {ours}: ours {len(a)}, cleanvision {len(b)}, both {len(a & b)}, Jaccard {j:.2f}")


def cost(run: Path, sizes: list[int]) -> None:
    from mikata.runs.data import load_run
    from mikata.analysis.issues import embedding_features, knn
    from mikata.runs.store import RunStore

    d = load_run(run)
    with RunStore.open(run) as store:
        emb = np.asarray(store.vectors("embed")[d.vec_rows], np.float32)
    rng = np.random.default_rng(0)
    print("\ncost (embeddings: the real scan's rows repeated with noise, float16 as stored; PCA to 128 dims, k = 10)")
    for n in sizes:
        big = np.empty((n, emb.shape[1]), np.float16)
        for s in range(0, n, 100_000):
            m = min(100_000, n - s)
            rows = rng.integers(0, len(emb), m)
            big[s:s + m] = emb[rows] + rng.normal(scale=0.05 * float(emb.std()), size=(m, emb.shape[1]))
        tic = time.perf_counter()
        feats = embedding_features(big)
        t_pca = time.perf_counter() - tic
        tic = time.perf_counter()
        knn(feats, 10)
        t_knn = time.perf_counter() - tic
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"  {n:>9,} rows: PCA {t_pca:.1f} s, k-NN {t_knn:.1f} s ({'exact' if n <= 50_000 else 'faiss HNSW'}), "
              f"peak RSS so far {peak:.2f} GB (the float16 embeddings alone: {big.nbytes / 2**30:.2f} GB)")
        del big, feats


if __name__ == "__main__":
    main()
