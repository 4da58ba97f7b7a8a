"""End-to-end fixtures: a real ``urbansec serve`` on the bundled sample, and headless Chromium.

- ``live_server``: a temporary SQLite database with the bundled Chicago sample (2017, districts
  1 and 18, with district and beat boundaries) imported as ``urbansec demo`` does, plus the demo
  accounts of the dashboard contract, served by uvicorn in a subprocess on a free port. One per
  session; killed at the end.
- ``browser``: Chromium through Playwright (``/usr/bin/chromium``), headless, one per session.
- ``open_page(path, **context_options)``: a fresh browser context per call, guarded: any
  request to a host other than 127.0.0.1 is aborted and recorded, console errors and uncaught
  page errors are recorded, and the test fails on any of them (checked after the test body).
- ``check_axe(page)``: runs axe-core (served by the app itself) and fails on any violation
  with impact ``serious`` or ``critical``.

Without ``/usr/bin/chromium`` the whole folder is skipped, unless ``URBANSEC_REQUIRE_BROWSER``
is set (CI sets it), in which case a missing browser is an error.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from tests.sensors.conftest import broker_url  # noqa: F401 - the sensor tests' broker

from .support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    DESKTOP,
    READY_TIMEOUT_MS,
    LiveServer,
    OpenPage,
    PageProblems,
    browser_required,
    guard_context,
    load_demo_database,
    settle,
    start_server,
    stop_server,
)


@pytest.fixture(autouse=True, scope="session")
def _needs_browser() -> None:
    """Skip the e2e folder on a machine without Chromium, unless CI demands the browser."""
    if CHROMIUM.exists():
        return
    if browser_required():
        raise RuntimeError(f"URBANSEC_REQUIRE_BROWSER is set but {CHROMIUM} is missing "
                           "(apt-get install chromium)")
    pytest.skip(f"{CHROMIUM} not found: the end-to-end tests need headless Chromium")


# --------------------------------------------------------------------------------------------
# the server
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    workdir = tmp_path_factory.mktemp("e2e-server")
    database_url = f"sqlite:///{workdir / 'urbansec.db'}"
    load_demo_database(database_url)
    # the tests file a handful of reports from one address: the anonymous rate limit is for
    # the internet, not for this
    process, server = start_server(database_url, workdir, report_rate_limit="1000")
    yield server
    stop_server(process)


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The same server on PostgreSQL+PostGIS (a schema of its own on the test server of
    ``make test``); skipped without ``URBANSEC_TEST_POSTGRES_URL`` unless
    ``URBANSEC_REQUIRE_POSTGRES`` is set."""
    base = os.environ.get("URBANSEC_TEST_POSTGRES_URL")
    if not base:
        if os.environ.get("URBANSEC_REQUIRE_POSTGRES"):
            raise RuntimeError("URBANSEC_REQUIRE_POSTGRES is set but URBANSEC_TEST_POSTGRES_URL "
                               "is not: start the server with scripts/test-services.sh")
        pytest.skip("no PostgreSQL server (set URBANSEC_TEST_POSTGRES_URL; make test does)")
    from urbansec.store.engine import scratch_schema

    with scratch_schema(base, "e2e") as database_url:
        process = None
        try:
            load_demo_database(database_url)
            process, server = start_server(database_url,
                                           tmp_path_factory.mktemp("e2e-postgres"),
                                           report_rate_limit="1000")
            yield server
        finally:
            if process is not None:
                stop_server(process)


@pytest.fixture(params=["sqlite", "postgres"])
def any_server(request: pytest.FixtureRequest) -> LiveServer:
    """The live server on each database kind (for the tests worth running on both)."""
    name = "live_server" if request.param == "sqlite" else "postgres_server"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


# --------------------------------------------------------------------------------------------
# the browser
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if browser_required():
            raise
        pytest.skip("Playwright for Python is not installed (pip install playwright)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                              args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


SETTLE_MS = 3_000


@contextmanager
def guarded_pages(browser: Any, server: LiveServer, *, settle_ms: int = SETTLE_MS,
                  **defaults: Any) -> Iterator[OpenPage]:
    """``open_(path=None, **context_options)``: a new guarded context and page on ``server``
    (desktop 1280x800, en-US, Chicago time unless ``defaults`` or the options say otherwise),
    navigated to ``path`` when given. On leaving, every page is given ``settle_ms`` to show
    a late problem, and any problem of any page fails the test, with the server's log."""
    opened: list[tuple[Any, PageProblems]] = []

    def open_(path: str | None = None, **options: Any) -> Any:
        options = {"viewport": DESKTOP, "base_url": server.base_url, "locale": "en-US",
                   "timezone_id": "America/Chicago", **defaults, **options}
        context = browser.new_context(**options)
        context.set_default_timeout(READY_TIMEOUT_MS)
        problems = PageProblems()
        guard_context(context, problems)
        opened.append((context, problems))
        page = context.new_page()
        if path is not None:
            page.goto(path)
        return page

    yield open_
    found = []
    for context, problems in opened:
        # what a page still loads after the test's last step (slower panels, layers) can
        # fail too: give it a moment, without waiting for long analyses to finish
        if context.pages:
            settle(context.pages[0], problems, settle_ms)
        context.close()
        if problems.describe():
            found.append(problems.describe())
    assert not found, "page problems:\n" + "\n".join(found) + "\n" + server.log_tail()


@pytest.fixture
def open_page(browser: Any, live_server: LiveServer) -> Iterator[OpenPage]:
    """``open_page(path=None, **context_options)``: see ``guarded_pages``."""
    with guarded_pages(browser, live_server) as open_:
        yield open_
