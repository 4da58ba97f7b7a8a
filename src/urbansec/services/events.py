"""From the store into the maths: filtered incidents as ``Events``, boundaries as geometry.

Every analysis service starts here, so the filter a person gives (category, period, box,
area) means the same for a hotspot map, a time pattern and a near-repeat test.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry
from sqlalchemy import BigInteger, Connection, CursorResult, Engine, cast, func, select

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
    kinds = [area_kind] if area_kind else []
    events, codes = load_events_with_area_codes(engine, flt, kinds, crs=crs)
    return events, codes[area_kind] if area_kind else np.full(len(events), None,
                                                                  dtype=object)


def load_events_with_area_codes(engine: Engine, flt: IncidentFilter, area_kinds: list[str],
                                *, crs: str | None = None
                                ) -> tuple[Events, dict[str, np.ndarray]]:
    """``load_events`` plus, per event, the code its source gave for each of ``area_kinds``
    (None where it gave none), read in the same pass over the incidents."""
    c = INCIDENTS.c
    codes = [c.area_codes[kind].as_string().label(f"code{i}")
             for i, kind in enumerate(area_kinds)]
    with engine.connect() as connection:
        area = _resolve_area(connection, flt)
        where = _where(connection, flt, area)
        result = connection.execute(
            select(c.id, c.lon, c.lat, _epoch_seconds(connection, c.occurred_at),
                   c.category, c.source_id, c.time_precision, *codes)
            .where(where).order_by(c.occurred_at, c.id))
        columns = _columns(result, 7 + len(codes))
        zones = dict(connection.execute(select(SOURCES.c.id, SOURCES.c.timezone)).all())
        polygon_test = _needs_python_polygon_test(connection, area)
    ids, lon, lat, occurred_at, category, source_ids, precision, *code_columns = columns
    lon = np.asarray(lon, dtype=float)  # None (unlocated) becomes NaN
    lat = np.asarray(lat, dtype=float)
    keep: np.ndarray | None = None
    if polygon_test and lon.size:
        assert area is not None
        ok = np.isfinite(lon) & np.isfinite(lat)
        keep = np.zeros(lon.size, dtype=bool)
        keep[ok] = shapely.contains_xy(area.polygon, lon[ok], lat[ok])

    def kept(values: Sequence[Any], dtype: Any = object) -> np.ndarray:
        array = np.asarray(values, dtype=dtype)
        return array if keep is None else array[keep]

    t_utc = kept(occurred_at, np.int64).astype("datetime64[s]")
    timezone = _main_timezone(kept(source_ids).tolist(), zones)
    # missing categories as a DataFrame column gave them (NaN in a column of strings)
    categories = pd.Series(kept(category).tolist()).to_numpy(object) \
        if t_utc.size else np.empty(0, dtype=object)
    events = Events.from_lonlat(
        kept(lon, float), kept(lat, float), t_utc, categories, crs=crs, timezone=timezone,
        ids=kept(ids, np.int64),
        # a source that gave only the day (or month) has no time of day to place in hours
        time_of_day_known=~np.isin(kept(precision), ("day", "month")))
    return events, {kind: kept(values) for kind, values in zip(area_kinds, code_columns,
                                                                strict=True)}


def _epoch_seconds(connection: Connection, column: Any) -> Any:
    """``column`` (a UTC time) as whole seconds since 1970, computed by the database: the
    driver then hands over plain integers instead of building one datetime per row (800k
    rows: 2 s of datetimes and their conversion to numpy on PostgreSQL, 1 s of parsing text
    on SQLite)."""
    if connection.dialect.name == "sqlite":
        # stored as UTC text; strftime reads it (offset included) and truncates to seconds
        seconds = func.strftime("%s", column)
    else:
        # date_part gives double precision (EXTRACT gives numeric: a Decimal per row)
        seconds = func.floor(func.date_part("epoch", column))
    return cast(seconds, BigInteger).label("occurred_at")


def _columns(result: CursorResult[Any], width: int) -> list[Sequence[Any]]:
    """The result's rows as ``width`` columns. Read from the driver's cursor: every column
    asked here is a plain driver value (ids, floats, text, times as epoch seconds), and
    SQLAlchemy's ``Row`` objects cost more than the fetch itself: loading 800k incidents took
    19 s, of which 12 s were pandas asking each Row whether it is a named tuple, and 2 s
    building the Rows."""
    rows = result.cursor.fetchall() if result.cursor is not None else []
    result.close()
    if not rows:
        return [() for _ in range(width)]
    return list(zip(*rows, strict=True))


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
