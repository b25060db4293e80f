"""Fixtures for the web panel's browser tests: Debian's chromium driven by Playwright (never a downloaded
browser), a real coordinator on loopback serving the panel, and real workers running real Docker jobs."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from tests.e2e.cluster import Cluster, cluster
from tests.support import PASSWORD

CHROMIUM = "/usr/bin/chromium"
LAPTOP = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}
POLL_MS = 400
"""How often the panel polls in tests (``?poll=``): fast enough to see a short job pass through states."""
WAIT_MS = 60_000
"""The longest a test waits for something the panel should show (a real Docker job included)."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "fuzz: schemathesis fuzzing of the live HTTP API (bounded in time; runs in CI)"
    )
    config.addinivalue_line("markers", "browser: drives Debian's chromium through Playwright")


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """Per module: Playwright's sync API keeps an event loop running in the main thread while it is
    started, and any later test there that calls ``asyncio.run`` would fail."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    b = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
    yield b
    b.close()


@pytest.fixture(scope="module")
def panel_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A coordinator (SQLite) serving the panel, shared by a module's tests; workers are added by tests."""
    tmp = tmp_path_factory.mktemp("panel")
    with cluster(f"sqlite:///{tmp / 'c.db'}", tmp) as c:
        yield c
    shutil.rmtree(tmp, ignore_errors=True)


def new_page(browser: Browser, viewport: dict[str, int] = LAPTOP) -> tuple[BrowserContext, Page]:
    context = browser.new_context(viewport=viewport, accept_downloads=True)  # type: ignore[arg-type]
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.js_errors = errors  # type: ignore[attr-defined]
    return context, page


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser tab at laptop size (1366×768); fails the test if the panel threw a JS error."""
    context, p = new_page(browser)
    yield p
    errors = p.js_errors  # type: ignore[attr-defined]
    context.close()
    assert errors == [], f"the panel threw JavaScript errors: {errors}"


def open_panel(page: Page, base: str, route: str = "") -> None:
    page.goto(f"{base}/?poll={POLL_MS}" + (f"#{route}" if route else ""))


def sign_in(page: Page, base: str, username: str, password: str = PASSWORD) -> None:
    """Sign in through the form, as a person would, and wait for the overview."""
    open_panel(page, base, "/signin")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Overview", level=1).wait_for()


def go(page: Page, route: str) -> None:
    """Navigate inside the signed-in panel (keeps the session, like clicking a link)."""
    page.evaluate("route => { location.hash = route; }", f"#{route}")
