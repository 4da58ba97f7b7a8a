"""``core.js`` and ``base.css`` in headless Chromium against a live server.

A test page (served in place of ``/track`` by Playwright, with the same Content-Security-Policy
as the real pages) imports the real ``/static/js/core.js`` from the live server and exposes it
as ``window.core``; the tests then drive language, translations, the header by role, sign-in,
token refresh, errors and accessibility (axe-core) through it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher

from urbansec.api.app import create_app
from urbansec.config import Settings
from urbansec.services import identity
from urbansec.store.engine import make_engine
from urbansec.store.migrate import upgrade
from urbansec.web import VENDOR_DIR, content_security_policy

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]
PASSWORD = "core-js-test-password"
# waits use selectors: wait_for_function evaluates its predicate with eval() in the page,
# which the pages' CSP (script-src 'self', no 'unsafe-eval') forbids
READY = "body[data-state='ready']"
PEOPLE = {role: f"{role}@core.test.invalid" for role in ("admin", "analyst", "partner",
                                                         "viewer")}

# the test page: the components of base.css, and a module that starts the page with core.js
TEST_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title data-i18n="common.nav.track">urbansec</title>
<link rel="stylesheet" href="/static/css/base.css">
</head><body>
<a class="skip-link" href="#main" data-i18n="common.skip">Skip to content</a>
<header id="app-header"></header>
<main id="main" tabindex="-1">
  <h1 data-i18n="common.nav.track">Track</h1>
  <div class="layout-split">
    <div class="layout-main"><div class="map" id="map" role="region" aria-label="map"></div></div>
    <aside class="layout-side" aria-label="side panel">
      <section class="card"><h2 class="card-title">Card</h2>
        <p class="muted">Muted text</p><p class="hint">A hint</p>
        <div class="alert alert-error">Error</div><div class="alert alert-success">Done</div>
        <div class="alert alert-info">Info</div><div class="alert alert-warning">Careful</div>
      </section>
    </aside>
  </div>
  <form class="card">
    <div class="field"><label for="f-text">Text</label>
      <input id="f-text" data-i18n-attr="placeholder:common.actions.search;title:common.language">
    </div>
    <div class="field"><label for="f-select">Select</label>
      <select id="f-select"><option>One</option></select></div>
    <div class="field"><label for="f-area">Area</label><textarea id="f-area"></textarea>
      <span class="field-error">Required</span></div>
    <label class="check"><input type="checkbox"> Check</label>
    <div class="row">
      <button type="button">Primary</button>
      <button type="button" class="button-secondary">Secondary</button>
      <button type="button" class="button-danger">Danger</button>
      <button type="button" disabled>Disabled</button>
      <a class="button" href="/">Link</a>
    </div>
  </form>
  <div class="table-wrap"><table><caption>Table</caption>
    <thead><tr><th scope="col">Status</th><th scope="col" class="number">Count</th></tr></thead>
    <tbody id="badges"></tbody></table></div>
</main>
<script type="module" src="/__test__/page.js"></script></body></html>"""

TEST_SCRIPT = """
import * as core from "/static/js/core.js";
window.core = core;
const statuses = ["pending", "approved", "rejected", "merged", "closed", "erased", "low",
                  "medium", "high", "critical", "open", "mitigating", "monitoring"];
const body = document.getElementById("badges");
for (const s of statuses) {
  body.append(core.h("tr", {}, core.h("td", {}, core.h("span", { class: `badge badge-${s}` }, s)),
                     core.h("td", { class: "number" }, core.formatNumber(1234.5))));
}
const require = new URLSearchParams(window.location.search).get("require");
window.initResult = await core.initPage({ titleKey: "common.nav.track",
                                          requireRole: require ? require.split(",") : null });
document.body.dataset.state = "ready";
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import uvicorn

    if not (VENDOR_DIR / "axe-core" / "axe.min.js").is_file():
        pytest.fail("run `bash scripts/build-web.sh` (make test does) to install axe-core")
    path = tmp_path_factory.mktemp("core-js") / "web.db"
    settings = Settings(database_url=f"sqlite:///{path}")
    engine = make_engine(settings.database_url)
    upgrade(engine)
    with pytest.MonkeyPatch.context() as patch:
        # argon2id at minimal cost: the production parameters take ~0.4 s per hash
        patch.setattr(identity, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024,
                                                          parallelism=1))
        identity._dummy_hash.cache_clear()
        org = identity.create_organisation(engine, "core-test", "Core test city", "city")
        for role, email in PEOPLE.items():
            identity.create_user(engine, org, email, f"Test {role}", PASSWORD, role)
        port = _free_port()
        config = uvicorn.Config(create_app(settings, engine), host="127.0.0.1", port=port,
                                log_level="warning")
        uv = uvicorn.Server(config)
        thread = threading.Thread(target=uv.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not uv.started:
            assert time.monotonic() < deadline, "the test server did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
        uv.should_exit = True
        thread.join(timeout=10)
    identity._dummy_hash.cache_clear()
    engine.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail("Chromium is missing: `make test` installs Debian's chromium")
    with playwright_api.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield instance
        instance.close()


class Page:
    """A browser tab on the test page, collecting console errors and warnings."""

    def __init__(self, browser: Any, server: str, **context_options: Any) -> None:
        self.server = server
        self.context = browser.new_context(**context_options)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        headers = {"content-type": "text/html; charset=utf-8",
                   "content-security-policy": content_security_policy(None)}
        self.page.route(f"{server}/track*", lambda route: route.fulfill(
            status=200, headers=headers, body=TEST_PAGE))
        self.page.route(f"{server}/__test__/page.js", lambda route: route.fulfill(
            status=200, content_type="text/javascript", body=TEST_SCRIPT))

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(message.text)
        elif message.type == "warning":
            self.warnings.append(message.text)

    def open(self, query: str = "") -> None:
        self.page.goto(f"{self.server}/track{query}")
        self.page.wait_for_selector(READY)

    def js(self, expression: str, arg: Any = None) -> Any:
        return self.page.evaluate(expression, arg)

    def nav(self) -> list[str]:
        return self.page.locator("#app-header nav a").evaluate_all(
            "links => links.map(a => a.getAttribute('href'))")

    def sign_in(self, role: str) -> None:
        self.js("([email, password]) => window.core.session.login(email, password)",
                [PEOPLE[role], PASSWORD])
        self.open()


@pytest.fixture
def tab(browser: Any, server: str) -> Iterator[Page]:
    page = Page(browser, server, locale="en-US")
    yield page
    page.context.close()


def test_anonymous_header_nav_and_page_start(tab: Page) -> None:
    tab.open()
    assert tab.js("window.initResult") == {"user": None, "lang": "en"}
    assert tab.nav() == ["/", "/report", "/track"]
    current = tab.page.locator("#app-header nav a[aria-current='page']")
    assert current.count() == 1 and current.get_attribute("href") == "/track"
    assert tab.page.locator("nav[aria-label='Main'] ul li").count() == 3
    assert tab.page.locator("#sign-in").get_attribute("href") == "/login?next=%2Ftrack"
    label = tab.page.locator("label[for='lang-select']")
    assert label.text_content() == "Language"
    assert tab.page.title() == "Track a report · urbansec"
    assert tab.page.locator("h1").text_content() == "Track a report"
    assert tab.page.locator("#f-text").get_attribute("placeholder") == "Search"
    assert tab.page.locator("#f-text").get_attribute("title") == "Language"
    assert tab.errors == []


def test_language_from_url_storage_and_switch(tab: Page) -> None:
    tab.open("?lang=fi")
    assert tab.js("document.documentElement.lang") == "fi"
    assert tab.js("localStorage.getItem('urbansec.lang')") == "fi"
    assert tab.page.locator("#app-header nav a").first.text_content() == "Kartta"
    assert tab.js("window.core.formatNumber(1234.5)") == "1\u00a0234,5"
    # the stored choice holds without ?lang=
    tab.open()
    assert tab.js("window.core.getLang()") == "fi"
    # switching keeps the rest of the URL (here the fragment) and changes an explicit ?lang=
    tab.page.goto(f"{tab.server}/track?lang=fi&x=1#TOKEN")
    tab.page.wait_for_selector(READY)
    with tab.page.expect_navigation():
        tab.page.select_option("#lang-select", "el")
    tab.page.wait_for_selector(READY)
    assert tab.page.url == f"{tab.server}/track?lang=el&x=1#TOKEN"
    assert tab.js("document.documentElement.lang") == "el"
    assert tab.page.locator("#app-header nav a").first.text_content() == "Χάρτης"
    assert tab.page.locator(".skip-link").text_content() == "Μετάβαση στο περιεχόμενο"
    assert tab.errors == []


def test_browser_language_is_used_when_nothing_is_chosen(browser: Any, server: str) -> None:
    tab = Page(browser, server, locale="it-IT")
    try:
        tab.open()
        assert tab.js("document.documentElement.lang") == "it"
        assert tab.js("window.core.formatNumber(1234.5)") == "1234,5"
        assert tab.js("window.core.formatDate('2017-06-01')") == "1 giu 2017"
        assert tab.js("window.core.formatDate('2017-06-01T03:30:00Z', "
                      "{time: true, timeZone: 'America/Chicago'})") == "31 mag 2017, 22:30"
    finally:
        tab.context.close()


def test_translations_fall_back_and_fill_placeholders(tab: Page) -> None:
    tab.open("?lang=fi")
    assert tab.js("window.core.t('common.errors.generic', {message: 'x'})") == (
        "Jokin meni vikaan: x")
    # an unknown key is the key itself, with a warning, never a console error
    assert tab.js("window.core.t('common.no.such.key')") == "common.no.such.key"
    assert any("common.no.such.key" in w for w in tab.warnings)
    assert tab.errors == []


def test_a_key_missing_in_a_language_falls_back_to_english(tab: Page) -> None:
    # a Finnish catalogue that lacks everything but the skip link
    tab.page.route(f"{tab.server}/static/i18n/fi/common.json", lambda route: route.fulfill(
        status=200, content_type="application/json", body='{"skip": "Siirry sisältöön"}'))
    tab.open("?lang=fi")
    assert tab.js("window.core.t('common.skip')") == "Siirry sisältöön"
    assert tab.js("window.core.t('common.nav.map')") == "Map"
    assert tab.page.locator("#app-header nav a").first.text_content() == "Map"
    assert tab.errors == []


def test_sign_in_shows_the_pages_of_the_role(tab: Page) -> None:
    tab.open()
    tab.sign_in("analyst")
    assert tab.nav() == ["/", "/report", "/track", "/moderation", "/risks", "/event",
                         "/nighttime", "/imports"]
    assert "Test analyst" in tab.page.locator(".header-user").text_content()
    tab.sign_in("admin")
    assert tab.nav()[-1] == "/audit"
    tab.sign_in("partner")
    assert tab.nav() == ["/", "/report", "/track", "/risks", "/event", "/nighttime"]
    tab.sign_in("viewer")
    assert tab.nav() == ["/", "/report", "/track", "/risks"]
    assert tab.js("window.core.session.can(['viewer'])") is True
    assert tab.js("window.core.session.has('reports:moderate')") is False
    # signing out forgets the tokens
    with tab.page.expect_navigation():
        tab.page.click("#sign-out")
    tab.page.goto(f"{tab.server}/track")
    tab.page.wait_for_selector(READY)
    assert tab.js("sessionStorage.getItem('urbansec.tokens')") is None
    assert tab.nav() == ["/", "/report", "/track"]


def test_api_refreshes_an_expired_access_token_once(tab: Page) -> None:
    tab.open()
    tab.sign_in("analyst")
    # the access token no longer works, the refresh token still does
    old_refresh = tab.js("""() => {
        const tokens = JSON.parse(sessionStorage.getItem('urbansec.tokens'));
        tokens.access_token = 'expired-or-forged';
        sessionStorage.setItem('urbansec.tokens', JSON.stringify(tokens));
        return tokens.refresh_token;
    }""")
    tab.open()  # core.js reads the stored tokens at start
    assert tab.js("window.core.session.user && window.core.session.user.role") == "analyst"
    tokens = tab.js("JSON.parse(sessionStorage.getItem('urbansec.tokens'))")
    assert tokens["access_token"] != "expired-or-forged"
    assert tokens["refresh_token"] != old_refresh  # refresh tokens rotate
    # two requests failing together share one refresh (a second would reuse the spent token)
    tab.js("""() => {
        const tokens = JSON.parse(sessionStorage.getItem('urbansec.tokens'));
        tokens.access_token = 'expired-again';
        sessionStorage.setItem('urbansec.tokens', JSON.stringify(tokens));
    }""")
    tab.open()
    both = tab.js("Promise.all([window.core.api('/me'), window.core.api('/me')])"
                  ".then(r => r.map(me => me.role))")
    assert both == ["analyst", "analyst"]
    # a refresh token that no longer works signs the user out
    tab.js("""() => sessionStorage.setItem('urbansec.tokens',
        JSON.stringify({access_token: 'bad', refresh_token: 'bad'}))""")
    tab.open()
    assert tab.js("window.core.session.user") is None
    assert tab.js("sessionStorage.getItem('urbansec.tokens')") is None


def test_api_errors_and_queries(tab: Page) -> None:
    tab.open()
    error = tab.js("""() => window.core.api('/no-such-route')
        .then(() => null, e => ({name: e.name, status: e.status, code: e.code,
                                 isApiError: e instanceof window.core.ApiError}))""")
    assert error == {"name": "ApiError", "status": 404, "code": "not_found",
                     "isApiError": True}
    invalid = tab.js("""() => window.core.api('/auth/token', {method: 'POST', body: {}})
        .then(() => null, e => ({status: e.status, code: e.code,
                                 problems: e.details.problems.length}))""")
    assert invalid["status"] == 422 and invalid["code"] == "invalid_request"
    assert invalid["problems"] >= 1
    wrong = tab.js("""() => window.core.session.login('nobody@core.test.invalid', 'x')
        .then(() => null, e => e.status)""")
    assert wrong == 401
    assert tab.js("window.core.api('/health')")["status"] == "ok"
    # empty query values are dropped, arrays joined with commas; /open311 is not under /api/v1
    requests: list[str] = []
    tab.page.on("request", lambda r: requests.append(r.url))
    tab.js("""() => window.core.api('/health', {query: {a: '', b: null, c: undefined,
                                                        d: 0, e: ['01', '02']}})""")
    tab.js("window.core.api('/open311/v2/services.json')")
    assert f"{tab.server}/api/v1/health?d=0&e=01%2C02" in requests
    assert f"{tab.server}/open311/v2/services.json" in requests


def test_require_role_sends_to_login_with_next(tab: Page) -> None:
    tab.page.goto(f"{tab.server}/track?require=admin#SECRET")
    tab.page.wait_for_url("**/login?**")
    # the fragment (a tracking token) is never put into the query
    assert tab.page.url == f"{tab.server}/login?next=%2Ftrack%3Frequire%3Dadmin"
    tab.open()
    tab.sign_in("analyst")
    tab.page.goto(f"{tab.server}/track?require=admin")
    tab.page.wait_for_url("**/login?**")
    assert tab.page.url.endswith("&reason=forbidden")
    tab.page.goto(f"{tab.server}/track?require=analyst,admin")
    tab.page.wait_for_selector(READY)
    assert tab.js("window.initResult.user.role") == "analyst"


def test_announce_uses_a_polite_live_region(tab: Page) -> None:
    tab.open()
    tab.js("window.core.announce('map updated: 1,234 incidents')")
    region = tab.page.locator("#live-region")
    region.wait_for(state="attached")
    region.filter(has_text="map updated: 1,234 incidents").wait_for()
    assert region.get_attribute("aria-live") == "polite"


def test_keyboard_skip_link_and_focus_outline(tab: Page) -> None:
    tab.open()
    tab.page.keyboard.press("Tab")
    assert tab.js("document.activeElement.className") == "skip-link"
    outline = tab.js("getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"
    box = tab.page.locator(".skip-link").bounding_box()
    assert box is not None and box["y"] >= 0  # visible once focused
    tab.page.keyboard.press("Enter")
    assert tab.js("document.activeElement.id") == "main"
    # every header control is reachable with the keyboard, in order
    tab.page.locator(".skip-link").focus()
    reached = []
    for _ in range(6):
        tab.page.keyboard.press("Tab")
        reached.append(tab.js("document.activeElement.getAttribute('href') || "
                              "document.activeElement.id"))
    assert reached == ["/", "/", "/report", "/track", "lang-select", "/login?next=%2Ftrack"]


@pytest.mark.parametrize("width", [360, 1280])
def test_axe_finds_no_serious_violations_and_header_fits(browser: Any, server: str,
                                                         width: int) -> None:
    tab = Page(browser, server, locale="en-US", viewport={"width": width, "height": 800})
    try:
        tab.open()
        tab.sign_in("admin")  # the longest header
        overflow = tab.js("document.documentElement.scrollWidth - "
                          "document.documentElement.clientWidth")
        assert overflow <= 0
        tab.page.add_script_tag(url="/static/vendor/axe-core/axe.min.js")
        result = tab.js("axe.run(document, {resultTypes: ['violations']})")
        serious = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]])
                   for v in result["violations"] if v["impact"] in ("serious", "critical")]
        assert serious == []
        assert tab.errors == []
    finally:
        tab.context.close()
