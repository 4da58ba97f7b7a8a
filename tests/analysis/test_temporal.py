"""Hour x weekday with DST-honest exposure, night share edges, monthly series and seasonality."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from urbansec.analysis.temporal import (
    WEEKDAYS,
    exposure_hours,
    hour_weekday,
    monthly_series,
    night_share,
)
from urbansec.errors import UsageError

CHICAGO_2017 = Path(__file__).resolve().parents[3] / "shared" / "data" / "chicago" / \
    "crimes_2017.csv.gz"
SUN = WEEKDAYS.index("Sun")


def times(*values: str) -> np.ndarray:
    return np.array(values, dtype="datetime64[s]")


def brute_force_exposure(start: dt.datetime, end: dt.datetime, tz: str) -> np.ndarray:
    """Reference: walk real time in 15-minute steps and note the local slot of each step."""
    zone = ZoneInfo(tz)
    u = start.replace(tzinfo=zone).timestamp()
    u_end = end.replace(tzinfo=zone).timestamp()
    out = np.zeros((7, 24))
    while u < u_end:
        local = dt.datetime.fromtimestamp(u, tz=zone)
        out[local.weekday(), local.hour] += 0.25
        u += 900
    return out


# ------------------------------------------------------------------------------- exposure


def test_chicago_year_2017_exposure_counts_dst_days() -> None:
    e = exposure_hours(dt.datetime(2017, 1, 1), dt.datetime(2018, 1, 1), "America/Chicago")
    # 2017 starts on a Sunday: 53 Sundays, 52 of every other weekday.
    expected = np.full((7, 24), 52.0)
    expected[SUN, :] = 53.0
    expected[SUN, 2] -= 1  # 12 March: 02:00 -> 03:00, no 02:00 hour
    expected[SUN, 1] += 1  # 5 November: 01:00-02:00 lived twice
    np.testing.assert_array_equal(e, expected)
    assert e.sum() == 365 * 24


def test_chicago_dst_weeks() -> None:
    spring = exposure_hours("2017-03-12", "2017-03-19", "America/Chicago")
    assert spring[SUN, 2] == 0
    assert spring.sum() == 7 * 24 - 1
    assert (spring[spring != 0] == 1).all()
    autumn = exposure_hours("2017-11-05", "2017-11-12", "America/Chicago")
    assert autumn[SUN, 1] == 2
    assert autumn.sum() == 7 * 24 + 1


def test_berlin_dst_hits_02h_both_times() -> None:
    spring = exposure_hours("2017-03-26", "2017-04-02", "Europe/Berlin")
    assert spring[SUN, 2] == 0 and spring[SUN, 1] == 1 and spring[SUN, 3] == 1
    autumn = exposure_hours("2017-10-29", "2017-11-05", "Europe/Berlin")
    assert autumn[SUN, 2] == 2 and autumn.sum() == 169
    first_half = exposure_hours("2017-01-01", "2017-07-01", "Europe/Berlin")
    assert first_half[SUN, 2] == 25  # 26 Sundays, one without 02:00
    year = exposure_hours("2017-01-01", "2018-01-01", "Europe/Berlin")
    assert year[SUN, 2] == 53  # lost in March, doubled in October


@pytest.mark.parametrize(
    "tz", ["America/Chicago", "Europe/Berlin", "Australia/Lord_Howe", "Asia/Kolkata", "UTC"]
)
def test_exposure_matches_brute_force_walk(tz: str) -> None:
    start, end = dt.datetime(2016, 9, 14, 10, 30), dt.datetime(2017, 9, 3, 17, 15)
    np.testing.assert_allclose(exposure_hours(start, end, tz),
                               brute_force_exposure(start, end, tz), atol=1e-12)


def test_lord_howe_half_hour_shift_gives_half_hours() -> None:
    # Lord Howe Island moves its clock by 30 minutes: 02:00 -> 02:30 on 1 October 2017.
    e = exposure_hours("2017-10-01", "2017-10-02", "Australia/Lord_Howe")
    assert e[SUN, 2] == 0.5 and e.sum() == 23.5


def test_exposure_without_tz_is_a_clock_without_dst() -> None:
    e = exposure_hours("2017-03-12", "2017-03-19")
    np.testing.assert_array_equal(e, np.ones((7, 24)))


def test_partial_hours_and_aware_bounds() -> None:
    e = exposure_hours(dt.datetime(2017, 1, 2, 10, 30), dt.datetime(2017, 1, 2, 12, 15))
    assert e[0, 10] == 0.5 and e[0, 11] == 1.0 and e[0, 12] == 0.25 and e.sum() == 1.75
    utc = dt.UTC
    aware = exposure_hours(dt.datetime(2017, 1, 2, 6, tzinfo=utc),
                           dt.datetime(2017, 1, 2, 8, tzinfo=utc), "America/Chicago")
    assert aware[0, 0] == 1 and aware[0, 1] == 1 and aware.sum() == 2


# ------------------------------------------------------------------------- hour x weekday


def test_hour_weekday_hand_case() -> None:
    t = times(
        "2017-01-02T00:10:00",  # Monday 00h
        "2017-01-08T23:59:59",  # Sunday 23h
        "2017-01-04T13:00:00",  # Wednesday 13h, twice
        "2017-01-04T13:59:59",
        "1969-12-31T23:30:00",  # a Wednesday before the epoch, 23h
        "NaT",
    )
    r = hour_weekday(t)
    assert r.total == 5 and r.n_missing == 1 and r.n_outside == 0
    assert r.counts[0, 0] == 1 and r.counts[6, 23] == 1 and r.counts[2, 13] == 2
    assert r.counts[2, 23] == 1 and r.counts.sum() == 5
    assert r.by_hour[13] == 2 and r.by_weekday[2] == 3
    assert r.exposure_hours is None and r.rate is None


def test_hour_weekday_matches_pandas_on_random_times() -> None:
    rng = np.random.default_rng(7)
    seconds = rng.integers(-10**8, 2 * 10**9, size=20_000)
    t = seconds.astype("datetime64[s]")
    r = hour_weekday(t)
    idx = pd.DatetimeIndex(t)
    expected = np.zeros((7, 24), dtype=np.int64)
    np.add.at(expected, (idx.day_of_week.to_numpy(), idx.hour.to_numpy()), 1)
    np.testing.assert_array_equal(r.counts, expected)


def test_hour_weekday_rate_uses_exposure_and_period() -> None:
    t = times("2017-03-12T01:30", "2017-03-12T03:10", "2017-03-13T02:00", "2017-03-20T00:00",
              "2017-03-11T23:00")
    r = hour_weekday(t, period=("2017-03-12", "2017-03-19"), tz="America/Chicago")
    assert r.total == 3 and r.n_outside == 2
    assert r.exposure_hours is not None and r.rate is not None
    assert r.exposure_hours[SUN, 2] == 0 and np.isnan(r.rate[SUN, 2])
    assert r.rate[SUN, 1] == 1.0 and r.rate[0, 2] == 1.0 and r.rate[3, 5] == 0.0
    assert r.rate_by_hour is not None and r.rate_by_weekday is not None
    assert r.rate_by_weekday[SUN] == pytest.approx(2 / 23)
    assert r.rate_by_hour[2] == pytest.approx(1 / 6)


def test_hour_weekday_empty_input() -> None:
    r = hour_weekday(np.array([], dtype="datetime64[s]"))
    assert r.total == 0 and r.counts.shape == (7, 24) and not r.counts.any()
    r = hour_weekday([], period=("2017-01-01", "2017-01-08"), tz="Europe/Berlin")
    assert r.total == 0 and r.rate is not None and (r.rate == 0).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"period": ("2017-02-01", "2017-01-01")}, "after its start"),
        ({"period": ("2017-01-01", "2017-01-01")}, "after its start"),
        ({"tz": "Europe/Berlin"}, "give a period"),
        ({"period": ("2017-01-01", "2017-02-01"), "tz": "Mars/Olympus"}, "unknown time zone"),
        ({"period": ("2017-01-01", "soon")}, "not a date"),
        ({"period": "2017"}, "pair"),
    ],
)
def test_hour_weekday_usage_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        hour_weekday(times("2017-01-02T00:00"), **kwargs)


def test_times_that_are_not_datetimes_are_a_usage_error() -> None:
    with pytest.raises(UsageError, match="datetime"):
        hour_weekday(["yesterday"])


# ---------------------------------------------------------------------------- night share


def test_night_share_edges_are_half_open() -> None:
    t = times("2017-05-01T22:00:00", "2017-05-01T21:59:59", "2017-05-02T06:00:00",
              "2017-05-02T05:59:59", "2017-05-02T00:00:00", "2017-05-02T12:00:00", "NaT")
    r = night_share(t)
    assert (r.night, r.total, r.n_missing) == (3, 6, 1)
    assert r.share == 0.5 and (r.start, r.end) == ("22:00", "06:00")
    ci = binomtest(3, 6).proportion_ci(0.95, method="exact")
    assert r.ci_low == pytest.approx(ci.low, rel=1e-9)
    assert r.ci_high == pytest.approx(ci.high, rel=1e-9)


def test_window_within_a_day_and_seconds() -> None:
    t = times("2017-05-01T08:00:00", "2017-05-01T15:59:59", "2017-05-01T16:00:00",
              "2017-05-01T07:59:59")
    r = night_share(t, start="08:00", end=dt.time(16))
    assert (r.night, r.total) == (2, 4)
    r = night_share(t, start="15:59:59", end="08:00:00")
    assert (r.night, r.end, r.start) == (3, "08:00", "15:59:59")


def test_night_share_empty_and_errors() -> None:
    r = night_share(np.array([], dtype="datetime64[s]"))
    assert r.night == 0 and r.total == 0 and np.isnan(r.share) and np.isnan(r.ci_low)
    with pytest.raises(UsageError, match="equal"):
        night_share(times("2017-05-01T08:00"), start="06:00", end="06:00")
    with pytest.raises(UsageError, match="time of day"):
        night_share(times("2017-05-01T08:00"), start="10pm")
    with pytest.raises(UsageError, match="confidence"):
        night_share(times("2017-05-01T08:00"), confidence=95)


# -------------------------------------------------------------------------- monthly series


def events_from_monthly_counts(first_month: str, counts: np.ndarray) -> np.ndarray:
    months = np.datetime64(first_month, "M") + np.arange(counts.size)
    starts = months.astype("datetime64[s]") + np.timedelta64(10 * 86400 + 3600, "s")
    return np.repeat(starts, counts)


def test_monthly_counts_include_empty_months_and_partial_edges() -> None:
    t = times("2017-01-15T10:00", "2017-01-31T23:59:59", "2017-03-01T00:00", "2017-04-10T00:00",
              "2016-12-31T23:59:59", "NaT")
    s = monthly_series(t, start="2017-01-15", end="2017-04-10")
    np.testing.assert_array_equal(s.months, np.array(["2017-01", "2017-02", "2017-03",
                                                      "2017-04"], dtype="datetime64[M]"))
    np.testing.assert_array_equal(s.counts, [2, 0, 1, 0])
    np.testing.assert_allclose(s.days, [17, 28, 31, 9])
    np.testing.assert_array_equal(s.full, [False, True, True, False])
    np.testing.assert_allclose(s.daily_rate, [2 / 17, 0, 1 / 31, 0])
    np.testing.assert_allclose(s.per_30_days, [60 / 17, 0, 30 / 31, 0])
    assert s.n_outside == 2 and s.n_missing == 1
    assert s.seasonality is None and "24 full months" in (s.reason or "")


def test_monthly_default_period_is_whole_months_of_the_data() -> None:
    s = monthly_series(times("2016-11-30T12:00", "2017-02-01T00:00"))
    assert s.start == np.datetime64("2016-11-01T00:00:00")
    assert s.end == np.datetime64("2017-03-01T00:00:00")
    np.testing.assert_array_equal(s.counts, [1, 0, 0, 1])
    assert s.full.all()


def test_monthly_empty_input() -> None:
    s = monthly_series(np.array([], dtype="datetime64[s]"))
    assert s.months.size == 0 and s.counts.size == 0 and s.seasonality is None
    s = monthly_series([], start="2017-01-01", end="2018-01-01")
    assert s.counts.size == 12 and not s.counts.any() and s.seasonality is None


def test_monthly_usage_errors() -> None:
    with pytest.raises(UsageError, match="after start"):
        monthly_series(times("2017-01-01"), start="2017-02-01", end="2017-01-01")


def test_seasonality_recovers_planted_pattern() -> None:
    months = 48
    planted = np.array([0.70, 0.75, 0.85, 0.95, 1.10, 1.20, 1.30, 1.25, 1.10, 0.95, 0.85, 1.00])
    planted = planted / planted.mean()
    trend = 2000.0 + 15.0 * np.arange(months)
    rng = np.random.default_rng(42)
    counts = rng.poisson(trend * planted[np.arange(months) % 12])
    series = monthly_series(events_from_monthly_counts("2014-01", counts))
    assert series.reason is None and series.seasonality is not None
    s = series.seasonality
    np.testing.assert_allclose(s.seasonal_index, planted, rtol=0.02)
    assert s.seasonal_index.mean() == pytest.approx(1.0)
    # Adjusted series follows the planted trend within Poisson noise (about 3 sd).
    assert np.all(np.abs(s.adjusted - trend) < 3.5 * np.sqrt(trend) / planted.min())
    # Trend is exactly the centred 2x12 moving average, written out by hand.
    x = counts.astype(float)
    for i in (6, 20, months - 7):
        hand = (0.5 * x[i - 6] + x[i - 5 : i + 6].sum() + 0.5 * x[i + 6]) / 12
        assert s.trend[i] == pytest.approx(hand)
    assert np.isnan(s.trend[:6]).all() and np.isnan(s.trend[-6:]).all()
    # Seasonal index of January by hand: mean of x/trend over Januaries with a trend value.
    jan = [i for i in range(6, months - 6) if i % 12 == 0]
    raw = [np.mean([x[i] / s.trend[i] for i in range(6, months - 6) if i % 12 == m])
           for m in range(12)]
    assert s.seasonal_index[0] == pytest.approx(np.mean([x[i] / s.trend[i] for i in jan])
                                                / np.mean(raw))
    np.testing.assert_allclose(s.residual, counts / (s.trend * s.seasonal), equal_nan=True)


def test_seasonality_only_on_full_months_and_needs_24() -> None:
    counts = np.full(30, 100)
    events = events_from_monthly_counts("2015-01", counts)
    s = monthly_series(events, start="2015-01-20", end="2017-01-05")  # 23 full months
    assert s.seasonality is None and "has 23" in (s.reason or "")
    s = monthly_series(events, start="2015-01-01", end="2017-01-05")  # 24 full, 1 partial
    assert s.seasonality is not None
    np.testing.assert_allclose(s.seasonality.seasonal_index, np.ones(12))
    assert np.isnan(s.seasonality.seasonal[-1]) and not s.full[-1]
    assert np.isnan(s.seasonality.adjusted[-1]) and s.seasonality.adjusted[0] == 100


def test_seasonality_refused_when_a_year_is_empty() -> None:
    counts = np.r_[np.full(12, 50), np.zeros(13, dtype=int), np.full(12, 50)]
    s = monthly_series(events_from_monthly_counts("2014-01", counts),
                       start="2014-01-01", end="2017-02-01")
    assert s.seasonality is None and "moving average is zero" in (s.reason or "")


@pytest.mark.slow
def test_real_chicago_2017_against_pandas() -> None:
    if not CHICAGO_2017.exists():
        pytest.skip(f"{CHICAGO_2017} not found")
    dates = pd.read_csv(CHICAGO_2017, usecols=["Date"])["Date"]
    idx = pd.DatetimeIndex(pd.to_datetime(dates, format="%m/%d/%Y %I:%M:%S %p"))
    t = idx.to_numpy().astype("datetime64[s]")
    r = hour_weekday(t, period=("2017-01-01", "2018-01-01"), tz="America/Chicago")
    expected = pd.crosstab(idx.day_of_week, idx.hour).to_numpy()
    np.testing.assert_array_equal(r.counts, expected)
    m = monthly_series(t, start="2017-01-01", end="2018-01-01")
    np.testing.assert_array_equal(m.counts, idx.month.value_counts().sort_index().to_numpy())
