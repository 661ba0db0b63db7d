"""Debian's Chromium driven headless by Playwright, for the report and web-app tests.

Never a browser download: Playwright launches ``/usr/bin/chromium`` (installed by
``scripts/system-packages.sh --browser``, which the test command runs). Each page records its
console errors, uncaught exceptions and failed requests, so a test can assert there were none.
Screenshots go to ``test-artifacts/`` (or ``$MIKATA_TEST_ARTIFACTS``) as test artifacts.

Example (in a test):
    def test_x(browser):
        page = new_page(browser)
        page.goto(url); screenshot(page, "dashboard"); assert page.problems == []
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

CHROMIUM = os.environ.get("MIKATA_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]
ARTIFACTS = Path(os.environ.get("MIKATA_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))


def chromium_path() -> str:
    path = shutil.which(CHROMIUM) or (CHROMIUM if os.path.exists(CHROMIUM) else None)
    if path is None:
        raise RuntimeError(f"Chromium not found at {CHROMIUM}: run `bash scripts/system-packages.sh --browser` "
                           "(apt-get install chromium chromium-driver) or set MIKATA_CHROMIUM")
    return path


def launch(playwright):
    return playwright.chromium.launch(executable_path=chromium_path(), args=FLAGS)


def new_page(browser, width: int = 1280, height: int = 900):
    """A page in a fresh context whose ``problems`` list collects console errors and page errors."""
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.problems = []
    page.on("console", lambda m: page.problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: page.problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: page.problems.append(f"request failed: {r.url} ({r.failure})"))
    in_flight: set = set()  # the requests started and not yet finished or failed (for ``settle``)
    page.in_flight = in_flight
    page.on("request", lambda r: in_flight.add(r))
    page.on("requestfinished", lambda r: in_flight.discard(r))
    page.on("requestfailed", lambda r: in_flight.discard(r))
    return page


def settle(page, quiet: float = 0.2, timeout: float = 30.0) -> None:
    """Wait for the page's ``load`` event, then until no request of the page has been in flight for ``quiet``
    seconds: what Playwright's ``networkidle`` waits for, with a shorter quiet window than its fixed 0.5 s
    (these pages start their requests while loading, or at once when a full-page screenshot brings lazy
    images into view). Leaving a page before its requests end would abort them (a failed request)."""
    page.wait_for_load_state("load")
    deadline = time.monotonic() + timeout
    quiet_since: float | None = None
    while True:
        now = time.monotonic()
        if page.in_flight:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = now
        elif now - quiet_since >= quiet:
            return
        if now > deadline:
            raise TimeoutError(f"requests still in flight after {timeout} s: {sorted(r.url for r in page.in_flight)}")
        page.wait_for_timeout(25)  # Playwright delivers the page's request events while it waits


def screenshot(page, name: str) -> Path:
    """Save a full-page screenshot as a test artifact; returns its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@contextlib.contextmanager
def live_server(make_app: Callable[[int], Any]) -> Iterator[tuple[str, Any]]:
    """A real uvicorn server on a free loopback port, in a daemon thread: ``make_app(port)`` builds the
    ASGI app (``create_app`` wants the port it is served on). Yields ``(url, app)``; stops on exit."""
    import uvicorn

    from mikata.server.launch import bind_socket

    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    app = make_app(port)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline and thread.is_alive():
        time.sleep(0.05)
    try:
        if not server.started:
            raise RuntimeError("the test server did not start within 20 s")
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
