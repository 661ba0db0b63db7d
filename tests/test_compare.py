"""mikata compare: paired statistics against independent computations, matching, refusals, CLI and page."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.metrics import average_precision_score, precision_score, recall_score, roc_auc_score

from cli_support import run_cli
from compare_support import predictions, probs_for, write_run
from mikata.analysis.compare import CompareError, Paired, Settings, accuracy_rows, compare
from mikata.analysis.compare_match import match_rows
from mikata.analysis.paired import RatioCells, ScoreBootstrap, mcnemar_exact, percentile_interval

SRC = Path(__file__).resolve().parents[1] / "src"
CLASSES = ["cat", "dog", "fox"]


# ---------------------------------------------------------------------------------------- McNemar
def _hand_mcnemar(b: int, c: int) -> float:
    """2 * sum_{i <= min(b, c)} C(n, i) / 2^n with exact integers, capped at 1."""
    n, k = b + c, min(b, c)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n) if n else 1.0


@pytest.mark.parametrize("b,c", [(0, 0), (0, 1), (3, 12), (12, 3), (10, 10), (25, 40), (1, 30), (400, 470)])
def test_mcnemar_matches_scipy_binomtest_and_a_hand_count(b, c):
    got = mcnemar_exact(b, c)
    assert got == pytest.approx(_hand_mcnemar(b, c), rel=1e-9, abs=1e-15)
    if b + c:
        assert got == pytest.approx(binomtest(min(b, c), b + c, 0.5).pvalue, rel=1e-9, abs=1e-15)
    assert mcnemar_exact(b, c) == mcnemar_exact(c, b)  # two-sided: symmetric


def test_mcnemar_hand_value():
    # 3 vs 12 discordant: 2 * (1 + 15 + 105 + 455) / 2**15 = 1152 / 32768
    assert mcnemar_exact(3, 12) == pytest.approx(1152 / 32768, rel=1e-12)


# ---------------------------------------------------------------------------------------- bootstrap
def _paired(correct_a: np.ndarray, correct_b: np.ndarray, labels: np.ndarray | None = None, k: int = 3) -> Paired:
    n = len(correct_a)
    labels = np.zeros(n, np.int64) if labels is None else labels
    pa, pb = predictions(labels, correct_a, k), predictions(labels, correct_b, k)
    return Paired(np.arange(n), np.arange(n), labels, labels, pa, pb, probs_for(pa, k), probs_for(pb, k),
                  CLASSES[:k], {})


def test_bootstrap_intervals_cover_the_true_difference_about_95_percent_of_the_time():
    """200 simulated pairs of runs (A right w.p. 0.70, B w.p. 0.75, correlated through a shared
    difficulty: 30% hard images): the 95% interval of B - A contains the true 0.051 in about 95% of them."""
    rng = np.random.default_rng(1)
    n, covered, sims = 600, 0, 200
    for _ in range(sims):
        hard = rng.random(n) < 0.3  # hard images: both models more often wrong
        a = rng.random(n) < np.where(hard, 0.40, 0.83)
        b = rng.random(n) < np.where(hard, 0.50, 0.86)
        row = accuracy_rows(_paired(a, b), Settings(seed=int(rng.integers(1 << 30)), replicates=1000))[0]
        true = 0.3 * (0.50 - 0.40) + 0.7 * (0.86 - 0.83)
        covered += row.value.low <= true <= row.value.high
    assert 0.91 <= covered / sims <= 0.99, covered


def test_cell_bootstrap_has_the_distribution_of_resampling_the_images():
    """Drawing the 16 cell counts from a multinomial is resampling the rows: the intervals agree with a
    slow bootstrap that resamples image indices (up to Monte-Carlo error)."""
    rng = np.random.default_rng(3)
    n = 500
    labels = rng.integers(0, 3, n)
    a, b = rng.random(n) < 0.6, rng.random(n) < 0.7
    pa, pb = predictions(labels, a, 3), predictions(labels, b, 3)
    den_a, num_a, den_b, num_b = pa == 1, labels == 1, pb == 1, labels == 1  # precision of class 1
    cells = RatioCells(den_a, num_a, den_b, num_b)
    fast = cells.paired(np.random.default_rng(0), 4000)
    slow = np.empty(4000)
    for r in range(len(slow)):
        i = rng.integers(0, n, n)
        slow[r] = (num_b[i] & den_b[i]).sum() / den_b[i].sum() - (num_a[i] & den_a[i]).sum() / den_a[i].sum()
    low, high = percentile_interval(slow)
    assert fast.low == pytest.approx(low, abs=0.012) and fast.high == pytest.approx(high, abs=0.012)
    assert fast.a == pytest.approx(precision_score(labels == 1, pa == 1))
    assert fast.p is None  # precision: other images in A's and B's denominators, no McNemar


def test_weighted_areas_equal_sklearn_on_the_resampled_rows():
    """ScoreBootstrap.areas(w) is AUROC / AP of the rows repeated w times (ties included)."""
    rng = np.random.default_rng(5)
    n = 300
    y = rng.random(n) < 0.3
    score = np.round(np.clip(y * 0.3 + rng.random(n) * 0.8, 0, 1), 2)  # many ties
    sb = ScoreBootstrap(y, score)
    auroc, ap = sb.areas()
    assert auroc == pytest.approx(roc_auc_score(y, score)) and ap == pytest.approx(average_precision_score(y, score))
    w = np.bincount(rng.integers(0, n, n), minlength=n)
    keep = np.repeat(np.arange(n), w)
    auroc, ap = sb.areas(w)
    assert auroc == pytest.approx(roc_auc_score(y[keep], score[keep]))
    assert ap == pytest.approx(average_precision_score(y[keep], score[keep]))


# ---------------------------------------------------------------------------------------- runs
def _scenario(tmp_path: Path, n: int = 240, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    ok_a, ok_b = rng.random(n) < 0.65, rng.random(n) < 0.8
    paths = [f"/data/{CLASSES[y]}/{i:04d}.png" for i, y in enumerate(labels)]
    site = [f"site{i % 3}" for i in range(n)]
    split = ["test" if i % 2 else "train" for i in range(n)]
    pa = probs_for(predictions(labels, ok_a, 3), 3, rng.uniform(0.4, 0.99, n))
    pb = probs_for(predictions(labels, ok_b, 3), 3, rng.uniform(0.4, 0.99, n))
    return labels, ok_a, ok_b, paths, site, split, pa, pb


def test_metrics_match_sklearn_and_classes_are_matched_by_name(tmp_path):
    labels, ok_a, ok_b, paths, site, split, pa, pb = _scenario(tmp_path)
    write_run(tmp_path / "a", CLASSES, paths, labels, pa, fields={"site": site}, splits=split)
    order = [1, 2, 0]  # B lists the classes as fox, cat, dog: B's id of A's class j
    names_b = ["fox", "cat", "dog"]
    pb_b = np.zeros_like(pb)
    pb_b[:, order] = pb
    write_run(tmp_path / "b", names_b, paths, np.asarray(order)[labels], pb_b, splits=split, model="m2")
    c = compare(tmp_path / "a", tmp_path / "b")
    assert c.images == {"shared": 240, "only_a": 0, "only_b": 0, "changed": 0, "matched_by_hash": 0,
                        "labels_differ": 0}
    pred_a, pred_b = pa.argmax(1), pb.argmax(1)
    acc = c.metric("accuracy")
    assert acc.a == pytest.approx((pred_a == labels).mean()) and acc.b == pytest.approx((pred_b == labels).mean())
    only_a = int(((pred_a == labels) & (pred_b != labels)).sum())
    only_b = int(((pred_a != labels) & (pred_b == labels)).sum())
    assert (acc.value.only_a, acc.value.only_b) == (only_a, only_b)
    assert acc.p == pytest.approx(binomtest(min(only_a, only_b), only_a + only_b, 0.5).pvalue)
    assert acc.value.low < acc.diff < acc.value.high
    rec_a = recall_score(labels, pred_a, average=None, labels=[0, 1, 2])
    rec_b = recall_score(labels, pred_b, average=None, labels=[0, 1, 2])
    prec_a = precision_score(labels, pred_a, average=None, labels=[0, 1, 2])
    prec_b = precision_score(labels, pred_b, average=None, labels=[0, 1, 2])
    for k, name in enumerate(CLASSES):
        assert c.metric("recall", name).a == pytest.approx(rec_a[k])
        assert c.metric("recall", name).b == pytest.approx(rec_b[k])
        assert c.metric("precision", name).a == pytest.approx(prec_a[k])
        assert c.metric("precision", name).b == pytest.approx(prec_b[k])
    for v in ("site0", "site1", "site2"):
        rows = np.asarray(site) == v
        r = c.metric("field accuracy", f"site = {v}")
        assert r.images == rows.sum() and r.a == pytest.approx((pred_a == labels)[rows].mean())
        assert r.b == pytest.approx((pred_b == labels)[rows].mean())
    # the same seed gives the same intervals; another seed other ones
    again = compare(tmp_path / "a", tmp_path / "b")
    assert again.metrics().equals(c.metrics())
    other = compare(tmp_path / "a", tmp_path / "b", seed=7)
    assert other.metric("accuracy").value.low != acc.value.low
    # a split: only its rows, in both runs
    test = compare(tmp_path / "a", tmp_path / "b", split="test")
    assert test.images["shared"] == 120
    assert test.metric("accuracy").a == pytest.approx((pred_a == labels)[1::2].mean())
    # flipped: fixed = wrong under A and right under B, most confident (B, then A) first
    fixed = c.flipped("fixed")
    want = np.flatnonzero((pred_a != labels) & (pred_b == labels))
    assert sorted(fixed["path"]) == sorted(paths[i] for i in want)
    conf_b = fixed["prob_b"].to_numpy()
    assert (np.diff(conf_b) <= 1e-6).all()
    assert len(c.flipped("broken")) == only_a
    assert "<table>" in c._repr_html_() and "McNemar" in c._repr_html_()


def test_two_class_runs_compare_auroc_and_average_precision(tmp_path, capsys):
    rng = np.random.default_rng(2)
    n = 400
    y = (rng.random(n) < 0.3).astype(np.int64)
    sa = np.clip(y * 0.35 + rng.random(n) * 0.65, 0, 1)
    sb = np.clip(y * 0.55 + rng.random(n) * 0.45, 0, 1)
    paths = [f"/data/{k}/{i}.png" for i, k in enumerate(y)]
    write_run(tmp_path / "a", ["ok", "defect"], paths, y, np.stack([1 - sa, sa], 1))
    write_run(tmp_path / "b", ["ok", "defect"], paths, y, np.stack([1 - sb, sb], 1), model="m2")
    c = compare(tmp_path / "a", tmp_path / "b")
    auroc, ap = c.metric("AUROC", "defect"), c.metric("average precision", "defect")
    f16 = lambda s: s.astype(np.float16).astype(np.float32)  # noqa: E731 - the run stores float16
    assert auroc.a == pytest.approx(roc_auc_score(y, f16(sa)), abs=1e-6)
    assert auroc.b == pytest.approx(roc_auc_score(y, f16(sb)), abs=1e-6)
    assert ap.b == pytest.approx(average_precision_score(y, f16(sb)), abs=1e-6)
    assert auroc.value.low is not None and auroc.value.low < auroc.diff < auroc.value.high
    r = run_cli(capsys, "compare", str(tmp_path / "a"), str(tmp_path / "b"), "--json", "--no-issues", "--positive",
                "ok", "--seed", "3", "--replicates", "200")
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert j["bootstrap"] == {"seed": 3, "replicates": 200, "confidence": 0.95}
    ok = next(m for m in j["metrics"] if m["metric"] == "AUROC")
    assert ok["key"] == "ok" and ok["a"] == pytest.approx(roc_auc_score(y == 0, f16(1 - sa)), abs=1e-5)


def test_rows_are_matched_by_path_and_hash_and_by_hash_when_paths_differ(tmp_path):
    labels, ok_a, ok_b, paths, site, split, pa, pb = _scenario(tmp_path, n=60)
    hashes = [f"h{i}" for i in range(60)]
    write_run(tmp_path / "a", CLASSES, paths, labels, pa, hashes=hashes)
    # B: the dataset copied elsewhere (same bytes, other paths) for rows 0..39; rows 40..49 at the same
    # path but changed files; rows 50..59 absent; plus 5 images A never saw
    moved = [p.replace("/data/", "/copy/") for p in paths[:40]]
    b_paths = moved + paths[40:50] + [f"/copy/new/{i}.png" for i in range(5)]
    b_hashes = hashes[:40] + [f"changed{i}" for i in range(10)] + [f"new{i}" for i in range(5)]
    b_labels = np.r_[labels[:50], np.zeros(5, np.int64)]
    b_probs = np.r_[pb[:50], probs_for(np.zeros(5, np.int64), 3)]
    write_run(tmp_path / "b", CLASSES, b_paths, b_labels, b_probs, hashes=b_hashes, model="m2", roots=["/copy"])
    c = compare(tmp_path / "a", tmp_path / "b")
    assert c.images == {"shared": 40, "only_a": 10, "only_b": 5, "changed": 10, "matched_by_hash": 40,
                        "labels_differ": 0}
    assert c.metric("accuracy").a == pytest.approx((pa[:40].argmax(1) == labels[:40]).mean())
    assert any("matched by file hash" in n for n in c.notes())
    # the pure matcher: a path in both with the same hash wins over a hash match elsewhere; each row once
    m = match_rows(["x", "y", "z"], ["h1", "h1", None], ["y", "w", "z"], ["h1", "h1", "h9"])
    assert sorted(zip(m.rows_a.tolist(), m.rows_b.tolist())) == [(0, 1), (1, 0), (2, 2)]
    assert (m.by_hash, m.changed, m.only_a, m.only_b) == (1, 0, 0, 0)


def test_labels_that_differ_are_counted_and_each_run_judged_by_its_own(tmp_path):
    labels, ok_a, ok_b, paths, site, split, pa, pb = _scenario(tmp_path, n=50)
    relabeled = labels.copy()
    relabeled[:7] = (relabeled[:7] + 1) % 3
    write_run(tmp_path / "a", CLASSES, paths, labels, pa)
    write_run(tmp_path / "b", CLASSES, paths, relabeled, pb, model="m2")
    c = compare(tmp_path / "a", tmp_path / "b")
    assert c.images["labels_differ"] == 7
    assert c.metric("accuracy").b == pytest.approx((pb.argmax(1) == relabeled).mean())


def test_refusals_are_one_clear_line(tmp_path, capsys, monkeypatch):
    labels, ok_a, ok_b, paths, site, split, pa, pb = _scenario(tmp_path, n=30)
    write_run(tmp_path / "a", CLASSES, paths, labels, pa)
    write_run(tmp_path / "b", CLASSES, [p.replace("/data/", "/else/") for p in paths], labels, pb,
              hashes=[f"other{i}" for i in range(30)], model="m2", roots=["/else"])
    write_run(tmp_path / "c", ["cat", "dog", "wolf"], paths, labels, pb, model="m3")
    with pytest.raises(CompareError, match="share no images"):
        compare(tmp_path / "a", tmp_path / "b")
    with pytest.raises(CompareError, match="other classes"):
        compare(tmp_path / "a", tmp_path / "c")
    import uvicorn

    def never(*a, **k):
        raise AssertionError("serve started a server where it had to refuse")

    monkeypatch.setattr(uvicorn.Server, "run", never)
    for args in (["compare", str(tmp_path / "a"), str(tmp_path / "b")],
                 ["compare", str(tmp_path / "a"), str(tmp_path / "nothere")],
                 ["compare", str(tmp_path / "a"), str(tmp_path / "a"), "--split", "val"],
                 ["serve", str(tmp_path / "a"), "--compare", str(tmp_path / "b"), "--port", "0"],
                 ["serve", str(tmp_path / "a"), "--compare", str(tmp_path / "c"), "--port", "0"]):
        r = run_cli(capsys, "-q", *args)
        assert r.returncode == 2, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith(f"mikata {args[0]}: error: "), r.stderr
        assert r.stdout == ""


def test_cli_json_is_stable_and_the_page_is_written(tmp_path, capsys):
    labels, ok_a, ok_b, paths, site, split, pa, pb = _scenario(tmp_path, n=90)
    write_run(tmp_path / "a", CLASSES, paths, labels, pa, splits=split, fields={"site": site})
    write_run(tmp_path / "b", CLASSES, paths, labels, pb, splits=split, model="m2")
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "cmp.html"
    r = subprocess.run([sys.executable, "-m", "mikata", "compare", str(tmp_path / "a"), str(tmp_path / "b"),
                        "--split", "test", "--json", "--out", str(out), "--flipped", "3"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert set(j) == {"run_a", "run_b", "split", "images", "classes", "bootstrap", "metrics", "flipped", "issues",
                      "notes", "seconds", "report"}
    assert j["split"] == "test" and j["images"]["shared"] == 45 and j["classes"] == CLASSES
    assert j["bootstrap"] == {"seed": 0, "replicates": 1000, "confidence": 0.95}
    assert set(j["metrics"][0]) == {"metric", "key", "images", "a", "b", "diff", "low", "high", "mcnemar_p",
                                    "only_a", "only_b", "verdict"}
    assert [m["metric"] for m in j["metrics"][:2]] == ["accuracy", "ECE"]
    assert j["metrics"][0]["metric"] == "accuracy"
    for kind in ("fixed", "broken"):
        assert len(j["flipped"][kind]["images"]) == min(3, j["flipped"][kind]["count"])
        assert set(j["flipped"][kind]["images"][0]) == {"id_a", "id_b", "path", "label", "pred_a", "prob_a",
                                                        "pred_b", "prob_b"}
    assert {t["type"] for t in j["issues"]} >= {"label"}
    page = out.read_text()
    assert "mikata compare" in page and "McNemar" in page and "site = site0" in page
    assert page.count('class="flip"') == min(24, j["flipped"]["fixed"]["count"]) + min(24, j["flipped"]["broken"]["count"])
    r = run_cli(capsys, "compare", str(tmp_path / "a"), str(tmp_path / "b"), "--no-issues")
    assert r.returncode == 0 and "accuracy" in r.stdout and "dataset issues" not in r.stdout
    # maps asked for but the runs' models cannot be found: the page is written without them, exit 1
    r = run_cli(capsys, "compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out), "--maps", "--device",
                "cpu", "--no-issues")
    assert r.returncode == 1 and "maps left out" in out.read_text(), r.stderr


def test_python_api(tmp_path):
    import mikata

    labels, ok_a, ok_b, paths, site, split, pa, pb = _scenario(tmp_path, n=40)
    write_run(tmp_path / "a", CLASSES, paths, labels, pa)
    write_run(tmp_path / "b", CLASSES, paths, labels, pb, model="m2")
    c = mikata.compare(tmp_path / "a", mikata.RunView(tmp_path / "b"))
    assert isinstance(c, mikata.Comparison)
    df = c.metrics()
    assert list(df.columns[:5]) == ["metric", "key", "images", "a", "b"] and df.iloc[0]["metric"] == "accuracy"
    pairs = c.pairs()
    assert len(pairs) == 40 and pairs["correct_a"].sum() == (pa.argmax(1) == labels).sum()


def test_a_metric_of_probabilities_is_one_entry_with_a_resampled_interval(tmp_path, monkeypatch):
    """The seam for metrics such as a calibration error: a statistic of (probs, labels) added to METRICS
    gets A, B and an interval of B - A from resampled images, checked here with the mean confidence."""
    from mikata.analysis import compare as cmp

    labels, ok_a, ok_b, paths, site, split, pa, pb = _scenario(tmp_path, n=200)
    write_run(tmp_path / "a", CLASSES, paths, labels, pa)
    write_run(tmp_path / "b", CLASSES, paths, labels, pb, model="m2")

    def mean_confidence(probs, labels):
        return float(probs.max(1).mean())

    monkeypatch.setattr(cmp, "METRICS", [*cmp.METRICS,
                                         lambda p, s: [cmp.resampled_row("confidence", "", p, s, mean_confidence)]])
    c = compare(tmp_path / "a", tmp_path / "b", replicates=300)
    row = c.metric("confidence")
    f16 = lambda a: a.astype(np.float16).astype(np.float32)  # noqa: E731 - the run stores float16
    assert row.a == pytest.approx(f16(pa).max(1).mean(), rel=1e-5)
    assert row.b == pytest.approx(f16(pb).max(1).mean(), rel=1e-5)
    assert row.value.low < row.diff < row.value.high and row.p is None


def test_calibration_error_of_both_runs_and_a_temperature_is_applied_and_said(tmp_path):
    """The ECE row is ``expected_calibration_error`` of each run's stored probabilities (and checked against
    a slow equal-mass binning written here); once run A has a temperature, A's row uses the scaled
    probabilities and the notes say so."""
    from mikata.analysis.calibration import apply_temperature, expected_calibration_error
    from mikata.analysis.temperature import calibrate_run

    labels, ok_a, ok_b, paths, site, split, pa, pb = _scenario(tmp_path, n=300)
    write_run(tmp_path / "a", CLASSES, paths, labels, pa, splits=split)
    write_run(tmp_path / "b", CLASSES, paths, labels, pb, splits=split, model="m2")
    c = compare(tmp_path / "a", tmp_path / "b", replicates=200)
    f16 = lambda a: a.astype(np.float16).astype(np.float32)  # noqa: E731 - the run stores float16
    ece = c.metric("ECE")
    assert ece.a == pytest.approx(expected_calibration_error(f16(pa), labels), rel=1e-6)
    assert ece.b == pytest.approx(expected_calibration_error(f16(pb), labels), rel=1e-6)

    def slow_ece(probs, y, bins=15):  # equal-mass bins by quantile edges, each tie in one bin
        conf = probs.max(1).astype(np.float64)
        edges = np.quantile(conf, np.linspace(0, 1, bins + 1))
        total = 0.0
        for k in range(bins):
            lo, hi = edges[k], edges[k + 1]
            inside = (conf <= hi) & ((conf > lo) if k else np.ones(len(conf), bool))
            if inside.any():
                total += inside.sum() / len(conf) * abs((probs.argmax(1) == y)[inside].mean() - conf[inside].mean())
        return total
    assert ece.b == pytest.approx(slow_ece(f16(pb), labels), rel=1e-6)
    assert ece.value.low <= ece.diff <= ece.value.high and ece.p is None
    assert not ece.higher_is_better and ece.verdict in ("", "better", "worse")
    if ece.value.high < 0:
        assert ece.verdict == "better"  # a lower calibration error is the improvement
    t = calibrate_run(tmp_path / "a", split="train")
    scaled = compare(tmp_path / "a", tmp_path / "b", replicates=0)
    assert scaled.metric("ECE").a == pytest.approx(
        expected_calibration_error(apply_temperature(f16(pa), t.value), labels), rel=1e-6)
    assert any(n.startswith("A: temperature T=") for n in scaled.notes())


def test_weighted_calibration_error_equals_the_ece_of_the_resampled_rows():
    """CalibrationBootstrap.ece(w) is expected_calibration_error of the rows repeated w times (ties too)."""
    from mikata.analysis.calibration import expected_calibration_error
    from mikata.analysis.paired import CalibrationBootstrap

    rng = np.random.default_rng(11)
    n, k = 500, 4
    logits = rng.normal(size=(n, k)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    probs[:60] = probs[0]  # a block of tied confidences
    labels = rng.integers(0, k, n)
    for bins in (1, 5, 15):
        cb = CalibrationBootstrap(probs, labels, bins)
        assert cb.ece() == pytest.approx(expected_calibration_error(probs, labels, bins), rel=1e-9, abs=1e-12)
        for _ in range(5):
            idx = rng.integers(0, n, n)
            w = np.bincount(idx, minlength=n)
            assert cb.ece(w) == pytest.approx(expected_calibration_error(probs[idx], labels[idx], bins),
                                              rel=1e-9, abs=1e-12)
