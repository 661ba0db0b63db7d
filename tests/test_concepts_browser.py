"""The concept pages in a real browser: a real uvicorn server over a scan and its computed atlas, driven by
Debian's Chromium. /concepts → a class → a concept (exemplar heatmaps load, the verdict is saved) → one of
its images, whose page shows the concept decomposition of its prediction. No console error, no failed
request; screenshots are test artifacts."""

from __future__ import annotations

import pytest
from browser_support import live_server, new_page, screenshot, settle
from concepts_ui_support import copy_concept_run

from mikata.runs.store import RunStore

TOKEN = "concepts-browser-token-7"


@pytest.fixture(scope="module")
def live(tmp_path_factory, concept_run_template):
    from mikata.server import create_app

    got = copy_concept_run(concept_run_template, tmp_path_factory.mktemp("concepts-browser"))
    with live_server(lambda port: create_app(got["run"], token=TOKEN, port=port, handle=got["handle"])) as (url, app):
        yield {**got, "url": url, "app": app}


def _images_loaded(page, selector: str) -> bool:
    return page.evaluate(f"""() => Array.from(document.querySelectorAll({selector!r}))
        .every(i => i.complete && i.naturalWidth > 0)""")


def test_concepts_class_concept_review_then_image_decomposition(browser, live):
    from mikata.concepts import concept_images, concept_reviews, image_decomposition

    page = new_page(browser)
    page.goto(f"{live['url']}/concepts?token={TOKEN}")
    page.click("nav >> text=Concepts")
    page.click('a.concept-class-link[data-class="2"]')
    assert page.url.endswith("/concepts/2")
    settle(page)
    assert _images_loaded(page, ".concept-row img")  # crops, heatmaps (the model ran) and location heats
    screenshot(page, "concepts-class")

    page.click('#concept-0 .concept-head a')
    assert page.url.endswith("/concepts/2/0")
    settle(page)
    assert _images_loaded(page, "#exemplars img, img.location")
    page.click('button.cmark[data-verdict="object"]')
    page.wait_for_function("document.querySelector('#concept-verdict').textContent.includes('saved')")
    assert concept_reviews(live["run"])["2/0"]["verdict"] == "object"
    ids, _, present = concept_images(live["run"], "2/0")
    assert page.locator("#concept-images a.tile").count() == int(present.sum())
    screenshot(page, "concepts-concept")

    first = int(ids[present][0])
    page.click(f'#concept-images a.tile[data-id="{first}"]')
    assert page.url.endswith(f"/image/{first}")
    page.wait_for_selector("#decomposition .share")
    shares = image_decomposition(live["run"], first, model=live["handle"])
    with RunStore.open(live["run"]) as store:
        pred = store.image(first)["pred"]
        name = store.classes[pred]
    text = page.locator("#decomposition .status").text_content()
    top, k = round(100 * shares[0][1]), shares[0][0].rsplit("/", 1)[1]
    assert text.startswith(f"{name}: {top}% concept {k}")  # "Coat: 61% concept 2, ..."
    assert page.locator("#decomposition .share").count() == len(shares)
    page.click("#decomposition .share a.conceptmap >> nth=0")  # its heatmap over this image, in the map panel
    page.wait_for_function("document.querySelector('#overlay').dataset.key === " + repr("concept/" + shares[0][0]))
    assert _images_loaded(page, "#overlay") and page.locator("#overlay").is_visible()
    page.click("#decomposition .share a >> nth=0")
    assert page.url.endswith(f"/concepts/{pred}/{k}")
    screenshot(page, "concepts-after-decomposition")
    assert page.problems == []
