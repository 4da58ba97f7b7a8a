"""Footfall counters as pedestrian flow (issue 8): an hourly count spread over its hour gives
persons per minute, over the zone's width the walkway flow rate; the level of service comes
from the flow when the density is unknown; the occupancy never moves; and the crowd state and
the live alert engine agree on the same observations."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from tests.crowd_service.conftest import Api, iso, minutes

from urbansec.crowd.los import FRUIN_WALKWAY, LosConfig
from urbansec.sensors.payloads import TimeBounds
from urbansec.services.alert_engine import AlertEngine
from urbansec.services.sensor_ingest import IngestPipeline, RawMessage

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def interval(stream: int, start: datetime, end: datetime, count: float) -> RawMessage:
    return RawMessage(f"v1.1/Datastreams({stream})/Observations", json.dumps(
        {"phenomenonTime": f"{iso(start)}/{iso(end)}", "result": count}).encode(),
        datetime.now(UTC))


def instants(stream: int, values: Sequence[tuple[datetime, float]]) -> list[RawMessage]:
    return [RawMessage(f"v1.1/Datastreams({stream})/Observations", json.dumps(
        {"phenomenonTime": iso(t), "result": v}).encode(), datetime.now(UTC))
        for t, v in values]


def pipeline(api: Api) -> IngestPipeline:
    return IngestPipeline(api.engine, "footfall-test",
                          TimeBounds(max_age=None, reorder_window=None))


def push(ingest: IngestPipeline, messages: Sequence[RawMessage]) -> None:
    result = ingest.process(list(messages))
    assert not result.rejected, result.rejected


def test_los_scale_grades_flow_alone_when_density_unknown() -> None:
    # 50 persons/m/min lies between Fruin's 15 and 20 ppfm (49.2 and 65.6): level D
    assert FRUIN_WALKWAY.level(np.nan, 50.0) == 3
    assert LosConfig().level("walkway", np.nan, 5.0) == 0
    assert LosConfig().level("walkway", np.nan, np.nan) == -1


def test_footfall_only_zone_has_flow_and_los_but_no_occupancy(api: Api) -> None:
    api.zone("footway", "walkway", 60, width_m=2)
    (footfall,) = api.streams("footway", ("footfall",))
    ingest = pipeline(api)
    # 600 in the first hour: 10 a minute, 5 persons/m/min (A); 6,000 in the next: 50 (D)
    push(ingest, [interval(footfall, T0, T0 + HOUR, 600),
                  interval(footfall, T0 + HOUR, T0 + 2 * HOUR, 6000)])

    early = api.get("/state", at=iso(T0 + HOUR)).json()["zones"][0]
    assert early["flow"] == pytest.approx(5.0) and early["los"] == "A"
    assert early["occupancy"] is None and early["density"] is None
    assert early["sources"] == ["footfall"]
    assert any("footfall" in w for w in early["warnings"])
    late = api.get("/state", at=iso(T0 + HOUR + timedelta(minutes=30))).json()["zones"][0]
    assert late["flow"] == pytest.approx(50.0) and late["los"] == "D"

    series = api.get("/zones/footway/series", **{"from": iso(T0),
                                                 "to": iso(T0 + 2 * HOUR)}).json()
    assert series["flow"] == pytest.approx([5.0] * 60 + [50.0] * 60)
    assert series["los"] == ["A"] * 60 + ["D"] * 60
    assert set(series["occupancy"]) == {None}
    assert series["sources"] == ["footfall"]

    # stale: without an instant the state is shown at the newest observation (the replay)
    stale = api.get("/state").json()
    assert stale["stale"] is True and stale["at"] == iso(T0 + 2 * HOUR)
    assert stale["zones"][0]["flow"] == pytest.approx(50.0)


def test_footfall_adds_to_the_flow_not_to_the_occupancy(api: Api) -> None:
    api.zone("gate", "walkway", 100, width_m=4)
    inflow, outflow, footfall = api.streams("gate", ("in_counter", "out_counter", "footfall"))
    api.observe(inflow, minutes(T0, [10] * 10))
    api.observe(outflow, minutes(T0, [2] * 10))
    push(pipeline(api), [interval(footfall, T0, T0 + HOUR, 1200)])  # 20 a minute

    zone = api.get("/state", at=iso(T0 + timedelta(minutes=10))).json()["zones"][0]
    assert zone["occupancy"] == pytest.approx(80.0)  # (10 - 2) x 10 minutes, footfall aside
    assert zone["flow"] == pytest.approx((10 + 2 + 20) / 4)
    assert zone["sources"] == ["in_counter", "out_counter", "footfall"]
    # after the counters stop, the footfall alone is the flow
    later = api.get("/state", at=iso(T0 + timedelta(minutes=30))).json()["zones"][0]
    assert later["flow"] == pytest.approx(20 / 4) and later["occupancy"] == pytest.approx(80)


def test_crowd_state_and_alert_engine_agree(api: Api) -> None:
    api.zone("street", "walkway", 90, width_m=3)
    inflow, outflow, footfall = api.streams("street",
                                            ("in_counter", "out_counter", "footfall"))
    ingest = pipeline(api)
    engine = AlertEngine(api.engine, clock="data", tick_seconds=0).load()
    ingest.add_listener(engine)
    rng = np.random.default_rng(8)
    ins = rng.integers(0, 40, 60).tolist()
    outs = rng.integers(0, 30, 60).tolist()
    batches = [
        # one batch with a whole hour: in/out each minute and the hour's footfall count
        ([*instants(inflow, minutes(T0, ins)), *instants(outflow, minutes(T0, outs)),
          interval(footfall, T0, T0 + HOUR, 4500)],
         T0 + HOUR, (ins[-1] + outs[-1] + 4500 / 60) / 3),
        # the next hour: footfall only
        ([interval(footfall, T0 + HOUR, T0 + 2 * HOUR, 9000)], T0 + 2 * HOUR, 9000 / 60 / 3)]
    for messages, at, expected_flow in batches:
        push(ingest, messages)
        assert engine.now() == at.timestamp()  # the data clock: the newest phenomenon time
        zone = api.get("/state", at=iso(at)).json()["zones"][0]
        reading = engine._reading(engine.zones["street"], engine.now())
        assert zone["flow"] == pytest.approx(expected_flow)
        assert reading.flow == pytest.approx(zone["flow"])
        assert FRUIN_WALKWAY.letters([reading.los])[0] == zone["los"]
        assert reading.occupancy == pytest.approx(zone["occupancy"])
        assert zone["sources"] == ["in_counter", "out_counter", "footfall"]
