"""Max-sensitivity against Quantus' MaxSensitivity; pointing game and energy inside against
Quantus' PointingGame / AttributionLocalisation; boxes in original pixels land on the model's grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mikata.data.images import load_image
from mikata.evaluation.localization import box_mask, energy_inside, pointing_game, read_boxes
from mikata.evaluation.randomization import compute_maps
from mikata.evaluation.stability import max_sensitivity, noise_batches


def test_max_sensitivity_matches_quantus(lite0, photos, torchvision):
    """Same noise for both: Quantus draws its own uniform noise from numpy's global RNG, so its
    perturb_func is handed our seeded draws in order. Its defaults otherwise are Yeh et al.'s:
    Frobenius norm of the difference over the norm of the original map, max over samples."""
    import quantus

    x = lite0.preprocess([load_image(photos["chelsea"]), load_image(photos["astronaut"])])
    x = torch.nn.functional.interpolate(x, size=(96, 96), mode="bilinear", align_corners=False)
    with torch.no_grad():
        ids = lite0.model(x).argmax(1)
    noise = noise_batches(x, lite0.std, 3, 0.02, torch.Generator().manual_seed(0))
    ours = max_sensitivity(lite0, x, ["gradcam"], ids, noise=noise)["gradcam"]
    queue = list(noise)

    def perturb(arr, indices, **kw):
        return arr + queue.pop(0).reshape(arr.shape).numpy()

    def explain_func(model, inputs, targets, **kw):
        t = torch.as_tensor(np.asarray(targets)).long().view(-1)
        return compute_maps(lite0, torch.as_tensor(inputs), ["gradcam"], t, None, None, 1024)["gradcam"][:, None].numpy()

    a = compute_maps(lite0, x, ["gradcam"], ids, None, None, 1024)["gradcam"][:, None].numpy()
    metric = quantus.MaxSensitivity(nr_samples=3, perturb_func=perturb, normalise=False, abs=False,
                                    disable_warnings=True)
    theirs = metric(model=lite0.model, x_batch=x.numpy(), y_batch=ids.numpy(), a_batch=a, channel_first=True,
                    explain_func=explain_func, device="cpu")
    np.testing.assert_allclose(ours.numpy(), np.array(theirs, dtype=float), rtol=1e-4)
    assert (ours > 0).all()


def test_an_all_zero_map_has_undefined_sensitivity_and_is_left_out_of_the_mean():
    """Guided Backprop's map can be all zero (no positive evidence): its relative change is undefined,
    and one such image must neither make the mean infinite nor break the scorecard's JSON."""
    from mikata.evaluation.checks import mean as _mean
    from mikata.evaluation.stability import sensitivity_ratio

    original = torch.zeros(3, 4, 4)
    original[1] = 1.0
    perturbed = original + 0.5
    perturbed[2] = 0.0
    r = sensitivity_ratio(original, perturbed)
    assert torch.isnan(r[0]) and r[1] == pytest.approx(0.5) and torch.isnan(r[2])
    assert _mean(r) == pytest.approx(0.5) and _mean(r[[0, 2]]) is None


def test_pointing_game_and_energy_match_quantus(torchvision):
    import quantus

    g = torch.Generator().manual_seed(0)
    maps = torch.randn(4, 20, 20, generator=g)
    masks = torch.zeros(4, 20, 20, dtype=torch.bool)
    masks[0, 2:9, 3:12] = True
    masks[1, 10:, 10:] = True
    masks[2] = maps[2] > 1.0  # contains the maximum
    masks[3, :5] = True
    x = np.zeros((4, 1, 20, 20), dtype=np.float32)
    y = np.zeros(4, dtype=int)
    pg = quantus.PointingGame(abs=False, normalise=False, disable_warnings=True)(
        model=None, x_batch=x, y_batch=y, a_batch=maps[:, None].numpy(), s_batch=masks[:, None].numpy().astype(float),
        channel_first=True)
    np.testing.assert_array_equal(pointing_game(maps, masks).numpy(), np.array(pg, dtype=float))
    assert pointing_game(maps, masks)[2] == 1.0
    al = quantus.AttributionLocalisation(abs=False, normalise=False, positive_attributions=True, disable_warnings=True)(
        model=None, x_batch=x, y_batch=y, a_batch=maps[:, None].numpy(), s_batch=masks[:, None].numpy().astype(float),
        channel_first=True)
    np.testing.assert_allclose(energy_inside(maps, masks).numpy(), np.array(al, dtype=float), atol=1e-6)


def test_boxes_in_original_pixels_map_through_resize_and_crop(lite0, tmp_path):
    csv = tmp_path / "boxes.csv"
    csv.write_text("file,x0,y0,x1,y1\ncat.png,0,0,400,300\ncat.png,500,0,600,100\nwhole.png,0,0,600,300\n")
    boxes = read_boxes(csv)
    assert boxes["cat.png"] == [(0.0, 0.0, 400.0, 300.0), (500.0, 0.0, 600.0, 100.0)]
    # a 600x300 image: shorter side 300 -> 256, width 512; crop 224 from x=144..368 of the resized image
    whole = box_mask(lite0, (600, 300), boxes["whole.png"])
    assert whole.all()
    left_box = box_mask(lite0, (600, 300), [(0, 0, 300, 300)])  # left half of the original = x < 256 resized
    cols = left_box.any(0).nonzero().flatten()
    assert cols.min() == 0 and cols.max() == 256 - 144 - 1
    assert left_box.shape == (224, 224)
    bad = tmp_path / "bad.csv"
    bad.write_text("cat.png,10,10,5,20\n")
    from mikata.evaluation.localization import BoxesError

    with pytest.raises(BoxesError, match="x1 > x0"):
        read_boxes(bad)
