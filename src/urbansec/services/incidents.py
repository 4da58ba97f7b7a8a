"""Querying stored incidents: filters, counts and exports shared by every face."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import shapely
from shapely.geometry import shape
from sqlalchemy import Engine, Select, and_, func, literal, select, text, true

from urbansec.domain.taxonomy import CATEGORIES, resolve_filter
from urbansec.errors import NotFoundError, UsageError
from urbansec.store.tables import Area, Incident, Source

INCIDENTS = Incident.__table__
SOURCES = Source.__table__
AREAS = Area.__table__

EXPORT_FORMATS = ("csv", "geojson", "parquet")


@dataclass
class IncidentFilter:
    """What a user asks for: any combination of category, period, box and area."""

    categories: list[str] | None = None  # canonical codes, descendants included
    start: datetime | None = None  # inclusive, aware
    end: datetime | None = None  # exclusive, aware
    bbox: tuple[float, float, float, float] | None = None  # min lon, min lat, max lon, max lat
    area: tuple[str, str] | None = None  # (kind, code)
    source: str | None = None
    description: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(
        cls, *, category: str | None = None, start: str | None = None, end: str | None = None,
        bbox: str | None = None, area: str | None = None, source: str | None = None,
    ) -> IncidentFilter:
        """Build a filter from the text a person types (CLI flags, query parameters)."""
        flt = cls(source=source)
        if category:
            codes: list[str] = []
            for part in category.split(","):
                if part.strip():
                    codes.extend(resolve_filter(part.strip()))
            flt.categories = sorted(set(codes))
            flt.description["category"] = category
        flt.start = parse_instant(start, "--from") if start else None
        flt.end = parse_instant(end, "--to", end_of_day=True) if end else None
        if flt.start and flt.end and flt.start >= flt.end:
            raise UsageError(f"--from {start} is not before --to {end}")
        if bbox:
            flt.bbox = parse_bbox(bbox)
        if area:
            kind, sep, code = area.partition(":")
            if not sep or not kind.strip() or not code.strip():
                raise UsageError(f"--area {area!r}: use KIND:CODE, e.g. district:18")
            from urbansec.ingest.areas import normalize_area_code

            flt.area = (kind.strip().lower(), normalize_area_code(code))
        for name, value in (("from", start), ("to", end), ("bbox", bbox), ("area", area),
                            ("source", source)):
            if value:
                flt.description[name] = value
        return flt


def parse_instant(text: str, what: str, *, end_of_day: bool = False) -> datetime:
    """``2017-06-01`` (a UTC day) or an ISO 8601 instant; a bare ``--to`` day is included."""
    text = text.strip()
    try:
        if len(text) == 10:
            day = datetime.combine(date.fromisoformat(text), time(), tzinfo=UTC)
            return day + timedelta(days=1) if end_of_day else day
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{what} {text!r}: use YYYY-MM-DD or an ISO 8601 time") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    try:
        parts = [float(p) for p in text.split(",")]
    except ValueError:
        raise UsageError(f"--bbox {text!r}: four numbers, min_lon,min_lat,max_lon,max_lat") \
            from None
    if len(parts) != 4:
        raise UsageError(f"--bbox {text!r}: four numbers, min_lon,min_lat,max_lon,max_lat")
    min_lon, min_lat, max_lon, max_lat = parts
    if not (-180 <= min_lon < max_lon <= 180 and -90 <= min_lat < max_lat <= 90):
        raise UsageError(f"--bbox {text!r}: not a lon/lat box (min < max, within WGS84)")
    return min_lon, min_lat, max_lon, max_lat


# --------------------------------------------------------------------------------------------


@dataclass
class _Area:
    """How an --area filter is applied: by the source's own codes, or by the polygon."""

    by_codes: bool
    polygon: Any = None  # shapely geometry when by polygon
    bounds: tuple[float, float, float, float] | None = None


def _resolve_area(connection: Any, flt: IncidentFilter) -> _Area | None:
    if flt.area is None:
        return None
    kind, code = flt.area
    carried = connection.execute(
        select(literal(1)).select_from(INCIDENTS)
        .where(INCIDENTS.c.area_codes[kind].as_string().is_not(None)).limit(1)
    ).scalar()
    if carried:
        return _Area(by_codes=True)
    row = connection.execute(
        select(AREAS.c.geometry).where(AREAS.c.kind == kind, AREAS.c.code == code)
    ).first()
    if row is None:
        known = connection.execute(select(AREAS.c.kind).distinct()).scalars().all()
        raise NotFoundError(
            f"no incidents carry a {kind!r} code and no {kind} {code!r} area was imported "
            f"(imported area kinds: {', '.join(known) or 'none'}; "
            "import boundaries with: urbansec import areas FILE --kind KIND)"
        )
    polygon = shape(json.loads(row.geometry))
    shapely.prepare(polygon)
    return _Area(by_codes=False, polygon=polygon, bounds=polygon.bounds)


def _where(connection: Any, flt: IncidentFilter, area: _Area | None) -> Any:
    c = INCIDENTS.c
    clauses = []
    if flt.categories is not None:
        clauses.append(c.category.in_(flt.categories))
    if flt.start is not None:
        clauses.append(c.occurred_at >= flt.start)
    if flt.end is not None:
        clauses.append(c.occurred_at < flt.end)
    if flt.bbox is not None:
        min_lon, min_lat, max_lon, max_lat = flt.bbox
        clauses += [c.lon.between(min_lon, max_lon), c.lat.between(min_lat, max_lat)]
    if flt.source is not None:
        source_id = connection.execute(
            select(SOURCES.c.id).where(SOURCES.c.key == flt.source)).scalar()
        if source_id is None:
            raise NotFoundError(f"no source {flt.source!r}")
        clauses.append(c.source_id == source_id)
    if area is not None and flt.area is not None:
        kind, code = flt.area
        if area.by_codes:
            clauses.append(c.area_codes[kind].as_string() == code)
        elif connection.dialect.name == "postgresql":
            clauses.append(_pg_within(kind, code))
        else:
            assert area.bounds is not None
            min_lon, min_lat, max_lon, max_lat = area.bounds
            # SQL narrows to the polygon's box; the exact test runs on the rows (see _rows)
            clauses += [c.lon.between(min_lon, max_lon), c.lat.between(min_lat, max_lat)]
    return and_(true(), *clauses)


def _pg_within(kind: str, code: str) -> Any:
    # the PostGIS column exists only on PostgreSQL (see the initial migration)
    return text(
        "ST_Intersects(incidents.geom, (SELECT geom FROM areas "
        "WHERE areas.kind = :area_kind AND areas.code = :area_code))"
    ).bindparams(area_kind=kind, area_code=code)


def _needs_python_polygon_test(connection: Any, area: _Area | None) -> bool:
    return area is not None and not area.by_codes and connection.dialect.name != "postgresql"


def count_incidents(engine: Engine, flt: IncidentFilter) -> dict[str, Any]:
    """Totals for a filter: all, located, by canonical category (descending)."""
    with engine.connect() as connection:
        area = _resolve_area(connection, flt)
        where = _where(connection, flt, area)
        c = INCIDENTS.c
        if _needs_python_polygon_test(connection, area):
            # the box matched in SQL; count exactly with the polygon, vectorised
            rows = connection.execute(select(c.category, c.lon, c.lat).where(where)).all()
            import numpy as np

            lon = np.array([r.lon for r in rows], dtype=float)
            lat = np.array([r.lat for r in rows], dtype=float)
            inside = shapely.contains_xy(area.polygon, lon, lat) if rows else np.array([])
            by_category: dict[str | None, int] = {}
            for row, ok in zip(rows, inside, strict=True):
                if ok:
                    by_category[row.category] = by_category.get(row.category, 0) + 1
            total = located = int(inside.sum()) if rows else 0
        else:
            # one scan: totals are the sums of the per-category counts
            grouped = connection.execute(
                select(c.category, func.count().label("n"), func.count(c.lon).label("located"))
                .where(where).group_by(c.category)).all()
            by_category = {row.category: row.n for row in grouped}
            total = sum(row.n for row in grouped)
            located = sum(row.located for row in grouped)
        first_last = None
        if total and not _needs_python_polygon_test(connection, area):
            first_last = connection.execute(
                select(func.min(c.occurred_at), func.max(c.occurred_at)).where(where)).one()
    categories = [
        {"code": code, "name": CATEGORIES[code].name if code in CATEGORIES else "unmapped",
         "count": n}
        for code, n in sorted(by_category.items(), key=lambda kv: (-kv[1], kv[0] or ""))
    ]
    result: dict[str, Any] = {
        "filter": flt.description, "total": int(total), "located": int(located),
        "located_share": round(located / total, 4) if total else None,
        "by_category": categories,
        "area_match": None if area is None else ("source codes" if area.by_codes else "polygon"),
    }
    if first_last is not None:
        result["first"] = iso_utc(first_last[0])
        result["last"] = iso_utc(first_last[1])
    if not total:
        result["message"] = "no incidents match this filter"
    return result


def iso_utc(value: Any) -> str | None:
    """An instant (aware, naive UTC or ISO text) as ISO 8601 UTC with a Z."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------

EXPORT_COLUMNS = (
    "id", "source", "source_key", "category", "category_name", "source_category",
    "source_subcategory", "source_code", "occurred_at", "occurred_local", "time_precision",
    "updated_at", "lon", "lat", "location_description", "address", "area_codes", "arrest",
    "domestic", "attributes",
)


def _export_query(connection: Any, where: Any) -> Select[Any]:
    c = INCIDENTS.c
    return (
        select(c.id, SOURCES.c.key.label("source"), SOURCES.c.timezone, c.source_key,
               c.category, c.source_category, c.source_subcategory, c.source_code,
               c.occurred_at, c.time_precision, c.updated_at, c.lon, c.lat,
               c.location_description, c.address, c.area_codes, c.arrest, c.domestic,
               c.attributes)
        .select_from(INCIDENTS.join(SOURCES, SOURCES.c.id == c.source_id))
        .where(where).order_by(c.occurred_at, c.id)
    )


def iter_incidents(engine: Engine, flt: IncidentFilter, *, located_only: bool = False,
                   batch: int = 5000) -> Iterator[dict[str, Any]]:
    """Matching incidents as plain dicts (export columns), streamed in batches."""
    zones: dict[str, ZoneInfo] = {}
    with engine.connect() as connection:
        area = _resolve_area(connection, flt)
        where = _where(connection, flt, area)
        if located_only:
            where = and_(where, INCIDENTS.c.lon.is_not(None))
        polygon_test = _needs_python_polygon_test(connection, area)
        result = connection.execution_options(stream_results=True, yield_per=batch).execute(
            _export_query(connection, where))
        for row in result:
            if polygon_test and (row.lon is None or not shapely.contains_xy(
                    area.polygon, row.lon, row.lat)):  # type: ignore[union-attr]
                continue
            occurred = _aware(row.occurred_at)
            tz_name = row.timezone or "UTC"
            zone = zones.get(tz_name) or zones.setdefault(tz_name, ZoneInfo(tz_name))
            yield {
                "id": row.id, "source": row.source, "source_key": row.source_key,
                "category": row.category,
                "category_name": CATEGORIES[row.category].name
                if row.category in CATEGORIES else None,
                "source_category": row.source_category,
                "source_subcategory": row.source_subcategory, "source_code": row.source_code,
                "occurred_at": iso_utc(occurred),
                "occurred_local": occurred.astimezone(zone).isoformat(),
                "time_precision": row.time_precision,
                "updated_at": iso_utc(_aware(row.updated_at)) if row.updated_at else None,
                "lon": row.lon, "lat": row.lat,
                "location_description": row.location_description, "address": row.address,
                "area_codes": _as_dict(row.area_codes), "arrest": row.arrest,
                "domestic": row.domestic, "attributes": _as_dict(row.attributes),
            }


def stored_period(engine: Engine) -> tuple[datetime, datetime]:
    """When the earliest and the latest stored incidents happened (aware UTC); a clear error
    on an empty store."""
    c = INCIDENTS.c
    with engine.connect() as connection:
        first, last = connection.execute(select(func.min(c.occurred_at),
                                                func.max(c.occurred_at))).one()
    if first is None or last is None:
        raise UsageError("the store holds no incidents yet; import some with: "
                         "urbansec import incidents FILE --preset NAME")
    return _aware(first), _aware(last)


def last_incident_at(engine: Engine) -> datetime:
    """When the latest stored incident happened (aware UTC); a clear error on an empty store."""
    return stored_period(engine)[1]


def _aware(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _as_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return json.loads(value)
    return dict(value or {})


def export_incidents(
    engine: Engine, flt: IncidentFilter, fmt: str, out: Path, *, located_only: bool = False,
) -> dict[str, Any]:
    """Write matching incidents to ``out``; returns what was written.

    GeoJSON holds WGS84 points (unlocated incidents get ``"geometry": null`` unless
    ``located_only``); CSV and Parquet have one column per field, area codes and the source's
    other columns as JSON text.
    """
    if fmt not in EXPORT_FORMATS:
        raise UsageError(f"unknown export format {fmt!r}; use one of {', '.join(EXPORT_FORMATS)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = iter_incidents(engine, flt, located_only=located_only)
    tmp = out.with_name(out.name + ".partial")
    try:
        written = {"csv": _write_csv, "geojson": _write_geojson,
                   "parquet": _write_parquet}[fmt](rows, tmp)
        tmp.replace(out)  # a reader never sees half a file
    finally:
        tmp.unlink(missing_ok=True)
    return {"path": str(out), "format": fmt, "rows": written, "filter": flt.description}


def _flat(record: dict[str, Any]) -> dict[str, Any]:
    flat = dict(record)
    flat["area_codes"] = json.dumps(record["area_codes"], ensure_ascii=False)
    flat["attributes"] = json.dumps(record["attributes"], ensure_ascii=False)
    return flat


def _write_csv(rows: Iterator[dict[str, Any]], path: Path) -> int:
    count = 0
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=EXPORT_COLUMNS)
        writer.writeheader()
        for record in rows:
            writer.writerow(_flat(record))
            count += 1
    return count


def _write_geojson(rows: Iterator[dict[str, Any]], path: Path) -> int:
    count = 0
    with path.open("w", encoding="utf-8") as handle:
        handle.write('{"type":"FeatureCollection","features":[\n')
        for record in rows:
            properties = {k: v for k, v in record.items() if k not in ("lon", "lat")}
            geometry = ({"type": "Point", "coordinates": [record["lon"], record["lat"]]}
                        if record["lon"] is not None else None)
            feature = {"type": "Feature", "id": record["id"], "geometry": geometry,
                       "properties": properties}
            handle.write(("," if count else "") + json.dumps(feature, ensure_ascii=False) + "\n")
            count += 1
        handle.write("]}\n")
    return count


def _write_parquet(rows: Iterator[dict[str, Any]], path: Path, batch: int = 50_000) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([
        ("id", pa.int64()), ("source", pa.string()), ("source_key", pa.string()),
        ("category", pa.string()), ("category_name", pa.string()),
        ("source_category", pa.string()), ("source_subcategory", pa.string()),
        ("source_code", pa.string()), ("occurred_at", pa.timestamp("us", tz="UTC")),
        ("occurred_local", pa.string()), ("time_precision", pa.string()),
        ("updated_at", pa.timestamp("us", tz="UTC")), ("lon", pa.float64()),
        ("lat", pa.float64()), ("location_description", pa.string()), ("address", pa.string()),
        ("area_codes", pa.string()), ("arrest", pa.bool_()), ("domestic", pa.bool_()),
        ("attributes", pa.string()),
    ])
    count = 0
    with pq.ParquetWriter(path, schema) as writer:
        buffer: list[dict[str, Any]] = []

        def flush() -> None:
            for record in buffer:
                for key in ("occurred_at", "updated_at"):
                    if record[key] is not None:
                        record[key] = datetime.fromisoformat(record[key].replace("Z", "+00:00"))
            writer.write_table(pa.Table.from_pylist(buffer, schema=schema))
            buffer.clear()

        for record in rows:
            buffer.append(_flat(record))
            count += 1
            if len(buffer) >= batch:
                flush()
        if buffer or count == 0:
            flush()
    return count


def count_by_area(engine: Engine, flt: IncidentFilter, kind: str, limit: int = 20
                  ) -> list[dict[str, Any]]:
    """Incidents per area code the source gave (e.g. per beat), busiest first."""
    with engine.connect() as connection:
        area = _resolve_area(connection, flt)
        where = _where(connection, flt, area)
        code = INCIDENTS.c.area_codes[kind].as_string().label("code")
        rows = connection.execute(
            select(code, func.count().label("n")).where(where, code.is_not(None))
            .group_by(code).order_by(func.count().desc(), code).limit(limit)
        ).all()
        names = dict(connection.execute(
            select(AREAS.c.code, AREAS.c.name).where(AREAS.c.kind == kind)).all())
    return [{"kind": kind, "code": r.code, "name": names.get(r.code), "count": r.n}
            for r in rows]
