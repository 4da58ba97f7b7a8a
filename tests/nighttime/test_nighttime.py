"""The night-time view on the real Auckland counts (SQLite and PostgreSQL): footfall of the
counters standing in an imported CBD polygon, incidents imported through the generic
importer at known Auckland times, per-hour and night/day rates per 1,000 passers-by checked
against sums and intervals computed here independently, both DST changes, an area without
counters, the public's suppressed view, bad input as 4xx JSON, and the CLI."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from scipy import stats
from sqlalchemy import Engine
from tests.conftest import needs_shared_data
from typer.testing import CliRunner

from urbansec.api.app import create_app
from urbansec.api.deps import get_principal
from urbansec.cli import app as cli_app
from urbansec.config import Settings
from urbansec.errors import NotFoundError, UsageError
from urbansec.ingest.generic import GenericMapping
from urbansec.sensors import auckland
from urbansec.services.access import ANONYMOUS, Principal
from urbansec.services.imports import import_areas, import_incidents
from urbansec.services.nighttime import nighttime_view
from urbansec.services.sensor_ingest import import_auckland

DATA = auckland.DATA_DIR
AUCKLAND = ZoneInfo("Pacific/Auckland")
# the waterfront end of the CBD (Quay Street to Shortland Street, Lower Albert to Britomart)
CBD = [[174.7650, -36.8460], [174.7700, -36.8460], [174.7700, -36.8420],
       [174.7650, -36.8420], [174.7650, -36.8460]]
# the counters of locations.csv inside CBD, read off their coordinates
CBD_COUNTERS = {"107 Quay Street", "188 Quay Street Lower Albert (EW)",
                "188 Quay Street Lower Albert (NS)", "Te Ara Tahuhu Walkway",
                "Commerce Street West", "7 Custom Street East", "45 Queen Street",
                "30 Queen Street"}
PONSONBY = [[174.7400, -36.8600], [174.7450, -36.8600], [174.7450, -36.8550],
            [174.7400, -36.8550], [174.7400, -36.8600]]
POPULATION = 3000

# id, local time (naive = Auckland wall clock; an offset is trusted), type, lat, lon
INCIDENTS = [
    ("n1", "2024-04-06T00:20:00", "ASSAULT", -36.8440, 174.7670),
    ("n2", "2024-04-06T01:40:00", "ASSAULT", -36.8445, 174.7680),
    ("n3", "2024-04-06T22:05:00", "ASSAULT", -36.8432, 174.7662),
    # 7 April 2024 02:30 happened twice: first in daylight time (the importer's reading of
    # a bare wall-clock time), then in standard time (given with its offset)
    ("n4", "2024-04-07T02:30:00", "ASSAULT", -36.8441, 174.7671),
    ("n5", "2024-04-07T02:30:00+12:00", "ASSAULT", -36.8442, 174.7672),
    ("d1", "2024-04-06T13:10:00", "ASSAULT", -36.8436, 174.7665),
    ("d2", "2024-04-07T12:45:00", "ASSAULT", -36.8450, 174.7690),
    ("d3", "2024-04-07T15:20:00", "THEFT", -36.8451, 174.7691),
    ("o1", "2024-04-06T23:00:00", "ASSAULT", -36.8575, 174.7425),  # in Ponsonby
    ("o2", "2024-04-08T01:00:00", "ASSAULT", -36.8440, 174.7670),  # after the period
    ("o3", "2024-04-05T23:59:00", "ASSAULT", -36.8440, 174.7670),  # before it
]
IN_CBD = [i for i in INCIDENTS if i[0][0] in "nd"]
NIGHT_HOURS = {22, 23, 0, 1, 2, 3, 4, 5}


def utc_of(local: str) -> datetime:
    value = datetime.fromisoformat(local)
    if value.tzinfo is None:
        value = value.replace(tzinfo=AUCKLAND, fold=0)
    return value.astimezone(UTC)


def setup(db: Engine, tmp_path: Path, first: date = date(2024, 4, 5),
          last: date = date(2024, 4, 8)) -> None:
    needs_shared_data(DATA)
    import_auckland(db, DATA, first, last)
    features = [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
         "properties": props}
        for ring, props in ((CBD, {"code": "cbd", "name": "Auckland CBD waterfront",
                                   "population": POPULATION}),
                            (PONSONBY, {"code": "ponsonby", "name": "Ponsonby"}))]
    areas = tmp_path / "precincts.geojson"
    areas.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    import_areas(db, areas, "precinct", code_field="code", name_field="name")
    csv_path = tmp_path / "incidents.csv"
    csv_path.write_text("id,when,type,lat,lon\n" + "".join(
        f"{i},{t},{c},{lat},{lon}\n" for i, t, c, lat, lon in INCIDENTS))
    mapping = GenericMapping.from_dict({
        "source": {"key": "akl-test", "timezone": "Pacific/Auckland"},
        "columns": {"id": "id", "time": "when", "category": "type", "lat": "lat",
                    "lon": "lon"},
        "categories": {"map": {"ASSAULT": "0201", "THEFT": "0502"}}})
    report = import_incidents(db, [csv_path], "generic", mapping=mapping)
    assert report.files[0].inserted == len(INCIDENTS)


def expected_footfall(first: date, last: date) -> dict[datetime, float]:
    """People counted per UTC hour by the CBD counters, straight from the reader."""
    found = auckland.read_counts(DATA, first, last)
    per_hour: dict[datetime, float] = defaultdict(float)
    for count in found.counts:
        if count.counter in CBD_COUNTERS:
            per_hour[count.start] += count.count
    return dict(per_hour)


def garwood(k: int, exposure: float) -> tuple[float, float]:
    low = stats.chi2.ppf(0.025, 2 * k) / 2 if k else 0.0
    return low / exposure * 1000, stats.chi2.ppf(0.975, 2 * k + 2) / 2 / exposure * 1000


def view(db: Engine, **overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {"area_kind": "precinct", "area": "cbd", "start": "2024-04-06",
                              "end": "2024-04-08"}
    params.update(overrides)
    return nighttime_view(db, **params)


def test_rates_per_passer_by_across_the_autumn_dst_change(db: Engine, tmp_path: Path) -> None:
    setup(db, tmp_path)
    result = view(db)
    assert result["timezone"] == "Pacific/Auckland"
    # local 6 April 00:00 NZDT (UTC+13) to 8 April 00:00 NZST (UTC+12): 49 hours, not 48
    assert result["period"] == {"from": "2024-04-05T11:00:00Z", "to": "2024-04-07T12:00:00Z",
                                "hours": 49, "from_local": "2024-04-06T00:00:00+13:00",
                                "to_local": "2024-04-08T00:00:00+12:00"}
    assert sum(h["slots"] for h in result["hours"]) == 49
    assert result["hours"][2]["slots"] == 3  # 02:00 on the 6th, and twice on the 7th
    assert {c["name"] for c in result["counters"]} == CBD_COUNTERS

    footfall = expected_footfall(date(2024, 4, 6), date(2024, 4, 7))
    # the file gives the repeated 02:00 once (as daylight time): 48 counted hours of 49
    assert len(footfall) == 48
    assert result["footfall_coverage"] == pytest.approx(48 / 49, abs=1e-4)
    by_hour: dict[int, float] = defaultdict(float)
    for start, people in footfall.items():
        by_hour[start.astimezone(AUCKLAND).hour] += people
    assert {h["hour"]: h["footfall"] for h in result["hours"]} == by_hour
    assert sum(h["footfall"] for h in result["hours"]) == sum(footfall.values())

    incidents: dict[int, int] = defaultdict(int)
    counted: dict[int, int] = defaultdict(int)
    for _, local, *_ in IN_CBD:
        instant = utc_of(local)
        hour = instant.astimezone(AUCKLAND).hour
        incidents[hour] += 1
        counted[hour] += instant.replace(minute=0, second=0) in footfall
    assert counted[2] == 1 and incidents[2] == 2  # n5 fell in the uncounted hour
    for row in result["hours"]:
        h = row["hour"]
        assert row["incidents"] == incidents[h]
        assert row["incidents_counted"] == counted[h]
        assert row["rate_per_1000"] == pytest.approx(counted[h] / by_hour[h] * 1000, rel=1e-5)
        low, high = garwood(counted[h], by_hour[h])
        assert row["ci_low"] == pytest.approx(low, rel=1e-5, abs=1e-9)
        assert row["ci_high"] == pytest.approx(high, rel=1e-5)

    night_flow = sum(p for s, p in footfall.items() if s.astimezone(AUCKLAND).hour in NIGHT_HOURS)
    day_flow = sum(footfall.values()) - night_flow
    night_k = sum(counted[h] for h in NIGHT_HOURS)
    day_k = sum(v for h, v in counted.items() if h not in NIGHT_HOURS)
    assert (night_k, day_k) == (4, 3)
    night, day = result["night"], result["day"]
    assert night["incidents"] == 5 and night["incidents_counted"] == 4
    assert night["hours"] == 17 and night["hours_with_footfall"] == 16
    assert day["hours"] == 32 and day["hours_with_footfall"] == 32
    assert night["footfall"] == night_flow and day["footfall"] == day_flow
    assert night["rate_per_1000"] == pytest.approx(night_k / night_flow * 1000, rel=1e-5)
    low, high = garwood(night_k, night_flow)
    assert (night["ci_low"], night["ci_high"]) == (pytest.approx(low, rel=1e-5),
                                                   pytest.approx(high, rel=1e-5))
    assert day["rate_per_1000"] == pytest.approx(day_k / day_flow * 1000, rel=1e-5)
    ratio = result["rate_ratio_night_vs_day"]
    ci = stats.binomtest(night_k, night_k + day_k).proportion_ci(0.95, method="exact")
    assert ratio["value"] == pytest.approx((night_k / night_flow) / (day_k / day_flow),
                                           rel=1e-5)
    assert ratio["ci_low"] == pytest.approx(ci.low / (1 - ci.low) * day_flow / night_flow,
                                            rel=1e-5)
    assert ratio["ci_high"] == pytest.approx(ci.high / (1 - ci.high) * day_flow / night_flow,
                                             rel=1e-5)
    # beside it, per 1,000 residents: the same incidents over a small resident population
    residential = result["residential"]
    assert residential["population"] == POPULATION
    assert residential["total"]["incidents"] == len(IN_CBD)
    assert residential["total"]["rate_per_1000"] == pytest.approx(len(IN_CBD) / 3, rel=1e-5)
    low, high = garwood(len(IN_CBD), POPULATION)
    assert residential["total"]["ci_low"] == pytest.approx(low, rel=1e-5)
    assert residential["total"]["ci_high"] == pytest.approx(high, rel=1e-5)
    assert {k: residential[k] for k in residential["total"]} == residential["total"]
    assert residential["night"]["incidents"] == 5 and residential["day"]["incidents"] == 3
    assert result["incidents_total"] == len(IN_CBD)
    assert "48 of 49 hours" in result["message"] and "warning" not in result


def test_category_and_a_window_within_the_day(db: Engine, tmp_path: Path) -> None:
    setup(db, tmp_path)
    result = view(db, category="0201", night="18:00-24:00")
    assert result["night_window"] == "18:00-00:00"
    assert result["incidents_total"] == len(IN_CBD) - 1  # the theft is left out
    assert result["hours"][15]["incidents"] == 0
    night_hours = {18, 19, 20, 21, 22, 23}
    assert result["night"]["incidents"] == sum(
        utc_of(t).astimezone(AUCKLAND).hour in night_hours for i, t, c, *_ in IN_CBD
        if c == "ASSAULT")
    assert result["night"]["hours"] == 12


def test_spring_dst_change_loses_no_counted_hour(db: Engine, tmp_path: Path) -> None:
    setup(db, tmp_path, date(2024, 9, 28), date(2024, 9, 30))
    result = view(db, start="2024-09-29", end="2024-09-30")
    # 29 September 2024 had no 02:00: 23 hours
    assert result["period"]["hours"] == 23
    assert result["hours"][2]["slots"] == 0 and result["hours"][2]["footfall"] is None
    footfall = expected_footfall(date(2024, 9, 29), date(2024, 9, 29))
    assert sum(h["footfall"] or 0 for h in result["hours"]) == sum(footfall.values())
    assert sum(h["slots_with_footfall"] for h in result["hours"]) == len(footfall)
    assert result["incidents_total"] == 0
    assert result["night"]["rate_per_1000"] == 0.0
    # the store holds no incident of any area then: the zeros are flagged, not trusted
    assert "no incidents at all in the period" in result["warning"]


def test_area_without_counters_gives_incidents_only(db: Engine, tmp_path: Path) -> None:
    setup(db, tmp_path)
    result = view(db, area="ponsonby")
    assert result["counters"] == [] and result["footfall_coverage"] == 0
    assert "no footfall counter" in result["message"]
    assert result["incidents_total"] == 1 and result["hours"][23]["incidents"] == 1
    assert all(h["rate_per_1000"] is None and h["footfall"] is None for h in result["hours"])
    assert result["night"]["incidents"] == 1 and result["night"]["rate_per_1000"] is None
    assert result["rate_ratio_night_vs_day"]["value"] is None
    assert result["residential"] is None


@pytest.mark.parametrize(("overrides", "error"), [
    ({"area": "nowhere"}, NotFoundError),
    ({"night": "22:30-06:00"}, UsageError),
    ({"night": "late"}, UsageError),
    ({"start": "2024-04-08", "end": "2024-04-06"}, UsageError),
    ({"start": "2024-04-06T10:30"}, UsageError),
    ({"start": "6 April"}, UsageError),
    ({"timezone": "Mars/Olympus"}, UsageError),
])
def test_bad_input(db: Engine, tmp_path: Path, overrides: dict[str, Any],
                   error: type[Exception]) -> None:
    setup(db, tmp_path)
    with pytest.raises(error):
        view(db, **overrides)


CALLERS = {"anonymous": ANONYMOUS, "analyst": Principal("user", 103, 1, "analyst", "analyst")}


@pytest.fixture
def client(db: Engine, tmp_path: Path) -> Any:
    setup(db, tmp_path)
    app = create_app(Settings(k_anonymity=5), db)
    test_client = TestClient(app)

    def use(name: str) -> TestClient:
        app.dependency_overrides[get_principal] = lambda: CALLERS[name]
        return test_client

    yield use
    app.dependency_overrides.clear()


API = "/api/v1/nighttime?area_kind=precinct&area=cbd"


def test_api_contract_for_an_analyst(client: Any, db: Engine) -> None:
    response = client("analyst").get(f"{API}&from=2024-04-06&to=2024-04-08")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body == json.loads(json.dumps(view(db, night=Settings().night_window)))
    assert body["area"] == {"kind": "precinct", "code": "cbd",
                            "name": "Auckland CBD waterfront"}
    assert body["night_window"] == "22:00-06:00"
    assert set(body["hours"][0]) >= {"hour", "footfall", "incidents", "rate_per_1000",
                                     "ci_low", "ci_high"}
    assert set(body["rate_ratio_night_vs_day"]) == {"value", "ci_low", "ci_high"}
    assert set(body["counters"][0]) == {"name", "hours", "datastream", "lon", "lat"}
    assert not body["suppressed"]


def test_api_public_view_is_k_suppressed(client: Any) -> None:
    body = client("anonymous").get(f"{API}&from=2024-04-06&to=2024-04-08").json()
    assert body["suppressed"] and body["k"] == 5
    # every hour holds 1 or 2 incidents: all hidden, and their rates with them
    for row in body["hours"]:
        assert "incidents_counted" not in row
        if row["suppressed"]:
            assert row["incidents"] is None and row["rate_per_1000"] is None
        else:
            assert row["incidents"] == 0
    assert sum(r["suppressed"] for r in body["hours"]) == 7
    # the day's 3 are below k, so the night's 5 would give them back from the total: both go
    assert body["night"]["incidents"] is None and body["day"]["incidents"] is None
    assert body["rate_ratio_night_vs_day"]["value"] is None
    assert body["incidents_total"] == len(IN_CBD)
    assert body["residential"]["total"]["incidents"] == len(IN_CBD)
    assert body["residential"]["night"]["rate_per_1000"] is None
    # footfall is not about anyone: it stays; the counters are named, without the sensor
    # feed's details (datastreams and positions need sensors:read)
    assert body["night"]["footfall"] > 0
    assert body["counters"] and all(set(c) == {"name", "hours"} for c in body["counters"])


@pytest.mark.parametrize(("query", "status"), [
    ("&from=2024-04-06&to=2024-04-08&night=22:30-06:00", 422),
    ("&from=2024-04-06&to=2024-04-08&night=whenever", 422),
    ("&from=2024-04-08&to=2024-04-06", 422),
    ("&from=2024-04-06", 422),
    ("&from=2024-04-06&to=2024-04-08&category=nonsense", 422),
])
def test_api_bad_input_is_json(client: Any, query: str, status: int) -> None:
    response = client("analyst").get(API + query)
    assert response.status_code == status, response.text
    assert set(response.json()["error"]) == {"code", "message", "details"}


def test_api_unknown_area_and_public_hours(client: Any) -> None:
    response = client("analyst").get("/api/v1/nighttime?area_kind=precinct&area=mars"
                                     "&from=2024-04-06&to=2024-04-08")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    # the public asks for whole days only (finer periods make differencing easy)
    response = client("anonymous").get(f"{API}&from=2024-04-06T05:00&to=2024-04-08")
    assert response.status_code == 422
    assert "whole day" in response.json()["error"]["message"]


def test_cli(db: Engine, tmp_path: Path) -> None:
    setup(db, tmp_path)
    url = db.url.render_as_string(hide_password=False)
    runner = CliRunner()
    args = ["--database", url, "nighttime", "--area-kind", "precinct", "--area", "cbd",
            "--from", "2024-04-06", "--to", "2024-04-08"]
    result = runner.invoke(cli_app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == json.loads(json.dumps(view(db)))
    table = runner.invoke(cli_app, [*args, "--night", "21:00-05:00"])
    assert table.exit_code == 0, table.output
    assert "21:00-05:00" in table.stdout and "107 Quay Street" in table.stdout
    assert "per 1,000 residents" in table.stdout
    bad = runner.invoke(cli_app, [*args, "--night", "21:15-05:00"])
    assert bad.exit_code == 2 and "whole hours" in bad.output


def test_expected_hours_are_what_the_calendar_says() -> None:
    """The test's own premise: the periods above are 49 and 23 hours long."""
    def hours(first: date, last: date) -> float:
        a = datetime(first.year, first.month, first.day, tzinfo=AUCKLAND)
        b = datetime(last.year, last.month, last.day, tzinfo=AUCKLAND)
        return (b.astimezone(UTC) - a.astimezone(UTC)) / timedelta(hours=1)

    assert hours(date(2024, 4, 6), date(2024, 4, 8)) == 49
    assert hours(date(2024, 9, 29), date(2024, 9, 30)) == 23
