"""Audits of a real scan (MNIST CNN on real digits with planted label flips), against brute force."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from mikata.analysis.audit import (
    accuracy, class_histogram, class_like, confident_errors, confused_pairs, confusion_counts, confusion_matrix,
    exceptional_errors, label_issues, near_duplicates, per_class_metrics, project_2d, row_normalized, top_activating,
    topk_accuracy)
from mikata.runs.data import load_run
from mikata.errors import ChoiceError
from test_scan_support import planted_run


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return planted_run(tmp_path_factory.mktemp("planted"))


@pytest.fixture(scope="module")
def d(planted):
    return load_run(planted["run"])


def test_confusion_and_scores_match_brute_force(planted, d):
    k = d.num_classes
    brute = np.zeros((k, k), int)
    for y, p in zip(d.labels, d.preds):
        brute[y, p] += 1
    cm = confusion_matrix(d.labels, d.preds, k)
    assert (cm == brute).all() and cm.sum() == len(planted["paths"])
    assert (confusion_counts(planted["run"]) == brute).all()
    assert np.allclose(row_normalized(cm).sum(1), 1)
    assert accuracy(d) == pytest.approx(np.trace(brute) / brute.sum())
    top3 = [y in sorted(range(k), key=lambda c: -p[c])[:3] for y, p in zip(d.labels, d.probs)]
    assert topk_accuracy(d, 3) == pytest.approx(np.mean(top3))
    from sklearn.metrics import precision_recall_fscore_support

    p, r, f, s = precision_recall_fscore_support(d.labels, d.preds, labels=range(k), zero_division=0)
    m = per_class_metrics(cm)
    assert np.allclose(m["precision"], p) and np.allclose(m["recall"], r) and np.allclose(m["f1"], f)
    counts, imbalance = class_histogram(d.labels, k)
    assert list(counts) == [int((np.asarray(planted["given"]) == c).sum()) for c in range(k)]
    assert imbalance == pytest.approx(counts.max() / counts.min())


def test_confused_pairs_rank_like_brute_force(d):
    cm = confusion_matrix(d.labels, d.preds, d.num_classes)
    brute = sorted(((a, b, cm[a, b], cm[b, a]) for a, b in itertools.combinations(range(d.num_classes), 2)
                    if cm[a, b] + cm[b, a] > 0), key=lambda t: (-(t[2] + t[3]), t[0], t[1]))
    assert confused_pairs(cm, top=100) == brute
    assert confused_pairs(cm, top=3) == brute[:3]


def test_class_like_confident_errors_and_top_activating_rank_like_brute_force(d):
    for c in range(d.num_classes):
        rows = [i for i in range(len(d)) if d.labels[i] == c]
        by_prob = sorted(rows, key=lambda i: (-d.probs[i, c], i))
        most, least = class_like(d, c, 4)
        assert [d.probs[i, c] for i in most] == [d.probs[i, c] for i in by_prob[:4]]
        assert [d.probs[i, c] for i in least] == [d.probs[i, c] for i in by_prob[::-1][:4]]
    wrong = sorted((i for i in range(len(d)) if d.labels[i] != d.preds[i]), key=lambda i: -d.probs[i, d.preds[i]])
    assert [d.probs[i, d.preds[i]] for i in confident_errors(d, n=10)] == [d.probs[i, d.preds[i]] for i in wrong[:10]]
    ch = d.vectors("channels")
    assert ch.shape == (len(d), 128)
    top = top_activating(ch, 17, 6)
    assert list(ch[top, 17]) == sorted(ch[:, 17], reverse=True)[:6]
    with pytest.raises(ChoiceError):
        top_activating(ch, 128)


def test_exceptional_errors_count_only_confusions_across_groups(d):
    groups = {"0": "round", "6": "round", "8": "round", "9": "round"}  # the other digits are their own group
    ex = exceptional_errors(d, groups)
    g = lambda c: groups.get(d.class_names[c], d.class_names[c])  # noqa: E731
    brute = [i for i in range(len(d)) if g(d.labels[i]) != g(d.preds[i])]
    assert sorted(ex["rows"]) == brute and ex["count"] == len(brute) == sum(ex["pairs"].values())
    within = sum(1 for i in range(len(d)) if d.labels[i] != d.preds[i] and g(d.labels[i]) == g(d.preds[i]))
    assert within > 0  # e.g. 9 read as 8: an error, but not an exceptional one


def test_planted_label_flips_are_found(planted, d):
    flipped = {planted["paths"][i] for i in planted["flipped"]}
    truth = {p: str(t) for p, t in zip(planted["paths"], planted["truth"])}
    issues = label_issues(d)
    found = {i["path"] for i in issues}
    recall = len(found & flipped) / len(flipped)
    top = issues[: len(flipped)]
    precision_at_n = sum(i["path"] in flipped for i in top) / len(top)
    # The model itself is ~82% right on these digits, so its own errors are flagged too: precision is
    # measured over the top-ranked len(flipped) issues. Measured: recall 0.83, precision@30 0.77.
    assert recall >= 0.7, recall
    assert precision_at_n >= 0.6, precision_at_n
    hits = [i for i in issues if i["path"] in flipped]
    assert np.mean([i["suggested"] == truth[i["path"]] for i in hits]) >= 0.8


def test_near_duplicates_across_splits_and_projection(d):
    emb = d.vectors("embed")[:200]  # (200, 256)
    rng = np.random.default_rng(0)
    copies = emb[[3, 50, 120]] * (1 + 1e-4 * rng.standard_normal((3, emb.shape[1])))
    x = np.concatenate([emb, copies]).astype(np.float32)
    splits = np.array(["train"] * 200 + ["test"] * 3)
    found = near_duplicates(x, splits, threshold=0.9999, chunk=64)
    assert sorted((i, j) for i, j, _ in found) == [(3, 200), (50, 201), (120, 202)]
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    brute = sorted((i, j) for i in range(len(x)) for j in range(i + 1, len(x))
                   if splits[i] != splits[j] and unit[i] @ unit[j] >= 0.97)
    assert sorted((i, j) for i, j, _ in near_duplicates(x, splits, 0.97, chunk=50)) == brute
    p = project_2d(emb, "pca")
    assert p.shape == (200, 2)
    t1, t2 = project_2d(emb[:80], "tsne", seed=1), project_2d(emb[:80], "tsne", seed=1)
    assert np.allclose(t1, t2)


def test_plot_images_colors_right_green_and_wrong_red(d, tmp_path):
    from mikata.presentation.figures import plot_images

    rows = [int(np.nonzero(d.labels == d.preds)[0][0])] + confident_errors(d, n=3)
    fig = plot_images(d, rows)
    titles = [ax.title for ax in fig.axes if ax.get_title()]
    assert [t.get_color() for t in titles] == ["green", "red", "red", "red"]
    assert f"(true: {d.class_names[d.labels[rows[1]]]})" in titles[1].get_text()
    fig.savefig(tmp_path / "grid.png")
    assert (tmp_path / "grid.png").stat().st_size > 1000


def test_audit_command_prints_the_summary(planted, tmp_path, capsys):
    from mikata.cli import main

    groups = tmp_path / "groups.json"
    groups.write_text(json.dumps({"round": ["0", "6", "8", "9"]}))
    assert main(["audit", str(planted["run"]), "--json", "--groups", str(groups)]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["images"] == len(planted["paths"]) and len(r["skipped"]) == 4
    assert r["confusion"]["counts"] == confusion_counts(planted["run"]).tolist()
    assert r["exceptional_errors"]["count"] > 0 and r["label_issues"]
    assert main(["audit", str(planted["run"])]) == 0
    text = capsys.readouterr().out
    for section in ("accuracy", "most confused pairs", "most / least class-like", "suspected label errors"):
        assert section in text


def test_overview_cells_and_rows_are_store_ids(planted, d):
    from mikata.analysis.overview import overview

    ov = overview(planted["run"], n=2)
    assert ov.version[0] == len(d) + len(planted["bad"]) and len(ov.skipped) == len(planted["bad"])
    for t, p in [(3, 3), (3, 5), (int(d.labels[0]), int(d.preds[0]))]:
        cell = ov.cell(t, p)
        want = [int(i) for i, y, q in zip(d.ids, d.labels, d.preds) if y == t and q == p]
        assert sorted(cell.tolist()) == sorted(want) and len(cell) == ov.confusion[t, p]
        probs = [d.probs[ov.row(i), p] for i in cell]
        assert probs == sorted(probs, reverse=True)  # most confident first
    c = ov.classes[0]
    assert [d.probs[ov.row(i), c.index] for i in c.most_class_like] == sorted(d.probs[d.labels == c.index, c.index])[::-1][:2]
    assert all(issue["id"] in set(d.ids.tolist()) for issue in ov.label_issues)
    ids, xy = ov.embedding_2d(max_points=100)
    assert xy.shape == (100, 2) and set(ids.tolist()) <= set(d.ids.tolist())


def test_a_groups_line_without_a_comma_is_one_clear_error(planted, tmp_path, capsys):
    """`--groups` text files are class,group lines; a line without a comma names the file and the line
    (it was a traceback: the guard checked the length of a 2-tuple, always 2)."""
    from mikata.analysis.audit import load_groups
    from mikata.cli import main
    from mikata.errors import MikataError

    good = tmp_path / "good.txt"
    good.write_text("# class,group\n0,round\n 6 , round\n\n8,round\n")
    assert load_groups(good) == {"0": "round", "6": "round", "8": "round"}
    bad = tmp_path / "groups.txt"
    bad.write_text("0,round\n6 round\n")
    with pytest.raises(MikataError, match=r"groups.txt line 2: '6 round' is not CLASS,GROUP"):
        load_groups(bad)
    for command in (["audit", str(planted["run"])], ["report", str(planted["run"]), "--no-maps",
                                                     "--out", str(tmp_path / "r.html")]):
        assert main([*command, "--groups", str(bad)]) == 2
        err = capsys.readouterr().err
        assert "line 2: '6 round' is not CLASS,GROUP" in err and "Traceback" not in err
