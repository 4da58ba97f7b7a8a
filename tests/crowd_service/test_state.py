"""The crowd state and minute series over HTTP, against values worked out by hand from the
observations posted: occupancy from flows, area-count precedence, beacon calibration, flow
rate, level of service, trend, lights, the stale rule and bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert
from tests.crowd_service.conftest import Api, iso, minutes

from urbansec.store.engine import write_transaction
from urbansec.store.sensors import Observation

T0 = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
FT2 = 0.09290304  # m² per ft²
PPFM = 1 / 0.3048  # persons/m/min per person/ft/min
# Fruin's walkway scale: level E starts below 10 ft² per person; capacity at 5 ft²
WALKWAY_E = 1 / (10 * FT2)
WALKWAY_CAPACITY_DENSITY = 1 / (5 * FT2)


@pytest.fixture
def gate(api: Api) -> tuple[int, int]:
    """A 200 m² walkway 5 m wide with an in and an out counter: 10 persons more in than out
    every minute for 10 minutes, flows rising by 26 persons a minute."""
    api.zone("gate", "walkway", 200, width_m=5)
    inflow, outflow = api.streams("gate", ("in_counter", "out_counter"))
    api.observe(outflow, minutes(T0, [2 + 13 * i for i in range(10)]))
    api.observe(inflow, minutes(T0, [12 + 13 * i for i in range(10)]))
    return inflow, outflow


def test_flows_give_occupancy_density_flow_los_and_trend(api: Api, gate: tuple[int, int]
                                                         ) -> None:
    series = api.get("/zones/gate/series", **{"from": iso(T0),
                                              "to": iso(T0 + timedelta(minutes=10))})
    assert series.status_code == 200, series.text
    body = series.json()
    assert body["step"] == "PT1M"
    assert body["times"] == [iso(T0 + timedelta(minutes=i)) for i in range(10)]
    assert body["occupancy"] == [10.0 * (i + 1) for i in range(10)]
    assert body["density"] == pytest.approx([0.05 * (i + 1) for i in range(10)])
    # (in + out) / width: (12 + 13i) + (2 + 13i) persons over 5 m
    assert body["flow"] == pytest.approx([(14 + 26 * i) / 5 for i in range(10)])
    # density alone: A up to 0.3075/m² (35 ft²), B to 0.4306 (25 ft²), C to 0.7176;
    # flow alone: A up to 7 ppfm = 22.97/m/min, B to 32.81, C to 49.21, D to 65.62
    # minute 4: flow 23.6 -> B; minute 6: flow 34 -> C; minute 9: flow 49.6 -> D
    assert 7 * PPFM < 23.6 and 10 * PPFM < 34 and 15 * PPFM < 49.6 < 20 * PPFM
    assert body["los"] == ["A", "A", "A", "A", "B", "B", "C", "C", "C", "D"]
    assert body["sources"] == ["in_counter", "out_counter"]

    state = api.get("/state", at=iso(T0 + timedelta(minutes=10, seconds=40)))
    assert state.status_code == 200, state.text
    answer = state.json()
    assert answer["at"] == iso(T0 + timedelta(minutes=10)) and answer["stale"] is False
    (zone,) = answer["zones"]
    assert zone["occupancy"] == 100
    assert zone["density"] == pytest.approx(0.5)
    assert zone["flow"] == pytest.approx(49.6)
    assert zone["los"] == "D"
    capacity = int(200 * WALKWAY_CAPACITY_DENSITY)  # 430 persons at 5 ft² each
    assert zone["capacity"] == capacity == 430
    assert zone["occupancy_share"] == pytest.approx(100 / capacity)
    # density rises by exactly 0.05/m² a minute: (1.0764 - 0.5) / 0.05 minutes to level E
    assert zone["threshold_density"] == pytest.approx(WALKWAY_E)
    assert zone["minutes_to_threshold"] == pytest.approx((WALKWAY_E - 0.5) / 0.05)
    assert zone["last_observation_at"] == iso(T0 + timedelta(minutes=10))
    assert zone["sources"] == ["in_counter", "out_counter"] and zone["warnings"] == []


def test_area_count_takes_precedence_and_flows_continue_from_it(api: Api) -> None:
    api.zone("stand", "standing", 100)
    area, inflow, outflow = api.streams("stand", ("area_count", "in_counter", "out_counter"))
    api.observe(inflow, minutes(T0, [5] * 10))
    api.observe(outflow, minutes(T0, [0] * 10))
    # two counts in minute 4 (10:04-10:05): the latest, at 10:05:00, is the occupancy
    api.observe(area, [(T0 + timedelta(minutes=4, seconds=30), 40),
                       (T0 + timedelta(minutes=5), 50)])
    body = api.get("/zones/stand/series", **{"from": iso(T0),
                                             "to": iso(T0 + timedelta(minutes=10))}).json()
    assert body["occupancy"] == [5, 10, 15, 20, 50, 55, 60, 65, 70, 75]
    # a standing crowd: A below 1/m², B to 2, C to 3 ...
    assert body["los"] == ["A"] * 10
    assert body["flow"] == [None] * 10  # no width: no flow rate
    assert body["sources"] == ["area_count", "in_counter", "out_counter"]
    assert any("width" in w for w in body["warnings"])

    zone = api.get("/state", at=iso(T0 + timedelta(minutes=10))).json()["zones"][0]
    assert zone["occupancy"] == 75 and zone["density"] == pytest.approx(0.75)
    # standing areas: the capacity is 4.7 persons/m² (Green Guide), level E starts at 4/m²
    assert zone["capacity"] == 470 and zone["threshold_density"] == 4.0


def test_area_count_alone_is_unknown_before_its_first_count(api: Api) -> None:
    api.zone("queue", "queue", 40)
    (area,) = api.streams("queue", ("area_count",))
    api.observe(area, [(T0 + timedelta(minutes=3), 30), (T0 + timedelta(minutes=6), 60)])
    body = api.get("/zones/queue/series", **{"from": iso(T0),
                                             "to": iso(T0 + timedelta(minutes=8))}).json()
    # the count holds until the next one; nothing is known before the first
    assert body["occupancy"] == [None, None, 30, 30, 30, 60, 60, 60]
    # Fruin's queuing scale: 0.75/m² is 14.3 ft² per person, A (13 ft² or more); 1.5/m² is
    # 7.2 ft², C (7-10 ft²)
    assert body["los"] == [None, None, "A", "A", "A", "C", "C", "C"]


def test_several_cameras_are_added_while_each_count_is_recent(api: Api) -> None:
    api.zone("hall", "standing", 100)
    east, west = api.streams("hall", ("area_count", "area_count"))
    api.observe(east, [(T0 + timedelta(minutes=1), 10), (T0 + timedelta(minutes=4), 12)])
    api.observe(west, [(T0 + timedelta(minutes=2), 5)])
    body = api.get("/zones/hall/series", **{"from": iso(T0),
                                            "to": iso(T0 + timedelta(minutes=8))}).json()
    # minute 0: only the east camera has counted, so the hall's total is not known yet;
    # then east + west, each count held for up to 5 minutes
    assert body["occupancy"] == [None, 15, 15, 17, 17, 17, 17, 17]
    assert body["sources"] == ["area_count"]


def test_beacon_estimate_uses_the_stated_calibration(api: Api) -> None:
    api.zone("plaza", "standing", 50, properties={"beacon_persons_per_device": 2.5})
    api.zone("square", "standing", 50)
    (plaza,) = api.streams("plaza", ("beacon_devices",))
    (square,) = api.streams("square", ("beacon_devices",))
    for stream in (plaza, square):
        api.observe(stream, minutes(T0, [10, 24]))
    answer = api.get("/state", at=iso(T0 + timedelta(minutes=2))).json()
    zones = {z["key"]: z for z in answer["zones"]}
    # 24 devices x 2.5 persons per device = 60 persons on 50 m²: 1.2/m², level B
    assert zones["plaza"]["occupancy"] == 60
    assert zones["plaza"]["density"] == pytest.approx(1.2)
    assert zones["plaza"]["los"] == "B"
    assert zones["plaza"]["sources"] == ["beacon_devices"]
    assert any("2.5 persons per device" in w for w in zones["plaza"]["warnings"])
    # without a calibration the devices say nothing about persons, and the state says so
    assert zones["square"]["occupancy"] is None and zones["square"]["los"] is None
    assert zones["square"]["sources"] == []
    assert any("beacon_persons_per_device" in w for w in zones["square"]["warnings"])


def test_lights_are_summarised_from_each_lights_latest_status(api: Api) -> None:
    api.zone("street", "walkway", 300, width_m=8)
    lamps = api.streams("street", ("lighting_status",) * 3, kind="category")
    api.observe(lamps[0], [(T0, "failed"), (T0 + timedelta(minutes=1), "on")])
    api.observe(lamps[1], [(T0, "on"), (T0 + timedelta(minutes=2), "failed")])
    api.observe(lamps[2], [(T0 + timedelta(minutes=5), "off")])  # after the state's instant
    (numeric,) = api.streams("street", ("lighting_status",), kind="measurement")
    # a numeric status (0.5 = dimmed), stored as a gateway would store it
    with write_transaction(api.engine) as connection:
        connection.execute(insert(Observation.__table__).values(
            datastream_id=numeric, phenomenon_time=T0, result=0.5, result_number=0.5,
            result_key="0.5"))
    zone = api.get("/state", at=iso(T0 + timedelta(minutes=3))).json()["zones"][0]
    assert zone["lights"] == {"on": 1, "dimmed": 1, "off": 0, "failed": 1}
    assert zone["last_observation_at"] == iso(T0 + timedelta(minutes=2))
    assert zone["occupancy"] is None  # lights measure no crowd


def test_stale_rule_moves_now_to_the_newest_observation(api: Api, gate: tuple[int, int]
                                                        ) -> None:
    answer = api.get("/state").json()
    assert answer["stale"] is True
    assert answer["at"] == iso(T0 + timedelta(minutes=10))
    assert answer["zones"][0]["occupancy"] == 100
    series = api.get("/zones/gate/series").json()
    assert series["stale"] is True and series["to"] == iso(T0 + timedelta(minutes=10))
    assert series["occupancy"][-1] == 100

    # a fresh observation in another zone: the state is now, not stale
    api.zone("live", "walkway", 100, width_m=2)
    (live,) = api.streams("live", ("in_counter",))
    recent = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
    api.observe(live, [(recent, 3)])
    answer = api.get("/state").json()
    assert answer["stale"] is False
    assert datetime.fromisoformat(answer["at"]) >= recent
    zones = {z["key"]: z for z in answer["zones"]}
    assert zones["live"]["occupancy"] == 3
    # the gate's flows are 12 hours old at most: outside the state's look-back they count
    # nothing, and the zone is reported with no observations
    assert zones["gate"]["occupancy"] is None
    assert zones["gate"]["last_observation_at"] == iso(T0 + timedelta(minutes=10))


def test_coarse_steps_show_the_worst_minute(api: Api, gate: tuple[int, int]) -> None:
    two_days = api.get("/zones/gate/series", **{"from": iso(T0),
                                                "to": iso(T0 + timedelta(days=2))}).json()
    assert two_days["step"] == "PT5M" and len(two_days["times"]) == 576
    # minutes 0-4 and 5-9: the worst (last) minute of each five
    assert two_days["occupancy"][:3] == [50, 100, 100]
    assert two_days["flow"][:2] == pytest.approx([118 / 5, 248 / 5])
    assert two_days["los"][:2] == ["B", "D"]
    week = api.get("/zones/gate/series", **{"from": iso(T0),
                                            "to": iso(T0 + timedelta(days=7))}).json()
    assert week["step"] == "PT1H" and len(week["times"]) == 168
    assert week["occupancy"][0] == 100 and week["los"][0] == "D"
    assert week["times"][1] == iso(T0 + timedelta(hours=1))


@pytest.mark.parametrize(("path", "params", "status"), [
    ("/zones/nowhere/series", {}, 404),
    ("/zones/gate/series", {"from": "2025-03-01T11:00:00Z", "to": "2025-03-01T10:00:00Z"},
     422),
    ("/zones/gate/series", {"from": "2025-03-01T00:00:00Z", "to": "2025-03-09T00:00:00Z"},
     422),
    ("/zones/gate/series", {"from": "2025-03-01T10:00:00", "to": "2025-03-01T11:00:00Z"},
     422),
    ("/zones/gate/series", {"from": "yesterday"}, 422),
    ("/state", {"at": "not a time"}, 422),
    ("/state", {"at": "0001-01-01T00:00:00Z"}, 422),  # would overflow the look-back
    ("/state", {"event": 999}, 404),
    ("/forecast", {}, 422),
    ("/forecast", {"zone": "nowhere"}, 404),
    ("/forecast", {"datastream": 999}, 404),
    ("/forecast", {"datastream": 1, "hours": 7}, 422),
    ("/forecast", {"datastream": 1, "model": "oracle"}, 422),
    ("/forecast", {"datastream": 1, "tz": "Mars/Olympus"}, 422),
    ("/forecast", {"datastream": 1, "zone": "gate"}, 422),
    ("/forecast", {"zone": "gate"}, 422),  # ten minutes of counts: too little history
])
def test_bad_input_is_a_json_4xx(api: Api, gate: tuple[int, int], path: str,
                                 params: dict[str, str], status: int) -> None:
    response = api.get(path, **params)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] and error["message"]
