"""Every rule, de-duplication over successive evaluations, hysteresis and geofences."""

from __future__ import annotations

import numpy as np
import pytest
from shapely.geometry import box

from urbansec.crowd.rules import (
    CrowdState,
    DevicePosition,
    GeofenceRule,
    LightFailedRule,
    LightStatus,
    RuleMemory,
    SensorSilentRule,
    Severity,
    ThresholdRule,
    TrendRule,
    ZoneReading,
    evaluate,
)
from urbansec.crowd.zones import ZoneType
from urbansec.errors import UsageError

T0 = np.datetime64("2025-03-01T20:00:00", "s")
MIN = np.timedelta64(60, "s")


def zone(zone_id: str = "north", density: float = 1.0, occupancy: float = 100.0,
         **kwargs: object) -> ZoneReading:
    return ZoneReading(zone_id, kwargs.pop("zone_type", ZoneType.STANDING), occupancy, density,
                       **kwargs)  # type: ignore[arg-type]


def state(minute: int = 0, zones: list[ZoneReading] | None = None, **kwargs: object
          ) -> CrowdState:
    return CrowdState(T0 + minute * MIN, {z.zone_id: z for z in zones or []},
                      **kwargs)  # type: ignore[arg-type]


def test_threshold_alert_is_raised_once_then_ongoing_then_cleared_then_raised_again() -> None:
    rules = [ThresholdRule("dense", "density", 4.0, Severity.CRITICAL)]
    first = evaluate(rules, state(0, [zone(density=4.2), zone("south", density=2.0)]))
    assert [a.key for a in first.raised] == ["dense|north"]
    assert first.raised[0].severity is Severity.CRITICAL
    assert first.raised[0].value == pytest.approx(4.2)
    second = evaluate(rules, state(1, [zone(density=4.5)]), first.memory)
    assert second.raised == [] and [a.key for a in second.ongoing] == ["dense|north"]
    # the ongoing alert keeps its first time (the store de-duplicates on the key)
    assert second.memory.active["dense|north"].time == T0
    third = evaluate(rules, state(2, [zone(density=3.0)]), second.memory)
    assert third.raised == [] and third.cleared == ["dense|north"]
    assert third.memory.active == {}
    fourth = evaluate(rules, state(3, [zone(density=4.0)]), third.memory)  # >= threshold
    assert [a.key for a in fourth.raised] == ["dense|north"]


def test_hysteresis_keeps_an_alert_until_the_value_drops_clearly() -> None:
    rules = [ThresholdRule("dense", "density", 4.0, hysteresis=0.5)]
    memory = evaluate(rules, state(0, [zone(density=4.1)])).memory
    wavering = evaluate(rules, state(1, [zone(density=3.8)]), memory)
    assert wavering.raised == [] and len(wavering.ongoing) == 1 and wavering.cleared == []
    below = evaluate(rules, state(2, [zone(density=3.4)]), wavering.memory)
    assert below.cleared == ["dense|north"]
    # without an active alert the plain threshold applies: 3.8 raises nothing
    assert evaluate(rules, state(3, [zone(density=3.8)]), below.memory).raised == []


def test_los_occupancy_share_and_flow_thresholds_with_zone_filters() -> None:
    rules = [
        ThresholdRule("los-e", "los", "E", zone_types={"walkway"}),
        ThresholdRule("full", "occupancy_share", 0.9, Severity.CRITICAL),
        ThresholdRule("flow", "flow", 66.0, zone_ids={"gate"}),
    ]
    readings = [
        zone("path", zone_type=ZoneType.WALKWAY, los=4),
        zone("pit", zone_type=ZoneType.STANDING, los=5, occupancy=950, capacity=1000),
        zone("gate", zone_type=ZoneType.EXIT, flow=70.0, capacity=None),
        zone("gate2", zone_type=ZoneType.EXIT, flow=90.0),
    ]
    result = evaluate(rules, state(0, readings))
    # pit has LoS F but is not a walkway; gate2's flow is not watched; no capacity -> no share
    assert [a.key for a in result.raised] == ["full|pit", "flow|gate", "los-e|path"]
    assert "E" in next(a for a in result.raised if a.rule_id == "los-e").message
    with pytest.raises(UsageError):
        ThresholdRule("bad", "temperature", 1.0)
    with pytest.raises(UsageError):
        ThresholdRule("bad", "density", "E")


def test_trend_rule_fires_before_the_threshold_is_reached() -> None:
    rising = 2.1 + 0.1 * np.arange(10)  # now 3.0, +0.1 per minute: 4.0 in 10 minutes
    rules = [TrendRule("soon", threshold=4.0, within_minutes=15)]
    result = evaluate(rules, state(0, [zone(density=3.0, density_recent=rising)]))
    assert [a.key for a in result.raised] == ["soon|north"]
    assert result.raised[0].value == pytest.approx(10.0)
    tighter = [TrendRule("soon", threshold=4.0, within_minutes=5)]
    assert evaluate(tighter, state(0, [zone(density_recent=rising)])).raised == []
    above = 4.1 + 0.1 * np.arange(10)
    assert evaluate(rules, state(0, [zone(density_recent=above)])).raised == []
    assert evaluate(rules, state(0, [zone(density_recent=rising[:3])])).raised == []


def test_sensor_silent_for_more_than_n_minutes_or_never_seen() -> None:
    rules = [SensorSilentRule("silent", minutes=10)]
    seen = {"cam-1": T0 - 11 * MIN, "cam-2": T0 - 9 * MIN, "cam-3": T0 - 10 * MIN,
            "beam-4": None}
    result = evaluate(rules, state(0, sensor_last_seen=seen))
    assert sorted(a.subject for a in result.raised) == ["beam-4", "cam-1"]
    assert next(a for a in result.raised if a.subject == "cam-1").value == pytest.approx(11)
    # the sensor reports again: the alert clears
    later = evaluate(rules, state(1, sensor_last_seen={"cam-1": T0 + MIN, "beam-4": None}),
                     result.memory)
    assert later.cleared == ["silent|cam-1"] and [a.subject for a in later.ongoing] == ["beam-4"]
    only = [SensorSilentRule("silent", minutes=10, sensor_ids={"cam-2"})]
    assert evaluate(only, state(0, sensor_last_seen=seen)).raised == []


def test_failed_light_alerts_only_in_an_occupied_zone() -> None:
    rules = [LightFailedRule("dark", min_occupancy=1)]
    lights = [LightStatus("L1", "north", "failed"), LightStatus("L2", "empty", "failed"),
              LightStatus("L3", "north", "off"), LightStatus("L4", "unknown-zone", "failed")]
    readings = [zone("north", occupancy=40), zone("empty", occupancy=0)]
    result = evaluate(rules, state(0, readings, lights=lights))
    assert [a.key for a in result.raised] == ["dark|L1"]
    assert result.raised[0].details["zone_id"] == "north"


def test_geofence_enter_and_exit_each_crossing_once() -> None:
    fence = box(0, 0, 100, 100)
    rules = [GeofenceRule("in", "stage", fence, "enter", device_kinds={"steward"}),
             GeofenceRule("out", "stage", fence, "exit", device_kinds={"steward"})]

    def at(minute: int, x: float, kind: str = "steward") -> CrowdState:
        return state(minute, devices=[DevicePosition("s1", x, 50.0, kind)])

    first = evaluate(rules, at(0, 50))  # first sighting: learnt, not announced
    assert first.raised == []
    assert first.memory.fences[("stage", "s1")] == T0
    left = evaluate(rules, at(1, 150), first.memory)
    assert [a.kind for a in left.raised] == ["geofence_exit"]
    # the same position again (a replayed message) raises nothing
    again = evaluate(rules, at(1, 150), left.memory)
    assert again.raised == [] and again.ongoing == []
    back = evaluate(rules, at(2, 100), again.memory)  # on the boundary counts as inside
    assert [a.kind for a in back.raised] == ["geofence_enter"]
    assert back.raised[0].key != left.raised[0].key
    # one-off events are not kept active, so nothing "clears" afterwards
    assert back.memory.active == {}
    assert evaluate(rules, at(3, 100), back.memory).cleared == []
    # another kind of device is not watched by these rules
    assert evaluate(rules, at(4, 500, "beacon"), back.memory).raised == []


def test_geofence_dwell_counts_from_entry_and_clears_on_leaving() -> None:
    rules = [GeofenceRule("loiter", "exit-a", box(0, 0, 10, 10), "dwell", dwell_minutes=5,
                          severity=Severity.WARNING)]

    def at(minute: int, x: float) -> CrowdState:
        return state(minute, devices=[DevicePosition("p7", x, 5.0, "patrol")])

    memory = evaluate(rules, at(0, 50)).memory  # outside
    for minute in (1, 2, 3, 4, 5):
        result = evaluate(rules, at(minute, 5), memory)  # inside from minute 1
        memory = result.memory
        assert result.raised == [], minute
    result = evaluate(rules, at(6, 5), memory)
    assert [a.kind for a in result.raised] == ["geofence_dwell"]
    assert result.raised[0].value == pytest.approx(5.0)
    result = evaluate(rules, at(7, 5), result.memory)
    assert result.raised == [] and len(result.ongoing) == 1
    result = evaluate(rules, at(8, 50), result.memory)
    assert len(result.cleared) == 1 and result.memory.active == {}
    # a new stay is a new alert with a new key
    for minute in range(9, 15):
        result = evaluate(rules, at(minute, 5), result.memory)
    assert len(result.raised) == 1
    with pytest.raises(UsageError):
        GeofenceRule("bad", "f", box(0, 0, 1, 1), "dwell")


def test_alerts_are_ordered_by_severity_and_rule_ids_must_be_unique() -> None:
    rules = [ThresholdRule("busy", "density", 2.0, Severity.INFO),
             ThresholdRule("dense", "density", 4.0, Severity.CRITICAL)]
    result = evaluate(rules, state(0, [zone(density=5.0)]))
    assert [a.rule_id for a in result.raised] == ["dense", "busy"]
    with pytest.raises(UsageError):
        evaluate([*rules, ThresholdRule("busy", "flow", 1.0)], state(0))
    assert evaluate(rules, state(0), RuleMemory()).raised == []
