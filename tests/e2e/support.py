"""What the end-to-end tests share: the live server, the page guards, axe, sign-in,
screenshots. The fixtures that use these are in ``conftest.py``."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.resources import as_file
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
AXE_URL = "/static/vendor/axe-core/axe.min.js"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"viewport": {"width": 360, "height": 740}, "is_mobile": True, "has_touch": True,
         "device_scale_factor": 2}
# a point inside police district 18 (Near North, around Chicago Ave and State St)
CHICAGO_POINT = {"latitude": 41.8967, "longitude": -87.6282}
SERVER_START_SECONDS = 60
READY_TIMEOUT_MS = 60_000  # generous: the machine may be busy with the analyses of other pages



def browser_required() -> bool:
    return bool(os.environ.get("URBANSEC_REQUIRE_BROWSER"))


# --------------------------------------------------------------------------------------------
# the server
# --------------------------------------------------------------------------------------------


@dataclass
class LiveServer:
    base_url: str
    database_url: str
    log_path: Path
    settings: Any  # urbansec.config.Settings the server runs with (k, public cell, ...)

    def url(self, path: str) -> str:
        return self.base_url + path

    def request(self, method: str, path: str, body: Any = None,
                token: str | None = None) -> tuple[int, Any]:
        """One JSON request from the test process (not the browser): status and body."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url(path), data=data, method=method)
        if data is not None:
            request.add_header("content-type", "application/json")
        if token:
            request.add_header("authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            return exc.code, json.loads(raw) if raw else None

    def token(self, role: str) -> str:
        email, password = demo_login(role)
        status, body = self.request("POST", "/api/v1/auth/token",
                                    {"email": email, "password": password})
        assert status == 200, body
        return str(body["access_token"])

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"


def demo_login(role: str) -> tuple[str, str]:
    """E-mail and password of the demo account with ``role`` (as ``urbansec demo`` creates)."""
    from urbansec.services.demo import DEMO_ACCOUNTS

    for account in DEMO_ACCOUNTS:
        if account.role == role:
            return account.email, account.password
    raise KeyError(f"no demo account with role {role!r}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def load_demo_database(database_url: str) -> None:
    """The bundled sample and boundaries as ``services/demo.py`` imports them, and the demo
    accounts of the dashboard contract (``urbansec demo`` creates the same)."""
    from urbansec.services import imports as import_service
    from urbansec.services.demo import SAMPLE_INCIDENTS, ensure_demo_accounts, sample_path
    from urbansec.store.engine import make_engine
    from urbansec.store.migrate import upgrade

    engine = make_engine(database_url)
    try:
        upgrade(engine)
        with as_file(sample_path(SAMPLE_INCIDENTS)) as incidents, \
                as_file(sample_path("police-districts.kmz")) as districts, \
                as_file(sample_path("police-beats.kmz")) as beats:
            import_service.import_areas(engine, districts, "district")
            import_service.import_areas(engine, beats, "beat")
            report = import_service.import_incidents(engine, [incidents], "chicago")
        assert report.status == "succeeded", report.as_dict()
        ensure_demo_accounts(engine)
    finally:
        engine.dispose()


def _wait_for_health(base_url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"urbansec serve exited with {process.returncode}:\n"
                               f"{log_path.read_text(errors='replace')[-4000:]}")
        try:
            with urllib.request.urlopen(f"{base_url}/api/v1/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"urbansec serve did not answer /api/v1/health within "
                       f"{SERVER_START_SECONDS} s:\n{log_path.read_text(errors='replace')[-4000:]}")


def start_server(database_url: str, workdir: Path, **overrides: str
                 ) -> tuple[subprocess.Popen[bytes], LiveServer]:
    """``urbansec serve`` in a subprocess on a free port, once ``/api/v1/health`` answers.
    ``overrides`` are settings (``report_rate_limit="1000"``), handed on as ``URBANSEC_*``."""
    from urbansec.config import Settings

    port = free_port()
    env = {**os.environ, "URBANSEC_DATABASE_URL": database_url, "URBANSEC_PORT": str(port),
           **{f"URBANSEC_{name.upper()}": value for name, value in overrides.items()}}
    # what the server sees: the same environment, read the same way
    settings = Settings(database_url=database_url, **overrides)  # type: ignore[arg-type]
    urbansec = shutil.which("urbansec", path=str(Path(sys.executable).parent)) or "urbansec"
    log_path = workdir / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [urbansec, "serve", "--host", "127.0.0.1", "--port", str(port),
             "--log-level", "warning"],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_health(base_url, process, log_path)
    except BaseException:
        stop_server(process)
        raise
    return process, LiveServer(base_url, database_url, log_path, settings)


def stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


# --------------------------------------------------------------------------------------------
# the browser
# --------------------------------------------------------------------------------------------


@dataclass
class PageProblems:
    """What the guards saw on one page: requests leaving 127.0.0.1, console errors, uncaught
    exceptions. Any of them fails the test."""

    foreign_requests: list[str] = field(default_factory=list)
    in_flight: set[Any] = field(default_factory=set)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def describe(self) -> str:
        parts = []
        if self.foreign_requests:
            parts.append("requests to other hosts (aborted): " + ", ".join(self.foreign_requests))
        if self.console_errors:
            parts.append("console errors: " + " | ".join(self.console_errors))
        if self.page_errors:
            parts.append("uncaught page errors: " + " | ".join(self.page_errors))
        return "; ".join(parts)


def guard_context(context: Any, problems: PageProblems) -> None:
    def route(route: Any) -> None:
        url = route.request.url
        scheme, host = urlsplit(url).scheme, urlsplit(url).hostname
        if scheme in ("data", "blob") or host == "127.0.0.1":
            route.continue_()
            return
        problems.foreign_requests.append(url)
        route.abort()

    context.route("**/*", route)
    # (Playwright needs functions it can tag, not bound built-in methods)
    context.on("request", lambda request: problems.in_flight.add(request))
    context.on("requestfinished", lambda request: problems.in_flight.discard(request))
    context.on("requestfailed", lambda request: problems.in_flight.discard(request))

    def on_page(page: Any) -> None:
        def on_console(message: Any) -> None:
            if message.type == "error":
                location = message.location or {}
                problems.console_errors.append(
                    f"{message.text} (at {location.get('url', '?')}:"
                    f"{location.get('lineNumber', '?')})")

        page.on("console", on_console)
        page.on("pageerror", lambda error: problems.page_errors.append(str(error)))

    context.on("page", on_page)


def settle(page: Any, problems: PageProblems, timeout_ms: int) -> None:
    """Wait (at most ``timeout_ms``) until the context has no request in flight: what a page
    still loads after a test's last step (slower panels, layers) may fail too."""
    deadline = time.monotonic() + timeout_ms / 1000
    while problems.in_flight and time.monotonic() < deadline:
        page.wait_for_timeout(100)


OpenPage = Callable[..., Any]


# --------------------------------------------------------------------------------------------
# helpers the tests share
# --------------------------------------------------------------------------------------------

SERIOUS = ("serious", "critical")


def check_axe(page: Any, what: str = "") -> None:
    """axe-core on the current page: no violation of impact serious or critical."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.add_script_tag(url=AXE_URL)
    results = page.evaluate("async () => await window.axe.run(document, "
                            "{resultTypes: ['violations']})")
    bad = [v for v in results["violations"] if v.get("impact") in SERIOUS]
    lines = []
    for violation in bad:
        lines.append(f"- {violation['id']} ({violation['impact']}): {violation['help']} "
                     f"[{violation.get('helpUrl', '')}]")
        for node in violation["nodes"][:6]:
            summary = " ".join((node.get("failureSummary") or "").split())
            lines.append(f"    {', '.join(map(str, node['target']))}: {summary[:300]}")
        if len(violation["nodes"]) > 6:
            lines.append(f"    ... and {len(violation['nodes']) - 6} more")
    report = "\n".join(lines)
    assert not bad, f"axe violations on {what or page.url}:\n{report}"


def wait_ready(page: Any, timeout: int = READY_TIMEOUT_MS) -> None:
    """Until the map page has drawn the map and charts for its current filter."""
    page.wait_for_function("() => document.body && document.body.dataset.state === 'ready'",
                           timeout=timeout)


def sign_in(page: Any, role: str, next_path: str = "/") -> None:
    """Through the login form, as a person would."""
    email, password = demo_login(role)

    page.goto(f"/login?next={quote(next_path, safe='')}")
    page.wait_for_selector("body[data-state=ready]")  # login.js handles the submit
    page.fill("#login-email", email)
    page.fill("#login-password", password)
    page.click("#login-submit")
    page.wait_for_url(lambda url: urlsplit(url).path == urlsplit(next_path).path)


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def session_token(page: Any) -> str:
    """The access token core.js keeps for the tab (sessionStorage ``urbansec.tokens``)."""
    raw = page.evaluate("() => sessionStorage.getItem('urbansec.tokens')")
    assert raw, "no tokens in sessionStorage after sign-in"
    return str(json.loads(raw)["access_token"])


# Leaflet's own hook (Map.addInitHook) records every map the page creates, so a test can ask
# the map what it drew: hotspot cells go to a canvas, where the DOM cannot count them. Runs
# before the page's scripts; the page's code is not changed.
MAP_PROBE = """
(() => {
  let leaflet;
  Object.defineProperty(window, "L", {
    configurable: true,
    get() { return leaflet; },
    set(value) {
      leaflet = value;
      if (value && value.Map && !value.__e2eProbe) {
        value.__e2eProbe = true;
        value.Map.addInitHook(function () { (window.__e2eMaps ||= []).push(this); });
      }
    },
  });
})();
"""


def drawn_features(page: Any, container: str = "map") -> list[dict[str, Any]]:
    """The GeoJSON features drawn on the Leaflet map in ``#container`` (boundary outlines
    left out), and the hotspot cells of its cell layer: ``{"id", "properties"}`` each. Needs
    ``MAP_PROBE`` in the context."""
    features = page.evaluate("""(id) => {
        const map = (window.__e2eMaps || []).find(m => m.getContainer().id === id);
        if (!map) return null;
        const out = [];
        map.eachLayer(layer => {
          // the hotspot cells are one canvas layer (static/js/grid.js) holding all of them
          if (Array.isArray(layer.cells)) {
            for (const cell of layer.cells) out.push({id: String(cell.id),
                                                      properties: cell.properties || {}});
            return;
          }
          if (!layer.feature || (layer.options && layer.options.pane === 'boundaries')) return;
          out.push({id: layer.feature.id === undefined ? null : String(layer.feature.id),
                    properties: layer.feature.properties || {}});
        });
        return out;
    }""", container)
    assert features is not None, f"no Leaflet map on #{container} (is MAP_PROBE installed?)"
    return list(features)


def drawn_cell_ids(page: Any) -> list[str]:
    """The ids of the cells drawn on the map page's map, sorted."""
    return sorted(str(f["id"]) for f in drawn_features(page) if f["id"] is not None)


def view_total(page: Any) -> int:
    """The number of incidents ``#view-total`` shows (its text, in any language's digit
    grouping, and the exact figure the page keeps beside it must agree)."""
    text = page.inner_text("#view-total")
    match = re.search(r"\d[\d.,\s\u00a0\u202f\u2009']*", text)
    assert match, f"no number in #view-total: {text!r}"
    shown = int(re.sub(r"\D", "", match.group(0)))
    exact = page.get_attribute("#view-total", "data-value")
    if exact:
        assert int(exact) == shown, (exact, text)
    return shown


class ViewWatcher:
    """Every ``/api/v1/dashboard/view`` answer the page receives, in order."""

    def __init__(self, page: Any) -> None:
        self.urls: list[str] = []
        page.on("response", self._seen)

    def _seen(self, response: Any) -> None:
        if urlsplit(response.url).path == "/api/v1/dashboard/view" and response.ok:
            self.urls.append(response.url)

    def last(self) -> str:
        assert self.urls, "the page never asked /api/v1/dashboard/view"
        return self.urls[-1]


@contextmanager
def wait_view(page: Any) -> Iterator[Any]:
    """Around an action that changes the map page's filter: waits for the page's next
    ``/dashboard/view`` answer and then for ``body[data-state=ready]``."""
    with page.expect_response(lambda r: urlsplit(r.url).path == "/api/v1/dashboard/view",
                              timeout=READY_TIMEOUT_MS) as response:
        yield response
    wait_ready(page)
