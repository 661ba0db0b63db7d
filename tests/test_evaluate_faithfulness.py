"""Deletion / insertion curves: Grad-CAM beats a random order on real photos; curves agree with
Quantus' PixelFlipping and with a slow one-image-at-a-time implementation written from the papers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mikata.data.images import load_image
from mikata.evaluation.faithfulness import auc, perturbation_curves, road_impute
from mikata.evaluation.randomization import compute_maps


@pytest.fixture(scope="module")
def batch(lite0, photos):
    x = lite0.preprocess([load_image(p) for p in photos.values()])
    with torch.no_grad():
        ids = lite0.model(x).argmax(1)
    return x, ids


def test_gradcam_beats_the_random_order_at_deletion_and_insertion(lite0, batch):
    x, ids = batch
    cam = compute_maps(lite0, x, ["gradcam"], ids, None, None, 1024)["gradcam"]
    rnd = torch.rand(cam.shape, generator=torch.Generator().manual_seed(0))
    # 10 steps: the curves' order does not depend on their resolution, and each step is 7 forwards per curve
    ours = perturbation_curves(lite0, x, cam, ids, steps=10)
    base = perturbation_curves(lite0, x, rnd, ids, steps=10)
    assert auc(ours["deletion"]).mean() < auc(base["deletion"]).mean()
    assert auc(ours["insertion"]).mean() > auc(base["insertion"]).mean()
    # both ends are the same images whatever the order: the untouched image and the fully filled one
    torch.testing.assert_close(ours["deletion"][:, 0], base["deletion"][:, 0])
    torch.testing.assert_close(ours["insertion"][:, 0], base["insertion"][:, 0], atol=1e-5, rtol=1e-4)


def test_deletion_matches_quantus_pixel_flipping(lite0, batch, torchvision):
    """Quantus' PixelFlipping = deletion of single features with a constant fill, one forward per step,
    without the unperturbed point. Settings matched: features_in_step = 3 channels x k pixels (the map
    is broadcast over channels, equal values sort together), perturb_baseline=0.0 (our "zero"),
    softmax probabilities, no normalise / abs. Quantus' "mean"/"black" baselines are recomputed from
    the already-perturbed image at each step, so only the constant fill can match exactly."""
    import quantus

    x = torch.nn.functional.interpolate(batch[0][:2], size=(48, 48), mode="bilinear", align_corners=False)
    with torch.no_grad():
        ids = lite0.model(x).argmax(1)
    a = torch.rand(2, 48, 48, generator=torch.Generator().manual_seed(1))  # continuous: no ties
    steps = 12
    ours = perturbation_curves(lite0, x, a, ids, steps=steps, fill="zero", patch=1, modes=["deletion"])["deletion"]
    metric = quantus.PixelFlipping(features_in_step=3 * 48 * 48 // steps, perturb_baseline=0.0, normalise=False,
                                   abs=False, disable_warnings=True)
    theirs = metric(model=lite0.model, x_batch=x.numpy(), y_batch=ids.numpy(), a_batch=a[:, None].numpy(),
                    channel_first=True, softmax=True, device="cpu")
    np.testing.assert_allclose(ours[:, 1:].numpy(), np.array(theirs), atol=2e-5)


def _slow_curves(handle, x, a, target, steps, patch, sigma):
    """Petsiuk et al. (RISE) with Samek et al.'s regions, written out for one image: rank regions
    by mean attribution, then per step rebuild the image and run one forward."""
    from scipy.ndimage import gaussian_filter

    c, h, w = x.shape
    img = x.numpy().astype(np.float64)
    blurred = np.stack([gaussian_filter(img[ch], sigma, mode="mirror", truncate=3.0) for ch in range(c)])
    regions = []
    for ry in range(math.ceil(h / patch)):
        for rx in range(math.ceil(w / patch)):
            ys, xs = slice(ry * patch, (ry + 1) * patch), slice(rx * patch, (rx + 1) * patch)
            regions.append((float(a[ys, xs].mean()), ys, xs))
    order = sorted(range(len(regions)), key=lambda i: -regions[i][0])
    out = {"deletion": [], "insertion": []}
    for k in range(steps + 1):
        chosen = order[:round(k * len(regions) / steps)]
        deleted, inserted = img.copy(), blurred.copy()
        for i in chosen:
            _, ys, xs = regions[i]
            deleted[:, ys, xs] = blurred[:, ys, xs]
            inserted[:, ys, xs] = img[:, ys, xs]
        out["deletion"].append(deleted)
        out["insertion"].append(inserted)
    for mode, arrs in out.items():
        # this image's steps in one forward: a batch of one runs 10-20x slower on this CPU build
        with torch.no_grad():
            p = torch.softmax(handle.model(torch.from_numpy(np.stack(arrs)).float()), 1)[:, target]
        out[mode] = p.tolist()
    return out


def test_region_curves_match_a_slow_direct_implementation(lite0, batch):
    x = torch.nn.functional.interpolate(batch[0][:2], size=(64, 64), mode="bilinear", align_corners=False)
    with torch.no_grad():
        ids = lite0.model(x).argmax(1)
    a = torch.rand(2, 64, 64, generator=torch.Generator().manual_seed(2))
    # sigma 5 * 64 / 224: radius ceil(3 sigma) = 5 here and int(3 sigma + 0.5) = 4 in scipy -> use sigma 1.5
    # where both give a radius of 5 (ceil(4.5) = 5, int(5.0) = 5)
    from mikata.evaluation import faithfulness as fa

    orig = fa.fill_image
    fa.fill_image = lambda x_, fill, sigma=None: orig(x_, fill, sigma=1.5)
    try:
        ours = perturbation_curves(lite0, x, a, ids, steps=9, patch=7)  # 10 x 10 regions, last ones partial
    finally:
        fa.fill_image = orig
    for i in range(2):
        slow = _slow_curves(lite0, x[i], a[i].numpy(), int(ids[i]), 9, 7, 1.5)
        np.testing.assert_allclose(ours["deletion"][i].numpy(), slow["deletion"], atol=1e-4)
        np.testing.assert_allclose(ours["insertion"][i].numpy(), slow["insertion"], atol=1e-4)


def test_road_imputation_solves_the_neighbour_equations():
    """ROAD (Rong et al. 2022): without noise every removed pixel is the weighted mean of its 8
    neighbours (1/6 direct, 1/12 diagonal), known pixels untouched."""
    g = torch.Generator().manual_seed(3)
    x = torch.rand(3, 12, 10, generator=g, dtype=torch.float64)
    removed = torch.rand(12, 10, generator=g) < 0.4
    out = road_impute(x, removed, noise=0.0)
    assert torch.equal(out[:, ~removed], x[:, ~removed])
    for y, xx in removed.nonzero().tolist():
        num = torch.zeros(3, dtype=torch.float64)
        den = 0.0
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if (dy, dx) == (0, 0) or not (0 <= y + dy < 12 and 0 <= xx + dx < 10):
                    continue
                wt = 1 / 6 if dy == 0 or dx == 0 else 1 / 12
                num += wt * out[:, y + dy, xx + dx]
                den += wt
        torch.testing.assert_close(out[:, y, xx], num / den)
