"""The night-time page (/nighttime) in Chromium, on a server of its own: three days of the
real Auckland pedestrian counts, two imported precincts (the CBD waterfront, whose counters
stand inside it, and Ponsonby, which has none) and incidents at known Auckland times,
imported through the generic importer as the night-time service's own tests do.

The page must show the hour-of-day chart and table, night against day with the rate ratio,
the counters used, the residential rate beside the ambient one, and for Ponsonby the
coverage note instead of rates; the state lives in the URL; axe, keyboard, console and
network guards as for every page."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import needs_shared_data

from .conftest import guarded_pages
from .support import (
    LiveServer,
    check_axe,
    screenshot,
    start_server,
    stop_server,
)
from .test_event_mode import database, sign_in

CBD = [[174.7650, -36.8460], [174.7700, -36.8460], [174.7700, -36.8420],
       [174.7650, -36.8420], [174.7650, -36.8460]]
PONSONBY = [[174.7400, -36.8600], [174.7450, -36.8600], [174.7450, -36.8550],
            [174.7400, -36.8550], [174.7400, -36.8600]]
POPULATION = 3000
# id, Auckland wall-clock time, type, lat, lon (as tests/nighttime: the autumn DST weekend)
INCIDENTS = [
    ("n1", "2024-04-06T00:20:00", "ASSAULT", -36.8440, 174.7670),
    ("n2", "2024-04-06T01:40:00", "ASSAULT", -36.8445, 174.7680),
    ("n3", "2024-04-06T22:05:00", "ASSAULT", -36.8432, 174.7662),
    ("n4", "2024-04-07T02:30:00", "ASSAULT", -36.8441, 174.7671),
    ("d1", "2024-04-06T13:10:00", "ASSAULT", -36.8436, 174.7665),
    ("d2", "2024-04-07T12:45:00", "ASSAULT", -36.8450, 174.7690),
    ("d3", "2024-04-07T15:20:00", "THEFT", -36.8451, 174.7691),
    ("o1", "2024-04-06T23:00:00", "ASSAULT", -36.8575, 174.7425),  # in Ponsonby
    ("o2", "2024-04-08T01:00:00", "ASSAULT", -36.8440, 174.7670),  # after the period
]
CBD_VIEW = "/nighttime?area=precinct:cbd&from=2024-04-06&to=2024-04-08"


def _seed(database_url: str, workdir: Path) -> None:
    from urbansec.ingest.generic import GenericMapping
    from urbansec.sensors import auckland
    from urbansec.services.demo import ensure_demo_accounts
    from urbansec.services.imports import import_areas, import_incidents
    from urbansec.services.sensor_ingest import import_auckland
    from urbansec.store.engine import make_engine
    from urbansec.store.migrate import upgrade

    needs_shared_data(auckland.DATA_DIR)
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        ensure_demo_accounts(engine)
        import_auckland(engine, auckland.DATA_DIR, date(2024, 4, 5), date(2024, 4, 8))
        features = [
            {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
             "properties": props}
            for ring, props in ((CBD, {"code": "cbd", "name": "Auckland CBD waterfront",
                                       "population": POPULATION}),
                                (PONSONBY, {"code": "ponsonby", "name": "Ponsonby"}))]
        areas = workdir / "precincts.geojson"
        areas.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
        import_areas(engine, areas, "precinct", code_field="code", name_field="name")
        incidents = workdir / "incidents.csv"
        incidents.write_text("id,when,type,lat,lon\n" + "".join(
            f"{i},{t},{c},{lat},{lon}\n" for i, t, c, lat, lon in INCIDENTS))
        mapping = GenericMapping.from_dict({
            "source": {"key": "akl-e2e", "timezone": "Pacific/Auckland"},
            "columns": {"id": "id", "time": "when", "category": "type", "lat": "lat",
                        "lon": "lon"},
            "categories": {"map": {"ASSAULT": "0201", "THEFT": "0502"}}})
        report = import_incidents(engine, [incidents], "generic", mapping=mapping)
        assert report.files[0].inserted == len(INCIDENTS), report.as_dict()
    finally:
        engine.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def night_server(request: pytest.FixtureRequest,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    workdir = tmp_path_factory.mktemp("e2e-night")
    with database(request.param, workdir) as database_url:
        _seed(database_url, workdir)
        process, server = start_server(database_url, workdir)
        yield server
        stop_server(process)


@pytest.fixture
def night_page(browser: Any, night_server: LiveServer) -> Iterator[Callable[[], Any]]:
    """``open_page`` of conftest.py on this module's server, in Auckland time."""
    with guarded_pages(browser, night_server, settle_ms=1_000,
                       timezone_id="Pacific/Auckland") as open_:
        yield open_


def cell(page: Any, hour: int, column: int) -> str:
    """The text of a column (0 = part of day) of the hour's row in the figures table."""
    return str(page.locator(f"#night-table tbody tr[data-hour='{hour}'] td").nth(column)
               .inner_text())


def tab_to(page: Any, element_id: str, limit: int = 40) -> None:
    """Tab forward until the element with ``element_id`` has the focus (a date input takes
    one Tab per part); fails if it never does."""
    for _ in range(limit):
        if page.evaluate("() => document.activeElement && document.activeElement.id") == \
                element_id:
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"#{element_id} was not reached with Tab")


def digits(text: str) -> int:
    return int(re.sub(r"\D", "", text))


def test_night_time_view_of_the_cbd(night_page: Callable[[], Any],
                                    night_server: LiveServer) -> None:
    page = night_page()
    sign_in(page, "partner", CBD_VIEW)
    page.wait_for_selector("body[data-state=ready]")
    page.wait_for_selector("#night-results:not([hidden])")
    status, api = night_server.request(
        "GET", "/api/v1/nighttime?area_kind=precinct&area=cbd&from=2024-04-06&to=2024-04-08",
        token=night_server.token("partner"))
    assert status == 200, api

    title = page.inner_text("#night-results-title")
    assert "Auckland CBD waterfront (cbd)" in title and "Pacific/Auckland" in title
    assert "Apr 6, 2024" in title and "Apr 7, 2024" in title  # the last day, not the end
    # the form shows the URL's state
    assert page.input_value("#night-area-kind") == "precinct"
    assert page.input_value("#night-area") == "cbd"
    assert page.input_value("#night-start") == "22:00"
    assert page.input_value("#night-end") == "06:00"

    # per hour: 24 rows; the incidents as seeded (local hours), the night hours marked
    assert page.locator("#night-table tbody tr").count() == 24
    seeded = {0: 1, 1: 1, 2: 1, 22: 1, 13: 1, 12: 1, 15: 1}
    for hour in range(24):
        assert digits(cell(page, hour, 2)) == seeded.get(hour, 0), hour
        assert cell(page, hour, 0) == ("night" if hour >= 22 or hour < 6 else "day"), hour
    # footfall per hour as the API counted it (the chart's bars and the table)
    footfall = {row["hour"]: row["footfall"] for row in api["hours"]}
    assert all(value for value in footfall.values()), "the CBD counters count every hour"
    for hour in (0, 13, 22):
        assert digits(cell(page, hour, 1)) == footfall[hour]

    # night against day: 4 incidents at night, 3 by day, each with its rate and interval
    night = page.inner_text("#night-part-night")
    day = page.inner_text("#night-part-day")
    assert "4 incidents" in night and f"{api['night']['footfall']:,} passers-by" in night
    assert "3 incidents" in day and f"{api['day']['footfall']:,} passers-by" in day
    assert "95% interval" in night
    ratio = page.inner_text("#night-ratio")
    assert api["rate_ratio_night_vs_day"]["value"] is not None
    assert re.search(r"\d", ratio) and "95% interval" in ratio
    # the residents' rate beside it: 7 incidents over 3,000 residents
    residential = page.inner_text("#night-residential")
    assert "3,000 residents" in residential
    assert "2.33" in residential  # 7 / 3,000 x 1,000
    counters = page.inner_text("#night-counters")
    assert all(c["name"] in counters for c in api["counters"])
    # both charts drawn (canvases with their text alternative)
    for chart in ("#night-chart-hours canvas", "#night-chart-rate canvas"):
        assert page.get_attribute(chart, "aria-label")
        assert page.evaluate(f"() => document.querySelector('{chart}').width > 0")
    page.evaluate("() => document.getElementById('night-results-title').scrollIntoView()")
    screenshot(page, "nighttime")
    check_axe(page, "/nighttime (CBD)")


def test_area_without_counters_and_the_form(night_page: Callable[[], Any]) -> None:
    page = night_page()
    sign_in(page, "partner", CBD_VIEW)
    page.wait_for_selector("#night-results:not([hidden])")
    assert page.locator("#night-coverage").is_visible()  # the DST hour has no count
    assert page.get_attribute("#night-coverage", "data-coverage") != "0"

    # keyboard only: to the area, choose Ponsonby, a narrower night, and apply
    page.locator("#main").focus()
    tab_to(page, "night-area-kind")
    tab_to(page, "night-area")
    page.select_option("#night-area", "ponsonby")
    tab_to(page, "night-from")
    tab_to(page, "night-to")
    tab_to(page, "night-start")
    page.fill("#night-start", "23:00")
    tab_to(page, "night-end")
    page.fill("#night-end", "05:00")
    tab_to(page, "night-category")
    tab_to(page, "night-apply")
    with page.expect_response(lambda r: "/api/v1/nighttime" in r.url):
        page.keyboard.press("Enter")
    page.wait_for_selector("#night-coverage[data-coverage='0']")
    query = page.evaluate("() => Object.fromEntries(new URL(location.href).searchParams)")
    assert query == {"area": "precinct:ponsonby", "from": "2024-04-06", "to": "2024-04-08",
                     "night": "23:00-05:00"}
    assert "no people counter" in page.inner_text("#night-coverage").lower() or \
        "no footfall" in page.inner_text("#night-coverage").lower()
    assert "Night (23:00-05:00)" in page.inner_text("#night-part-night")
    assert "1 incident," in page.inner_text("#night-part-night")
    assert "no rate" in page.inner_text("#night-part-night")
    # focus moved to the results' heading for screen-reader and keyboard users
    assert page.evaluate("() => document.activeElement.id") == "night-results-title"
    check_axe(page, "/nighttime (no counters)")

    # a bad window is refused on the page, before asking the API
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/api/v1/nighttime" in r.url else None)
    page.fill("#night-end", "23:00")
    page.click("#night-apply")
    page.wait_for_selector("#night-form-error:not([hidden])")
    assert "same time" in page.inner_text("#night-form-error")
    page.fill("#night-end", "05:30")
    page.click("#night-apply")
    page.wait_for_function("() => document.getElementById('night-form-error')"
                           ".textContent.includes('on the hour')")
    assert asked == []


@pytest.mark.parametrize("lang", ["el", "fi", "it"])
def test_the_page_in_every_language(night_page: Callable[[], Any], lang: str) -> None:
    from urbansec.web import STATIC_DIR

    catalogue = json.loads((STATIC_DIR / "i18n" / lang / "event.json").read_text("utf-8"))
    page = night_page()
    page.goto(f"{CBD_VIEW}&lang={lang}")
    page.wait_for_selector("#night-results:not([hidden])")
    assert page.inner_text("h1") == catalogue["night"]["heading"]
    assert page.inner_text("#night-ratio-title") == catalogue["night"]["ratio"]
    # an untranslated key would show as itself
    assert "event." not in page.inner_text("body")
