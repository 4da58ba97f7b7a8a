"""From the store into the maths: filtered incidents as ``Events``, boundaries as geometry.

Every analysis service starts here, so the filter a person gives (category, period, box,
area) means the same for a hotspot map, a time pattern and a near-repeat test.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd
import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry
from sqlalchemy import Engine, String, func, null, select, type_coerce

from urbansec.domain.events import Events
from urbansec.errors import NotFoundError
from urbansec.services.incidents import (
    AREAS,
    INCIDENTS,
    SOURCES,
    IncidentFilter,
    _needs_python_polygon_test,
    _resolve_area,
    _where,
)


def load_events(engine: Engine, flt: IncidentFilter, *, crs: str | None = None) -> Events:
    """The incidents matching ``flt`` (unlocated ones included, with NaN coordinates).

    The projected CRS is the UTM zone of the data unless given; the time zone is the one of
    the sources the incidents come from (the most common one if they differ).
    """
    return load_events_with_codes(engine, flt, None, crs=crs)[0]


def load_events_with_codes(engine: Engine, flt: IncidentFilter, area_kind: str | None, *,
                           crs: str | None = None) -> tuple[Events, np.ndarray]:
    """``load_events`` plus, per event, the ``area_kind`` code its source gave (or None)."""
    c = INCIDENTS.c
    code = (c.area_codes[area_kind].as_string() if area_kind else null()).label("code")
    with engine.connect() as connection:
        area = _resolve_area(connection, flt)
        where = _where(connection, flt, area)
        sqlite = connection.dialect.name == "sqlite"
        # SQLite stores UTC text; reading it raw and parsing in bulk is ~10x faster than
        # building one datetime per row
        occurred = type_coerce(c.occurred_at, String) if sqlite else c.occurred_at
        rows = connection.execute(
            select(c.id, c.lon, c.lat, occurred.label("occurred_at"), c.category, c.source_id,
                   c.time_precision, code)
            .where(where).order_by(c.occurred_at, c.id)
        ).all()
        zones = dict(connection.execute(select(SOURCES.c.id, SOURCES.c.timezone)).all())
        polygon_test = _needs_python_polygon_test(connection, area)
    frame = pd.DataFrame(rows, columns=["id", "lon", "lat", "occurred_at", "category",
                                        "source_id", "time_precision", "code"])
    if polygon_test and len(frame):
        assert area is not None
        lon = frame["lon"].to_numpy(float)
        lat = frame["lat"].to_numpy(float)
        ok = np.isfinite(lon) & np.isfinite(lat)
        inside = np.zeros(len(frame), dtype=bool)
        inside[ok] = shapely.contains_xy(area.polygon, lon[ok], lat[ok])
        frame = frame[inside]
    t = pd.to_datetime(frame["occurred_at"], utc=True, format="ISO8601") if len(frame) else \
        pd.Series([], dtype="datetime64[ns, UTC]")
    t_utc = t.dt.tz_convert(None).to_numpy("datetime64[s]") if len(frame) else \
        np.empty(0, dtype="datetime64[s]")
    timezone = _main_timezone(frame["source_id"].tolist(), zones)
    events = Events.from_lonlat(
        frame["lon"].to_numpy(float), frame["lat"].to_numpy(float), t_utc,
        frame["category"].to_numpy(object), crs=crs, timezone=timezone,
        ids=frame["id"].to_numpy(np.int64),
        time_of_day_known=(frame["time_precision"] != "month").to_numpy(bool))
    return events, frame["code"].to_numpy(object)


def _main_timezone(source_ids: list[int], zones: dict[int, str | None]) -> str:
    counts = Counter(zones.get(s) or "UTC" for s in source_ids)
    if not counts:
        named = [z for z in zones.values() if z]
        return named[0] if named else "UTC"
    return counts.most_common(1)[0][0]


@dataclass(frozen=True)
class Boundary:
    kind: str
    code: str
    name: str | None
    geometry: BaseGeometry  # WGS84


def load_boundaries(engine: Engine, kind: str) -> list[Boundary]:
    """All imported areas of one kind (e.g. ``district``), as WGS84 shapely geometries."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(AREAS.c.code, AREAS.c.name, AREAS.c.geometry)
            .where(AREAS.c.kind == kind).order_by(AREAS.c.code)).all()
        if not rows:
            known = connection.execute(select(AREAS.c.kind).distinct()).scalars().all()
            raise NotFoundError(
                f"no {kind!r} areas were imported (imported kinds: "
                f"{', '.join(sorted(known)) or 'none'}; import boundaries with: "
                "urbansec import areas FILE --kind KIND)")
    return [Boundary(kind=kind, code=r.code, name=r.name, geometry=shape(json.loads(r.geometry)))
            for r in rows]


def area_kinds(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return sorted(connection.execute(select(AREAS.c.kind).distinct()).scalars().all())


def filter_area_geometry(engine: Engine, flt: IncidentFilter) -> BaseGeometry | None:
    """The polygon of the filter's ``--area`` when it was imported (WGS84), else None."""
    if flt.area is None:
        return None
    kind, code = flt.area
    with engine.connect() as connection:
        row = connection.execute(select(AREAS.c.geometry).where(
            AREAS.c.kind == kind, AREAS.c.code == code)).first()
    return None if row is None else shape(json.loads(row.geometry))


def assign_areas(engine: Engine, events: Events, codes: np.ndarray, kind: str) -> np.ndarray:
    """Each event's ``kind`` area code: the source's own code where it gave one, else the
    imported polygon holding the point (None where neither says)."""
    out = np.array(codes, dtype=object)
    missing = np.array([c is None for c in out.tolist()], dtype=bool) & events.located
    if not missing.any():
        return out
    try:
        boundaries = load_boundaries(engine, kind)
    except NotFoundError:
        if len(out) and all(c is None for c in out.tolist()):
            raise
        return out
    lon, lat = events.to_lonlat()
    index = np.flatnonzero(missing)
    out[index] = area_codes_at(boundaries, lon[index], lat[index])
    return out


def area_codes_at(boundaries: list[Boundary], lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """The code of the boundary holding each WGS84 point (None outside all of them)."""
    tree = shapely.STRtree([b.geometry for b in boundaries])
    point_i, area_i = tree.query(shapely.points(lon, lat), predicate="within")
    codes = np.full(len(lon), None, dtype=object)
    # a point on a shared border lands in the first area found, once
    first = np.unique(point_i, return_index=True)[1]
    codes[point_i[first]] = np.array([boundaries[a].code for a in area_i[first]], dtype=object)
    return codes


def city_timezone(engine: Engine) -> str:
    """The time zone of the sources most incidents come from (UTC when none is known)."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(SOURCES.c.timezone, func.count(INCIDENTS.c.id))
            .select_from(SOURCES.join(INCIDENTS, INCIDENTS.c.source_id == SOURCES.c.id))
            .group_by(SOURCES.c.timezone).order_by(func.count(INCIDENTS.c.id).desc())).all()
    for timezone, _ in rows:
        if timezone:
            return str(timezone)
    return "UTC"
