"""The web app's on-demand maps say what they compute and what to expect: /api/map-estimate gives
the method, whether the map is cached and the median seconds of the method's earlier maps in the
run; the image page shows the method, the class, the seconds so far and that estimate while it
waits (checked in Chromium with a deliberately slow map)."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from mikata.analysis.overview import overview
from test_scan_support import digit_images, mnist_handle, write_folder

TOKEN = "estimate-token-0123456789"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from mikata.scanning.scan import scan

    base = tmp_path_factory.mktemp("estimate")
    images, labels = digit_images(16)
    write_folder(base / "digits", images, labels)
    handle = mnist_handle()
    scan(handle, base / "digits", base / "run", batch_size=16, workers=0, progress=False)
    return {"run": base / "run", "handle": handle}


def test_the_estimate_follows_the_runs_own_timings(run):
    from mikata.server import create_app

    app = create_app(run["run"], token=TOKEN, port=8766, handle=run["handle"])
    c = TestClient(app, base_url="http://127.0.0.1:8766")
    assert c.get(f"/?token={TOKEN}").status_code == 200
    a, b = (int(i) for i in overview(run["run"]).data.ids[:2])
    first = c.get(f"/api/map-estimate/{a}?method=integrated-gradients&cls=3").json()
    assert first == {"method": "integrated-gradients", "class": 3, "cached": False, "seconds": None, "measured": 0,
                     "model_loaded": True}
    assert c.get(f"/map/{a}.png?method=integrated-gradients&cls=3").status_code == 200
    from mikata.presentation.maps import cache_method
    from mikata.runs.store import RunStore

    with RunStore.open(run["run"]) as store:  # IG's maps are cached under their baseline
        stored = store.map_seconds(cache_method("integrated-gradients"))
    assert len(stored) == 1 and stored[0] > 0
    same = c.get(f"/api/map-estimate/{a}?method=integrated-gradients&cls=3").json()
    assert same["cached"] is True
    other = c.get(f"/api/map-estimate/{b}?method=integrated-gradients&cls=3").json()
    assert other["cached"] is False and other["measured"] == 1 and other["seconds"] == pytest.approx(stored[0])
    assert c.get(f"/api/map-estimate/{a}?method=magic").status_code == 400
    assert c.get("/api/map-estimate/999999?method=gradcam").status_code == 404


def test_the_image_page_says_what_it_computes_while_it_waits(run, browser):
    from browser_support import live_server, new_page, screenshot
    from mikata.server import create_app

    def slow_app(port: int):
        app = create_app(run["run"], token=TOKEN, port=port, handle=run["handle"])
        real = app.run.maps._compute

        def slow(*args):
            time.sleep(1.0)  # long enough for the page to show the estimate before the map arrives
            return real(*args)

        app.run.maps._compute = slow
        return app

    with live_server(slow_app) as (url, _):
        ids = [int(i) for i in overview(run["run"]).data.ids[2:4]]
        page = new_page(browser)
        page.goto(f"{url}/image/{ids[0]}?token={TOKEN}")
        page.select_option("#method", "saliency")
        page.click("#showmap")
        page.wait_for_function("() => { const t = document.querySelector('#mapstatus').textContent;"
                               " return t.includes('so far') && t.includes('in this run'); }")
        busy = page.text_content("#mapstatus")
        assert busy.startswith("computing saliency for ") and "the first saliency map in this run" in busy
        page.wait_for_function("() => !document.querySelector('#overlay').hidden", timeout=30000)
        assert "saliency" in page.text_content("#mapstatus") and "so far" not in page.text_content("#mapstatus")
        # a second image: now the run has a measured saliency map, so the page gives an estimate
        page.goto(f"{url}/image/{ids[1]}")
        page.select_option("#method", "saliency")
        page.click("#showmap")
        page.wait_for_function("() => document.querySelector('#mapstatus').textContent.includes('about')")
        waiting = page.text_content("#mapstatus")
        assert "about 1" in waiting and "median of 1 earlier saliency map in this run" in waiting  # the 1 s map
        screenshot(page, "map-estimate-waiting")
        page.wait_for_function("() => !document.querySelector('#overlay').hidden", timeout=30000)
        assert not page.problems, page.problems
