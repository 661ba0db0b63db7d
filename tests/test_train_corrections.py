"""``mikata train --reviews RUN`` / ``--corrections FILE.csv``: review verdicts become training labels,
the dataset folder is never touched, and bad corrections are one line (exit 2). Plus the review loop's
chain end to end on a tiny subset (the benchmark ``bench_review_loop.py`` runs it at size)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from mikata.data.datasets import ImageDataset, Sample, load_dataset, split_dataset
from mikata.training.corrections import Corrections, CorrectionsError, apply_corrections, describe, from_csv
from cli_support import run_cli
from test_train import write_digits

FAST = dict(epochs=1, batch_size=16, lr=0.01, input_size=32, freeze_until="blocks.11", threads=1)


def _tree_digest(root: Path) -> str:
    """Every file's relative path, size and bytes: equal only if nothing in the folder changed."""
    h = hashlib.sha1()
    for p in sorted(root.rglob("*")):
        h.update(str(p.relative_to(root)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def _toy(tmp_path: Path) -> ImageDataset:
    root = tmp_path / "toy"
    samples = []
    for k, cls in enumerate(("cat", "dog", "fox")):
        (root / cls).mkdir(parents=True)
        for i in range(10):
            p = root / cls / f"{i}.png"
            p.write_bytes(b"x")
            samples.append(Sample(str(p.resolve()), k))
    return ImageDataset(str(root.resolve()), ["cat", "dog", "fox"], samples)


def test_apply_corrections_relabels_leaves_out_and_keeps_the_split(tmp_path):
    ds = _toy(tmp_path)
    parts = split_dataset(ds, (0.6, 0.2, 0.2), seed=0)
    cat0, cat1, dog2 = (os.path.join(ds.root, p) for p in ("cat/0.png", "cat/1.png", "dog/2.png"))
    c = Corrections({"kind": "csv", "file": "f.csv", "sha256": "ab"}, {cat0: "dog", cat1: "CAT"}, {dog2}, 0, "f.csv")
    out, summary = apply_corrections(ds, parts, c)
    assert summary["relabeled"] == 1 and summary["left_out"] == 1 and summary["unchanged"] == 1
    where = {s.path: (name, s.label) for name, part in out.items() for s in part.samples}
    before = {s.path: name for name, part in parts.items() for s in part.samples}
    assert where[cat0] == (before[cat0], 1)   # relabeled, in the split it had
    assert where[cat1] == (before[cat1], 0)   # "CAT" is cat (case-insensitive), already so
    assert dog2 not in where and len(where) == len(ds) - 1
    assert "1 changed, 1 image(s) left out" in describe(summary)


def test_bad_corrections_name_the_problem(tmp_path):
    ds = _toy(tmp_path)
    parts = split_dataset(ds, (0.8, 0.2), seed=0)
    cat0 = os.path.join(ds.root, "cat/0.png")
    with pytest.raises(CorrectionsError, match="'wolf'.*not a class.*cat, dog, fox"):
        apply_corrections(ds, parts, Corrections({}, {cat0: "wolf"}, set(), 0, "c.csv"))
    with pytest.raises(CorrectionsError, match="1 corrected image.*not in the dataset"):
        apply_corrections(ds, parts, Corrections({}, {str(tmp_path / "elsewhere.png"): "cat"}, set(), 0, "c.csv"))
    bad = tmp_path / "bad.csv"
    for text, match in (("file,class\na,b\n", "header path,label"), ("path,label\ncat/0.png,dog\ncat/0.png,fox\n",
                                                                      "listed twice"),
                        ("path,label\n,dog\n", "not path,label")):
        bad.write_text(text)
        with pytest.raises(CorrectionsError, match=match):
            from_csv(bad)
    bad.write_bytes(b"path,label\n\xff\xfe,dog\n")
    with pytest.raises(CorrectionsError, match="not UTF-8"):
        from_csv(bad)


def test_csv_relative_paths_are_inside_the_dataset(tmp_path):
    ds = _toy(tmp_path)
    f = tmp_path / "fix.csv"
    f.write_text("path,label\ncat/0.png,fox\ndog/1.png,\n")
    c = from_csv(f)
    assert c.source["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest() and c.source["rows"] == 2
    out, summary = apply_corrections(ds, {"train": ds}, c)
    assert summary["relabeled"] == 1 and summary["left_out"] == 1
    assert len(out["train"]) == len(ds) - 1


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    """Four digit classes, 24 images each, with 8 labels flipped (the file put in a wrong class folder)."""
    base = tmp_path_factory.mktemp("loop")
    root = write_digits(base / "noisy", per_class=24)
    rng = np.random.default_rng(0)
    files = sorted(root.rglob("*.png"))
    truth = {}
    for p in files:
        truth[str(p.resolve())] = p.parent.name
    moved = {}
    folders = sorted(d.name for d in root.iterdir())
    for i in rng.choice(len(files), 8, replace=False):
        p = files[i]
        wrong = [f for f in folders if f != p.parent.name][int(rng.integers(0, 3))]
        dst = root / wrong / f"flipped_{p.parent.name}_{p.name}"
        p.rename(dst)
        moved[str(dst.resolve())] = p.parent.name
        truth[str(dst.resolve())] = truth.pop(str(p.resolve()))
    test = write_digits(base / "test", per_class=10, classes=(0, 1, 3, 7))
    return {"root": root, "truth": truth, "moved": moved, "test": test, "base": base, "digest": _tree_digest(root)}


@pytest.fixture(scope="module")
def cv(noisy, lite0):
    """The noisy folder cross-validated (2 folds): every image with an out-of-sample prediction."""
    from mikata.scanning.crossval import crossval

    run = noisy["base"] / "cv"
    crossval(noisy["root"], lite0, run, folds=2, progress=False, scan_workers=0, **FAST)
    return run


def test_review_loop_chain_on_a_tiny_subset(noisy, cv, capsys):
    """crossval -> the label ranking's top suspects reviewed truthfully through the review API ->
    train --reviews -> the checkpoint says what changed, the folder is untouched, the split is the
    same as without the review -> both models scan the clean test folder and compare."""
    from fastapi.testclient import TestClient

    from mikata.analysis.view import RunView
    from mikata.models.loading import read_checkpoint_metadata
    from mikata.server import create_app

    base, root = noisy["base"], noisy["root"]
    view = RunView(cv)
    ov = view.overview()
    ranking = view.label_ranking()[:16]
    assert len(ranking) > 0
    token = "k" * 32
    client = TestClient(create_app(cv, token=token, port=8765), base_url="http://127.0.0.1:8765")
    assert client.get(f"/?token={token}").status_code == 200
    wrong = fine = 0
    for row in ranking.tolist():
        path = str(Path(ov.data.paths[row]).resolve())
        true_name = noisy["truth"][path]
        stored = ov.class_names[int(ov.data.labels[row])]
        body = {"verdict": "fine"} if stored == true_name else \
            {"verdict": "wrong", "suggested": ov.class_names.index(true_name)}
        wrong += stored != true_name
        fine += stored == true_name
        r = client.post(f"/api/review/{int(ov.data.ids[row])}", json=body, headers={"sec-fetch-site": "same-origin"})
        assert r.status_code == 200, r.text
    a, b = base / "a.safetensors", base / "b.safetensors"
    common = ["--model", "efficientnet-lite0", "--epochs", "1", "--batch-size", "16", "--input-size", "32",
              "--freeze-until", "blocks.11", "--threads", "1", "--split-fractions", "0.8,0.2", "--device", "cpu"]
    done = run_cli(capsys, "-q", "train", str(root), "--out", str(a), *common)
    assert done.returncode == 0, done.stderr
    done = run_cli(capsys, "-q", "train", str(root), "--out", str(b), "--reviews", str(cv), *common)
    assert done.returncode == 0, done.stderr
    assert f"labels from the label review of {cv.resolve()} ({wrong + fine} reviews): {wrong} changed" in done.stdout
    meta_a, meta_b = (read_checkpoint_metadata(p)["training"] for p in (a, b))
    rec = meta_b["corrections"]
    assert rec["kind"] == "reviews" and rec["run"] == str(cv.resolve()) and rec["relabeled"] == wrong
    assert rec["fine"] == fine and rec["left_out"] == 0 and meta_a["corrections"] is None
    assert meta_b["split_record"] == meta_a["split_record"]  # the folder's split, as mikata scan recomputes it
    assert _tree_digest(root) == noisy["digest"]  # nothing in the dataset folder moved or rewritten
    for name, ckpt in (("a", a), ("b", b)):
        done = run_cli(capsys, "-q", "scan", str(ckpt), str(noisy["test"]), "--run", str(base / f"test-{name}"),
                       "--split", "all", "--workers", "0", "--device", "cpu")
        assert done.returncode == 0, done.stderr
    from mikata.runs.data import load_run

    ra, rb = load_run(base / "test-a"), load_run(base / "test-b")
    assert sorted(ra.paths) == sorted(rb.paths) and len(ra) == 40  # the same clean images, paired


def test_cli_refuses_bad_reviews_and_corrections_in_one_line(noisy, tmp_path, capsys):
    root = noisy["root"]
    out = tmp_path / "m.safetensors"
    common = ["--model", "efficientnet-lite0", "--epochs", "1", "--input-size", "32"]
    fix = tmp_path / "fix.csv"
    fix.write_text("path,label\ndigit_0/000.png,digit_9\n")
    done = run_cli(capsys, "-q", "train", str(root), "--out", str(out), "--corrections", str(fix), *common)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "'digit_9'" in done.stderr and "not a class" in done.stderr
    fix.write_text("path,label\nnowhere/000.png,digit_1\n")
    done = run_cli(capsys, "-q", "train", str(root), "--out", str(out), "--corrections", str(fix), *common)
    assert done.returncode == 2 and "not in the dataset" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    done = run_cli(capsys, "-q", "train", str(root), "--out", str(out), "--corrections", str(fix), "--reviews",
                   str(tmp_path), *common)
    assert done.returncode == 2 and "not allowed with" in done.stderr
    done = run_cli(capsys, "-q", "train", str(root), "--out", str(out), "--reviews", str(tmp_path / "no-run"), *common)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_reviews_of_a_changed_file_or_an_unreviewed_run_are_refused(cv, tmp_path):
    import shutil

    from mikata.runs.store import RunStore
    from mikata.training.corrections import from_reviews

    run = tmp_path / "cv"
    shutil.copytree(cv, run, ignore=shutil.ignore_patterns("writer.lock"))
    with RunStore.open(run, annotate=True) as store:
        for r in store.reviews():
            store.set_review(r["id"], None)
    with pytest.raises(CorrectionsError, match="has no label reviews"):
        from_reviews(run)
    with RunStore.open(run, annotate=True) as store:
        first = store.image(1)
        store.set_review(1, "wrong", (int(first["label"]) + 1) % 4)
    victim = Path(first["path"])
    original = victim.read_bytes()
    try:
        victim.write_bytes(original + b"\0")
        with pytest.raises(CorrectionsError, match="changed since it was scanned"):
            from_reviews(run)
    finally:
        victim.write_bytes(original)
    c = from_reviews(run)
    assert len(c.labels) == 1 and json.loads(json.dumps(c.source))["reviews"] == 1
