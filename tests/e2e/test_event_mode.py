"""The event-mode page (/event) in Chromium, over the whole live chain.

A server of its own (a fresh SQLite database with the demo accounts, two crowd zones with a
camera count, entry/exit counters, a lamp and a footfall counter with three weeks of hourly
history, and a density threshold rule), a real Mosquitto broker, and in this process the MQTT
ingester with the alert engine listening on it, publishing alert changes on the broker's
alert topic, where the server's stream picks them up. An observation published over MQTT
that pushes a zone past the threshold must reach the page's alert feed within 2 s; the
partner acknowledges it with the keyboard and the alert's status changes.

The alert engine listens to the ingester (``IngestPipeline.add_listener``); observations
POSTed to the SensorThings API are stored but raise nothing by themselves, so the crossing
observation goes through MQTT, as a live feed does. The initial readings are POSTed over the
SensorThings API before the engine starts (it loads the latest stored readings).
"""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

import pytest
from tests.conftest import empty_database_url
from tests.sensors.support import make_thing

from .conftest import guarded_pages
from .support import (
    DESKTOP,
    READY_TIMEOUT_MS,
    LiveServer,
    PageProblems,
    check_axe,
    demo_login,
    guard_context,
    screenshot,
    settle,
    start_server,
    stop_server,
)

# two zones beside each other near State St and Chicago Ave (lon, lat of the south-west corner)
ORIGIN = (-87.6282, 41.8967)
ZONE_W, ZONE_H = 0.0003, 0.0002  # degrees: about 25 m x 22 m
THRESHOLD_DENSITY = 4.0  # persons/m², the rule's threshold (standing scale: E from 4)
START_DENSITY = 1.5  # standing scale: B (1-2 persons/m²)
CROSSING_DENSITY = 5.2  # standing scale: F (>= 5 persons/m²)
HISTORY_HOURS = 24 * 21
ALERT_WITHIN_S = 2.0


def square(dx: float) -> dict[str, Any]:
    x, y = ORIGIN[0] + dx, ORIGIN[1]
    return {"type": "Polygon", "coordinates": [[[x, y], [x + ZONE_W, y],
                                                [x + ZONE_W, y + ZONE_H], [x, y + ZONE_H],
                                                [x, y]]]}


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


#: an empty database per kind, dropped afterwards (as every database test gets one)
database = contextmanager(empty_database_url)


@dataclass
class EventSite:
    server: LiveServer
    broker_url: str
    publish: Callable[[int, Any], None]  # over MQTT, dated in the last complete minute
    streams: dict[str, int]
    areas: dict[str, float]
    rule: dict[str, Any]
    problems: list[str] = field(default_factory=list)




def _seed(database_url: str) -> dict[str, int]:
    """Demo accounts, zones, things and datastreams tied to the zones in their roles, and the
    footfall counter's hourly history (what a forecast needs: three weeks)."""
    from urbansec.sensors.payloads import ObservationIn
    from urbansec.services import sensors
    from urbansec.services.demo import ensure_demo_accounts
    from urbansec.services.sensor_ingest import insert_observations, observation_row
    from urbansec.store.engine import make_engine, write_transaction
    from urbansec.store.migrate import upgrade

    engine = make_engine(database_url)
    try:
        upgrade(engine)
        ensure_demo_accounts(engine)
        sensors.create_zone(engine, "stage", "Stage front", "standing", geometry=square(0.0),
                            capacity=3000)
        sensors.create_zone(engine, "gate", "North gate", "walkway",
                            geometry=square(ZONE_W + 0.0001), width_m=6.0)
        lon, lat = ORIGIN
        streams = {
            "camera": make_thing(engine, "Stage camera", ("count",), lon=lon, lat=lat)[0],
            "lamp": make_thing(engine, "Stage lamp", ("status",), kind="category", lon=lon,
                               lat=lat)[0],
            "footfall": make_thing(engine, "Stage counter", ("passers-by",), lon=lon,
                                   lat=lat)[0],
        }
        streams["gate_in"], streams["gate_out"] = make_thing(
            engine, "Gate counter", ("in", "out"), lon=lon + ZONE_W + 0.0001, lat=lat)
        for name, zone, role in (("camera", "stage", "area_count"),
                                 ("lamp", "stage", "lighting_status"),
                                 ("footfall", "stage", "footfall"),
                                 ("gate_in", "gate", "in_counter"),
                                 ("gate_out", "gate", "out_counter")):
            sensors.assign_datastream(engine, streams[name], zone, role)
        # an evening-peaked daily profile with some irregularity (so the interval has a
        # width and the models differ), hour by hour up to the last complete hour
        end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        rows = []
        for step in range(HISTORY_HOURS, 0, -1):
            start = end - timedelta(hours=step)
            count = 200 + 150 * (start.hour in range(17, 23)) + round(40 * math.sin(step * 0.37))
            rows.append(observation_row(ObservationIn(
                streams["footfall"], start, count, phenomenon_time_end=start + timedelta(hours=1))))
        with write_transaction(engine) as connection:
            insert_observations(connection, rows)
        return streams
    finally:
        engine.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def event_site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
               broker_url: str) -> Iterator[EventSite]:
    with database(request.param, tmp_path_factory.mktemp("e2e-event-db")) as database_url:
        yield from _event_site(database_url, tmp_path_factory, broker_url)


def _event_site(database_url: str, tmp_path_factory: pytest.TempPathFactory,
                broker_url: str) -> Iterator[EventSite]:
    from urbansec.sensors.mqtt import Ingester, Publisher
    from urbansec.services.alert_delivery import AlertBus
    from urbansec.services.alert_engine import AlertEngine
    from urbansec.store.engine import make_engine

    workdir = tmp_path_factory.mktemp("e2e-event")
    streams = _seed(database_url)
    topic = f"urbansec-test/{uuid.uuid4().hex[:8]}/alerts"
    process, server = start_server(database_url, workdir, mqtt_url=broker_url,
                                   alert_topic=topic)
    engine = make_engine(database_url)
    stoppers: list[Callable[[], None]] = [lambda: stop_server(process), engine.dispose]
    try:
        partner = server.token("partner")
        status, zones = server.request("GET", "/api/v1/crowd/zones", token=partner)
        assert status == 200, zones
        areas = {zone["key"]: float(zone["area_m2"]) for zone in zones["zones"]}
        status, rule = server.request("POST", "/api/v1/alert-rules", {
            "name": "Stage density", "kind": "threshold", "severity": "critical",
            "params": {"metric": "density", "threshold": THRESHOLD_DENSITY},
            "zones": ["stage"]}, token=partner)
        assert status == 201, rule

        # the readings before the event starts: over the SensorThings API
        now = datetime.now(UTC).replace(microsecond=0)
        for name, result, seconds_ago in (
                ("camera", round(START_DENSITY * areas["stage"]), 150),
                ("lamp", "failed", 150), ("gate_in", 60, 200), ("gate_out", 20, 170)):
            status, body = server.request(
                "POST", f"/sensorthings/v1.1/Datastreams({streams[name]})/Observations",
                {"phenomenonTime": iso(now - timedelta(seconds=seconds_ago)),
                 "result": result}, token=partner)
            assert status == 201, body

        # the live chain: broker -> ingester -> alert engine -> alert topic -> server stream
        bus = AlertBus(broker_url, lambda _events: None, topic=topic,
                       client_id=f"e2e-alerts-{uuid.uuid4().hex[:8]}").start()
        stoppers.append(bus.stop)
        alert_engine = AlertEngine(engine, bus.publish, clock="wall").start()
        stoppers.append(alert_engine.stop)
        ingester = Ingester(engine, broker_url, client_id=f"e2e-ingest-{uuid.uuid4().hex[:8]}")
        ingester.add_listener(alert_engine)
        ingester.start()
        stoppers.append(ingester.stop)
        assert ingester.wait_connected(10), "the ingester did not reach the broker"
        publisher = Publisher(broker_url, client_id=f"e2e-pub-{uuid.uuid4().hex[:8]}").start()
        stoppers.append(publisher.stop)

        def publish(datastream: int, result: Any) -> None:
            # the crowd state is read at the end of the last complete minute: an observation
            # in the minute now running would show only when it ends
            moment = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(seconds=1)
            payload = json.dumps({"phenomenonTime": iso(moment), "result": result})
            publisher.publish(f"v1.1/Datastreams({datastream})/Observations", payload)
            assert publisher.flush(10)

        yield EventSite(server, broker_url, publish, streams, areas, rule)
    finally:
        for stop in reversed(stoppers):
            stop()


@pytest.fixture
def event_page(browser: Any, event_site: EventSite) -> Iterator[Callable[..., Any]]:
    """``open_page`` of conftest.py, on this module's server."""
    with guarded_pages(browser, event_site.server, settle_ms=1_000) as open_:
        yield open_


def sign_in(page: Any, role: str, next_path: str) -> None:
    """``support.sign_in``, waiting for the login page's script first: a click before it has
    loaded would submit the form natively (a GET with the password in the URL) and never
    reach ``next_path``."""
    email, password = demo_login(role)
    page.goto(f"/login?next={quote(next_path, safe='')}")
    page.wait_for_selector("body[data-state=ready]")
    page.fill("#login-email", email)
    page.fill("#login-password", password)
    page.click("#login-submit")
    page.wait_for_url(lambda url: urlsplit(url).path == urlsplit(next_path).path)


def zone_letter(page: Any, key: str) -> str:
    return str(page.get_attribute(f"#event-zones-body tr[data-zone='{key}']", "data-los"))


def map_labels(page: Any) -> list[str]:
    """The letters written on the zones of the map (a removed zone's label fades out for a
    moment with opacity 0: not counted), and the number of zone polygons must match."""
    labels = page.evaluate("""() => [...document.querySelectorAll(
        '#event-map .leaflet-tooltip.los-label')].filter(e => e.style.opacity !== '0')
        .map(e => e.textContent)""")
    polygons = page.locator("#event-map path.leaflet-interactive").count()
    assert polygons == len(labels), (polygons, labels)
    return sorted(labels)


def tab_to(page: Any, selector: str, limit: int = 80) -> list[str]:
    """Press Tab until the element matching ``selector`` has the focus; returns the ids (or
    tag names) of everything focused on the way. Fails if it is never reached."""
    seen = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => document.activeElement && document.activeElement.matches(s)",
                         selector):
            return seen
        seen.append(page.evaluate(
            "() => document.activeElement ? (document.activeElement.id || "
            "document.activeElement.className || document.activeElement.tagName) : ''"))
    raise AssertionError(f"{selector} was not reached with Tab; focus went through {seen}")


def test_event_mode_live_alert_and_acknowledgement(event_page: Callable[..., Any],
                                                   event_site: EventSite) -> None:
    page = event_page()
    sign_in(page, "partner", "/event?target=zone:stage")
    page.wait_for_selector("body[data-state=ready]")

    # the zones with their level of service, in the table and written on the map
    page.wait_for_selector("#event-zones-body tr[data-zone='stage']")
    assert zone_letter(page, "stage") == "B"
    assert zone_letter(page, "gate") == "A"
    assert map_labels(page) == ["A", "B"]
    stage = page.locator("#event-zones-body tr[data-zone='stage']")
    expected = round(START_DENSITY * event_site.areas["stage"])
    assert re.sub(r"\D", "", stage.locator("td").nth(1).inner_text().split("/")[0]) == \
        str(expected)
    # the failed lamp is highlighted, in words as well as colour
    assert "has-failed-light" in (stage.get_attribute("class") or "")
    assert stage.locator(".light-failed").inner_text() == "failed: 1"
    assert page.get_attribute("body", "data-stale") == "false"
    assert page.locator("#event-stale").is_hidden()

    # the forecast of the stage's footfall counter: mean, band and the seasonal naive line
    page.wait_for_selector("body[data-forecast=ready]")
    assert page.locator("#event-forecast-table tbody tr").count() == 3
    assert page.locator("#event-forecast-table thead th").count() == 4
    assert page.evaluate("() => new URL(location.href).searchParams.get('target')") == \
        "zone:stage"

    page.wait_for_selector("#event-stream-status[data-stream=live]")
    check_axe(page, "/event")

    # the crowd at the stage passes the threshold: published over MQTT as a live feed does
    crossing = round(CROSSING_DENSITY * event_site.areas["stage"])
    published = time.monotonic()
    event_site.publish(event_site.streams["camera"], crossing)
    item = page.locator("#event-alert-feed li[data-status=open][data-severity=critical]")
    item.first.wait_for(timeout=10_000)
    elapsed = time.monotonic() - published
    assert elapsed <= ALERT_WITHIN_S, f"the alert took {elapsed:.2f} s to reach the page"
    assert item.count() == 1
    assert "Stage front" in item.inner_text()
    # read out at once to screen-reader users
    page.wait_for_function(
        "() => document.getElementById('event-critical-live').textContent.includes('Critical')")
    # the alert refreshes the state: the stage is now F, on the map too
    page.wait_for_function(
        "() => document.querySelector(\"#event-zones-body tr[data-zone='stage']\")"
        ".dataset.los === 'F'", timeout=5_000)
    assert map_labels(page) == ["A", "F"]
    # tall enough for the map, the feed, the table and the forecast chart in one picture
    page.set_viewport_size({"width": DESKTOP["width"], "height": 1500})
    page.wait_for_timeout(300)  # the chart follows its box's new size
    screenshot(page, "event-mode")
    page.set_viewport_size(DESKTOP)

    # keyboard only: every control is reachable, and Enter acknowledges the alert
    page.locator("#main").focus()
    tab_to(page, "#event-select")
    tab_to(page, "#event-refresh")
    tab_to(page, "#event-alert-filter")
    tab_to(page, "#event-alert-feed .alert-ack")
    page.keyboard.press("Enter")
    acknowledged = page.locator("#event-alert-feed li[data-status=acknowledged]")
    acknowledged.first.wait_for(timeout=5_000)
    assert "Acknowledged by you" in acknowledged.inner_text()
    assert page.locator("#event-alert-feed .alert-ack").count() == 0
    # focus stays on the acknowledged alert, not lost to the top of the page
    assert page.evaluate("() => document.activeElement.closest('[data-alert-id]') !== null")
    tab_to(page, "#event-forecast-target")
    tab_to(page, "#event-forecast-hours")
    tab_to(page, "#event-forecast-model")
    status, alerts = event_site.server.request(
        "GET", "/api/v1/alerts?status=all", token=event_site.server.token("partner"))
    assert status == 200, alerts
    mine = [a for a in alerts["alerts"] if a["rule_id"] == event_site.rule["id"]]
    assert [a["status"] for a in mine] == ["acknowledged"]
    check_axe(page, "/event after acknowledging")


def test_event_mode_needs_a_partner_login(event_page: Callable[..., Any]) -> None:
    page = event_page()
    page.goto("/event")
    page.wait_for_url(re.compile(r"/login\?next=%2Fevent"))
    assert page.locator("#login-email").is_visible()


def test_event_choice_filters_the_zones(event_page: Callable[..., Any],
                                        event_site: EventSite) -> None:
    partner = event_site.server.token("partner")
    now = datetime.now(UTC)
    status, event = event_site.server.request("POST", "/api/v1/crowd/events", {
        "name": "Gate opening", "starts_at": iso(now - timedelta(hours=1)),
        "ends_at": iso(now + timedelta(hours=3)), "zones": ["gate"],
        "expected_attendance": 500}, token=partner)
    assert status == 201, event
    page = event_page()
    sign_in(page, "partner", "/event")
    page.wait_for_selector("body[data-state=ready]")
    assert page.locator("#event-zones-body tr").count() == 2
    with page.expect_response(lambda r: "/api/v1/crowd/state" in r.url and "event=" in r.url):
        page.select_option("#event-select", str(event["id"]))
    page.wait_for_function(
        "() => document.querySelectorAll('#event-zones-body tr').length === 1")
    assert page.get_attribute("#event-zones-body tr", "data-zone") == "gate"
    assert map_labels(page) == ["A"]
    assert page.evaluate("() => new URL(location.href).searchParams.get('event')") == \
        str(event["id"])
    # the choice survives a reload: it is in the URL
    page.reload()
    page.wait_for_selector("body[data-state=ready]")
    assert page.input_value("#event-select") == str(event["id"])
    assert page.locator("#event-zones-body tr").count() == 1


@pytest.fixture(scope="module")
def stale_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, datetime]]:
    """A server whose newest observation is two hours old, with no live alert source (the
    stream then sends what is stored and ends; EventSource polls)."""
    from urbansec.sensors.payloads import ObservationIn
    from urbansec.services import sensors
    from urbansec.services.demo import ensure_demo_accounts
    from urbansec.services.sensor_ingest import insert_observations, observation_row
    from urbansec.store.engine import make_engine, write_transaction
    from urbansec.store.migrate import upgrade

    workdir = tmp_path_factory.mktemp("e2e-stale")
    database_url = f"sqlite:///{workdir / 'urbansec.db'}"
    engine = make_engine(database_url)
    newest = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)
    try:
        upgrade(engine)
        ensure_demo_accounts(engine)
        sensors.create_zone(engine, "plaza", "Plaza", "standing", geometry=square(0.0))
        camera = make_thing(engine, "Plaza camera", ("count",), lon=ORIGIN[0],
                            lat=ORIGIN[1])[0]
        sensors.assign_datastream(engine, camera, "plaza", "area_count")
        with write_transaction(engine) as connection:
            insert_observations(connection, [
                observation_row(ObservationIn(camera, newest - timedelta(minutes=5), 40)),
                observation_row(ObservationIn(camera, newest, 120))])
    finally:
        engine.dispose()
    process, server = start_server(database_url, workdir)
    yield server, newest
    stop_server(process)


def test_stale_state_is_shown_as_such(browser: Any,
                                      stale_server: tuple[LiveServer, datetime]) -> None:
    server, newest = stale_server
    context = browser.new_context(viewport=DESKTOP, base_url=server.base_url, locale="en-US",
                                  timezone_id="America/Chicago")
    context.set_default_timeout(READY_TIMEOUT_MS)
    problems = PageProblems()
    guard_context(context, problems)
    try:
        page = context.new_page()
        asked: list[str] = []
        page.on("request", lambda r: asked.append(r.url.split("?")[0].removeprefix(
            server.base_url)))
        sign_in(page, "partner", "/event")
        page.wait_for_selector("body[data-state=ready]")
        assert page.get_attribute("body", "data-stale") == "true"
        message = " ".join(page.inner_text("#event-stale").replace("\u202f", " ").split())
        # times are shown in the city's time zone (the dashboard's), not the browser's
        status, config = server.request("GET", "/api/v1/dashboard/config",
                                        token=server.token("partner"))
        assert status == 200, config
        local = newest.astimezone(ZoneInfo(config["timezone"]))
        shown = f"{local:%b} {local.day}, {local.year}, {local.hour % 12 or 12}:{local:%M} " \
                f"{local:%p}"
        assert "Not live" in message and shown in message, (message, shown)
        assert zone_letter(page, "plaza") != "None"
        assert page.locator("#event-zones-body tr").count() == 1
        # two hours of counts cannot make a forecast: said in words, nothing asked of the API
        page.wait_for_selector("body[data-forecast=none]")
        assert "hours of hourly counts" in page.inner_text("#event-forecast-note")
        check_axe(page, "/event (stale)")

        # the state is read again every 10 s; this server has no live alert source, so each
        # stream ends after the stored changes and EventSource reconnects (every 2 s) without
        # the page calling that a lost connection
        states, streams = asked.count("/api/v1/crowd/state"), asked.count("/api/v1/alerts/stream")
        page.wait_for_timeout(10_500)
        assert asked.count("/api/v1/crowd/state") > states
        assert asked.count("/api/v1/alerts/stream") >= streams + 3
        assert page.get_attribute("#event-stream-status", "data-stream") == "live"
        settle(page, problems, 1_000)
    finally:
        context.close()
    assert not problems.describe(), problems.describe()
