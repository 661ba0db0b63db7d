"""End to end in Debian's Chromium: `mikata serve RUN_A --compare RUN_B` over two real scans. The Compare
page shows the library's accuracy of both runs and the fixed images; a click on one opens its image
page, where both models' Grad-CAM maps load side by side. No console error, no failed request."""

from __future__ import annotations

import pytest

from browser_support import live_server, new_page, screenshot, settle
from compare_runs import two_runs
from mikata.analysis.compare import compare
from mikata.formatting import percent
from mikata.models.source import ModelSource

TOKEN = "compare-browser-token-7"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    from mikata.server import create_app

    base = tmp_path_factory.mktemp("compare-browser")
    run_a, run_b, ha, hb = two_runs(base, 80)
    with live_server(lambda port: create_app(run_a, token=TOKEN, port=port, handle=ha, compare=run_b,
                                             compare_source=ModelSource(handle=hb))) as (url, app):
        yield {"url": url, "run_a": run_a, "run_b": run_b, "app": app}


def test_compare_page_then_both_maps_on_the_image_page(browser, live):
    c = compare(live["run_a"], live["run_b"])
    fixed = c.flipped_items("fixed", 0, 24)
    assert fixed, "the noisy model A must get some digits wrong that B gets right"
    page = new_page(browser)
    page.goto(f"{live['url']}/?token={TOKEN}")
    settle(page)  # the dashboard's thumbnails, before leaving it
    page.click("#nav-compare")
    page.wait_for_url("**/compare")
    acc = c.metric("accuracy")
    assert page.locator("#cmp-acc-a").inner_text() == percent(acc.a, 1)
    assert page.locator("#cmp-acc-b").inner_text() == percent(acc.b, 1)
    assert page.locator("#cmp-fixed").inner_text() == str(len(c.flipped_rows("fixed")))
    ids = [int(x) for x in page.locator("#fixed-grid .tile").evaluate_all("els => els.map(e => e.dataset.id)")]
    assert ids == [it["id_a"] for it in fixed]
    settle(page)
    screenshot(page, "compare-dashboard")
    page.click("#fixed-grid .tile >> nth=0")
    page.wait_for_url(f"**/image/{ids[0]}")
    page.locator("#compare-panel").scroll_into_view_if_needed()
    page.wait_for_function("""() => ['#map-a-pred', '#map-b-pred'].every(s => {
        const i = document.querySelector(s); return i && i.complete && i.naturalWidth > 0; })""", timeout=120_000)
    captions = page.locator("#compare-panel figcaption").all_inner_texts()
    assert captions[0] == f"A: Grad-CAM of its prediction {fixed[0]['pred_a']}"
    assert captions[1] == f"B: Grad-CAM of its prediction {fixed[0]['pred_b']}"
    settle(page)
    screenshot(page, "compare-image")
    assert page.problems == []
