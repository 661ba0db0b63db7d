"""The one ranking of "images that activate a unit most" (featurevis.top_images): against a brute-force
sort, streamed in batches, on image files, and as ``analysis.audit.top_activating`` and ``mikata units`` use it."""

import numpy as np
import pytest
import torch
from hostile_support import tiny_rgb
from PIL import Image

from mikata.analysis.audit import top_activating
from mikata.featurevis.top_images import TopActivating, top_activating_images, top_k_rows


def brute(scores, k):
    """Sort every row by (score descending, row ascending), NaN last: the rule written out."""
    key = [(-np.inf if np.isnan(v) else v) for v in scores]
    return sorted(range(len(scores)), key=lambda i: (-key[i], i))[:k]


@pytest.mark.parametrize("seed", range(20))
def test_top_k_rows_matches_a_full_sort_with_ties_and_nan(seed):
    g = np.random.default_rng(seed)
    n = int(g.integers(0, 60))
    scores = g.integers(0, 5, n).astype(np.float32)  # many ties
    scores[g.random(n) < 0.1] = np.nan
    for k in (0, 1, 3, n // 2, n, n + 4):
        assert top_k_rows(scores, k).tolist() == brute(scores, k)


@pytest.mark.parametrize("seed", range(10))
def test_streamed_batches_rank_as_all_rows_at_once(seed):
    g = np.random.default_rng(seed)
    scores = g.integers(0, 4, (97, 5)).astype(np.float32)
    ranking = TopActivating([0, 2, 4], k=7)
    start = 0
    while start < len(scores):
        step = int(g.integers(1, 20))
        ranking.add(scores[start:start + step])
        start += step
    assert ranking.rows == len(scores)
    for c, best in ranking.best().items():
        assert [r for r, _ in best] == brute(scores[:, c], 7)
        assert [v for _, v in best] == [float(scores[r, c]) for r in brute(scores[:, c], 7)]


def test_audit_top_activating_is_the_same_ranking():
    g = np.random.default_rng(0)
    ch = g.integers(0, 3, (200, 8)).astype(np.float32)
    for c in range(8):
        assert top_activating(ch, c, 9) == brute(ch[:, c], 9)


def test_image_files_rank_like_a_direct_forward_and_copies_keep_file_order(tmp_path):
    h = tiny_rgb(64)
    g = np.random.default_rng(1)
    paths = []
    for i in range(6):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(g.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    paths += paths[:3]  # exact copies: equal scores, the earlier file must win
    top = top_activating_images(h, paths, "0", [0, 1, 2, 3], k=5, batch_size=4)
    from mikata.data import load_image
    from mikata.hooks import capture

    parts = []
    for s in range(0, len(paths), 4):  # the same batches, so copies get bit-equal scores here too
        with torch.inference_mode(), capture(h.net, ["0"]) as rec:
            h.net(h.preprocess([load_image(p) for p in paths[s:s + 4]]))
        parts.append(rec.activations["0"].mean((2, 3)).numpy())
    means = np.concatenate(parts)  # (9, 4)
    for c in range(4):
        want = brute(means[:, c], 5)
        assert [p for p, _ in top.best[c]] == [paths[i] for i in want]
        assert [v for _, v in top.best[c]] == pytest.approx([float(means[i, c]) for i in want], rel=1e-5)
