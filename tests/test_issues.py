"""Dataset issues on real digits with planted problems: precision and recall of every issue type.

The base is 700 real handwritten digits (scikit-learn) scanned with the real MNIST CNN. Planted:
byte-identical copies and lightly edited copies (some of them across splits: leaks), real photos
from scikit-image filed as digits (outliers), darkened, blown-out, blurred, tiny, stretched and blank
images, a class with few images, and a subgroup made hard on purpose (inverted digits).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image, ImageFilter

from mikata.analysis.issues import DEFAULT_THRESHOLDS, find_issues, knn, parse_thresholds
from test_scan_support import digit_images, mnist_handle

PHOTOS = ("astronaut", "camera", "chelsea", "clock", "coffee", "coins", "horse", "moon", "page", "rocket", "text",
          "brick", "grass", "gravel", "hubble_deep_field")


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    from skimage import data as skdata

    from mikata.scanning.scan import scan

    root = tmp_path_factory.mktemp("issues") / "digits"
    images, labels = digit_images(700)
    rng = np.random.default_rng(0)
    truth: dict[str, set[str]] = {k: set() for k in DEFAULT_THRESHOLDS}
    keep = [i for i in range(len(images)) if labels[i] != 9 or rng.random() < 0.1]  # class 9: few images

    def save(img: Image.Image, label: int, name: str) -> str:
        p = root / str(label) / name
        p.parent.mkdir(parents=True, exist_ok=True)
        img.save(p)
        return str(p)

    base = {i: save(images[i], int(labels[i]), f"{i:04d}.png") for i in keep}
    picks = iter(rng.permutation([i for i in keep if labels[i] != 9]).tolist())
    pairs: list[tuple[str, str]] = []  # (original, copy) of every planted duplicate
    for c in range(20):  # byte-identical copies
        i = next(picks)
        dst = root / str(int(labels[i])) / f"copy_{c}.png"
        shutil.copyfile(base[i], dst)
        truth["exact_duplicate"] |= {base[i], str(dst)}
        pairs.append((base[i], str(dst)))
    for c in range(20):  # lightly edited copies: 5% darker, re-saved as JPEG
        i = next(picks)
        arr = (np.asarray(images[i], np.float32) * 0.95).astype(np.uint8)
        p = save(Image.fromarray(arr), int(labels[i]), f"edit_{c}.jpg")
        truth["near_duplicate"] |= {base[i], p}
        pairs.append((base[i], p))
    for name in PHOTOS:  # photos filed as digits
        img = Image.fromarray(getattr(skdata, name)()).convert("L").resize((28, 28))
        truth["outlier"].add(save(img, int(rng.integers(0, 9)), f"photo_{name}.png"))
    for c in range(12):
        i = next(picks)
        arr = np.asarray(images[i], np.float32)
        dark = save(Image.fromarray((arr * 0.12).astype(np.uint8)), int(labels[i]), f"dark_{c}.png")
        truth["dark"].add(dark)
        j = next(picks)
        light = save(Image.fromarray((235 + np.asarray(images[j], np.float32) * 20 / 255).astype(np.uint8)),
                     int(labels[j]), f"light_{c}.png")
        truth["light"].add(light)
        # a darkened or washed-out copy is the same picture: a near duplicate of its original
        truth["near_duplicate"] |= {dark, base[i], light, base[j]}
        pairs.extend([(base[i], dark), (base[j], light)])
        j = next(picks)
        truth["blurry"].add(save(images[j].filter(ImageFilter.GaussianBlur(2.5)), int(labels[j]), f"blur_{c}.png"))
        j = next(picks)
        tiny = save(images[j].resize((8, 8)), int(labels[j]), f"tiny_{c}.png")
        truth["odd_size"].add(tiny)
        truth["blurry"].add(tiny)  # 8 x 8 pixels stretched to the model's 28 x 28: blurry as the model sees it
        j = next(picks)
        truth["odd_aspect"].add(save(images[j].resize((84, 28)), int(labels[j]), f"wide_{c}.png"))
    for c in range(6):
        blank = save(Image.new("L", (28, 28), 90), int(rng.integers(0, 9)), f"blank_{c}.png")
        truth["low_information"].add(blank)
        truth["exact_duplicate"].add(blank)  # six blank files have the same bytes: duplicates too
        pairs.append((blank, blank))
    for c in range(60):  # a subgroup the model fails on: inverted digits, across classes
        i = next(picks)
        save(Image.fromarray(255 - np.asarray(images[i])), int(labels[i]), f"inverted_{c}.png")
    run = root.parent / "run"
    scan(mnist_handle(), root, run, batch_size=64, workers=0, progress=False, fractions=(0.5, 0.5), seed=0)
    truth["near_duplicate"] |= truth["exact_duplicate"]  # the same bytes are the same picture
    return {"run": run, "truth": truth, "root": root, "pairs": pairs}


def _precision_recall(found: set[str], truth: set[str]) -> tuple[float, float]:
    tp = len(found & truth)
    return (tp / len(found) if found else 1.0), (tp / len(truth) if truth else 1.0)


def test_each_issue_type_finds_what_was_planted(planted):
    issues = find_issues(planted["run"])
    d = issues.data
    paths = np.asarray(d.paths)
    splits = np.asarray(d.splits)
    flagged = {name: set(paths[t.flag]) for name, t in issues.types.items()}
    truth = dict(planted["truth"])
    # a leak is a planted duplicate pair that the split put on both sides
    index = {p: i for i, p in enumerate(paths)}
    leak_truth = set()
    blanks = sorted(p for p in truth["low_information"])
    for a, b in planted["pairs"] + [(x, y) for x in blanks for y in blanks if x < y]:
        if splits[index[a]] != splits[index[b]]:
            leak_truth |= {a, b}
    truth["leak"] = leak_truth
    assert leak_truth, "the split put some planted copies on both sides"
    report = {}
    for name in ("exact_duplicate", "near_duplicate", "leak", "outlier", "dark", "light", "blurry", "odd_size",
                 "odd_aspect", "low_information"):
        report[name] = tuple(round(v, 2) for v in _precision_recall(flagged[name], truth[name])) + (len(flagged[name]),)
    print("precision, recall, flagged:", report)
    # outliers: the photos must rank far above the digits (AUROC); precision and recall are reported above
    from sklearn.metrics import roc_auc_score

    is_photo = np.array([p in truth["outlier"] for p in paths])
    auroc = roc_auc_score(is_photo, -issues.types["outlier"].score)
    print("outlier AUROC", round(auroc, 3))
    assert auroc >= 0.8
    # an image of odd size or aspect is flagged for its geometry, never again as an outlier
    geometry = issues.types["odd_size"].flag | issues.types["odd_aspect"].flag
    assert not (issues.types["outlier"].flag & geometry).any()
    assert any(n.startswith("outlier: ") and "odd size or aspect" in n for n in issues.notes), issues.notes
    # far in pixels too: capping the embedding's k-NN z by the thumbnails' ranks the photos above the
    # digits that only the CNN's embedding puts far away (stretched, inverted, odd 8x8 digits)
    from mikata.analysis.issues import embedding_features, embedding_outlier_z
    from mikata.runs.store import RunStore

    with RunStore.open(planted["run"]) as store:
        emb = np.asarray(store.vectors("embed")[d.vec_rows])
    embedding_only = roc_auc_score(is_photo, embedding_outlier_z(embedding_features(emb), 10))
    print("outlier AUROC of the embedding half alone", round(embedding_only, 3))
    assert auroc >= embedding_only + 0.02
    for name, goal in (("exact_duplicate", 0.9), ("near_duplicate", 0.9), ("leak", 0.9),
                       ("dark", 0.8), ("light", 0.8), ("blurry", 0.8), ("odd_size", 0.8), ("odd_aspect", 0.8),
                       ("low_information", 0.8)):
        p, r = _precision_recall(flagged[name], truth[name])
        assert p >= goal and r >= goal, (name, report[name], sorted(flagged[name] - truth[name])[:5],
                                         sorted(truth[name] - flagged[name])[:5])
    # the rare class and the inverted subgroup
    assert set(d.class_names[c] for c in d.labels[issues.types["class_imbalance"].flag]) == {"9"}
    weak = [g for g in issues.groups if g["flagged"]]
    assert weak, issues.groups[:3]
    inverted = {i for i, p in enumerate(paths) if "inverted_" in p}
    in_weak = set().union(*[set(g["rows"]) for g in weak])
    assert len(inverted & in_weak) / len(inverted) >= 0.8
    # every image has a score in [0, 1] for every type
    for t in issues.types.values():
        assert t.score.shape == (len(d),) and (t.score >= 0).all() and (t.score <= 1).all()


def test_thresholds_change_the_flags(planted):
    loose = find_issues(planted["run"], {"outlier": 0.5, "dark": 0.05})
    strict = find_issues(planted["run"])
    assert loose.types["outlier"].flag.sum() > strict.types["outlier"].flag.sum()
    assert loose.types["dark"].flag.sum() < strict.types["dark"].flag.sum()
    assert (loose.types["outlier"].score == strict.types["outlier"].score).all()
    assert parse_thresholds("outlier=0.5, dark=0.05") == {"outlier": 0.5, "dark": 0.05}
    from mikata.errors import ChoiceError, MikataError

    with pytest.raises(ChoiceError):
        find_issues(planted["run"], {"darkness": 0.1})
    with pytest.raises(MikataError):
        parse_thresholds("outlier=high")


def test_knn_is_exact_in_blocks():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    dist, idx = knn(x, 5, chunk_mb=0.01)  # many small blocks
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    ref = np.argsort(-sim, axis=1)[:, :5]
    assert (idx == ref).all()
    assert np.allclose(dist, 1 - np.take_along_axis(sim, ref, 1), atol=1e-5)
    pytest.importorskip("faiss")
    from mikata.analysis.issues import _knn_faiss

    fdist, fidx = _knn_faiss(x, 5, exact=True)  # the fast exact path (above 20k rows)
    assert (fidx == ref).all() and np.allclose(fdist, dist, atol=1e-5)
    adist, aidx = _knn_faiss(x, 5)  # HNSW (above 200k rows): nearly all true neighbours
    assert (aidx[:, 0] == ref[:, 0]).mean() > 0.95


def test_the_web_app_lists_each_issue_type_worst_first_with_filters(planted):
    import re

    from fastapi.testclient import TestClient

    from mikata.analysis.issues import issue_rows
    from mikata.server import create_app

    token = "issues-token-0123456789"
    client = TestClient(create_app(planted["run"], token=token, port=8765, handle=mnist_handle()),
                        base_url="http://127.0.0.1:8765")
    assert client.get(f"/?token={token}").status_code == 200
    found = find_issues(planted["run"])
    d = found.data
    for name in ("dark", "exact_duplicate", "leak", "label"):
        page = client.get(f"/issues?type={name}")
        assert page.status_code == 200
        grid = page.text.split('id="issue-grid"', 1)[1].split('<p class="pager">', 1)[0].split("<h2>Pairs", 1)[0]
        shown = [int(i) for i in re.findall(r'<a class="tile[^"]*" href="/image/\d+" data-id="(\d+)"', grid)]
        assert shown == [int(d.ids[r]) for r in issue_rows(found, name)][:120], name
    page = client.get("/issues?type=label").text
    assert "/map/" in page.split('id="issue-grid"', 1)[1]  # label issues come with the Grad-CAM of the prediction
    assert 'id="issue-pairs"' in client.get("/issues?type=leak").text
    c = int(d.labels[issue_rows(found, "dark")[0]])
    shown = re.findall(r'<a class="tile[^"]*" href="/image/\d+" data-id="(\d+)"', client.get(f"/issues?type=dark&cls={c}").text)
    assert shown and all(int(d.labels[np.nonzero(d.ids == int(i))[0][0]]) == c for i in shown)
    r = client.get("/issues?type=darkness")
    assert r.status_code == 400 and "outlier" in r.text  # the valid choices
    assert client.get("/issues?type=dark&cls=99").status_code in (400, 404)
    assert "/issues" in client.get("/").text  # in the navigation
    # the review buttons post to the same review API as the review page
    first = int(d.ids[issue_rows(found, "label")[0]])
    assert f'class="review issue-item" data-id="{first}"' in client.get("/issues?type=label").text
    origin = {"origin": "http://127.0.0.1:8765"}
    assert client.post(f"/api/review/{first}", json={"verdict": "wrong", "suggested": 3}, headers=origin).status_code == 200
    from mikata.runs.store import RunStore

    with RunStore.open(planted["run"]) as store:
        assert store.review(first)["verdict"] == "wrong"
    client.post(f"/api/review/{first}", json={"verdict": None}, headers=origin)


def test_the_report_has_an_issues_section_with_each_types_worst_images(planted, tmp_path):
    import re

    from mikata.analysis.issues import issue_rows
    from mikata.report import write_report

    write_report(planted["run"], tmp_path / "r.html", maps=False)
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    found = find_issues(planted["run"])
    d = found.data
    section = html.split('<section id="dataset-issues">', 1)[1].split("</section>", 1)[0]
    for name in ("dark", "outlier", "leak", "odd_aspect"):
        row = section.split(f'id="issues-{name}"', 1)[1].split('class="gallery-row"', 1)[0]
        shown = [int(i) for i in re.findall(r'data-id="(\d+)"', row)]
        assert shown == [int(d.ids[r]) for r in issue_rows(found, name)][:12], name
    counts = dict(re.findall(r'<tr data-type="(\w+)"><td><a [^>]*>\w+</a></td><td class="num">(\d+)</td>', section))
    assert {k: int(v) for k, v in counts.items()} == {t["type"]: t["flagged"] for t in found.summary()}


def test_duplicate_flags_say_what_near_measured_and_show_the_pair_side_by_side(planted, browser, capsys):
    """Issue 31.8: a near-duplicate or leak flag names what "near" measured (the pixel correlation of grey
    thumbnails) and shows the partner beside the image, in the audit and in the app (Chromium)."""
    import re

    from browser_support import live_server, new_page, screenshot, settle
    from mikata.analysis.issues import pair_partners
    from mikata.cli import main
    from mikata.server import create_app

    found = find_issues(planted["run"])
    d = found.data
    by_path = {p: int(i) for p, i in zip(d.paths, d.ids.tolist())}
    planted_pairs = {frozenset((by_path[a], by_path[b])) for a, b in planted["pairs"] if a in by_path and b in by_path}
    partners = pair_partners(found, "near_duplicate")
    flagged = set(d.ids[found.types["near_duplicate"].flag].tolist())
    assert flagged and flagged <= set(partners)
    # the partner shown is the planted original or copy for most flagged images (a blank file has several)
    hits = sum(frozenset((i, partners[i][0])) in planted_pairs for i in flagged)
    assert hits >= 0.9 * len(flagged)
    i = next(iter(flagged))
    assert "pixel correlation 0." in partners[i][1] and "16x16 grey thumbnails" in partners[i][1]
    leaks = pair_partners(found, "leak")
    splits = dict(zip(d.ids.tolist(), d.splits.tolist()))
    assert leaks and all(splits[a] != splits[b] for a, (b, _) in leaks.items())
    assert pair_partners(found, "dark") == {}
    # the audit's pair lines say what was measured
    assert main(["audit", str(planted["run"])]) in (0, 1)
    text = capsys.readouterr().out
    assert re.search(r"= \S+ \(near: pixel correlation 0\.\d{4} of their 16x16 grey thumbnails", text) or \
        re.search(r"= \S+ \(exact: the same bytes \(sha1\)", text)
    assert "pixel correlation of their 16x16 grey thumbnails" in text  # the type's description
    token = "pairs-token-0123456789"
    with live_server(lambda port: create_app(planted["run"], token=token, port=port, handle=mnist_handle())) as (url, _):
        page = new_page(browser)
        page.goto(f"{url}/issues?type=near_duplicate&token={token}")
        settle(page)
        items = page.locator(".issue-item.paired").evaluate_all("""els => els.map(e => {
            const t = e.querySelector('a.tile:not(.partner)').getBoundingClientRect(),
                  p = e.querySelector('a.partner').getBoundingClientRect();
            return [e.dataset.id, e.querySelector('a.partner').dataset.partner, t.right <= p.left + 1,
                    Math.abs(t.top - p.top) < 2, e.querySelector('.pair-measure').textContent]; })""")
        assert len(items) == min(len(flagged), 120)
        for item_id, partner, beside, level, words in items:
            assert int(partner) == partners[int(item_id)][0] and beside and level
            assert words == partners[int(item_id)][1]
        page.wait_for_function("() => { const i = document.querySelector('a.partner img');"
                               " return i.complete && i.naturalWidth > 0; }")  # the partner's thumbnail is served
        screenshot(page, "issues-near-duplicate-pairs")
        assert page.problems == []
