"""The label review queue and the manifest fields in a real browser (Debian's Chromium via Playwright).

A real uvicorn server over ``review_support.cells_run`` (a CSV manifest with ``cell_type`` and a
``site`` column holding HTML on purpose). Keys drive the review queue and the verdicts land in the
run; the grid is filtered by a field value; the embedding is coloured by a field; the report's label
errors and field sections render. Screenshots are saved as test artifacts; no page may log a console
error, and the HTML in the manifest never runs.
"""

from __future__ import annotations

import pytest

from browser_support import live_server, new_page, screenshot, settle
from mikata.analysis.audit import label_issue_ranking
from mikata.runs.data import load_run
from mikata.analysis.fields import field_values
from mikata.runs.store import RunStore
from review_support import HOSTILE, cells_run

TOKEN = "review-browser-token"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    from mikata.server import create_app

    cells = cells_run(tmp_path_factory.mktemp("review-browser"))
    def make_app(port: int):
        return create_app(cells["run"], token=TOKEN, port=port, handle=cells["handle"])

    with live_server(make_app) as (url, app):
        yield {**cells, "url": url, "app": app}


def _reviews(run) -> dict[int, tuple[str, int | None]]:
    with RunStore.open(run) as store:
        return {r["id"]: (r["verdict"], r["suggested"]) for r in store.reviews()}


def _legend(page) -> list[str]:
    """The scatter's legend entries as drawn (SVG text, so textContent)."""
    return page.evaluate("() => Array.from(document.querySelectorAll('#scatter .legendtext')).map(e => e.textContent)")


def _current(page) -> int:
    return int(page.evaluate("() => document.querySelector('.review.current').dataset.id"))


def test_keyboard_review_stores_verdicts_and_moves_on(browser, live):
    d = load_run(live["run"])
    queue = d.ids[label_issue_ranking(d)].tolist()
    page = new_page(browser)
    page.goto(f"{live['url']}/reviews?token={TOKEN}")
    settle(page)
    assert _current(page) == queue[0]
    # the thumbnails are big enough to judge, with the file name under them
    size = page.evaluate("() => { const i = document.querySelector('.review-card img');"
                         " return [i.getBoundingClientRect().width, i.naturalWidth]; }")
    assert size[0] >= 160 and size[1] > 0  # drawn at 160 px (a 28 px digit scaled up, pixelated)
    first_text = page.inner_text(f'.review-card[data-id="{queue[0]}"]')
    assert "img_" in first_text and "labelled" in first_text and "model says" in first_text
    assert "suggest" not in page.inner_text("#review-queue").lower()
    screenshot(page, "review-queue")

    page.keyboard.press("j")
    page.keyboard.press("ArrowDown")
    assert _current(page) == queue[2]
    page.keyboard.press("k")
    assert _current(page) == queue[1]
    # pick the right label in the menu, then "w": stored as wrong with that class, and the queue moves on
    page.select_option(f'.review-card[data-id="{queue[1]}"] select.suggested', "7")
    page.locator(f'.review-card[data-id="{queue[1]}"] .body').click(position={"x": 5, "y": 5})
    page.keyboard.press("w")
    page.wait_for_function(f"() => document.querySelector('.review.current').dataset.id === '{queue[2]}'")
    assert _reviews(live["run"])[queue[1]] == ("wrong", 7)
    # "f" on an item whose menu says a class: stored fine, with no suggested class, and the menu is reset
    page.select_option(f'.review-card[data-id="{queue[2]}"] select.suggested', "3")
    page.locator(f'.review-card[data-id="{queue[2]}"] .body').click(position={"x": 5, "y": 5})
    page.keyboard.press("f")
    page.wait_for_function(f"() => document.querySelector('.review.current').dataset.id === '{queue[3]}'")
    assert _reviews(live["run"])[queue[2]] == ("fine", None)
    assert page.eval_on_selector(f'.review-card[data-id="{queue[2]}"] select.suggested', "s => s.value") == ""
    assert "saved: label fine" in page.inner_text(f'.review-card[data-id="{queue[2]}"]')
    # "u" clears, "o" opens the image
    page.keyboard.press("k")
    page.keyboard.press("u")
    page.wait_for_function(f"() => document.querySelector('.review-card[data-id=\"{queue[2]}\"] .verdict')"
                           ".textContent === 'cleared'")
    assert queue[2] not in _reviews(live["run"])
    screenshot(page, "review-queue-after-keys")
    page.keyboard.press("o")
    page.wait_for_url(f"**/image/{queue[2]}")
    assert page.problems == []
    with RunStore.open(live["run"], annotate=True) as store:
        store.set_review(queue[1], None)


def test_grid_filtered_by_a_manifest_field_in_a_real_browser(browser, live):
    d = load_run(live["run"])
    kind = field_values(d, "cell_type")
    want = set(d.ids[kind == "inverted"].tolist())
    page = new_page(browser)
    page.goto(f"{live['url']}/grid?token={TOKEN}")
    settle(page)
    page.select_option("#where", "0:inverted")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**/grid?*where=0%3Ainverted*")
    got = {int(x) for x in page.locator("#grid .tile").evaluate_all("els => els.map(e => e.dataset.id)")}
    assert got == want
    assert "cell_type = inverted" in page.inner_text("h1")
    settle(page)
    screenshot(page, "grid-by-field")
    # the hostile value: a menu entry shown as text, never markup that runs
    options = page.locator("#where option").all_inner_texts()
    assert f"site = {HOSTILE} ({sum(1 for i in range(300) if i % 7 == 0)})" in options
    page.select_option("#where", f"1:{HOSTILE}")
    page.click("form.filters button[type=submit]")
    settle(page)
    assert HOSTILE in page.inner_text("h1")
    assert page.evaluate("() => window.pwned === undefined")
    # the issues page takes the same filter
    page.goto(f"{live['url']}/issues?type=underperforming_group&where=0:inverted")
    settle(page)
    shown = {int(x) for x in page.locator("#issue-grid .issue-item").evaluate_all("els => els.map(e => e.dataset.id)")}
    assert shown and shown <= want
    screenshot(page, "issues-by-field")
    assert page.problems == []


def test_embedding_coloured_by_a_manifest_field(browser, live):
    page = new_page(browser)
    page.goto(f"{live['url']}/embedding?token={TOKEN}")
    page.wait_for_selector("#scatter .main-svg", timeout=30000)
    emb = live["app"].run.embedding()
    page.select_option("#colorby", "field:0")
    page.wait_for_function("() => JSON.parse(document.querySelector('#scatter').dataset.traces)"
                           ".map(t => t[0]).join() === 'inverted,plain'")
    traces = dict(page.evaluate("() => JSON.parse(document.querySelector('#scatter').dataset.traces)"))
    codes = emb["fields"]["cell_type"]["codes"]
    assert traces == {"inverted": codes.count(0), "plain": codes.count(1)}
    legend = _legend(page)
    assert legend == ["inverted", "plain"]
    screenshot(page, "embedding-by-field")
    page.select_option("#colorby", "field:1")
    page.wait_for_function("() => document.querySelectorAll('#scatter .legendtext').length === 3")
    legend = _legend(page)
    assert HOSTILE in legend  # the value drawn as its own text
    assert page.evaluate("() => window.pwned === undefined")
    page.select_option("#colorby", "correct")
    page.wait_for_function("() => Array.from(document.querySelectorAll('#scatter .legendtext'))"
                           ".map(e => e.textContent).join() === 'right,wrong'")
    assert page.problems == []


def test_report_label_errors_and_field_sections_in_a_real_browser(browser, live, tmp_path):
    from mikata.report.build import write_report

    out = write_report(live["run"], tmp_path / "report.html", maps=False).path
    d = load_run(live["run"])
    total = len(label_issue_ranking(d))
    page = new_page(browser)
    page.goto(out.as_uri())
    page.wait_for_load_state("load")
    assert page.inner_text("#issue-count") == str(total)
    assert f"showing 50 of {total}" in page.inner_text("#label-issues-shown")
    size = page.evaluate("() => { const i = document.querySelector('#label-issues img.issue-thumb');"
                         " return [i.getBoundingClientRect().width, i.naturalWidth, i.complete]; }")
    assert size[0] >= 160 and size[1] > 0 and size[2]
    assert "img_" in page.inner_text("#label-issues figure.issue-fig >> nth=0")
    assert page.locator(".field-section").count() == 2
    first = page.locator('.field-section[data-field="cell_type"] tr.field-group >> nth=0').inner_text()
    assert first.startswith("inverted")
    assert page.evaluate("() => window.pwned === undefined")
    page.locator("#label-issues").scroll_into_view_if_needed()
    screenshot(page, "report-label-issues")
    assert page.problems == []


def test_fields_show_on_review_cards_and_grid_tiles_in_a_real_browser(browser, live):
    """Issue 31.7: the manifest fields where a reviewer decides, as text (the HTML value never runs)."""
    from mikata.analysis.fields import fields_text

    d = load_run(live["run"])
    kind, site = field_values(d, "cell_type"), field_values(d, "site")
    want = {int(d.ids[r]): fields_text([("cell_type", kind[r]), ("site", site[r])]) for r in range(len(d))}
    page = new_page(browser)
    page.goto(f"{live['url']}/reviews?token={TOKEN}")
    settle(page)
    cards = page.locator(".review-card").evaluate_all(
        "els => els.map(e => [e.dataset.id, e.querySelector('.fields').textContent])")
    assert cards and all(text == want[int(i)] for i, text in cards)
    box = page.locator(".review-card .fields").first.bounding_box()
    assert box["height"] > 0 and box["width"] > 0
    from urllib.parse import quote

    page.goto(f"{live['url']}/grid?where={quote('1:' + HOSTILE)}")
    settle(page)
    tiles = page.locator("#grid .tile").evaluate_all(
        "els => els.map(e => [e.dataset.id, e.querySelector('.fields').textContent])")
    assert tiles and all(text == want[int(i)] and "site=<img src=x" in text for i, text in tiles)
    screenshot(page, "grid-tiles-with-fields")
    assert page.evaluate("() => window.pwned === undefined")
    assert page.problems == []
