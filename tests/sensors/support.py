"""Entities the sensor tests share: a Thing with a Location and datastreams of each kind."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from urbansec.sensors import query as q
from urbansec.sensors.payloads import CATEGORY, COUNT, MEASUREMENT
from urbansec.services import sensors

OBSERVATION_TYPES = {"count": COUNT, "measurement": MEASUREMENT, "category": CATEGORY}


def datastream_body(name: str, kind: str = "count") -> dict[str, Any]:
    return {
        "name": name, "description": f"{name} stream",
        "unitOfMeasurement": {"name": "person", "symbol": "persons", "definition": "ucum:1"},
        "observationType": OBSERVATION_TYPES[kind],
        "Sensor": {"name": f"{name} sensor", "description": "", "encodingType": "text/html",
                   "metadata": "https://example.org/sensor"},
        "ObservedProperty": {"name": f"{name} property", "definition": "https://example.org/p",
                             "description": ""},
    }


def make_thing(engine: Engine, name: str = "Gate A", streams: tuple[str, ...] = ("in",),
               kind: str = "count", lon: float = 174.766, lat: float = -36.843) -> list[int]:
    """A Thing at (lon, lat) with one datastream per name; returns the datastream ids."""
    body = {"name": name, "description": f"{name} counter", "properties": {"owner": "city"},
            "Locations": [{"name": f"{name} location", "description": "",
                           "encodingType": "application/geo+json",
                           "location": {"type": "Point", "coordinates": [lon, lat]}}],
            "Datastreams": [datastream_body(f"{name} {s}", kind) for s in streams]}
    _, thing_id = sensors.create(engine, q.parse_resource_path("Things"), body)
    document = sensors.read(engine, q.parse_resource_path(f"Things({thing_id})/Datastreams"),
                            q.parse_options({"$select": "id"}), sensors.Links(""))
    return [d["@iot.id"] for d in document["value"]]
