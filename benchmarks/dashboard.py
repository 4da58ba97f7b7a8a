"""Dashboard benchmark: the analyst's map page in headless Chromium on three years of Chicago.

What is measured, on this machine, once per database (SQLite, and PostgreSQL when a URL is
given):

1. Setup (not timed against a goal): ``../shared/data/chicago/crimes_{2015,2016,2017}.csv.gz``
   (~800k rows) imported in one ``import_incidents`` call, police districts and beats from
   ``../shared/data/chicago/boundaries/``, an analyst account; then ``urbansec serve`` on a free
   local port, in a subprocess, as in production (one worker).
2. In Chromium (Playwright, ``/usr/bin/chromium``), signed in as the analyst through the login
   page:
   - **first render**: from ``page.goto("/")`` to ``body[data-state=ready]`` (the map and the
     charts drawn for the default filter: everything, all three years). Measured on the first
     visit after the server started (``cold``: the server builds its in-memory event cube
     then, unless it finished warming up already) and on three more visits (``warm``, fresh
     browser context each time so nothing comes from the browser cache; the median is
     reported);
   - **restart**: the server stopped and started again on the same data: its first visit
     (``cold``) now finds the event cube saved by the first server (``cube_cache_dir``, a
     directory of the run) and loads it instead of reading every incident; three warm visits
     follow. This is the cold start a deployment sees after every restart or upgrade (only
     the first start after an import builds the cube);
   - **redraw**: five filter changes one after the other (burglary; at night; police
     district 1; the Gi* hot-spot layer; the last 3 months), each timed inside the page from
     the ``change`` event to ``data-state`` going back to ``ready`` (a MutationObserver
     records the moment; no round trip to Python in the figure). Before each change the
     previous one's slower panels are left to finish (at most 2 minutes; the wait is in the
     JSON as ``settled_seconds_before``), as a person looks at the map before changing it;
   - **bytes**: the encoded (on the wire) sizes of every response, headers included, for the
     first render and for each redraw (``Request.sizes()``);
   - **features**: the number of cells in every ``/dashboard/view`` answer; the largest is
     reported.
   The slower panels (significant change, near-repeat, backtest) load after ``ready``; they
   are part of real use and are not switched off.
3. The table: each figure against its goal (first render <= 1.5 s, redraw <= 0.5 s), and
   ``benchmarks/results/dashboard.json`` with every raw figure.

PostgreSQL comes from ``--postgres URL`` or ``URBANSEC_TEST_POSTGRES_URL`` (``make bench``
starts a server and sets it); the run gets its own schema, dropped afterwards. Without a URL
the PostgreSQL rows are skipped with a note. ``--years 2017`` runs on one year (quicker).

Run: ``python benchmarks/dashboard.py`` (a few minutes: the 3-year import takes most of it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from _events import CHICAGO, chicago_path, write_results

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "dashboard.json"
BOUNDARIES = CHICAGO / "boundaries"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]
VIEWPORT = {"width": 1280, "height": 800}

ANALYST = ("analyst@bench.urbansec.invalid", "bench-analyst-password", "Bench analyst")
FIRST_RENDER_GOAL_S = 1.5
REDRAW_GOAL_S = 0.5
WARM_VISITS = 3
SERVER_START_S = 120
READY_TIMEOUT_MS = 180_000
# at most this long for the previous change's panels (change, near-repeat, backtest) to finish
SETTLE_S = 120.0

# the five filter changes, in order (each adds to the previous): what a person does, as the
# page's own controls receive it (a change event on the element)
CHANGES: list[tuple[str, str]] = [
    ("category: burglary (0501)", """() => {
        const box = document.querySelector("#filter-category input[value='0501']");
        box.checked = true; box.dispatchEvent(new Event('change', {bubbles: true})); }"""),
    ("time of day: night", """() => {
        const s = document.querySelector('#filter-time'); s.value = 'night';
        s.dispatchEvent(new Event('change', {bubbles: true})); }"""),
    ("area: police district 1", """() => {
        const s = document.querySelector('#filter-area');
        const option = [...s.options].find(o => /^district:0*1$/.test(o.value));
        s.value = option.value; s.dispatchEvent(new Event('change', {bubbles: true})); }"""),
    ("layer: Gi* hot spots", """() => {
        const s = document.querySelector('#filter-layer'); s.value = 'gi';
        s.dispatchEvent(new Event('change', {bubbles: true})); }"""),
    ("period: last 3 months", """() => {
        const s = document.querySelector('#filter-preset'); s.value = '3m';
        s.dispatchEvent(new Event('change', {bubbles: true})); }"""),
]

# records when body[data-state] changes, in the page's own clock
STATE_RECORDER = """() => {
  window.__stateLog = [];
  new MutationObserver(() => window.__stateLog.push([document.body.dataset.state,
                                                     performance.now()]))
    .observe(document.body, {attributes: true, attributeFilter: ['data-state']});
}"""


def log(message: str) -> None:
    print(f"[dashboard] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# the database and the server
# --------------------------------------------------------------------------------------------


def prepare_database(url: str, years: list[int]) -> dict[str, Any]:
    from urbansec.services import identity
    from urbansec.services.imports import import_areas, import_incidents
    from urbansec.store.engine import make_engine
    from urbansec.store.migrate import upgrade

    engine = make_engine(url)
    try:
        upgrade(engine)
        started = time.perf_counter()
        report = import_incidents(engine, [chicago_path(year) for year in years], "chicago")
        seconds = time.perf_counter() - started
        import_areas(engine, BOUNDARIES / "police-districts.kmz", "district")
        import_areas(engine, BOUNDARIES / "police-beats.kmz", "beat")
        organisation = identity.create_organisation(engine, "bench", "Benchmark city", "city")
        email, password, name = ANALYST
        identity.create_user(engine, organisation, email, name, password, "analyst")
    finally:
        engine.dispose()
    rows = sum(f.inserted for f in report.files)
    return {"incidents": rows, "import_seconds": round(seconds, 1), "years": years}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_server(url: str, workdir: Path, cube_dir: Path) -> Iterator[str]:
    port = free_port()
    urbansec = shutil.which("urbansec", path=str(Path(sys.executable).parent)) or "urbansec"
    env = {**os.environ, "URBANSEC_DATABASE_URL": url, "URBANSEC_PORT": str(port),
           "URBANSEC_CUBE_CACHE_DIR": str(cube_dir)}
    log_path = workdir / f"server-{port}.log"
    with open(log_path, "wb") as server_log:
        process = subprocess.Popen([urbansec, "serve", "--host", "127.0.0.1", "--port",
                                    str(port), "--log-level", "warning"],
                                   env=env, stdout=server_log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"urbansec serve exited: {log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{base}/api/v1/health", timeout=2):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    raise RuntimeError("urbansec serve did not start") from None
                time.sleep(0.25)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --------------------------------------------------------------------------------------------
# the browser
# --------------------------------------------------------------------------------------------


def view_cells(view: dict[str, Any]) -> int:
    """The number of cells a ``/dashboard/view`` answer draws (its grid rows; a GeoJSON
    FeatureCollection's features in answers from before the compact grid)."""
    cells = view["cells"]
    return len(cells["cells"] if "cells" in cells else cells["features"])


class Traffic:
    """Every finished request of a page: its URL and encoded size (headers + body), and the
    requests still in flight."""

    def __init__(self, page: Any) -> None:
        self.requests: list[Any] = []
        self.views: list[Any] = []
        self.in_flight: set[Any] = set()
        page.on("request", lambda request: self.in_flight.add(request))
        page.on("requestfinished", lambda request: self.in_flight.discard(request))
        page.on("requestfailed", lambda request: self.in_flight.discard(request))
        page.on("requestfinished", lambda request: self.requests.append(request))
        page.on("response", lambda response: self.views.append(response)
                if urlsplit(response.url).path == "/api/v1/dashboard/view" else None)

    def settle(self, page: Any, timeout_s: float = SETTLE_S) -> float:
        """Wait until nothing is in flight (the previous change's slower panels), as a person
        reads the map before the next change; returns the seconds waited."""
        started = time.perf_counter()
        while self.in_flight and time.perf_counter() - started < timeout_s:
            page.wait_for_timeout(100)
        return round(time.perf_counter() - started, 1)

    def mark(self) -> int:
        return len(self.requests)

    def bytes_since(self, mark: int) -> dict[str, int]:
        total = api = 0
        for request in self.requests[mark:]:
            sizes = request.sizes()
            size = sizes["responseBodySize"] + sizes["responseHeadersSize"]
            total += size
            if urlsplit(request.url).path.startswith("/api/"):
                api += size
        return {"bytes": total, "api_bytes": api, "requests": len(self.requests) - mark}

    def view_features(self) -> list[int]:
        counts = []
        for response in self.views:
            try:
                counts.append(view_cells(response.json()))
            except Exception:  # an aborted (superseded) request has no body
                continue
        return counts


def new_context(browser: Any, base: str) -> Any:
    context = browser.new_context(viewport=VIEWPORT, base_url=base)
    # the server may be busy (warming its cube, running the panels' analyses): a slow answer
    # is a figure to report, not a reason to give up
    context.set_default_timeout(READY_TIMEOUT_MS)
    return context


def sign_in(browser: Any, base: str) -> dict[str, Any]:
    """The session storage of a signed-in tab (tokens), to start each context signed in."""
    context = new_context(browser, base)
    page = context.new_page()
    page.goto("/login?next=%2Flogin-done")
    page.fill("#login-email", ANALYST[0])
    page.fill("#login-password", ANALYST[1])
    page.click("#login-submit")
    page.wait_for_url(lambda url: urlsplit(url).path == "/login-done")
    tokens = page.evaluate("() => sessionStorage.getItem('urbansec.tokens')")
    context.close()
    if not tokens:
        raise RuntimeError("signing in left no tokens in sessionStorage")
    return {"urbansec.tokens": tokens}


def signed_in_page(browser: Any, base: str, storage: dict[str, str]) -> Any:
    context = new_context(browser, base)
    # the tokens go in before any page script runs, as after a sign-in in this tab
    context.add_init_script(
        f"(() => {{ const s = {json.dumps(storage)}; for (const [k, v] of Object.entries(s)) "
        "if (!sessionStorage.getItem(k)) sessionStorage.setItem(k, v); })()")
    return context.new_page()


def first_render(browser: Any, base: str, storage: dict[str, str]) -> dict[str, Any]:
    page = signed_in_page(browser, base, storage)
    traffic = Traffic(page)
    started = time.perf_counter()
    page.goto("/")
    page.wait_for_function("() => document.body.dataset.state === 'ready'",
                           timeout=READY_TIMEOUT_MS)
    seconds = time.perf_counter() - started
    error = page.evaluate("() => document.querySelector('#view-error')?.hidden === false"
                          " ? document.querySelector('#view-error').textContent : null")
    result = {"seconds": round(seconds, 3), **traffic.bytes_since(0),
              "total": page.get_attribute("#view-total", "data-value"),
              "features": traffic.view_features(), "error": error}
    page.context.close()
    return result


def redraws(browser: Any, base: str, storage: dict[str, str]) -> list[dict[str, Any]]:
    page = signed_in_page(browser, base, storage)
    traffic = Traffic(page)
    page.goto("/")
    page.wait_for_function("() => document.body.dataset.state === 'ready'",
                           timeout=READY_TIMEOUT_MS)
    page.evaluate(STATE_RECORDER)
    out = []
    for label, action in CHANGES:
        settled = traffic.settle(page)
        mark = traffic.mark()
        views_before = len(traffic.views)
        page.evaluate("() => { window.__stateLog = []; }")
        started = page.evaluate(f"() => {{ const t0 = performance.now(); ({action})(); "
                                "return t0; }")
        page.wait_for_function(
            "() => window.__stateLog.some(([s]) => s === 'loading') && "
            "document.body.dataset.state === 'ready'", timeout=READY_TIMEOUT_MS)
        ready_at = page.evaluate("() => window.__stateLog.filter(([s]) => s === 'ready')"
                                 ".map(([, t]) => t).pop()")
        # the API answers of this change only (the panels after ready may still be loading)
        page.wait_for_timeout(50)
        features = [view_cells(r.json()) for r in traffic.views[views_before:] if r.ok]
        out.append({"change": label, "seconds": round((ready_at - started) / 1000, 3),
                    "url": page.url.removeprefix(base), "total":
                    page.get_attribute("#view-total", "data-value"),
                    "features": max(features) if features else None,
                    "settled_seconds_before": settled, **traffic.bytes_since(mark)})
        log(f"  redraw {label}: {out[-1]['seconds']:.3f} s, {out[-1]['total']} incidents")
    page.context.close()
    return out


def measure(base: str, *, with_redraws: bool = True) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=CHROMIUM_ARGS)
        try:
            storage = sign_in(browser, base)
            log("  first render (cold) ...")
            cold = first_render(browser, base, storage)
            log(f"  cold: {cold['seconds']:.3f} s")
            warm = []
            for _ in range(WARM_VISITS):
                warm.append(first_render(browser, base, storage))
                log(f"  warm: {warm[-1]['seconds']:.3f} s")
            changes = redraws(browser, base, storage) if with_redraws else []
        finally:
            browser.close()
    features = [n for run in [cold, *warm] for n in run["features"]]
    features += [c["features"] for c in changes if c["features"] is not None]
    result = {"cold": cold, "warm": warm,
              "warm_median_seconds": round(statistics.median(w["seconds"] for w in warm), 3),
              "max_features": max(features) if features else None}
    return {**result, "redraws": changes} if with_redraws else result


def wait_for_cube_file(cube_dir: Path, timeout_s: float = 180.0) -> float:
    """Seconds until the first server has saved its cube (written in the background after
    the build: stopping the server before would leave the restart nothing to load)."""
    started = time.perf_counter()
    while not any(cube_dir.glob("cube-*.npz")):
        if time.perf_counter() - started > timeout_s:
            raise RuntimeError(f"no cube file in {cube_dir} after {timeout_s:.0f} s")
        time.sleep(0.25)
    return round(time.perf_counter() - started, 1)


def run_database(kind: str, url: str, years: list[int], workdir: Path) -> dict[str, Any]:
    log(f"{kind}: importing {', '.join(map(str, years))} and the boundaries ...")
    prepared = prepare_database(url, years)
    log(f"{kind}: {prepared['incidents']:,} incidents in {prepared['import_seconds']} s; "
        "starting urbansec serve")
    cube_dir = workdir / f"cubes-{kind}"
    with running_server(url, workdir, cube_dir) as base:
        result = measure(base)
        waited = wait_for_cube_file(cube_dir)
    files = sorted(cube_dir.glob("cube-*.npz"))
    log(f"{kind}: restarting urbansec serve (cube file: {files[0].stat().st_size / 2**20:.0f}"
        " MiB)")
    with running_server(url, workdir, cube_dir) as base:
        restart = measure(base, with_redraws=False)
    restart["cube_file_bytes"] = files[0].stat().st_size
    restart["waited_for_cube_file_seconds"] = waited
    return {**prepared, **result, "restart": restart}


# --------------------------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------------------------


def render(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="urbansec dashboard benchmark (analyst, headless Chromium, this "
                        "machine)", title_justify="left")
    for name, justify in (("Measurement", "left"), ("DB", "left"), ("Seconds", "right"),
                          ("Goal", "right"), ("", "left"), ("KB sent", "right"),
                          ("Cells", "right"), ("Incidents", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]

    def verdict(seconds: float, goal: float) -> str:
        return "[green]met[/]" if seconds <= goal else "[red]NOT met[/]"

    def kb(value: int) -> str:
        return f"{value / 1024:,.0f}"

    def count(value: Any) -> str:
        return "-" if value in (None, "") else f"{int(value):,}"

    for kind, label in (("sqlite", "SQLite"), ("postgres", "PostgreSQL")):
        result = results.get(kind)
        if result is None:
            table.add_row("(all)", label, "", "",
                          "skipped: no PostgreSQL (set URBANSEC_TEST_POSTGRES_URL or "
                          "--postgres)" if kind == "postgres" else "not run", "", "", "")
            continue
        if "error" in result:
            table.add_row("(all)", label, "", "", f"[red]failed: {result['error']}[/]",
                          "", "", "")
            continue
        cold = result["cold"]
        runs = [("", result)]
        if "restart" in result:
            runs.append((" after a restart", result["restart"]))
        for when, run in runs:
            cold = run["cold"]
            how = ("cube loaded from its file" if when else
                   "first start after the import: builds the cube")
            table.add_row(f"first render{when}, cold ({how})", label,
                          f"{cold['seconds']:.2f}", f"{FIRST_RENDER_GOAL_S}",
                          verdict(cold["seconds"], FIRST_RENDER_GOAL_S), kb(cold["bytes"]),
                          count(max(cold["features"], default=None)), count(cold["total"]))
            warm = run["warm"]
            median = run["warm_median_seconds"]
            table.add_row(f"first render{when}, warm (median of {len(warm)})", label,
                          f"{median:.2f}", f"{FIRST_RENDER_GOAL_S}",
                          verdict(median, FIRST_RENDER_GOAL_S),
                          kb(int(statistics.median(w["bytes"] for w in warm))),
                          count(max(warm[0]["features"], default=None)),
                          count(warm[0]["total"]))
        for change in result["redraws"]:
            table.add_row(f"redraw: {change['change']}", label, f"{change['seconds']:.2f}",
                          f"{REDRAW_GOAL_S}", verdict(change["seconds"], REDRAW_GOAL_S),
                          kb(change["bytes"]), count(change["features"]),
                          count(change["total"]))
        table.add_row("largest number of cells sent", label, "", "", "", "",
                      count(result["max_features"]), f"{result['incidents']:,} stored")
        table.add_section()
    width = None if sys.stdout.isatty() else 150
    Console(width=width).print(table)


def table_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per measurement (what the table shows), for the JSON."""
    rows: list[dict[str, Any]] = []
    for kind, result in results.items():
        if "error" in result:
            rows.append({"db": kind, "error": result["error"]})
            continue
        measured = [("first render, cold", result["cold"], FIRST_RENDER_GOAL_S)]
        measured += [(f"first render, warm {i + 1}", warm, FIRST_RENDER_GOAL_S)
                     for i, warm in enumerate(result["warm"])]
        if "restart" in result:
            restart = result["restart"]
            measured.append(("first render after a restart, cold", restart["cold"],
                             FIRST_RENDER_GOAL_S))
            measured += [(f"first render after a restart, warm {i + 1}", warm,
                          FIRST_RENDER_GOAL_S) for i, warm in enumerate(restart["warm"])]
        measured += [(f"redraw: {c['change']}", c, REDRAW_GOAL_S) for c in result["redraws"]]
        for name, item, goal in measured:
            features = item["features"]
            if isinstance(features, list):
                features = max(features, default=None)
            rows.append({"db": kind, "measurement": name, "seconds": item["seconds"],
                         "goal_seconds": goal, "met": item["seconds"] <= goal,
                         "bytes": item["bytes"], "api_bytes": item["api_bytes"],
                         "requests": item["requests"], "cells": features,
                         "incidents_shown": item["total"]})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--postgres", metavar="URL",
                        default=os.environ.get("URBANSEC_TEST_POSTGRES_URL"),
                        help="PostgreSQL+PostGIS server (default: URBANSEC_TEST_POSTGRES_URL)")
    parser.add_argument("--years", default="2015,2016,2017",
                        help="which years of ../shared/data/chicago to import")
    args = parser.parse_args(argv)
    if not CHROMIUM.exists():
        print(f"{CHROMIUM} not found: this benchmark needs headless Chromium", file=sys.stderr)
        return 1
    years = [int(y) for y in args.years.split(",")]
    started = time.perf_counter()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="urbansec-bench-dashboard-") as tmp:
        workdir = Path(tmp)
        try:
            results["sqlite"] = run_database("sqlite", f"sqlite:///{workdir / 'bench.db'}",
                                             years, workdir)
        except Exception as exc:  # a failed run is a row of the table, not a traceback
            log(f"sqlite failed: {exc!r}")
            results["sqlite"] = {"error": repr(exc)[:300]}
        if args.postgres:
            try:
                from urbansec.store.engine import scratch_schema

                with scratch_schema(args.postgres, "bench") as url:
                    results["postgres"] = run_database("postgres", url, years, workdir)
            except Exception as exc:
                log(f"postgres failed: {exc!r}")
                results["postgres"] = {"error": repr(exc)[:300]}
    render(results)
    write_results(RESULTS, "dashboard", started, table_rows(results),
                  goals={"first_render_seconds": FIRST_RENDER_GOAL_S,
                         "redraw_seconds": REDRAW_GOAL_S},
                  postgres_skipped=not args.postgres, results=results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
