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

import os
import shutil
from pathlib import Path

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
    return page


def screenshot(page, name: str) -> Path:
    """Save a full-page screenshot as a test artifact; returns its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
