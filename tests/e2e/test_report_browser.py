"""The HTML report as a person sees it: opened from disk (file://) in headless Chromium, offline.
Every chart must be decoded and drawn, and the page must ask the network for nothing.

Drives Debian's /usr/bin/chromium through playwright (which downloads no browser of its own here).
Under CI=true the test runs or fails; on a laptop without Chromium it skips and says how to get it."""

import os
import shutil
from io import BytesIO
from pathlib import Path

import pytest

from tests.unit.test_report import built_full_report

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def chromium():
    if not Path(CHROMIUM).is_file() or shutil.which(CHROMIUM) is None:
        message = f"no Chromium at {CHROMIUM}: install it with `apt-get install chromium` (Debian) to run this test"
        if os.environ.get("CI") == "true":
            pytest.fail(f"required under CI=true: {message}")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def full_report(build_once) -> Path:
    return built_full_report(build_once)


def test_every_chart_of_the_report_is_decoded_and_drawn_offline(chromium, full_report):
    from PIL import Image

    charts = 6  # every section of the full report but the SLO table
    page = chromium.new_page(viewport={"width": 1100, "height": 900})
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto((full_report / "reports" / "latest.html").as_uri(), wait_until="load")

    images = page.eval_on_selector_all(
        "img", "els => els.map(e => ({complete: e.complete, width: e.naturalWidth, height: e.naturalHeight}))"
    )
    assert len(images) == charts
    assert all(i["complete"] and i["width"] > 0 and i["height"] > 0 for i in images), images
    # Nothing but the file itself (and its inline data: images) was loaded.
    assert [url for url in requested if not url.startswith(("file://", "data:"))] == []
    assert page.title() == "ventureloop report 2026-12-07"
    assert page.locator("section").count() == 7 and page.locator(".missing").count() == 0

    # A chart is really drawn: its pixels on screen are not one color, and a large share is ink.
    forecast = page.locator("#forecast img.chart")
    forecast.scroll_into_view_if_needed()
    shot = Image.open(BytesIO(forecast.screenshot())).convert("RGB")
    colors = shot.getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 50, "the forecast chart rendered as (nearly) one color"
    white = sum(n for n, rgb in colors if min(rgb) > 245)
    assert white < 0.97 * shot.width * shot.height
    # The interval bands are blue (#9ecae1, #4292c6): a few thousand pixels of clear blue are on screen.
    assert sum(n for n, (r, _g, b) in colors if b - r > 60) > 2_000
