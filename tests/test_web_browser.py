"""The explorer in a real headless Chromium: click through from the overview to an event and a
measurement, apply filters, and check nothing is fetched from anywhere but the server.

Needs Debian's chromium at /usr/bin/chromium (or CENSORWATCH_CHROMIUM) and the ``playwright``
package (never its downloaded browsers). Skipped with the reason when either is missing, except
in CI, where they are installed and these tests must run. Set CENSORWATCH_SCREENSHOTS to a
folder to keep the screenshots.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from web_helpers import OONI, Served, check_series_analysis, serve_store

CHROMIUM = Path(os.environ.get("CENSORWATCH_CHROMIUM", "/usr/bin/chromium"))
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not OONI.is_dir(), reason=f"OONI data not found at {OONI}"),
]


def _unavailable() -> str | None:
    if not CHROMIUM.is_file():
        return f"{CHROMIUM} not found (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing (pip install -e '.[test]')"
    return None


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    check_series_analysis()
    yield from serve_store(tmp_path_factory.mktemp("web-browser"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = _unavailable()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser tests, but {reason}")
        pytest.skip(f"needs a browser: {reason}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, timeout=30_000)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture()
def page(browser: Any, served: Served) -> Iterator[Any]:
    """A page that may only talk to the explorer's server; anything else is aborted and
    recorded, and so are console errors."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    pg = context.new_page()
    pg.foreign = []
    pg.errors = []
    origin = urlsplit(served.url).netloc

    def guard(route: Any) -> None:
        if urlsplit(route.request.url).netloc == origin:
            route.continue_()
        else:
            pg.foreign.append(route.request.url)
            route.abort()

    pg.route("**/*", guard)
    pg.on("console", lambda m: pg.errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    try:
        yield pg
    finally:
        assert pg.foreign == [], "the explorer fetched from another site"
        assert pg.errors == [], pg.errors
        context.close()


def shot(pg: Any, name: str, tmp_path: Path) -> Path:
    folder = Path(os.environ.get("CENSORWATCH_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    pg.screenshot(path=str(path), full_page=True)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    return path


def test_overview_to_event_to_measurement(page: Any, served: Served, tmp_path: Path) -> None:
    page.goto(served.url + "/")
    assert page.url.endswith("/explorer")
    first = page.locator("ul.events > li.event").first
    headline = first.locator("a.headline")
    assert headline.inner_text().startswith("X (Twitter) blocked in PK on 2 of 3 networks")
    # The stylesheet is applied: a blocked cell of the matrix is red on pink.
    cell = page.locator("table.matrix td.cell.v-blocked").first
    assert cell.evaluate("e => getComputedStyle(e).color") == "rgb(198, 40, 40)"
    shot(page, "overview", tmp_path)

    headline.click()
    page.wait_for_url(re.compile(r"/explorer/events/evt_[0-9a-f]{20}$"))
    assert page.locator("h1").inner_text().startswith("X (Twitter) blocked in PK")
    timeline = page.locator("svg.timeline")
    assert timeline.is_visible() and timeline.bounding_box()["width"] > 600
    assert page.locator("svg.timeline rect.mark.v-blocked").count() > 0
    shot(page, "event", tmp_path)

    evidence = page.locator("table.list tbody tr").nth(1)  # the first blocked measurement
    assert evidence.locator(".badge").inner_text() == "blocked"
    evidence.locator("a[href^='/explorer/measurements/']").click()
    page.wait_for_url(re.compile(r"/explorer/measurements/[^/?]+$"))
    assert page.locator("h1").inner_text() in ("http://x.com/", "http://twitter.com/")
    assert page.locator(".verdict-line .badge").inner_text() == "blocked"
    assert page.locator("table.compare").is_visible()
    shot(page, "measurement", tmp_path)


def test_timeline_mark_opens_its_measurement(page: Any, served: Served) -> None:
    page.goto(served.url + "/explorer/networks/AS9541")
    mark = page.locator("svg.timeline rect.mark.v-blocked").first
    tip = mark.locator("title").text_content()
    mark.click()
    page.wait_for_url(re.compile(r"/explorer/measurements/[^/?]+$"))
    assert page.locator(".verdict-line .badge").inner_text() == "blocked"
    assert page.locator("h1").inner_text().split("//")[1].rstrip("/") in tip


def test_filters_apply_from_the_form(page: Any, served: Served, tmp_path: Path) -> None:
    page.goto(served.url + "/explorer/measurements")
    page.fill("input[name=probe_cc]", "pk")
    page.fill("input[name=probe_asn]", "AS9541")
    with page.expect_navigation():
        page.select_option("select[name=verdict]", "blocked")  # applies at once (JS)
    assert "verdict=blocked" in page.url and "probe_asn=AS9541" in page.url
    badges = page.locator("table.list tbody .badge").all_inner_texts()
    assert badges and set(badges) == {"blocked"}
    networks = page.locator("table.list tbody td:nth-child(3)").all_inner_texts()
    assert set(networks) == {"AS9541"}
    hint = page.locator("p.hint").first.inner_text()
    assert hint.startswith(f"{len(badges)} measurements")
    shot(page, "filtered", tmp_path)
    # A click anywhere on a row opens its measurement.
    page.locator("table.list tbody tr").first.locator("td").first.click()
    page.wait_for_url(re.compile(r"/explorer/measurements/[^/?]+$"))
    assert "AS9541" in page.locator(".verdict-line").inner_text()
