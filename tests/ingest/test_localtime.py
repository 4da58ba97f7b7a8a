"""Tests for urbansec.ingest.localtime: naive local wall-clock times -> UTC, DST included."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from urbansec.errors import UsageError
from urbansec.ingest.localtime import LocalToUTC


def reference(local: datetime, tz: str) -> datetime:
    """Python's own answer (fold=0), naive UTC."""
    return local.replace(tzinfo=ZoneInfo(tz)).astimezone(UTC).replace(tzinfo=None)


@pytest.fixture
def chicago() -> LocalToUTC:
    return LocalToUTC("America/Chicago")


def test_winter_is_cst_utc_minus_6(chicago: LocalToUTC) -> None:
    assert chicago.to_utc(datetime(2017, 1, 15, 12, 0)) == datetime(2017, 1, 15, 18, 0)
    assert chicago.offset(datetime(2017, 12, 24, 23, 59)) == timedelta(hours=-6)
    # crossing midnight UTC: the UTC date is the next day
    assert chicago.to_utc(datetime(2017, 2, 1, 20, 30, 15)) == datetime(2017, 2, 2, 2, 30, 15)


def test_summer_is_cdt_utc_minus_5(chicago: LocalToUTC) -> None:
    assert chicago.to_utc(datetime(2017, 7, 15, 12, 0)) == datetime(2017, 7, 15, 17, 0)
    assert chicago.offset(datetime(2017, 6, 1, 0, 0)) == timedelta(hours=-5)


def test_microseconds_and_seconds_are_kept(chicago: LocalToUTC) -> None:
    local = datetime(2017, 7, 4, 21, 5, 7, 123456)
    assert chicago.to_utc(local) == datetime(2017, 7, 5, 2, 5, 7, 123456)


def test_aware_result_is_utc(chicago: LocalToUTC) -> None:
    value = chicago.to_utc_aware(datetime(2017, 7, 15, 12, 0))
    assert value.tzinfo is UTC
    assert value == datetime(2017, 7, 15, 17, 0, tzinfo=UTC)


def test_spring_forward_gap_uses_the_pre_transition_offset(chicago: LocalToUTC) -> None:
    # 2017-03-12 02:00 CST the clocks jumped to 03:00 CDT: 02:30 never happened locally.
    # fold=0 reads it as if the clock had not moved yet (CST, UTC-6).
    assert chicago.to_utc(datetime(2017, 3, 12, 2, 30)) == datetime(2017, 3, 12, 8, 30)
    assert chicago.to_utc(datetime(2017, 3, 12, 1, 59)) == datetime(2017, 3, 12, 7, 59)
    assert chicago.to_utc(datetime(2017, 3, 12, 3, 0)) == datetime(2017, 3, 12, 8, 0)


def test_autumn_ambiguous_hour_is_the_first_occurrence(chicago: LocalToUTC) -> None:
    # 2017-11-05 02:00 CDT the clocks went back to 01:00 CST: 01:30 happened twice.
    assert chicago.to_utc(datetime(2017, 11, 5, 1, 30)) == datetime(2017, 11, 5, 6, 30)
    assert chicago.to_utc(datetime(2017, 11, 5, 0, 59)) == datetime(2017, 11, 5, 5, 59)
    # the local hour after the ambiguous one is standard time again (UTC-6)
    assert chicago.to_utc(datetime(2017, 11, 5, 2, 30)) == datetime(2017, 11, 5, 8, 30)
    assert chicago.offset(datetime(2017, 11, 5, 2, 30)) == timedelta(hours=-6)


def test_cache_does_not_depend_on_call_order() -> None:
    # the per-hour cache must give the same answers whichever minute of an hour comes first
    forward, backward = LocalToUTC("America/Chicago"), LocalToUTC("America/Chicago")
    start = datetime(2017, 11, 4, 22, 0)
    minutes = [start + timedelta(minutes=m) for m in range(8 * 60)]
    ahead = [forward.to_utc(t) for t in minutes]
    behind = [backward.to_utc(t) for t in reversed(minutes)][::-1]
    assert ahead == behind == [reference(t, "America/Chicago") for t in minutes]


def test_chicago_whole_year_agrees_with_zoneinfo(chicago: LocalToUTC) -> None:
    start = datetime(2017, 1, 1)
    for step in range(0, 365 * 24 * 60, 17):  # every 17 minutes: all minute offsets occur
        local = start + timedelta(minutes=step)
        assert chicago.to_utc(local) == reference(local, "America/Chicago"), local


@pytest.mark.parametrize(
    ("day", "checks"),
    [
        # spring: 02:00 LHST (+10:30) -> 02:30 LHDT (+11:00); 02:00-02:29 is the gap
        ("2017-10-01", {"01:59": "2017-09-30 15:29", "02:15": "2017-09-30 15:45",
                        "02:30": "2017-09-30 15:30", "02:45": "2017-09-30 15:45"}),
        # autumn: 02:00 LHDT (+11:00) -> 01:30 LHST (+10:30); 01:30-01:59 is ambiguous
        ("2017-04-02", {"01:29": "2017-04-01 14:29", "01:45": "2017-04-01 14:45",
                        "02:00": "2017-04-01 15:30", "02:15": "2017-04-01 15:45"}),
    ],
)
def test_half_hour_transition_every_minute_matches_zoneinfo(day: str, checks: dict) -> None:
    """Lord Howe Island moves its clocks by 30 minutes: an offset change inside a local hour."""
    clock = LocalToUTC("Australia/Lord_Howe")
    start = datetime.fromisoformat(day)
    for minute in range(24 * 60):
        local = start + timedelta(minutes=minute)
        assert clock.to_utc(local) == reference(local, "Australia/Lord_Howe"), local
    # and independently of zoneinfo, the wall-clock arithmetic around the change
    fresh = LocalToUTC("Australia/Lord_Howe")
    for local_text, utc_text in checks.items():
        local = datetime.fromisoformat(f"{day} {local_text}")
        assert fresh.to_utc(local) == datetime.fromisoformat(utc_text), local_text


def test_half_hour_transition_reverse_order_matches_zoneinfo() -> None:
    clock = LocalToUTC("Australia/Lord_Howe")
    start = datetime(2017, 10, 1)
    for minute in reversed(range(24 * 60)):
        local = start + timedelta(minutes=minute)
        assert clock.to_utc(local) == reference(local, "Australia/Lord_Howe"), local


@pytest.mark.parametrize("name", ["Mars/Olympus_Mons", "", "../etc/passwd", "America/Chicago "])
def test_unknown_zone_is_a_usage_error(name: str) -> None:
    with pytest.raises(UsageError, match="unknown time zone"):
        LocalToUTC(name)
