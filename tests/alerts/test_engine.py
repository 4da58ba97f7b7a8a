"""The alert engine on the real ingest pipeline, on SQLite and PostgreSQL: threshold alerts
raised once, kept through redeliveries and restarts, cleared after the hysteresis; flows,
level of service, silent sensors, failed lights, geofences; the data clock of replays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from tests.alerts.support import audit_actions, make_site, make_stream, message, push

from urbansec.errors import ConflictError, UsageError
from urbansec.sensors.payloads import TimeBounds
from urbansec.services import alerts as service
from urbansec.services.access import SYSTEM
from urbansec.services.alert_engine import AlertEngine
from urbansec.services.sensor_ingest import IngestPipeline

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at.timestamp()


def running(db: Engine, clock: Clock, mode: str = "wall") -> tuple[IngestPipeline, AlertEngine,
                                                                    list[Any]]:
    events: list[Any] = []
    pipeline = IngestPipeline(db, bounds=TimeBounds(max_age=None, reorder_window=None))
    engine = AlertEngine(db, events.extend, clock=mode, tick_seconds=0, update_seconds=0,
                         wall_clock=clock).load()
    pipeline.add_listener(engine)
    return pipeline, engine, events


def rule(db: Engine, kind: str, params: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return service.create_rule(db, SYSTEM, name=f"{kind} rule", kind=kind, params=params,
                               **extra)


def changes(events: list[Any]) -> list[tuple[str, str]]:
    return [(e.change, e.alert["subject"]) for e in events]


def test_threshold_raised_once_kept_cleared_and_audited(db: Engine) -> None:
    site = make_site(db)
    camera = site.streams["camera"]
    made = rule(db, "threshold", {"metric": "occupancy", "threshold": 300, "hysteresis": 50},
                severity="critical", zones=["north"])
    clock = Clock(T0)
    pipeline, engine, events = running(db, clock)

    push(pipeline, message(camera, 100, T0))
    assert events == []
    first = message(camera, 320, T0 + timedelta(seconds=10))
    push(pipeline, first)
    assert changes(events) == [("raised", "north")]
    raised = events[0].alert
    assert raised["rule_id"] == made["id"] and raised["rule_name"] == "threshold rule"
    assert raised["severity"] == "critical" and raised["value"] == 320
    assert raised["threshold"] == 300 and raised["zone"] == "north"
    assert raised["status"] == "open" and raised["raised_at"].endswith("Z")
    assert raised["details"]["observation"]["datastream_id"] == camera
    assert raised["details"]["observation"]["phenomenon_time"].startswith(
        (T0 + timedelta(seconds=10)).strftime("%Y-%m-%dT%H:%M:%S"))

    # a QoS 1 redelivery of the same reading, and the same batch evaluated again
    assert pipeline.process([first]).duplicates == 1
    assert len(events) == 1
    # a restarted engine remembers the open alert: the reading still above raises nothing
    pipeline2, _engine2, events2 = running(db, clock)
    push(pipeline2, message(camera, 330, T0 + timedelta(seconds=20)))
    assert [e.change for e in events2] == ["updated"]
    assert len(service.list_alerts(db, "all")) == 1

    # inside the hysteresis band: still open; below it: cleared
    push(pipeline2, message(camera, 280, T0 + timedelta(seconds=30)))
    assert "cleared" not in [e.change for e in events2]
    push(pipeline2, message(camera, 240, T0 + timedelta(seconds=40)))
    assert events2[-1].change == "cleared"
    cleared = service.list_alerts(db, "cleared")
    assert [a["id"] for a in cleared] == [raised["id"]]
    assert cleared[0]["cleared_at"] is not None and service.list_alerts(db, "open") == []

    # back above later: a new alert, the cleared one stays listed
    clock.at = T0 + timedelta(seconds=50)
    push(pipeline2, message(camera, 310, clock.at))
    assert events2[-1].change == "raised" and events2[-1].alert["id"] != raised["id"]
    assert len(service.list_alerts(db, "all")) == 2
    actions = audit_actions(db)
    assert actions.count("alert.raised") == 2 and actions.count("alert.cleared") == 1
    assert engine.counters["raised"] == 1


def test_acknowledge_is_audited_once_and_keeps_the_alert_live(db: Engine) -> None:
    site = make_site(db)
    rule(db, "threshold", {"metric": "occupancy", "threshold": 10}, zones=["north"])
    clock = Clock(T0)
    pipeline, _engine, events = running(db, clock)
    push(pipeline, message(site.streams["camera"], 50, T0))
    alert_id = events[0].alert["id"]
    event = service.acknowledge(db, SYSTEM, alert_id, "steward sent")
    assert event.change == "acknowledged" and event.seq > events[0].seq
    assert event.alert["status"] == "acknowledged"
    assert event.alert["acknowledged_by"] == SYSTEM.actor
    with pytest.raises(ConflictError):
        service.acknowledge(db, SYSTEM, alert_id)
    assert audit_actions(db).count("alert.acknowledged") == 1
    assert [a["id"] for a in service.list_alerts(db, "acknowledged")] == [alert_id]
    assert [a["id"] for a in service.list_alerts(db, "open")] == [alert_id]
    push(pipeline, message(site.streams["camera"], 0, T0 + timedelta(seconds=5)))
    assert events[-1].change == "cleared"
    stored = service.get_alert(db, alert_id)
    assert stored["status"] == "cleared" and stored["acknowledged_at"] is not None
    # resuming after the raise gives the alert once, in its latest state
    resumed = service.changes_since(db, events[0].seq)
    assert [(e.change, e.alert["id"]) for e in resumed] == [("cleared", alert_id)]


def test_flows_density_and_level_of_service(db: Engine) -> None:
    site = make_site(db)
    rule(db, "threshold", {"metric": "occupancy", "threshold": 20}, zones=["north"])
    rule(db, "threshold", {"metric": "los", "threshold": "E"}, zones=["gate"])
    rule(db, "threshold", {"metric": "flow", "threshold": 10}, zones=["gate"])
    gate_in = make_stream(db, "counter-gate-in", "in_counter", "gate")
    clock = Clock(T0)
    pipeline, _engine, events = running(db, clock)
    # no camera in north: the counters make the occupancy (in 30 - out 5 = 25)
    push(pipeline, message(site.streams["in"], 30, T0),
         message(site.streams["out"], 5, T0))
    assert changes(events) == [("raised", "north")]
    assert events[0].alert["value"] == 25
    # gate: 60 persons on 50 m² of walkway is Fruin level E; 60 crossing 5 m in a minute is
    # 12 persons/m/min
    push(pipeline, message(site.streams["gate"], 60, T0), message(gate_in, 60, T0))
    by_kind = {e.alert["kind"]: e.alert for e in events[1:]}
    assert by_kind["threshold:los"]["value"] == 4  # E
    assert by_kind["threshold:flow"]["value"] == pytest.approx(12.0)
    assert "E" in by_kind["threshold:los"]["message"]


def test_trend_warns_before_the_threshold(db: Engine) -> None:
    site = make_site(db)
    rule(db, "trend", {"threshold": 3.0, "within_minutes": 10}, zones=["north"])
    clock = Clock(T0)
    pipeline, _engine, events = running(db, clock)
    # 100 m²: 100, 120, ... persons a minute apart is a density rising 0.2/m² per minute
    for minute in range(5):
        clock.at = T0 + timedelta(minutes=minute)
        push(pipeline, message(site.streams["camera"], 100 + 20 * minute, clock.at))
        assert events == [] or minute == 4
    assert changes(events) == [("raised", "north")]
    assert events[0].alert["kind"] == "trend"
    assert events[0].alert["value"] == pytest.approx(6.0)  # minutes left: (3.0 - 1.8) / 0.2
    # the crowd goes away: the robust slope turns once most of the window is flat
    for minute in range(5, 11):
        clock.at = T0 + timedelta(minutes=minute)
        push(pipeline, message(site.streams["camera"], 100, clock.at))
    assert changes(events)[-1] == ("cleared", "north")


def test_flows_count_from_the_lookback_or_the_event_start(db: Engine) -> None:
    from urbansec.services.crowd_events import create_event

    site = make_site(db)
    rule(db, "threshold", {"metric": "occupancy", "threshold": 40}, zones=["north"])
    clock = Clock(T0)
    pipeline, engine, _events = running(db, clock)
    # 13 hours ago (outside the 12-hour lookback) and 1 hour ago
    push(pipeline, message(site.streams["in"], 500, T0 - timedelta(hours=13)),
         message(site.streams["in"], 30, T0 - timedelta(hours=1)))
    _pipeline, restarted, _events = running(db, clock)
    assert restarted.zones["north"].flow_occupancy == 30  # loaded: the last 12 hours only
    # an event starts: its zones' flows count from an empty zone
    create_event(db, SYSTEM, "concert", T0 - timedelta(minutes=1), T0 + timedelta(hours=3),
                 ["north"])
    restarted.tick()
    assert restarted.zones["north"].flow_occupancy == 0
    assert engine.zones["north"].flow_occupancy == 530  # the first engine saw all of it
    _pipeline, during, _events = running(db, clock)
    assert during.zones["north"].flow_occupancy == 0  # nothing crossed since it started


def test_silent_sensor_raised_by_the_timer_and_cleared_when_it_reports(db: Engine) -> None:
    site = make_site(db)
    camera = site.streams["camera"]
    rule(db, "silent", {"minutes": 2, "datastreams": [camera]})
    clock = Clock(T0)
    pipeline, engine, events = running(db, clock)
    push(pipeline, message(camera, 5, T0))
    clock.at = T0 + timedelta(seconds=60)
    assert engine.tick() == []
    clock.at = T0 + timedelta(seconds=200)
    engine.tick()
    assert changes(events) == [("raised", f"Datastreams({camera})")]
    assert events[0].alert["zone"] == "north"
    engine.tick()
    assert len(events) == 1
    push(pipeline, message(camera, 6, T0 + timedelta(seconds=205)))
    assert changes(events)[-1] == ("cleared", f"Datastreams({camera})")


def test_a_silent_rule_without_datastreams_watches_the_zone_streams(db: Engine) -> None:
    site = make_site(db)
    rule(db, "silent", {"minutes": 1}, zones=["gate"])
    clock = Clock(T0)
    _pipeline, engine, events = running(db, clock)
    clock.at = T0 + timedelta(minutes=2)
    engine.tick()
    # never reported since the engine started: silent from the start, and only gate's one
    assert changes(events) == [("raised", f"Datastreams({site.streams['gate']})")]


def test_failed_light_in_an_occupied_zone(db: Engine) -> None:
    site = make_site(db)
    rule(db, "light_failed", {"min_occupancy": 10}, severity="critical")
    clock = Clock(T0)
    pipeline, _engine, events = running(db, clock)
    push(pipeline, message(site.streams["light"], "failed", T0))
    assert events == []  # nobody in the zone yet (no reading at all)
    push(pipeline, message(site.streams["camera"], 40, T0 + timedelta(seconds=5)))
    assert changes(events) == [("raised", "lamp-7")]
    assert events[0].alert["zone"] == "north" and events[0].alert["severity"] == "critical"
    push(pipeline, message(site.streams["light"], "on", T0 + timedelta(seconds=10)))
    assert changes(events)[-1] == ("cleared", "lamp-7")


FENCE = {"type": "Polygon", "coordinates": [[[174.76, -36.85], [174.77, -36.85],
                                             [174.77, -36.84], [174.76, -36.84],
                                             [174.76, -36.85]]]}
INSIDE = {"type": "Point", "coordinates": [174.765, -36.845]}
OUTSIDE = {"lat": -36.80, "lon": 174.70}


def test_geofence_enter_dwell_exit_from_positions(db: Engine) -> None:
    position = make_stream(db, "steward-1", "position", properties={"kind": "steward"})
    for trigger, extra in (("enter", {}), ("exit", {}), ("dwell", {"dwell_minutes": 5})):
        service.create_rule(db, SYSTEM, name=f"stage {trigger}", kind="geofence",
                            severity="info", params={"fence": FENCE, "fence_id": "stage",
                                                     "trigger": trigger,
                                                     "device_kinds": ["steward"], **extra})
    clock = Clock(T0)
    pipeline, engine, events = running(db, clock)
    push(pipeline, message(position, OUTSIDE, T0))
    assert events == []  # first sight: the side is learnt, nothing announced
    clock.at = T0 + timedelta(minutes=1)
    push(pipeline, message(position, INSIDE, clock.at))
    assert [(e.change, e.alert["kind"]) for e in events] == [("raised", "geofence_enter")]
    assert events[0].alert["subject"] == "steward-1@stage"
    clock.at = T0 + timedelta(minutes=7)
    engine.tick()
    assert [(e.change, e.alert["kind"]) for e in events[1:]] == [("raised", "geofence_dwell")]
    clock.at = T0 + timedelta(minutes=8)
    push(pipeline, message(position, OUTSIDE, clock.at))
    assert sorted((e.change, e.alert["kind"]) for e in events[2:]) == [
        ("cleared", "geofence_dwell"), ("raised", "geofence_exit")]
    # the crossings are events: they stay open until someone acknowledges them
    kinds = {a["kind"]: a["status"] for a in service.list_alerts(db, "all")}
    assert kinds == {"geofence_enter": "open", "geofence_exit": "open",
                     "geofence_dwell": "cleared"}
    engine.tick()
    assert len(events) == 4


def test_replayed_history_uses_the_data_clock(db: Engine) -> None:
    site = make_site(db)
    camera = site.streams["camera"]
    rule(db, "threshold", {"metric": "occupancy", "threshold": 100}, zones=["north"])
    rule(db, "silent", {"minutes": 30})
    past = T0 - timedelta(days=3)
    clock = Clock(T0)
    pipeline, engine, events = running(db, clock, mode="auto")
    push(pipeline, message(camera, 150, past))
    assert engine.data_clock()
    assert changes(events) == [("raised", "north")]
    assert events[0].alert["raised_at"].startswith(past.strftime("%Y-%m-%dT%H:%M"))
    engine.tick()
    # only the stream that reported is watched, and it is not silent in data time
    assert len(events) == 1
    push(pipeline, message(site.streams["gate"], 3, past + timedelta(hours=1)))
    engine.tick()
    assert changes(events)[-1] == ("raised", f"Datastreams({camera})")


@pytest.mark.parametrize(("kind", "params", "zones"), [
    ("threshold", {"metric": "speed", "threshold": 3}, None),
    ("threshold", {"metric": "los", "threshold": "Q"}, None),
    ("threshold", {"metric": "density", "threshold": "high"}, None),
    ("trend", {"threshold": 4}, None),
    ("silent", {"minutes": -1}, None),
    ("silent", {"minutes": 5, "datastreams": ["a"]}, None),
    ("geofence", {"fence": {"type": "Point", "coordinates": [0, 0]}, "trigger": "enter"},
     None),
    ("geofence", {"fence": FENCE, "trigger": "dwell"}, None),
    ("geofence", {"fence": FENCE, "trigger": "enter"}, ["north"]),
    ("threshold", {"metric": "density", "threshold": 2, "colour": "red"}, None),
    ("threshold", {"metric": "density", "threshold": 2}, ["nowhere"]),
])
def test_bad_rules_are_refused(db: Engine, kind: str, params: dict[str, Any],
                               zones: list[str] | None) -> None:
    make_site(db)
    with pytest.raises(UsageError):
        service.create_rule(db, SYSTEM, name="bad", kind=kind, params=params, zones=zones)
    assert service.list_rules(db) == []
