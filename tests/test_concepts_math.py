"""The pure pieces of mikata.concepts: NMF recovers planted directions, NNLS projection, the importance
split sums to gradient × activation, strategies, presence, boxes in original pixels, slices."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from mikata.concepts import describe as D
from mikata.concepts.importance import contributions, shares
from mikata.concepts.nmf import nmf, nnls_project
from mikata.concepts.strategies import kmeans, silhouette, strategies


def _planted(m: int = 3000, k: int = 4, c: int = 24, noise: float = 0.01, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    W0 = torch.rand(k, c, generator=g) ** 3
    W0 = W0 / W0.norm(dim=1, keepdim=True)
    U0 = torch.rand(m, k, generator=g) * (torch.rand(m, k, generator=g) < 0.4)
    return U0 @ W0 + noise * torch.rand(m, c, generator=g), U0, W0


def _matched_cosines(W: torch.Tensor, W0: torch.Tensor) -> np.ndarray:
    cos = (W / W.norm(dim=1, keepdim=True)) @ (W0 / W0.norm(dim=1, keepdim=True)).T
    r, c = linear_sum_assignment(-cos.numpy())
    return cos.numpy()[r, c]


def test_nmf_recovers_planted_directions_and_fits():
    A, U0, W0 = _planted()
    U, W = nmf(A, 4, seed=0)
    assert (U >= 0).all() and (W >= 0).all()
    assert torch.allclose(W.norm(dim=1), torch.ones(4), atol=1e-5)
    assert _matched_cosines(W, W0).min() > 0.99
    assert float((A - U @ W).norm() / A.norm()) < 0.05


def test_nmf_is_deterministic_and_refuses_bad_input():
    A, _, _ = _planted(m=500)
    U1, W1 = nmf(A, 3, seed=1)
    U2, W2 = nmf(A, 3, seed=1)
    assert torch.equal(U1, U2) and torch.equal(W1, W2)
    with pytest.raises(ValueError, match="non-negative"):
        nmf(A - 1, 3)
    with pytest.raises(ValueError, match="k >= 1"):
        nmf(A, 0)


def test_nnls_projection_finds_known_coefficients_and_matches_the_fit():
    _, _, W0 = _planted(m=10)
    coef = torch.tensor([[0.5, 0.0, 2.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    got = nnls_project(coef @ W0, W0)
    assert torch.allclose(got, coef, atol=1e-4)
    A, _, _ = _planted(m=800)
    U, W = nmf(A, 4, iters=150, tol=0)
    assert torch.allclose(nnls_project(A, W, iters=300, tol=0), U, atol=1e-2 * float(U.max()))


def test_contributions_split_gradient_times_activation_exactly():
    g = torch.Generator().manual_seed(3)
    U, W = torch.rand(5, 9, 3, generator=g), torch.rand(3, 7, generator=g)
    A, G = torch.rand(5, 9, 7, generator=g) - 0.2, torch.randn(5, 9, 7, generator=g)
    per, res = contributions(U, W, G, A)
    assert torch.allclose(per.sum(1) + res, (G * A).sum((1, 2)), atol=1e-5)
    # hand value of one entry: Σ_s U[0, s, 1] (G[0, s] · W[1])
    assert float(per[0, 1]) == pytest.approx(float((U[0, :, 1] * (G[0] @ W[1])).sum()), rel=1e-5)
    # a perfect factorization leaves no residual
    per2, res2 = contributions(U, W, G, torch.einsum("nsk,kc->nsc", U, W))
    assert torch.allclose(res2, torch.zeros(5), atol=1e-5)
    s = shares(torch.tensor([[2.0, -1.0, 2.0], [-1.0, -2.0, 0.0]]))
    assert torch.allclose(s, torch.tensor([[0.5, 0.0, 0.5], [1 / 3, 1 / 3, 1 / 3]]))


def test_strategies_find_two_ways_and_flag_a_small_tight_one():
    rng = np.random.default_rng(0)
    big = rng.dirichlet([30, 1, 1], size=40)
    other = rng.dirichlet([1, 30, 1], size=30)
    tight = np.tile([0.02, 0.03, 0.95], (6, 1)) + rng.normal(0, 0.003, (6, 3))
    X = np.vstack([big, other, tight])
    correct = np.r_[np.ones(40, bool), np.ones(30, bool), np.zeros(6, bool)]
    ids = np.arange(100, 176)
    out = strategies(X, correct, ids, ["c/0", "c/1", "c/2"])
    assert [s["size"] for s in out] == [40, 30, 6]
    assert [s["strategy"] for s in out] == [0, 1, 2]
    assert out[2]["accuracy"] == 0.0 and out[2]["clever_hans"] and not out[0]["clever_hans"]
    assert set(out[2]["exemplars"]) <= set(range(170, 176))
    assert out[0]["concepts"]["c/0"] > 0.6
    labels, _ = kmeans(X, 3)
    assert silhouette(X, labels) > 0.5
    # one homogeneous cloud stays one strategy
    assert len(strategies(rng.dirichlet([5, 5, 5], size=50), np.ones(50, bool), np.arange(50), ["a", "b", "c"])) == 1


def test_boxes_and_centers_are_in_original_pixels():
    # a 200x100 original, shorter side scaled to 64/0.5 = 128 -> 256x128, center crop 64x64 at (96, 32)
    geo = D.Geometry(width=200, height=100, rw=256, rh=128, left=96, top=32, in_w=64, in_h=64)
    m = np.zeros((4, 4), np.float32)
    m[0, 0] = 1.0  # the top-left cell of the crop
    box = D.region_box(m, geo)
    # bilinearly upsampled, the cell stays above half its peak over input pixels 0..15 (the cell itself):
    # original x = (x + 96) * 200 / 256, y = (y + 32) * 100 / 128
    assert box == [round(96 * 200 / 256), round(32 * 100 / 128), round(112 * 200 / 256), round(48 * 100 / 128)]
    cx, cy = D.centroid(m, geo)
    assert cx == pytest.approx((8 + 96) / 256) and cy == pytest.approx((8 + 32) / 128)
    assert D.area(m) == pytest.approx(1 / 16)


def test_presence_rule_and_slices_rank_the_worst_first():
    strength = np.array([[1.0, 0.0], [0.9, 0.1], [0.05, 0.8], [0.0, 1.0]] * 5)
    th = D.presence_threshold(strength)
    has = D.present(strength, th)
    assert has[:, 0].tolist() == [True, True, False, False] * 5
    correct = np.array([True, True, False, True] * 5)
    out = D.slices("Coat", ["Coat/0", "Coat/1"], has, correct)
    assert out[0]["accuracy"] == 0.5 and out[0]["images"] == 10
    assert out[0]["text"].startswith("Coat images without concept 0: 50% accurate, 10 images")
    assert all(a["gap"] >= b["gap"] for a, b in zip(out, out[1:]))
    e = D.concept_errors("Coat/0", has[:, 0], correct)
    assert e["with"] == {"images": 10, "accuracy": 1.0} and e["without"] == {"images": 10, "accuracy": 0.5}
    assert e["errors_with"] == 0 and e["correct_with"] == 10


def test_a_signed_layer_is_split_by_sign_and_keeps_gradient_times_activation():
    from mikata.concepts.nmf import split_gradient, split_sign

    g = torch.Generator().manual_seed(4)
    A, G = torch.randn(3, 5, 6, generator=g), torch.randn(3, 5, 6, generator=g)
    As, Gs = split_sign(A), split_gradient(G)
    assert As.shape == (3, 5, 12) and bool((As >= 0).all())
    assert torch.allclose((As * Gs).sum(-1), (A * G).sum(-1), atol=1e-6)
    assert torch.equal(As[..., :6] - As[..., 6:], A)


def test_concept_vectors_point_from_random_towards_the_examples():
    from mikata.concepts.tcav import logistic_directions

    g = torch.Generator().manual_seed(5)
    direction = torch.zeros(40)
    direction[3] = 1.0
    pos = torch.randn(30, 40, generator=g) + 2 * direction
    negs = torch.randn(4, 30, 40, generator=g)
    v = logistic_directions(pos, negs)
    assert v.shape == (4, 40) and torch.allclose(v.norm(dim=1), torch.ones(4))
    assert bool((v[:, 3] > 0.5).all()) and int(v.abs().argmax(1).eq(3).sum()) == 4


def _entry(importance=0.5, area=0.06, center=(0.85, 0.15), spread=0.02, flip=0.9, drop=0.8, presence=0.9):
    return {"concept": "Coat/0", "importance": importance, "presence": presence, "area": area,
            "location": {"center": list(center), "spread": spread},
            "deletion": {"flip_rate": flip, "mean_drop": drop, "images": 32}}


def test_the_shortcut_rule_flags_compact_used_artefacts_and_not_object_parts():
    """Numbers from concepts-eval's planted runs (lite0 on Fashion-MNIST, blocks.10): the planted mark and
    texture patch are flagged; the clean twins' garment middles, collars and hems are not."""
    from mikata.concepts.shortcuts import suspect

    flagged, text = suspect(_entry(importance=0.53, area=0.09, spread=0.14, flip=0.88, drop=0.82), "Coat", 0.47)
    assert flagged and text.startswith("Coat/0 carries 53% of Coat's evidence") and "flips 88%" in text
    texture = _entry(importance=0.55, area=0.10, center=(0.51, 0.45), spread=0.49, flip=0.84, drop=0.82)
    assert suspect(texture, "Shirt", 0.49)[0]  # placed anywhere: central on average, off-center in each image
    assert not suspect(_entry(importance=0.72, area=0.25, center=(0.51, 0.54), flip=0.74, drop=0.61), "Coat", 0.02)[0]
    assert not suspect(_entry(importance=0.50, area=0.13, center=(0.5, 0.13), flip=0.59, drop=0.53), "Coat", 0.37)[0]
    assert not suspect(_entry(importance=0.69, area=0.14, center=(0.50, 0.28), flip=0.67, drop=0.53), "Shirt", 0.36)[0]
    assert not suspect(_entry(importance=0.21, area=0.25, center=(0.47, 0.76), flip=0.33, drop=0.19), "Shirt", 0.36)[0]
    # each condition matters
    assert not suspect(_entry(importance=0.2), "Coat", 0.47)[0]
    assert not suspect(_entry(flip=0.1, drop=0.05), "Coat", 0.47)[0]
    assert not suspect(_entry(area=0.2), "Coat", 0.47)[0]
    assert suspect(_entry(flip=0.1, drop=0.65), "Coat", 0.47)[0]  # used: a large drop without flips counts


def test_the_center_is_that_of_the_region_not_of_the_whole_map():
    geo = D.Geometry(width=28, height=28, rw=28, rh=28, left=0, top=0, in_w=28, in_h=28)
    m = np.full((4, 4), 0.1, np.float32)
    m[0, 3] = 1.0  # a corner mark with weak coefficients everywhere else
    cx, cy = D.centroid(m, geo)
    assert cx == pytest.approx(0.875) and cy == pytest.approx(0.125)


def test_fisher_exact_agrees_with_scipy():
    from scipy.stats import fisher_exact

    for table in ([[5, 20], [30, 200]], [[0, 3], [10, 2]], [[12, 1], [3, 40]], [[7, 7], [7, 7]], [[1, 0], [0, 0]]):
        want = fisher_exact(table, alternative="greater")[1]
        assert D.fisher_greater(*table[0], *table[1]) == pytest.approx(want, rel=1e-9, abs=1e-15)


def test_an_off_object_concept_is_tested_with_its_whole_context():
    """concepts-eval's background case: the noisy background's concept (Coat/0, importance 0.69, area 0.14)
    flips 6% when one band is filled with the image's mean colour and 69% when its region and the whole
    context are filled with the other classes' mean image; the sentence says which test it was."""
    from mikata.concepts.shortcuts import suspect

    bg = _entry(importance=0.69, area=0.14, center=(0.5, 0.2), spread=0.1, flip=0.69, drop=0.70)
    flagged, text = suspect(bg, "Coat", 0.35, None, True)
    assert flagged and "the image's context" in text and "other classes' mean image" in text
    assert "mean colour" in suspect(bg, "Coat", 0.35)[1]


def test_the_context_is_where_the_other_classes_images_are_alike():
    """``_references``: the other classes' mean image, and the pixels where they hardly vary."""
    import numpy as np
    import torch

    from mikata.concepts import compute as K

    class Fake:  # decode_images is replaced below: a class's images are a bright center on a constant edge
        pass

    def decode(service, ids, paths=None):
        x = torch.zeros(len(ids), 3, 8, 8)
        x[:, :, 2:6, 2:6] = torch.rand(len(ids), 3, 4, 4) + torch.tensor([float(i) for i in ids])[:, None, None, None]
        return x, np.zeros((len(ids), 2), np.int64), [int(i) for i in ids]

    old = K.decode_images
    K.decode_images = decode
    try:
        refs = K._references(Fake(), np.arange(12), np.repeat([0, 1, 2], 4), [0], 0)
    finally:
        K.decode_images = old
    mean, context = refs[0]
    assert mean.shape == (3, 8, 8) and context.shape == (8, 8)
    assert context[0].all() and context[:, 0].all() and not context[2:6, 2:6].any()
    assert np.allclose(mean[:, 0, 0], 0)
