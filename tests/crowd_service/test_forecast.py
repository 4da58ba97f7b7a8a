"""Forecasts over HTTP on a slice of the real Auckland pedestrian counts (imported as
``urbansec sensors import auckland`` does): a counter and a zone of two counters, 6 hourly
values with their 80 % interval, and the seasonal naive baseline checked against the counts of
the same hours a week earlier, read straight from the file."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from tests.conftest import needs_shared_data
from tests.crowd_service.conftest import Api, iso

from urbansec.sensors import auckland
from urbansec.services import sensors
from urbansec.services.sensor_ingest import import_auckland

FIRST_DAY, LAST_DAY = date(2024, 5, 1), date(2024, 7, 14)
# a Wednesday, 15:30 in Auckland (NZST, UTC+12, no daylight saving change in the slice)
AT = datetime(2024, 7, 10, 3, 30, tzinfo=UTC)
COUNTERS = ("107 Quay Street", "Commerce Street West")


@pytest.fixture
def counts(api: Api) -> tuple[dict[str, int], dict[tuple[str, datetime], int]]:
    needs_shared_data(auckland.DATA_DIR / auckland.COUNTS_FILE)
    report = import_auckland(api.engine, auckland.DATA_DIR, FIRST_DAY, LAST_DAY)
    assert report["observations_inserted"] > 30_000
    found = auckland.read_counts(auckland.DATA_DIR, FIRST_DAY, LAST_DAY)
    return report["datastreams"], {(c.counter, c.start): c.count for c in found.counts}


def _check_shape(body: dict[str, object], hours: int) -> None:
    assert body["coverage"] == 0.8
    assert body["issued_at"] == "2024-07-10T03:00:00Z"  # the end of the last complete hour
    assert body["times"] == [iso(datetime(2024, 7, 10, 3, tzinfo=UTC) + timedelta(hours=h))
                             for h in range(hours)]
    for name in ("mean", "lower", "upper"):
        assert len(body[name]) == hours and all(v is not None for v in body[name])
    for low, mean, high in zip(body["lower"], body["mean"], body["upper"], strict=True):
        assert 0 <= low <= mean <= high
    assert body["baseline"]["model"] == "seasonal_naive"


def test_forecast_of_a_counter_and_a_zone(api: Api, counts: tuple[dict[str, int], dict[
        tuple[str, datetime], int]]) -> None:
    ids, by_hour = counts
    quay = ids[COUNTERS[0]]
    response = api.get("/forecast", datastream=quay, hours=6, at=iso(AT),
                       tz="Pacific/Auckland")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "profile"
    _check_shape(body, 6)
    # the baseline is the same hour a week earlier, exactly as counted
    week_before = [by_hour[(COUNTERS[0], datetime(2024, 7, 3, 3 + h, tzinfo=UTC))]
                   for h in range(6)]
    assert body["baseline"]["mean"] == pytest.approx(week_before)
    # mid-afternoon on a weekday at the waterfront: hundreds of people an hour, not a
    # degenerate forecast
    assert min(body["mean"]) > 100
    # on this origin the profile model follows the day better than last week's counts do
    actual = [by_hour[(COUNTERS[0], datetime(2024, 7, 10, 3 + h, tzinfo=UTC))]
              for h in range(6)]
    profile_error = sum(abs(m - a) for m, a in zip(body["mean"], actual, strict=True))
    naive_error = sum(abs(m - a) for m, a in zip(week_before, actual, strict=True))
    assert profile_error < naive_error

    naive = api.get("/forecast", datastream=quay, hours=3, at=iso(AT),
                    model="seasonal_naive").json()
    assert naive["model"] == "seasonal_naive"
    _check_shape(naive, 3)
    assert naive["mean"] == pytest.approx(week_before[:3])

    # a zone measured by two counters: their hourly totals
    api.zone("waterfront", "walkway", 5000, width_m=20,
             properties={"timezone": "Pacific/Auckland"})
    for name in COUNTERS:
        sensors.assign_datastream(api.engine, ids[name], "waterfront", "footfall")
    zone = api.get("/forecast", zone="waterfront", hours=6, at=iso(AT)).json()
    assert zone["timezone"] == "Pacific/Auckland"
    assert zone["subject"]["role"] == "footfall"
    assert sorted(zone["subject"]["datastreams"]) == sorted(ids[n] for n in COUNTERS)
    _check_shape(zone, 6)
    totals = [sum(by_hour[(n, datetime(2024, 7, 3, 3 + h, tzinfo=UTC))] for n in COUNTERS)
              for h in range(6)]
    assert zone["baseline"]["mean"] == pytest.approx(totals)

    # before the slice has a week of history, the models refuse with a reason
    early = api.get("/forecast", datastream=quay, at="2024-05-04T00:00:00Z")
    assert early.status_code == 422
    assert "hours of history" in early.json()["error"]["message"]
