"""The report's Concepts section over a real scan and its computed atlas: what it shows against the atlas,
embedded crops against the original pixels, escaping, offline, without a model, and in Chromium."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
from concepts_ui_support import HOSTILE, copy_concept_run
from PIL import Image


@pytest.fixture(scope="module")
def made(tmp_path_factory, concept_run_template):
    from mikata.report import write_report

    got = copy_concept_run(concept_run_template, tmp_path_factory.mktemp("concepts-report"))
    out = got["run"].parent / "report.html"
    result = write_report(got["run"], out, handle=got["handle"], methods=["gradcam"], map_classes=1)
    return {**got, "result": result, "html": out.read_text(encoding="utf-8"), "json": got["atlas"].to_json()}


def _section(html: str) -> str:
    return re.search(r'<section id="concepts">(.*?)</section>', html, re.DOTALL).group(1)


def _png(uri: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"))


def test_each_class_its_concepts_ranked_with_bars_and_numbers(made):
    html, doc = made["html"], made["json"]
    assert '<a href="#concepts">Concepts</a>' in html
    sec = _section(html)
    assert f"layer {doc['layer']}" in sec
    for name, concepts in doc["classes"].items():
        block = re.search(rf'id="concepts-{int(name)}">(.*?)(?=<div class="class-block concept-class"|$)', sec, re.DOTALL).group(1)
        svg = re.search(r"<svg.*?</svg>", block, re.DOTALL).group(0)
        assert svg.count("<rect") == len(concepts)  # one bar per concept
        ranked = [e["concept"] for e in sorted(concepts, key=lambda e: -e["importance"])]
        assert re.findall(r'data-concept="([^"]+)"', block) == ranked
        for e in concepts:
            assert f'{e["importance"]:.3f}' in block
    assert "concept heatmaps left out" not in " ".join(made["result"].notes)
    assert "http://" not in html and "https://" not in html  # offline


def test_exemplar_crops_are_the_original_pixels_and_come_with_their_heatmap(made):
    from mikata.runs.store import RunStore

    sec, doc = _section(made["html"]), made["json"]
    e = doc["classes"]["4"][0]["exemplars"][0]
    fig = re.search(rf'<div class="gallery-row concept[^"]*" id="concept-4-0".*?<figure class="concept-exemplar" data-id="{e["id"]}">(.*?)</figure>',
                    sec, re.DOTALL).group(1)
    uris = re.findall(r'src="(data:image/png;base64,[^"]+)"', fig)
    assert len(uris) == 2  # the crop, then the crop with the heatmap
    crop, over = _png(uris[0]), _png(uris[1])
    with RunStore.open(made["run"]) as store:
        path = store.image(e["id"])["path"]
    x0, y0, x1, y1 = e["box"]
    want = np.asarray(Image.open(path).convert("RGB"))[y0:y1, x0:x1]
    f = crop.shape[0] // want.shape[0]  # small crops are scaled up by a whole factor (nearest)
    assert f >= 1 and np.array_equal(crop[::f, ::f], want)
    assert over.shape == crop.shape and not np.array_equal(over, crop)


def test_strategies_slices_and_pairs_as_the_atlas_lists_them(made):
    sec, doc = _section(made["html"]), made["json"]
    for name, strategies in doc["strategies"].items():
        block = re.search(rf'id="concepts-{int(name)}">(.*?)(?=<div class="class-block concept-class"|$)', sec, re.DOTALL).group(1)
        rows = re.findall(r'<tr><td>(\d+)</td><td class="num">([\d,]+)</td>', block.split("concept-strategies", 1)[1]) if strategies else []
        assert [(int(a), int(b.replace(",", ""))) for a, b in rows] == [(s["strategy"], s["size"]) for s in strategies]
    if doc["slices"]:
        table = re.search(r'id="concept-slices">(.*?)</table>', sec, re.DOTALL).group(1)
        assert table.count("<tr><td>") == min(20, len(doc["slices"]))
        assert doc["slices"][0]["concept"] in table
    pairs = doc["errors"]["pairs"]
    if pairs:
        table = re.search(r'id="concept-pairs">(.*?)</table>', sec, re.DOTALL).group(1)
        assert table.count("<tr><td>") == len(pairs)


def test_atlas_text_is_escaped_and_defined_concepts_listed(made, monkeypatch, tmp_path):
    from mikata.concepts import surface
    from mikata.report import write_report

    doc = json.loads(json.dumps(made["json"]))
    doc["classes"]["3"][0]["evidence"] = HOSTILE
    doc["classes"]["3"][0]["shortcut"] = True
    # a concept defined by examples (TCAV), as compute_atlas(defines=...) stores it, with a hostile name
    doc["tcav"] = {HOSTILE: {"classes": {"3": {"score": 0.81, "score_std": 0.1, "random_mean": 0.52, "p_value": 0.0004,
                                               "significant": True, "examples": 12, "images": 13},
                                         "5": {"score": 0.4, "score_std": 0.2, "random_mean": 0.45, "p_value": 0.6,
                                               "significant": False, "examples": 12, "images": 13}}}}
    monkeypatch.setattr(surface, "atlas_json", lambda run_dir: doc)
    write_report(made["run"], tmp_path / "r.html", handle=made["handle"], maps=False)
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert HOSTILE not in html and "&lt;script&gt;alert(" in html
    assert 'id="concept-shortcuts"' in html
    tcav = re.search(r'id="concept-tcav">(.*?)</table>', html, re.DOTALL).group(1)
    assert '<td>3</td><td class="num">0.81</td><td class="num">0.52</td><td class="num">0.0004</td><td>significant</td>' in tcav
    assert '<td>5</td><td class="num">0.40</td><td class="num">0.45</td><td class="num">0.6</td><td>not significant</td>' in tcav


def test_without_a_model_the_crops_stay_and_a_note_says_why(made, tmp_path):
    from mikata.report import write_report

    # the run's manifest names a factory spec: code from a file is never imported, so no model loads
    r = write_report(made["run"], tmp_path / "r.html", maps=False)
    assert any(n.startswith("concept heatmaps left out") for n in r.notes), r.notes
    sec = _section((tmp_path / "r.html").read_text(encoding="utf-8"))
    assert sec.count('class="concept-exemplar"') > 0
    assert all(len(re.findall(r"<img ", f)) == 1 for f in re.findall(r'<figure class="concept-exemplar".*?</figure>', sec, re.DOTALL))


def test_a_run_without_an_atlas_has_no_concepts_section(made, tmp_path):
    import shutil

    from mikata.report import write_report

    run = tmp_path / "run"
    shutil.copytree(made["run"], run)
    shutil.rmtree(run / "concepts")
    write_report(run, tmp_path / "r.html", handle=made["handle"], maps=False)
    assert 'id="concepts"' not in (tmp_path / "r.html").read_text(encoding="utf-8")


def test_concepts_section_in_chromium(made, browser):
    from browser_support import new_page, screenshot

    page = new_page(browser)
    page.goto(made["result"].path.as_uri() + "#concepts")
    assert page.locator("#concepts").is_visible()
    page.wait_for_load_state("load")
    ok = page.evaluate("""() => Array.from(document.querySelectorAll('#concepts img'))
        .every(i => i.complete && i.naturalWidth > 0)""")
    assert ok
    page.locator("#concepts").screenshot(path=str(screenshot(page, "report-concepts").with_name("report-concepts-section.png")))
    assert page.problems == []
