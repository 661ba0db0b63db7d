"""Calibration: ECE and the reliability diagram against independent computations, temperature
scaling against a brute-force grid, and their properties."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.calibration import calibration_curve

from mikata.analysis.calibration import (apply_temperature, expected_calibration_error, fit_temperature, nll,
                                         quantile_bins, reliability_curve)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _simulated(n: int, k: int, temperature: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(z), probabilities softmax(z / temperature): calibrated at temperature 1."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 2.0, size=(n, k))
    true = _softmax(z)
    labels = np.array([rng.choice(k, p=row) for row in true])
    return _softmax(z / temperature), labels


def _slow_ece(probs: np.ndarray, labels: np.ndarray, bins: int) -> float:
    """ECE written plainly: sort by confidence, cut into equal chunks, average |accuracy - confidence|."""
    rows = []
    for i in range(len(probs)):
        best = 0
        for c in range(len(probs[i])):
            if probs[i][c] > probs[i][best]:
                best = c
        rows.append((float(probs[i][best]), 1.0 if best == labels[i] else 0.0))
    rows.sort()
    size = len(rows) // bins
    total = 0.0
    for b in range(bins):
        chunk = rows[b * size:(b + 1) * size]
        conf = sum(r[0] for r in chunk) / len(chunk)
        acc = sum(r[1] for r in chunk) / len(chunk)
        total += len(chunk) / len(rows) * abs(acc - conf)
    return total


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.5])
def test_ece_matches_a_slow_reference(temperature):
    probs, labels = _simulated(1500, 5, temperature, seed=1)
    assert expected_calibration_error(probs, labels, bins=15) == pytest.approx(_slow_ece(probs, labels, 15), abs=1e-12)
    assert expected_calibration_error(probs, labels, bins=10) == pytest.approx(_slow_ece(probs, labels, 10), abs=1e-12)


def test_reliability_points_match_sklearn_calibration_curve():
    probs, labels = _simulated(2000, 4, 2.0, seed=2)
    conf, correct = probs.max(axis=1), (probs.argmax(axis=1) == labels).astype(int)
    for bins in (5, 15):
        curve = reliability_curve(probs, labels, bins=bins)
        acc, mean_conf = calibration_curve(correct, conf, n_bins=bins, strategy="quantile")
        np.testing.assert_allclose(curve.accuracy, acc, atol=1e-12)
        np.testing.assert_allclose(curve.confidence, mean_conf, atol=1e-12)
        assert curve.counts.sum() == len(labels)
        assert curve.counts.max() - curve.counts.min() <= 1  # equal mass


def test_ties_share_a_bin_and_order_does_not_matter():
    probs = np.array([[1.0, 0.0]] * 6 + [[0.6, 0.4], [0.7, 0.3], [0.55, 0.45], [0.8, 0.2]])
    labels = np.array([0, 0, 0, 0, 0, 1, 0, 1, 0, 0])
    curve = reliability_curve(probs, labels, bins=5)
    assert curve.confidence[-1] == 1.0 and curve.counts[-1] == 6  # the six confident rows stay together
    assert curve.accuracy[-1] == pytest.approx(5 / 6)
    perm = np.random.default_rng(0).permutation(len(labels))
    assert expected_calibration_error(probs[perm], labels[perm], 5) == pytest.approx(curve.ece, abs=1e-15)
    assert quantile_bins(np.array([0.3]), 15).tolist() == [0]


def test_calibrated_model_has_small_ece_and_overconfident_a_large_one():
    calibrated, labels = _simulated(20000, 5, 1.0, seed=3)
    sharp, _ = _simulated(20000, 5, 0.4, seed=3)
    assert expected_calibration_error(calibrated, labels) < 0.02
    assert expected_calibration_error(sharp, labels) > 0.1
    assert 0.0 <= expected_calibration_error(sharp, labels) <= 1.0


def test_hand_computed_ece():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    labels = np.array([0, 1, 1, 0])
    # bins of 2: {0.6 right, 0.7 right} acc 1 conf 0.65; {0.8 wrong, 0.9 right} acc 0.5 conf 0.85
    assert expected_calibration_error(probs, labels, bins=2) == pytest.approx(0.5 * 0.35 + 0.5 * 0.35)


def test_empty_and_bad_shapes():
    assert np.isnan(expected_calibration_error(np.zeros((0, 3)), np.zeros(0, dtype=int)))
    with pytest.raises(ValueError, match="labels"):
        expected_calibration_error(np.zeros((3, 2)), np.zeros(2, dtype=int))
    with pytest.raises(ValueError, match="bins"):
        quantile_bins(np.array([0.5]), 0)


def _grid_argmin(f, n: int, step: int = 40) -> int:
    """The index of the smallest ``f(i)`` over ``range(n)``, for an ``f`` that falls then rises (the NLL is convex
    in 1/T, so along a grid of T it has one valley): every ``step``-th point first, then every point within
    ``step`` of the lowest of those. The valley's floor lies there: a grid point beyond that neighbourhood
    would sit past a coarse point no lower than the coarse minimum, on the same side of the valley."""
    coarse = list(range(0, n, step)) + ([n - 1] if (n - 1) % step else [])
    j = min(coarse, key=f)
    return min(range(max(0, j - step), min(n, j + step + 1)), key=f)


@pytest.mark.parametrize("true_t", [0.5, 1.0, 3.0])
def test_fitted_temperature_matches_a_brute_force_grid(true_t):
    probs, labels = _simulated(3000, 6, true_t, seed=4)
    t = fit_temperature(probs, labels)
    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 4001))
    best = grid[_grid_argmin(lambda i: nll(probs, labels, grid[i]), len(grid))]
    assert t == pytest.approx(best, rel=2e-3)
    assert t == pytest.approx(1.0 / true_t, rel=0.15)  # undoes the sharpening/softening that made the data
    assert nll(probs, labels, t) <= nll(probs, labels, t * 1.01) and nll(probs, labels, t) <= nll(probs, labels, t / 1.01)


def test_temperature_scaling_lowers_ece_and_keeps_top1():
    probs, labels = _simulated(5000, 5, 0.4, seed=5)
    t = fit_temperature(probs[:2500], labels[:2500])
    scaled = apply_temperature(probs[2500:], t)
    assert t > 1.5
    np.testing.assert_array_equal(scaled.argmax(axis=1), probs[2500:].argmax(axis=1))
    np.testing.assert_allclose(scaled.sum(axis=1), 1.0, atol=1e-5)
    assert expected_calibration_error(scaled, labels[2500:]) < 0.5 * expected_calibration_error(probs[2500:], labels[2500:])


def test_apply_temperature_equals_softmax_of_scaled_logits_and_survives_float16_zeros():
    rng = np.random.default_rng(6)
    z = rng.normal(0, 3, size=(50, 7))
    np.testing.assert_allclose(apply_temperature(_softmax(z), 2.0), _softmax(z / 2.0), rtol=1e-5, atol=1e-7)
    p16 = np.array([[1.0, 0.0, 0.0]], dtype=np.float16)
    out = apply_temperature(p16, 4.0)
    assert np.isfinite(out).all() and out[0, 0] > 0.9
    assert np.isfinite(nll(p16, np.array([2]), 1.0))
    with pytest.raises(ValueError, match="temperature"):
        apply_temperature(p16, -1.0)


def test_fit_stops_at_the_bounds():
    perfect = np.array([[0.9, 0.1], [0.2, 0.8]])
    assert fit_temperature(perfect, np.array([0, 1])) == pytest.approx(0.05)  # all right: sharpen to the bound
    wrong = np.array([[0.9, 0.1], [0.2, 0.8]])
    assert fit_temperature(wrong, np.array([1, 0])) == pytest.approx(20.0)  # all wrong: soften to the bound
    with pytest.raises(ValueError, match="at least one"):
        fit_temperature(np.zeros((0, 2)), np.zeros(0, dtype=int))


def test_reliability_of_equals_the_curve_and_chunks_do_not_matter():
    from mikata.analysis.calibration import reliability_of

    probs, labels = _simulated(700, 4, 1.5, seed=7)
    a = reliability_curve(probs, labels, 7)
    b = reliability_of(probs.max(axis=1), probs.argmax(axis=1) == labels, 7)
    np.testing.assert_array_equal(a.counts, b.counts)
    np.testing.assert_allclose(a.accuracy, b.accuracy)
    np.testing.assert_allclose(apply_temperature(probs, 1.7, chunk=64), apply_temperature(probs, 1.7), atol=0)
    with pytest.raises(ValueError, match="alike"):
        reliability_of(np.zeros(3), np.zeros(2, bool))


def test_notebook_displays():
    from mikata.analysis.temperature import Temperature

    probs, labels = _simulated(300, 3, 1.0, seed=8)
    html = reliability_curve(probs, labels, 5)._repr_html_()
    assert "ECE" in html and html.count("<tr>") == 6
    t = Temperature(1.5, "<val>", 10, 1.0, 0.9, 0.2, 0.1)
    assert "&lt;val&gt;" in t._repr_html_() and "<val>" not in t._repr_html_()
