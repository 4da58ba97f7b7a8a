"""The one-command replay demo (issue 8), on SQLite and PostgreSQL with a real Mosquitto:
``urbansec sensors zones auckland`` makes one walkway zone per real Auckland counter with its
footfall datastream and a flow rule; ``urbansec sensors replay auckland --ingest`` then
publishes two real days of counts, the ingester stores them, the alert engine raises and
clears flow alerts in the store, and ``GET /api/v1/crowd/state`` shows every zone's flow and
level of service."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from pyproj import Geod
from shapely.geometry import shape
from sqlalchemy import Engine
from tests.sensors.conftest import Mosquitto
from typer.testing import CliRunner, Result

from urbansec.api.app import create_app
from urbansec.cli import app
from urbansec.config import Settings
from urbansec.sensors import auckland
from urbansec.services import alerts, identity
from urbansec.services.crowd_demo import RULE_NAME, zone_key
from urbansec.services.sensors import list_zones

runner = CliRunner()


def invoke(engine: Engine, *args: str) -> Result:
    result = runner.invoke(app, ["--database", engine.url.render_as_string(hide_password=False),
                                 "sensors", *args])
    assert result.exit_code == 0, result.output
    return result


def located_counters() -> dict[str, tuple[float, float]]:
    if not (auckland.DATA_DIR / auckland.LOCATIONS_FILE).exists():
        pytest.skip("the Auckland counts are not in ../shared/data/auckland-pedestrians")
    return auckland.read_locations()


def test_zones_auckland_is_idempotent(db: Engine) -> None:
    counters = located_counters()
    first = json.loads(invoke(db, "zones", "auckland", "--width-m", "4", "--rule-flow", "5",
                              "--json").output)
    assert sorted(first["zones_created"]) == sorted(zone_key(c) for c in counters)
    assert first["rule_created"] and first["rule"]["params"] == {"metric": "flow",
                                                                  "threshold": 5.0}
    again = json.loads(invoke(db, "zones", "auckland", "--json").output)
    assert again["zones_created"] == [] and sorted(again["zones_kept"]) == sorted(
        first["zones_created"])
    assert not again["rule_created"] and again["rule"]["id"] == first["rule"]["id"]
    assert [r["name"] for r in alerts.list_rules(db)] == [RULE_NAME]

    zones = {z["key"]: z for z in list_zones(db)}
    assert len(zones) == len(counters)
    geod = Geod(ellps="WGS84")
    for counter, (lat, lon) in counters.items():
        zone = zones[zone_key(counter)]
        assert zone["zone_type"] == "walkway" and zone["width_m"] == 4.0  # the first run's
        assert zone["properties"]["timezone"] == "Pacific/Auckland"
        assert zone["area_m2"] == pytest.approx(4 * 30, rel=1e-3)
        polygon = shape(zone["geometry"])
        assert abs(geod.geometry_area_perimeter(polygon)[0]) == pytest.approx(120, rel=1e-3)
        assert polygon.centroid.x == pytest.approx(lon, abs=1e-6)
        assert polygon.centroid.y == pytest.approx(lat, abs=1e-6)
        assert [d["role"] for d in zone["datastreams"]] == ["footfall"]


def test_replay_demo_raises_and_clears_alerts(db: Engine, own_broker: Mosquitto) -> None:
    counters = located_counters()
    invoke(db, "zones", "auckland")
    replayed = json.loads(invoke(
        db, "replay", "auckland", "--speed", "0", "--from", "2024-03-04", "--to", "2024-03-05",
        "--ingest", "--broker", own_broker.url, "--json").output)
    assert replayed["published"] > 0
    assert replayed["ingest"]["accepted"] == replayed["published"]

    found = alerts.list_alerts(db, status="all", limit=500)
    assert found, "the replay raised no alert"
    assert {a["rule_name"] for a in found} == {RULE_NAME}
    assert all(a["value"] >= a["threshold"] == 4.0 for a in found)
    cleared = [a for a in found if a["cleared_at"] is not None]
    assert cleared, "no alert cleared"
    # the busiest Queen Street counter crosses 4 persons/m/min at its weekday peaks and
    # drops below at night, on the data's own clock (UTC hours of the replayed days)
    queen = [a for a in found if a["zone"] == zone_key("30 Queen Street")]
    assert len(queen) >= 2 and all(a["cleared_at"] > a["raised_at"] for a in queen)
    assert all(a["raised_at"].startswith("2024-03-0") for a in found)
    assert len({a["zone"] for a in found}) < len(counters)  # quiet counters never alert

    org = identity.create_organisation(db, "city", "City", "city")
    _, key = identity.create_api_key(db, org, "event control", "partner")
    client = TestClient(create_app(Settings(), db))
    state = client.get("/api/v1/crowd/state", headers={"X-API-Key": key})
    assert state.status_code == 200, state.text
    body = state.json()
    assert body["stale"] is True and body["at"] == "2024-03-05T11:00:00Z"
    assert {z["key"] for z in body["zones"]} == {zone_key(c) for c in counters}
    for zone in body["zones"]:
        assert zone["flow"] is not None and zone["flow"] >= 0
        assert zone["los"] in tuple("ABCDEF")
        assert zone["sources"] == ["footfall"] and zone["occupancy"] is None
