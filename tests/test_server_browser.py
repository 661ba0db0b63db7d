"""End to end: a real uvicorn server over a real scan, driven by Debian's Chromium through Playwright.

Dashboard → click a confusion cell → the grid shows exactly ``overview().cell(t, p)`` → open an
image → ask for Grad-CAM of a chosen class → the overlay loads. Also the review buttons, the
embedding scatter and the feature-visualization gallery. Screenshots of each page are saved as
test artifacts; no page may log a console error or fail a request.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from browser_support import live_server, new_page, screenshot, settle
from mikata.analysis.overview import overview
from mikata.runs.store import RunStore
from test_scan_support import digit_images, mnist_handle, write_folder

TOKEN = "browser-test-token-42"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    from mikata.scanning.scan import scan
    from mikata.server import create_app

    base = tmp_path_factory.mktemp("browser")
    images, labels = digit_images(120)
    write_folder(base / "digits", images, labels)
    handle = mnist_handle()
    scan(handle, base / "digits", base / "run", batch_size=64, workers=0, progress=False)
    fv = base / "run" / "featurevis"
    fv.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 128, 3), dtype=np.uint8)).save(fv / "classes.png")
    def make(port: int):
        app = create_app(base / "run", token=TOKEN, port=port, handle=handle)
        # a black baseline, so Integrated Gradients is exactly zero on the digits' black border
        app.run.maps.options["integrated-gradients"] = {"baseline": "black"}
        return app

    with live_server(make) as (url, app):
        yield {"url": url, "run": base / "run", "app": app}


def _all_images_loaded(page, selector: str) -> bool:
    return page.evaluate(f"""() => Array.from(document.querySelectorAll({selector!r}))
        .every(i => i.complete && i.naturalWidth > 0)""")


def test_dashboard_grid_image_and_map_in_a_real_browser(browser, live):
    ov = overview(live["run"])
    page = new_page(browser)
    page.goto(f"{live['url']}/?token={TOKEN}")
    assert page.url == f"{live['url']}/"  # the token left the address bar for a cookie
    assert page.locator("#confusion").is_visible()
    settle(page)
    screenshot(page, "server-dashboard")
    settle(page)  # a full-page screenshot loads the lazy thumbnails below the fold

    off = [(t, p) for t in ov.present for p in range(10) if t != p and ov.confusion[t, p]]
    t, p = off[0] if off else (ov.present[0], ov.present[0])
    page.click(f'a.cell[data-true="{t}"][data-pred="{p}"]')
    page.wait_for_url("**/grid?*")
    ids = [int(x) for x in page.locator("#grid .tile").evaluate_all("els => els.map(e => e.dataset.id)")]
    assert ids == ov.cell(t, p).tolist()
    page.wait_for_function("() => Array.from(document.querySelectorAll('#grid img')).every(i => i.complete)")
    assert _all_images_loaded(page, "#grid img")
    screenshot(page, "server-grid")
    settle(page)

    page.click("#grid .tile >> nth=0")
    page.wait_for_url(f"**/image/{ids[0]}")
    chosen = (p + 3) % 10
    page.select_option("#method", "gradcam")
    page.select_option("#cls", str(chosen))
    page.click("#showmap")
    page.wait_for_function("() => { const i = document.querySelector('#overlay');"
                           " return !i.hidden && i.complete && i.naturalWidth > 0; }", timeout=30000)
    assert page.locator("#overlay").get_attribute("data-key") == f"gradcam/{chosen}"
    assert live["app"].run.maps.map(ids[0], "gradcam", chosen) is not None  # cached in the run
    with RunStore.open(live["run"]) as store:
        assert store.get_map(ids[0], "gradcam", chosen) is not None
    assert _all_images_loaded(page, "img.big")
    screenshot(page, "server-image")

    page.click(".review button.mark.wrong")
    page.wait_for_function("() => document.querySelector('#verdict').textContent.includes('saved')")
    with RunStore.open(live["run"]) as store:
        assert {r["id"]: r["verdict"] for r in store.reviews()}[ids[0]] == "wrong"
    assert page.problems == []


def test_review_embedding_and_gallery_pages_in_a_real_browser(browser, live):
    page = new_page(browser)
    page.goto(f"{live['url']}/reviews?token={TOKEN}")
    settle(page)
    screenshot(page, "server-reviews")
    settle(page)
    page.goto(f"{live['url']}/class/{overview(live['run']).present[0]}")
    settle(page)
    screenshot(page, "server-class")
    settle(page)
    page.goto(f"{live['url']}/embedding")
    page.wait_for_selector("#scatter .main-svg", timeout=30000)
    emb = live["app"].run.embedding()
    drawn = page.evaluate("() => document.querySelector('#scatter')._fullData.reduce((n, t) => n + t.x.length, 0)")
    assert drawn == len(emb["ids"]) and "WebGL is not supported" not in page.inner_text("#scatter")
    # a box/lasso selection as plotly reports it: the grid below shows exactly those images
    page.evaluate("() => document.querySelector('#scatter').emit('plotly_selected',"
                  " {points: [0, 5, 9].map(k => ({customdata: k}))})")
    shown = [int(x) for x in page.locator("#selection .tile").evaluate_all("els => els.map(e => e.dataset.id)")]
    assert shown == [emb["ids"][k] for k in (0, 5, 9)]
    settle(page)
    screenshot(page, "server-embedding")
    settle(page)
    page.goto(f"{live['url']}/featurevis")
    page.wait_for_function("() => Array.from(document.querySelectorAll('.gallery img'))"
                           ".every(i => i.complete && i.naturalWidth > 0)")
    screenshot(page, "server-featurevis")
    assert page.problems == []


def test_units_page_unit_then_image_in_a_real_browser(browser, live):
    """Click a unit, see its top images with their maps; click an image, land on its page."""
    from mikata.analysis.units import unit_examples
    from mikata.featurevis import RenderOptions

    res = unit_examples(live["run"], [4, 9], handle=mnist_handle(), k=3, options=RenderOptions(size=28, steps=4))
    res.save()
    page = new_page(browser)
    page.goto(f"{live['url']}/units?token={TOKEN}")
    settle(page)
    assert _all_images_loaded(page, ".unit-row img")
    screenshot(page, "server-units")
    page.click("#unit-1")
    page.wait_for_url("**/units/1")
    page.wait_for_function("() => Array.from(document.querySelectorAll('#unit-examples img'))"
                           ".every(i => i.complete && i.naturalWidth > 0)")
    shown = [int(x) for x in page.locator("#unit-examples a.tile").evaluate_all("els => els.map(e => e.dataset.id)")]
    assert shown == [e.image_id for e in res.units[1][1]]
    assert page.locator("#unitlegend").is_visible()  # the activation maps' colors say what they mean
    assert page.locator("#unitlegend .legend-ticks span").all_inner_texts() == ["min", "max"]
    screenshot(page, "server-unit")
    page.click(f'#unit-examples a.tile[data-id="{shown[0]}"]')
    page.wait_for_url(f"**/image/{shown[0]}")
    assert page.locator("h1").first.is_visible()
    assert page.problems == []


def _zero_gradcam_in_run(state) -> tuple[int, int]:
    """(image id, class) of a scanned digit whose Grad-CAM for that class is exactly zero (real maps)."""
    for image_id in state.overview().data.ids.tolist()[:40]:
        for k in range(10):
            if not state.maps.map(image_id, "gradcam", k).any():
                return image_id, k
    raise AssertionError("no all-zero Grad-CAM among the first digits")


def _show_map(page, method: str, cls: int) -> None:
    page.select_option("#method", method)
    page.select_option("#cls", str(cls))
    page.evaluate("() => { document.querySelector('#overlay').dataset.key = ''; }")
    page.click("#showmap")
    page.wait_for_function(f"() => {{ const i = document.querySelector('#overlay');"
                           f" return i.dataset.key === '{method}/{cls}' && i.complete && i.naturalWidth > 0; }}",
                           timeout=30000)


def test_map_legends_signed_colors_and_all_zero_maps_in_a_real_browser(browser, live):
    """Integrated Gradients: a diverging legend (−v … 0 … +v) and white-at-zero pixels in the overlay as
    the browser decoded it; an all-zero Grad-CAM: the legend says so; a grid of map tiles has a legend."""
    state = live["app"].run
    image_id, zero_cls = _zero_gradcam_in_run(state)
    page = new_page(browser)
    page.goto(f"{live['url']}/image/{image_id}?token={TOKEN}")
    assert page.locator("#maplegend").is_hidden()
    pred = int(state.image_row(image_id)["pred"])
    _show_map(page, "integrated-gradients", pred)
    legend = page.locator("#maplegend")
    assert legend.is_visible() and "signed" in legend.get_attribute("class")
    ticks = page.locator("#maplegend .legend-ticks span").all_inner_texts()
    assert len(ticks) == 3 and ticks[1] == "0" and ticks[0].startswith("\u2212") and ticks[2].startswith("+")
    assert ticks[0][1:] == ticks[2][1:]  # symmetric limits
    assert f"red: evidence for {pred}" in page.inner_text("#maplegend .legend-text")
    assert "linear-gradient" in page.eval_on_selector("#maplegend .legend-bar", "e => e.style.background")
    # the pixels the browser shows: where IG is zero (the black border) the overlay is neutral gray
    m = state.maps.map(image_id, "integrated-gradients", pred)
    ys, xs = np.nonzero(m == 0)
    assert len(ys) > 100
    px = page.evaluate("""() => { const i = document.querySelector('#overlay'), c = document.createElement('canvas');
        c.width = i.naturalWidth; c.height = i.naturalHeight; const g = c.getContext('2d'); g.drawImage(i, 0, 0);
        return Array.from(g.getImageData(0, 0, c.width, c.height).data); }""")
    rgba = np.array(px, dtype=int).reshape(m.shape[0], m.shape[1], 4)
    zero = rgba[ys, xs, :3]
    assert (zero.max(1) - zero.min(1) <= 2).all() and (np.abs(zero - 128) <= 3).all()  # white at 0.5 over black
    screenshot(page, "server-map-signed")

    _show_map(page, "gradcam", zero_cls)
    assert page.inner_text("#maplegend .legend-note") == f"no positive evidence for {zero_cls}: the map is all zero"
    assert page.locator("#maplegend .legend-bar").count() == 0
    screenshot(page, "server-map-all-zero")

    _show_map(page, "gradcam", pred)  # an ordinary Grad-CAM: sequential, 0 … max
    if state.maps.map(image_id, "gradcam", pred).any():
        ticks = page.locator("#maplegend .legend-ticks span").all_inner_texts()
        assert len(ticks) == 2 and ticks[0] == "0" and "signed" not in page.get_attribute("#maplegend", "class")

    page.goto(f"{live['url']}/grid?true=-1&pred=-1&map=gradcam")
    page.wait_for_function("() => Array.from(document.querySelectorAll('#grid img')).every(i => i.complete)")
    assert page.locator("#gridlegend").is_visible()
    assert page.locator("#gridlegend .legend-ticks span").all_inner_texts() == ["0", "max"]
    assert "hatched: the map is all zero" in page.inner_text("#gridlegend")
    screenshot(page, "server-grid-maps-legend")
    assert page.problems == []


def test_embedding_page_says_it_is_loading_until_the_points_arrive(browser, live):
    page = new_page(browser)
    page.goto(f"{live['url']}/?token={TOKEN}")
    settle(page)  # the dashboard's thumbnails, before leaving it
    held = []
    page.route("**/api/embedding", lambda route: held.append(route))  # held until the message was seen
    page.goto(f"{live['url']}/embedding", wait_until="domcontentloaded")
    n = len(overview(live["run"]).data)
    assert page.inner_text("#embloading") == f"loading {n:,} points…" and page.is_visible("#embloading")
    for _ in range(200):
        if held:
            break
        page.wait_for_timeout(50)
    assert held and page.is_visible("#embloading")  # asked for, not answered: still says so
    screenshot(page, "server-embedding-loading")
    held[0].continue_()
    page.wait_for_selector("#scatter .main-svg", timeout=30000)
    page.wait_for_function("() => document.querySelector('#embloading').hidden")
    settle(page)
    assert page.problems == []


def test_featurevis_gallery_shows_each_unit_with_its_label_and_the_log(browser, live):
    from mikata.featurevis import RenderOptions, visualize_classes

    r = visualize_classes(live["app"].run.maps.handle, ["3", "8"], RenderOptions(size=28, steps=4, jitter=2, pad=2))
    folder = live["run"] / "featurevis" / "digits-classes"
    r.save(folder, thumb=56)
    assert sorted(p.name for p in folder.iterdir()) == sorted(["grid.png"] + [f"{label}.png" for label in r.labels])
    with Image.open(folder / "grid.png") as grid:  # labels and log ride in the grid's text chunks
        assert json.loads(grid.info["mikata-rendering"])["units"][0]["label"] == r.labels[0]
        assert grid.info["mikata-log"].startswith("iteration")
    page = new_page(browser)
    page.goto(f"{live['url']}/featurevis?token={TOKEN}")
    page.wait_for_function("() => Array.from(document.querySelectorAll('.gallery img'))"
                           ".every(i => i.complete && i.naturalWidth > 0)")
    section = page.locator("section.fvset", has_text="digits-classes")
    assert section.locator("figcaption").all_inner_texts() == r.labels
    assert section.locator("img").count() == len(r.labels)  # each unit's own image, not only grid.png
    assert section.locator("a", has_text="digits-classes/grid.png").count() == 1
    section.locator("details.fvlog summary").click()
    log = section.locator("details.fvlog pre").inner_text()
    assert "iteration" in log and len(log.strip().splitlines()) == 2 + len(r.log)
    screenshot(page, "server-featurevis-units")
    assert page.problems == []


def test_a_new_map_clears_the_old_one_and_the_busy_marker_needs_no_emoji_font(browser, live):
    """Issue 31.8: while Integrated Gradients computes, the previous map and its legend are gone (they belong to
    another method); the busy marker is a drawn spinner (a CSS border), not a glyph a font may lack."""
    state = live["app"].run
    image_id = int(overview(live["run"]).data.ids[0])
    pred = int(state.image_row(image_id)["pred"])
    page = new_page(browser)
    page.goto(f"{live['url']}/image/{image_id}?token={TOKEN}")
    _show_map(page, "gradcam", pred)
    assert page.locator("#overlay").is_visible() and page.locator("#maplegend").is_visible()
    # the synchronous start of the request: what the page shows before any answer arrives
    during = page.evaluate("""() => { document.querySelector('#method').value = 'integrated-gradients';
        document.querySelector('#mapform').requestSubmit();
        const i = document.querySelector('#overlay'), l = document.querySelector('#maplegend'),
              s = document.querySelector('#mapstatus'), after = getComputedStyle(s, '::after');
        return {overlay: i.hidden, key: i.dataset.key || '', legend: l.hidden, busy: s.classList.contains('busy'),
                content: after.content, width: parseFloat(after.width), border: after.borderTopStyle,
                borderWidth: parseFloat(after.borderTopWidth), text: s.textContent}; }""")
    assert during["overlay"] and during["key"] == "" and during["legend"] and during["busy"]
    assert "computing integrated-gradients" in during["text"]
    assert "\u23f3" not in during["content"] and during["width"] > 4 and during["border"] == "solid"
    assert during["borderWidth"] >= 1
    page.wait_for_function(f"() => document.querySelector('#overlay').dataset.key === 'integrated-gradients/{pred}'",
                           timeout=60000)
    assert page.locator("#overlay").is_visible() and page.locator("#maplegend").is_visible()
    assert page.problems == []
