"""Payload checks, each reason on its own: pure, no broker, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from urbansec.sensors.payloads import (
    COUNT,
    MEASUREMENT,
    DatastreamRule,
    FieldMapping,
    ObservationIn,
    Rejected,
    TimeBounds,
    check_result,
    check_time,
    decode_object,
    observation_from_json,
    observations_from_plain,
    result_key,
)

NOW = datetime(2025, 6, 1, 12, tzinfo=UTC)


def reason(action: object) -> str:
    with pytest.raises(Rejected) as caught:
        action()  # type: ignore[operator]
    return caught.value.reason


def test_decoding() -> None:
    assert decode_object(b'{"result": 1}') == {"result": 1}
    assert reason(lambda: decode_object(b"{nope")) == "malformed_json"
    assert reason(lambda: decode_object(b"[1, 2]")) == "malformed_json"
    assert reason(lambda: decode_object(b"\xff\xfe")) == "malformed_json"


def test_observation_json() -> None:
    obs = observation_from_json({"phenomenonTime": "2025-06-01T13:00:00+01:00/"
                                                   "2025-06-01T13:01:00+01:00",
                                 "result": 4}, 7, NOW)
    assert obs.phenomenon_time == datetime(2025, 6, 1, 12, tzinfo=UTC)
    assert obs.phenomenon_time_end == datetime(2025, 6, 1, 12, 1, tzinfo=UTC)
    assert observation_from_json({"result": 4}, 7, NOW).phenomenon_time == NOW
    assert reason(lambda: observation_from_json({"phenomenonTime": "x"}, 7, NOW)) == \
        "missing_field"
    assert reason(lambda: observation_from_json(
        {"phenomenonTime": "2025-06-01T12:00:00", "result": 1}, 7, NOW)) == "bad_time"
    assert reason(lambda: observation_from_json(
        {"phenomenonTime": "yesterday", "result": 1}, 7, NOW)) == "bad_time"


def test_results_against_types_and_roles() -> None:
    counter = DatastreamRule(1, COUNT, "in_counter")
    check_result(12, counter)
    check_result(12.0, counter)
    assert reason(lambda: check_result(-1, counter)) == "negative_count"
    assert reason(lambda: check_result(1.5, counter)) == "wrong_type"
    assert reason(lambda: check_result("12", counter)) == "wrong_type"
    assert reason(lambda: check_result(True, counter)) == "wrong_type"
    light = DatastreamRule(2, "x:any", "lighting_status")
    check_result("dimmed", light)
    check_result(0.5, light)  # the numeric codes: 1 on, 0.5 dimmed, 0 off, -1 failed
    check_result(-1, light)
    assert reason(lambda: check_result("broken", light)) == "wrong_type"
    assert reason(lambda: check_result(2, light)) == "wrong_type"
    assert reason(lambda: check_result(True, light)) == "wrong_type"
    assert reason(lambda: check_result("1", DatastreamRule(3, MEASUREMENT))) == "wrong_type"


def test_plain_messages_one_verdict_per_member() -> None:
    mappings = [FieldMapping("in", 5), FieldMapping("out", 6)]
    found = observations_from_plain({"ts": 1748779200, "in": 12}, mappings, NOW)
    assert isinstance(found[0], ObservationIn) and found[0].result == 12
    assert found[0].phenomenon_time == NOW
    assert isinstance(found[1], Rejected) and found[1].reason == "missing_field"


def test_time_bounds() -> None:
    bounds = TimeBounds(max_future=timedelta(minutes=5), max_age=timedelta(hours=1),
                        reorder_window=timedelta(minutes=10))

    def at(minutes: float) -> ObservationIn:
        return ObservationIn(1, NOW + timedelta(minutes=minutes), 1)

    check_time(at(4), NOW, bounds, None)
    assert reason(lambda: check_time(at(6), NOW, bounds, None)) == "future_time"
    assert reason(lambda: check_time(at(-61), NOW, bounds, None)) == "too_old"
    check_time(at(-9), NOW, bounds, NOW)
    assert reason(lambda: check_time(at(-11), NOW, bounds, NOW)) == "out_of_order"
    check_time(at(-600), NOW, TimeBounds(max_age=None, reorder_window=None), NOW)


def test_result_keys_are_canonical() -> None:
    assert result_key({"b": 1, "a": 2}) == result_key({"a": 2, "b": 1}) == '{"a":2,"b":1}'
    assert len(result_key("x" * 100)) == 64
