"""Crowd safety: ``/api/v1/crowd`` zones, state, minute series, forecasts and events (thin
over :mod:`urbansec.services.crowd` and :mod:`urbansec.services.crowd_events`).

Reading needs ``sensors:read``, writing ``sensors:write`` (partners, analysts, admins). Times
are ISO-8601 with a zone (``Z``); a time without one is a 422, never guessed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Response, status
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from sqlalchemy import Engine

from urbansec.api.deps import allowed, get_engine
from urbansec.domain.text import storable
from urbansec.services import crowd as service
from urbansec.services import crowd_events as events_service
from urbansec.services import sensors as sensors_service
from urbansec.services.access import Principal

router = APIRouter(prefix="/crowd", tags=["crowd"])

ZoneKey = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")]
Text300 = Annotated[str, Field(min_length=1, max_length=300), AfterValidator(storable)]
Description = Annotated[str, Field(max_length=events_service.MAX_DESCRIPTION),
                        AfterValidator(storable)]
EventId = Annotated[int, Path(ge=1, le=2**31 - 1)]
Lon = Annotated[float, Field(ge=-180, le=180)]
Lat = Annotated[float, Field(ge=-90, le=90)]
Ring = Annotated[list[tuple[Lon, Lat]], Field(min_length=4, max_length=5000)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PolygonGeometry(Strict):
    type: Literal["Polygon"]
    coordinates: Annotated[list[Ring], Field(min_length=1, max_length=100)]


class MultiPolygonGeometry(Strict):
    type: Literal["MultiPolygon"]
    coordinates: Annotated[list[Annotated[list[Ring], Field(min_length=1, max_length=100)]],
                           Field(min_length=1, max_length=100)]


class ZoneCreate(Strict):
    """A zone from its usable area (m²) or from a WGS84 polygon (usable area = geodesic area x
    ``usable_fraction``)."""

    key: ZoneKey
    name: Text300
    zone_type: Literal["walkway", "queue", "standing", "stairs", "exit"]
    geometry: PolygonGeometry | MultiPolygonGeometry | None = None
    area_m2: Annotated[float, Field(gt=0, le=1e9)] | None = None
    usable_fraction: Annotated[float, Field(gt=0, le=1)] = 1.0
    width_m: Annotated[float, Field(gt=0, le=1e5)] | None = None
    capacity: Annotated[int, Field(ge=0, le=10**8)] | None = None
    properties: dict[str, Any] = Field(
        default_factory=dict, description="e.g. beacon_persons_per_device (float), "
                                          "threshold_density (persons/m²), timezone")


class EventCreate(Strict):
    name: Text300
    starts_at: datetime
    ends_at: datetime
    zones: Annotated[list[ZoneKey], Field(max_length=events_service.MAX_ZONES)] = []
    expected_attendance: Annotated[int, Field(ge=0, le=10**8)] | None = None
    description: Description = ""


class EventUpdate(Strict):
    """Only the fields sent change; ``zones`` replaces the event's zones."""

    name: Text300 | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    zones: Annotated[list[ZoneKey], Field(max_length=events_service.MAX_ZONES)] | None = None
    expected_attendance: Annotated[int, Field(ge=0, le=10**8)] | None = None
    description: Description | None = None


@router.get("/zones")
def list_zones(engine: Engine = Depends(get_engine),
               _caller: Principal = Depends(allowed("sensors:read"))) -> dict[str, Any]:
    """Every zone with its usable area, width, capacity and datastreams by role."""
    return {"zones": [service.zone_document(z) for z in service.zone_sources(engine)]}


@router.post("/zones", status_code=status.HTTP_201_CREATED)
def create_zone(body: ZoneCreate, engine: Engine = Depends(get_engine),
                _caller: Principal = Depends(allowed("sensors:write"))) -> dict[str, Any]:
    sensors_service.create_zone(
        engine, body.key, body.name, body.zone_type, area_m2=body.area_m2,
        geometry=body.geometry.model_dump() if body.geometry is not None else None,
        usable_fraction=body.usable_fraction, width_m=body.width_m, capacity=body.capacity,
        properties=body.properties)
    return service.zone_document(service.zone_sources(engine, [body.key])[0])


@router.get("/state")
def crowd_state(
    at: Annotated[datetime | None, Query(description="default: now, or the newest "
                                                     "observation when older than 10 min")] = None,
    event: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    engine: Engine = Depends(get_engine),
    _caller: Principal = Depends(allowed("sensors:read")),
) -> dict[str, Any]:
    """Occupancy, density, level of service, flow, trend and lights of every zone (or the
    event's zones) at the end of the last complete minute."""
    return service.state(engine, at=at, event_id=event)


@router.get("/zones/{key}/series")
def zone_series(
    key: Annotated[str, Path(min_length=1, max_length=100)],
    start: Annotated[datetime | None, Query(alias="from")] = None,
    end: Annotated[datetime | None, Query(alias="to")] = None,
    event: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    engine: Engine = Depends(get_engine),
    _caller: Principal = Depends(allowed("sensors:read")),
) -> dict[str, Any]:
    """The zone's minute series over ``[from, to)`` (at most 7 days; ``step`` says PT1M,
    PT5M beyond a day or PT1H beyond 3 days, each coarse step showing its worst minute)."""
    return service.zone_series(engine, key, start, end, event_id=event)


@router.get("/forecast")
def crowd_forecast(
    datastream: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    zone: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    hours: Annotated[int, Query(ge=1, le=6)] = 6,
    model: Literal["profile", "seasonal_naive"] = "profile",
    at: Annotated[datetime | None, Query(description="forecast from the data up to this "
                                                     "instant (default now)")] = None,
    tz: Annotated[str | None, Query(max_length=64, description="IANA time zone of the "
                                                               "weekly profile")] = None,
    engine: Engine = Depends(get_engine),
    _caller: Principal = Depends(allowed("sensors:read")),
) -> dict[str, Any]:
    """Hourly counts 1-6 hours ahead of a datastream or a zone (its in_counter, else footfall
    streams) with 80 % intervals, beside the seasonal naive baseline."""
    return service.forecast(engine, datastream_id=datastream, zone_key=zone, hours=hours,
                            model=model, at=at, tz=tz)


@router.get("/events")
def list_events(
    active_at: Annotated[datetime | None, Query()] = None,
    engine: Engine = Depends(get_engine),
    _caller: Principal = Depends(allowed("sensors:read")),
) -> dict[str, Any]:
    return {"events": events_service.list_events(engine, active_at)}


@router.post("/events", status_code=status.HTTP_201_CREATED)
def create_event(body: EventCreate, engine: Engine = Depends(get_engine),
                 caller: Principal = Depends(allowed("sensors:write"))) -> dict[str, Any]:
    return events_service.create_event(
        engine, caller, body.name, body.starts_at, body.ends_at, body.zones,
        body.expected_attendance, body.description)


@router.get("/events/{event_id}")
def get_event(event_id: EventId, engine: Engine = Depends(get_engine),
              _caller: Principal = Depends(allowed("sensors:read"))) -> dict[str, Any]:
    return events_service.get_event(engine, event_id)


@router.patch("/events/{event_id}")
def update_event(event_id: EventId, body: EventUpdate, engine: Engine = Depends(get_engine),
                 caller: Principal = Depends(allowed("sensors:write"))) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for name in body.model_fields_set:
        value = getattr(body, name)
        if value is None and name in ("name", "starts_at", "ends_at", "zones", "description"):
            raise service.InvalidRequestError(f"{name} cannot be null")
        changes["zone_keys" if name == "zones" else name] = value
    return events_service.update_event(engine, caller, event_id, **changes)


@router.delete("/events/{event_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_event(event_id: EventId, engine: Engine = Depends(get_engine),
                 caller: Principal = Depends(allowed("sensors:write"))) -> Response:
    events_service.delete_event(engine, caller, event_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
