"""A small site for the alert tests: zones, their datastreams in each role, and helpers to
push observations through the real ingest pipeline."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select

from urbansec.sensors import query as q
from urbansec.sensors.payloads import ANY, CATEGORY, COUNT
from urbansec.services import sensors
from urbansec.services.sensor_ingest import IngestPipeline, RawMessage
from urbansec.store.collaboration import AuditEntry

ROLE_TYPES = {"in_counter": COUNT, "out_counter": COUNT, "area_count": COUNT,
              "beacon_devices": COUNT, "lighting_status": CATEGORY, "position": ANY}


def _datastream(name: str, observation_type: str) -> dict[str, Any]:
    return {"name": name, "description": f"{name} stream",
            "unitOfMeasurement": {"name": "", "symbol": "", "definition": ""},
            "observationType": observation_type,
            "Sensor": {"name": f"{name} sensor", "description": "",
                       "encodingType": "text/html", "metadata": "https://example.org/s"},
            "ObservedProperty": {"name": f"{name} property", "description": "",
                                 "definition": "https://example.org/p"}}


def make_stream(engine: Engine, thing: str, role: str, zone: str | None = None,
                properties: dict[str, Any] | None = None) -> int:
    """A Thing named ``thing`` with one datastream in ``role`` (tied to ``zone``)."""
    body = {"name": thing, "description": "", "properties": properties or {},
            "Datastreams": [_datastream(f"{thing} {role}", ROLE_TYPES[role])]}
    _, thing_id = sensors.create(engine, q.parse_resource_path("Things"), body)
    document = sensors.read(engine, q.parse_resource_path(f"Things({thing_id})/Datastreams"),
                            q.parse_options({"$select": "id"}), sensors.Links(""))
    datastream_id = int(document["value"][0]["@iot.id"])
    sensors.assign_datastream(engine, datastream_id, zone, role)
    return datastream_id


@dataclass
class Site:
    """Zone ``north`` (standing area of 100 m², capacity 400) with a camera count, counters
    in and out, a light; zone ``gate`` (walkway 50 m² x 5 m wide) with its own camera."""

    engine: Engine
    streams: dict[str, int] = field(default_factory=dict)


def make_site(engine: Engine) -> Site:
    sensors.create_zone(engine, "north", "North stand", "standing", area_m2=100.0,
                        capacity=400)
    sensors.create_zone(engine, "gate", "Gate A", "walkway", area_m2=50.0, width_m=5.0)
    site = Site(engine)
    site.streams["camera"] = make_stream(engine, "camera-north", "area_count", "north")
    site.streams["in"] = make_stream(engine, "counter-north-in", "in_counter", "north")
    site.streams["out"] = make_stream(engine, "counter-north-out", "out_counter", "north")
    site.streams["light"] = make_stream(engine, "lamp-7", "lighting_status", "north")
    site.streams["gate"] = make_stream(engine, "camera-gate", "area_count", "gate")
    return site


def message(datastream_id: int, result: Any, at: datetime,
            received_at: datetime | None = None) -> RawMessage:
    return RawMessage(f"v1.1/Datastreams({datastream_id})/Observations",
                      json.dumps({"phenomenonTime": at.isoformat(), "result": result}).encode(),
                      received_at or datetime.now(UTC))


def push(pipeline: IngestPipeline, *messages: RawMessage) -> None:
    result = pipeline.process(list(messages))
    assert not result.rejected, result.rejected


def audit_actions(engine: Engine) -> list[str]:
    table = AuditEntry.__table__
    with engine.connect() as connection:
        return list(connection.execute(select(table.c.action).order_by(table.c.id)).scalars())
