"""The Auckland replay demo's zones: one walkway zone per Auckland pedestrian counter, its
hourly footfall datastream tied to it, and one threshold rule on the flow, so that
``urbansec sensors replay auckland --ingest`` shows a level of service and raises alerts.

A counter measures pedestrians passing a cross-section of the footway: persons per minute
over the footway's effective width is Fruin's walkway flow rate (persons/m/min), which the
crowd state and the live alert engine compute for any zone with ``footfall`` streams.

The default rule threshold, :data:`DEFAULT_RULE_FLOW` = 4 persons/m/min on a 6 m footway
(1,440 pedestrians an hour), comes from the real 2024 weekday counts: the busiest counters
cross it at their weekday peaks (30 Queen Street on 95 % of weekdays, peak 5.3 on Monday
4 March 2024; 210 Queen Street on 73 %, peak 5.6; 261 Queen Street on 57 %, peak 4.4), the
quieter ones never do, and no counter reaches it between 01:00 and 05:00 local time on any
weekday (highest 3.8). It marks a busy footway, not a dangerous one: Fruin's walkway level
A reaches 23 persons/m/min, so the demo's zones stay at LoS A.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pyproj import Geod
from sqlalchemy import Engine, select

from urbansec.errors import UsageError
from urbansec.services import alerts
from urbansec.services.access import Principal
from urbansec.services.sensors import assign_datastream, create_zone
from urbansec.store.engine import write_transaction
from urbansec.store.sensors import Datastream, Location, Thing, ThingLocation, Zone

__all__ = ["DEFAULT_RULE_FLOW", "DEFAULT_WIDTH_M", "RULE_NAME", "ZONE_LENGTH_M",
           "auckland_zones", "rectangle", "zone_key"]

DEFAULT_WIDTH_M = 6.0
#: persons/m/min; see the module notes for how it was chosen
DEFAULT_RULE_FLOW = 4.0
#: the stretch of footway around each counter a zone covers
ZONE_LENGTH_M = 30.0
RULE_NAME = "Auckland footway busy"
TIMEZONE = "Pacific/Auckland"
_GEOD = Geod(ellps="WGS84")


def zone_key(counter: str) -> str:
    """``auckland-188-quay-street-lower-albert-ew`` for "188 Quay Street Lower Albert (EW)"."""
    return "auckland-" + re.sub(r"[^a-z0-9]+", "-", counter.lower()).strip("-")


def rectangle(lon: float, lat: float, width_m: float, length_m: float) -> dict[str, Any]:
    """A GeoJSON polygon ``length_m`` east-west by ``width_m`` north-south centred on the
    point, its corners placed geodesically so its area is ``width_m`` x ``length_m``."""
    corners = []
    for east, north in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
        x, y, _ = _GEOD.fwd(lon, lat, 90.0 * east, length_m / 2)
        x, y, _ = _GEOD.fwd(x, y, 0.0 if north > 0 else 180.0, width_m / 2)
        corners.append([round(x, 8), round(y, 8)])
    return {"type": "Polygon", "coordinates": [[*corners, corners[0]]]}


def _counter_sites(directory: Path | None) -> list[Any]:
    from urbansec.sensors import auckland

    locations = auckland.read_locations(directory or auckland.DATA_DIR)
    if not locations:
        raise UsageError("no Auckland counter locations found (locations.csv in "
                         "../shared/data/auckland-pedestrians/)")
    return [auckland.CounterSite(name, lat, lon) for name, (lat, lon) in locations.items()]


def _stored_counters(engine: Engine) -> list[tuple[int, str, float, float]]:
    """(datastream id, counter name, lon, lat) of each Auckland hourly datastream whose Thing
    has a stored Location."""
    datastreams, things = Datastream.__table__, Thing.__table__
    links, locations = ThingLocation.__table__, Location.__table__
    with engine.connect() as connection:
        rows = connection.execute(
            select(datastreams.c.id, things.c.name, locations.c.location)
            .join(things, things.c.id == datastreams.c.thing_id)
            .join(links, links.c.thing_id == things.c.id)
            .join(locations, locations.c.id == links.c.location_id)
            .where(datastreams.c.external_key.like("auckland:%:hourly"))
            .order_by(things.c.name)).all()
    found = {}
    for stream_id, name, point in rows:
        if isinstance(point, dict) and point.get("type") == "Point":
            lon, lat = point["coordinates"][:2]
            found.setdefault(int(stream_id), (int(stream_id), name, float(lon), float(lat)))
    return list(found.values())


def auckland_zones(engine: Engine, principal: Principal, *, width_m: float = DEFAULT_WIDTH_M,
                   rule_flow: float | None = DEFAULT_RULE_FLOW,
                   directory: Path | None = None) -> dict[str, Any]:
    """Idempotently: the Auckland counters' Things and datastreams (as an import would make
    them), one walkway zone per located counter (a ``width_m`` x :data:`ZONE_LENGTH_M`
    rectangle, ``properties.timezone`` Pacific/Auckland) with the counter's datastream in the
    ``footfall`` role, and the threshold rule ``flow >= rule_flow`` (warning) named
    :data:`RULE_NAME` unless a rule of that name exists (``rule_flow`` None: no rule).
    Existing zones are kept as they are (their datastream is re-assigned)."""
    from urbansec.services.sensor_ingest import ensure_auckland_datastreams

    if not 0 < width_m <= 100:
        raise UsageError("--width-m must be between 0 and 100 metres")
    if rule_flow is not None and not rule_flow > 0:
        raise UsageError("--rule-flow must be a positive flow (persons/m/min)")
    with write_transaction(engine) as connection:
        ensure_auckland_datastreams(connection, _counter_sites(directory))
    zones = Zone.__table__
    with engine.connect() as connection:
        existing = set(connection.execute(select(zones.c.key)).scalars())
    created, kept = [], []
    for stream_id, counter, lon, lat in _stored_counters(engine):
        key = zone_key(counter)
        if key in existing:
            kept.append(key)
        else:
            create_zone(engine, key, counter, "walkway",
                        geometry=rectangle(lon, lat, width_m, ZONE_LENGTH_M), width_m=width_m,
                        properties={"timezone": TIMEZONE, "source": "auckland-pedestrians",
                                    "counter": counter})
            created.append(key)
        assign_datastream(engine, stream_id, key, "footfall")
    rule, rule_created = None, False
    if rule_flow is not None:
        rule = next((r for r in alerts.list_rules(engine) if r["name"] == RULE_NAME), None)
        if rule is None:
            rule_created = True
            rule = alerts.create_rule(engine, principal, name=RULE_NAME, kind="threshold",
                                      severity="warning",
                                      params={"metric": "flow", "threshold": rule_flow},
                                      zones=sorted([*created, *kept]))
    return {"zones_created": created, "zones_kept": kept, "width_m": width_m,
            "rule": rule, "rule_created": rule_created}
