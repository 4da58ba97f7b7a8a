"""The dashboard's event cube: every stored incident once in memory, as numpy columns.

The analyst view redraws on every filter change, so it cannot go back to the database each
time (a year of Chicago is ~270k rows; three years ~800k). Instead the incidents are loaded
once through the one way in (``services.events.load_events``), with what every filter needs
precomputed per event: projected x/y (the city's UTM metres), the UTC instant as int64
seconds, the local hour, weekday, minute of day and month, the category as a small integer,
and one small-integer code column per area kind. A filter is then a handful of numpy masks.

The cube is cached per engine and per **data version** (the newest import batch, the newest
incident id and the number of incidents: every import, update or deletion changes one of
them). A request checks the three ids (indexed look-ups, about a millisecond); the count
(~80-150 ms for 800k rows on PostgreSQL) is rechecked every few seconds in a background
thread, never on a request's path. A changed version rebuilds the cube, and
``invalidate(engine)`` (called after an import) starts that rebuild in the background.

Area filters mean exactly what ``services.incidents`` makes them mean: when any incident
carries the kind's code (Chicago's beat, district, ward, community area) the source's codes
decide, otherwise the imported polygon holding the point does.

A built cube is also saved to a file per database and data version (``cube_cache_dir``;
written in the background, atomically), so that a restarted server loads it in a fraction of
a second instead of reading every incident again. The file is only used when its database,
data version and newest import batch all match the database's; anything else (another
version, a truncated or foreign file) means a normal build, which then replaces it. The file
is a plain ``.npz``: numbers, fixed-width strings and WKB bytes, never pickles.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shapely
from platformdirs import user_cache_dir
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry
from sqlalchemy import Engine, func, select

from urbansec.domain.events import Events
from urbansec.domain.grid import project_geometry
from urbansec.errors import NotFoundError, UsageError
from urbansec.services.events import area_codes_at, load_events_with_area_codes
from urbansec.services.incidents import AREAS, INCIDENTS, IncidentFilter
from urbansec.store.tables import ImportBatch

log = logging.getLogger("urbansec.dashboard")

BATCHES = ImportBatch.__table__
#: incidents whose ``area_codes`` are read to learn which area kinds the sources carry
KIND_SAMPLE_ROWS = 2000
#: how often a request also counts the incidents (to notice deletions made outside urbansec)
COUNT_RECHECK_SECONDS = 10.0
#: minutes in a day: time-of-day windows are [start, end) in local minutes
DAY_MINUTES = 24 * 60

Version = tuple[int, int, int, int]

#: bumped whenever the saved cube's layout or meaning changes: older files are then ignored
CUBE_FILE_FORMAT = 1
#: cube files kept per database: the current data version and the one before it
CUBE_FILES_KEPT = 2
#: any database's cube file neither loaded nor written for this long is deleted (databases
#: that are gone, e.g. test databases, must not fill the cache directory forever)
CUBE_FILE_MAX_AGE_SECONDS = 30 * 86_400
#: cubes built faster than this are not saved: the file would save nothing a restart notices
#: (the bundled sample builds in about 0.5 s, three years of Chicago in 7-10 s), and test
#: runs' and demos' many small databases stay out of the cache directory
CUBE_FILE_MIN_BUILD_SECONDS = 1.0


@dataclass(frozen=True)
class AreaColumn:
    """One area kind: each event's code as an index into ``labels`` (-1: none)."""

    kind: str
    codes: np.ndarray  # int32, one per event
    labels: list[str]
    by_codes: bool  # True: the sources' codes; False: the imported polygon holding the point

    def index_of(self, code: str) -> int:
        try:
            return self.labels.index(code)
        except ValueError:
            return -1


@dataclass
class EventCube:
    """All stored incidents as aligned arrays (sorted by time), and what describes them."""

    version: Version
    built_at: float
    build_seconds: float
    crs: str
    timezone: str
    ids: np.ndarray  # int64 store ids
    x: np.ndarray  # float64 metres in ``crs``; NaN when unlocated
    y: np.ndarray
    lon: np.ndarray  # float64 WGS84; NaN when unlocated
    lat: np.ndarray
    located: np.ndarray  # bool
    t: np.ndarray  # int64 UTC seconds since the epoch, ascending
    local: np.ndarray  # int64 local wall-clock seconds since the epoch
    hour: np.ndarray  # int8 local hour 0..23
    weekday: np.ndarray  # int8 local weekday, Monday 0
    minute: np.ndarray  # int16 local minute of the day 0..1439
    month: np.ndarray  # int32 local month, months since 1970-01
    exact: np.ndarray  # bool: the time of day is known (not a month-precision record)
    category: np.ndarray  # int16 index into ``categories``
    categories: list[str | None]
    areas: dict[str, AreaColumn]
    area_geometries: dict[tuple[str, str], BaseGeometry] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.t.size)

    def events(self, mask: np.ndarray | None = None) -> Events:
        """The (masked) cube as ``Events`` for the pure analyses."""
        sel = slice(None) if mask is None else mask
        return Events(x=self.x[sel], y=self.y[sel], t=self.t[sel].astype("datetime64[s]"),
                      category=np.asarray(self.categories, dtype=object)[self.category[sel]]
                      if self.categories else np.empty(0, dtype=object),
                      crs=self.crs, timezone=self.timezone, ids=self.ids[sel],
                      time_of_day_known=self.exact[sel])

    def area_polygon(self, kind: str, code: str) -> BaseGeometry | None:
        """The imported polygon of an area, projected to the cube's CRS (None if absent)."""
        return self.area_geometries.get((kind, code))


@dataclass(frozen=True)
class CubeFilter:
    """A dashboard filter, resolved: category codes, UTC period, local time window, area."""

    categories: list[str] | None = None
    start: int | None = None  # UTC seconds, inclusive
    end: int | None = None  # UTC seconds, exclusive
    window: tuple[int, int] | None = None  # local minutes [start, end), may wrap midnight
    area: tuple[str, str] | None = None

    @classmethod
    def from_incident_filter(cls, flt: IncidentFilter, window: tuple[int, int] | None
                             ) -> CubeFilter:
        return cls(categories=flt.categories, start=_seconds(flt.start),
                   end=_seconds(flt.end), window=window, area=flt.area)


def _seconds(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() // 1)


def parse_time_window(text: str | None) -> tuple[int, int] | None:
    """``all`` | ``day`` (06:00-22:00) | ``night`` (22:00-06:00) | ``HH:MM-HH:MM`` local time,
    as ``(start_minute, end_minute)``; ``None`` for all. The end is exclusive; a window whose
    end is before its start wraps midnight."""
    value = (text or "all").strip().lower()
    if value in ("", "all"):
        return None
    if value == "night":
        return (22 * 60, 6 * 60)
    if value == "day":
        return (6 * 60, 22 * 60)
    start, sep, end = value.partition("-")
    if not sep:
        raise UsageError(f"time {text!r}: use all, day, night or HH:MM-HH:MM (local time)")
    a, b = _minute(start, text), _minute(end, text)
    if a == b:
        raise UsageError(f"time {text!r}: the window is empty; use all for the whole day")
    return (a, b)


def _minute(part: str, text: str | None) -> int:
    hours, sep, minutes = part.strip().partition(":")
    if not (sep and hours.isdigit() and minutes.isdigit() and len(minutes) == 2
            and 1 <= len(hours) <= 2):
        raise UsageError(f"time {text!r}: use HH:MM-HH:MM, e.g. 22:00-06:00")
    h, m = int(hours), int(minutes)
    if h == 24 and m == 0:
        return DAY_MINUTES
    if not (0 <= h <= 23 and 0 <= m <= 59):
        raise UsageError(f"time {text!r}: hours 00-24 and minutes 00-59")
    return h * 60 + m


def in_window(minute: np.ndarray, window: tuple[int, int]) -> np.ndarray:
    """Minutes of the day inside ``[start, end)``, wrapping midnight when end < start."""
    start, end = window
    if start < end:
        return (minute >= start) & (minute < end)
    return (minute >= start) | (minute < end)


def mask(cube: EventCube, flt: CubeFilter) -> np.ndarray:
    """Boolean mask of the cube's events matching ``flt`` (numpy only: a few milliseconds).

    The period narrows a slice by binary search (the cube is sorted by time); category, time
    of day and area are masks within it. Month-precision records have no time of day, so a
    time window never matches them (as they never enter the hour x weekday table)."""
    n = len(cube)
    out = np.zeros(n, dtype=bool)
    lo = 0 if flt.start is None else int(np.searchsorted(cube.t, flt.start, side="left"))
    hi = n if flt.end is None else int(np.searchsorted(cube.t, flt.end, side="left"))
    if hi <= lo:
        return out
    part = np.ones(hi - lo, dtype=bool)
    if flt.categories is not None:
        wanted = set(flt.categories)
        lut = np.array([c in wanted for c in cube.categories], dtype=bool)
        part &= lut[cube.category[lo:hi]] if lut.size else False
    if flt.window is not None:
        part &= cube.exact[lo:hi] & in_window(cube.minute[lo:hi], flt.window)
    if flt.area is not None:
        kind, code = flt.area
        column = cube.areas.get(kind)
        if column is None:
            known = ", ".join(sorted(cube.areas)) or "none"
            raise NotFoundError(f"no incidents carry a {kind!r} code and no {kind} areas were "
                                f"imported (known area kinds: {known})")
        index = column.index_of(code)
        if index < 0 and not column.by_codes and (kind, code) not in cube.area_geometries:
            raise NotFoundError(f"no {kind} {code!r} area was imported")
        part &= column.codes[lo:hi] == index if index >= 0 else False
    out[lo:hi] = part
    return out


# --------------------------------------------------------------------------------------------
# Building


def data_version(engine: Engine, *, count: bool = True) -> Version:
    """Cheap to ask, changes on every write that matters: (newest import batch, newest
    incident id, newest area id, number of incidents). Imports are the only writers of
    incidents and areas, and each one, update or insert, is a new batch; the count (an
    indexed scan: ~80 ms for 800k rows on PostgreSQL) also catches deletions made outside
    urbansec. ``count=False`` leaves it out (-1)."""
    with engine.connect() as connection:
        parts = [
            select(func.coalesce(func.max(BATCHES.c.id), 0)).scalar_subquery(),
            select(func.coalesce(func.max(INCIDENTS.c.id), 0)).scalar_subquery(),
            select(func.coalesce(func.max(AREAS.c.id), 0)).scalar_subquery(),
        ]
        if count:
            parts.append(select(func.count()).select_from(INCIDENTS).scalar_subquery())
        row = connection.execute(select(*parts)).one()
    return (int(row[0]), int(row[1]), int(row[2]), int(row[3]) if count else -1)


def _carried_kinds(connection: Any) -> set[str]:
    """Area kinds the sources put on incidents, from the newest and oldest rows."""
    kinds: set[str] = set()
    c = INCIDENTS.c
    for order in (c.id.desc(), c.id.asc()):
        for (codes,) in connection.execute(select(c.area_codes).order_by(order)
                                           .limit(KIND_SAMPLE_ROWS)):
            if isinstance(codes, str):
                codes = json.loads(codes)
            kinds.update(str(k).strip().lower() for k in (codes or {}))
    return {k for k in kinds if k}


def _is_carried(connection: Any, kind: str) -> bool:
    c = INCIDENTS.c
    return connection.execute(select(c.id).where(c.area_codes[kind].as_string().is_not(None))
                              .limit(1)).first() is not None


def build_cube(engine: Engine) -> EventCube:
    """Load every incident and precompute the per-event columns (seconds for 800k rows)."""
    started = time.perf_counter()
    version = data_version(engine)
    with engine.connect() as connection:
        imported = sorted(connection.execute(select(AREAS.c.kind).distinct()).scalars().all())
        stored = version[3] > 0
        carried = _carried_kinds(connection) if stored else set()
        carried |= {k for k in imported if k not in carried and stored
                    and _is_carried(connection, k)}
        kinds = sorted(carried | set(imported))
        polygons = {(r.kind, r.code): shape(json.loads(r.geometry)) for r in connection.execute(
            select(AREAS.c.kind, AREAS.c.code, AREAS.c.geometry))}
    # the carried codes come in the same pass as the events (one read of 800k rows, not two)
    events, carried_codes = load_events_with_area_codes(engine, IncidentFilter(),
                                                        sorted(carried))
    n = len(events)
    ids = events.ids if events.ids is not None else np.arange(n, dtype=np.int64)
    lon, lat = events.to_lonlat()
    located = events.located
    t = events.t.astype("datetime64[s]").astype(np.int64)
    local = events.local_times().astype("datetime64[s]").astype(np.int64)
    days = np.floor_divide(local, 86_400)
    minute = (np.mod(local, 86_400) // 60).astype(np.int16)
    # NULL categories (unmapped source categories) come back as NaN, not None
    category_values = [c if isinstance(c, str) else None for c in events.category.tolist()]
    categories = sorted({c for c in category_values if c is not None})
    has_unmapped = any(c is None for c in category_values)
    labels: list[str | None] = [*categories, *([None] if has_unmapped else [])]
    position = {c: i for i, c in enumerate(labels)}
    category = np.fromiter((position[c] for c in category_values), dtype=np.int16, count=n)
    exact = (events.time_of_day_known if events.time_of_day_known is not None
             else np.ones(n, dtype=bool))

    areas: dict[str, AreaColumn] = {}
    if n:
        for kind, codes in carried_codes.items():
            areas[kind] = _column(kind, codes, by_codes=True)
    for kind in kinds:
        if kind in areas:
            continue
        boundaries = [_Boundary(code, geometry) for (k, code), geometry in polygons.items()
                      if k == kind]
        codes = np.full(n, None, dtype=object)
        if boundaries and located.any():
            codes[located] = area_codes_at(boundaries, lon[located], lat[located])  # type: ignore[arg-type]
        areas[kind] = _column(kind, codes, by_codes=False)
    crs = events.crs
    projected = {}
    for key, geometry in polygons.items():
        try:
            projected[key] = project_geometry(geometry, crs)
        except Exception:  # a broken polygon must not stop the dashboard
            log.warning("area %s:%s could not be projected", *key)
    for geometry in projected.values():
        shapely.prepare(geometry)
    seconds = time.perf_counter() - started
    log.info("dashboard cube: %d incidents, %d area kinds in %.2f s", n, len(areas), seconds)
    return EventCube(
        version=version, built_at=time.time(), build_seconds=seconds, crs=crs,
        timezone=events.timezone, ids=ids.astype(np.int64), x=events.x, y=events.y,
        lon=np.asarray(lon, dtype=float), lat=np.asarray(lat, dtype=float), located=located,
        t=t, local=local, hour=(minute // 60).astype(np.int8),
        weekday=np.mod(days + 3, 7).astype(np.int8), minute=minute,
        month=local.astype("datetime64[s]").astype("datetime64[M]").astype(np.int64)
        .astype(np.int32), exact=np.asarray(exact, dtype=bool), category=category,
        categories=labels, areas=areas, area_geometries=projected)


@dataclass(frozen=True)
class _Boundary:
    """What ``services.events.area_codes_at`` reads of a boundary."""

    code: str
    geometry: BaseGeometry


def _column(kind: str, raw: np.ndarray, *, by_codes: bool) -> AreaColumn:
    """Codes (None where absent) as small integers into their sorted labels."""
    codes, labels = pd.factorize(pd.Series(raw, dtype=object), sort=True)
    return AreaColumn(kind=kind, codes=np.asarray(codes, dtype=np.int32),
                      labels=[str(v) for v in labels.tolist()], by_codes=by_codes)


# --------------------------------------------------------------------------------------------
# Saving and loading: one file per database and data version

#: the cube's per-event columns as saved, with the dtype each must have when loaded
_COLUMNS: dict[str, np.dtype[Any]] = {
    "ids": np.dtype(np.int64), "x": np.dtype(np.float64), "y": np.dtype(np.float64),
    "lon": np.dtype(np.float64), "lat": np.dtype(np.float64), "located": np.dtype(np.bool_),
    "t": np.dtype(np.int64), "local": np.dtype(np.int64), "hour": np.dtype(np.int8),
    "weekday": np.dtype(np.int8), "minute": np.dtype(np.int16), "month": np.dtype(np.int32),
    "exact": np.dtype(np.bool_), "category": np.dtype(np.int16),
}


class CubeFileError(ValueError):
    """A cube file that cannot be used: unreadable, truncated, or of other data."""


def default_cube_directory() -> Path | None:
    """``cube_cache_dir`` (an empty value turns the files off), else the user's cache
    directory (e.g. ``~/.cache/urbansec``)."""
    from urbansec.config import get_settings

    setting = get_settings().cube_cache_dir
    if setting is None:
        return Path(user_cache_dir("urbansec", appauthor=False))
    return Path(setting).expanduser() if setting.strip() else None


def database_key(engine: Engine) -> str | None:
    """Names the database in file names: a hash of its URL without the password (an
    SQLite path made absolute). None for an in-memory SQLite database (nothing to share)."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database in ("", ":memory:") or url.query.get("mode") == "memory":
            return None
        url = url.set(database=str(Path(database).resolve()))
    text = url.render_as_string(hide_password=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def data_fingerprint(engine: Engine, version: Version) -> list[Any]:
    """The version and what identifies its newest import batch (file checksum and times):
    a database recreated at the same URL with the same ids and count still differs here."""
    with engine.connect() as connection:
        row = connection.execute(select(BATCHES.c.sha256, BATCHES.c.started_at,
                                        BATCHES.c.finished_at)
                                 .where(BATCHES.c.id == version[0])).first()
    batch = [] if row is None else [str(value) for value in row]
    return [CUBE_FILE_FORMAT, list(version), batch]


def cube_file(directory: Path, database: str, fingerprint: list[Any]) -> Path:
    digest = hashlib.sha256(json.dumps(fingerprint).encode()).hexdigest()[:16]
    return directory / f"cube-{database}-{digest}.npz"


def save_cube(cube: EventCube, path: Path, database: str, fingerprint: list[Any]) -> None:
    """Write ``cube`` to ``path`` atomically: a temporary file in the same directory, then
    ``os.replace`` (a reader sees the old file or the whole new one, never half of one)."""
    labels = cube.categories
    unmapped = bool(labels) and labels[-1] is None
    kinds = sorted(cube.areas)
    meta = {"format": CUBE_FILE_FORMAT, "database": database, "fingerprint": fingerprint,
            "n": len(cube), "built_at": cube.built_at, "build_seconds": cube.build_seconds,
            "crs": cube.crs, "timezone": cube.timezone, "unmapped": unmapped,
            "areas": [{"kind": kind, "by_codes": cube.areas[kind].by_codes} for kind in kinds]}
    arrays: dict[str, np.ndarray] = {"meta": np.array(json.dumps(meta))}
    for name, dtype in _COLUMNS.items():
        arrays[name] = np.ascontiguousarray(getattr(cube, name), dtype=dtype)
    arrays["categories"] = _strings(labels[:-1] if unmapped else labels)
    for index, kind in enumerate(kinds):
        arrays[f"area{index}_codes"] = np.asarray(cube.areas[kind].codes, dtype=np.int32)
        arrays[f"area{index}_labels"] = _strings(cube.areas[kind].labels)
    keys = list(cube.area_geometries)
    blobs = [bytes(b) for b in shapely.to_wkb(list(cube.area_geometries.values()))]
    arrays["geometry_kinds"] = _strings([kind for kind, _ in keys])
    arrays["geometry_codes"] = _strings([code for _, code in keys])
    arrays["geometry_offsets"] = np.cumsum([0, *map(len, blobs)], dtype=np.int64)
    arrays["geometry_wkb"] = np.frombuffer(b"".join(blobs), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".tmp",
                                         dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez(stream, **arrays)  # type: ignore[arg-type]
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _strings(values: list[Any]) -> np.ndarray:
    """Fixed-width unicode (never an object array: those would need pickles)."""
    return np.array([str(v) for v in values], dtype=str) if values else np.zeros(0, "U1")


def load_cube(path: Path, database: str, fingerprint: list[Any]) -> EventCube:
    """The cube saved in ``path``, checked to be of this database and data (CubeFileError
    otherwise, or when anything in it is missing, truncated or inconsistent)."""
    try:
        with np.load(path, allow_pickle=False) as saved:
            return _cube_from(dict(saved.items()), database, fingerprint)
    except CubeFileError:
        raise
    except Exception as exc:  # zip, npy, JSON, WKB or shape errors: all mean "rebuild"
        raise CubeFileError(f"{path.name}: {exc!r}") from exc


def _cube_from(saved: dict[str, np.ndarray], database: str, fingerprint: list[Any]
               ) -> EventCube:
    meta = json.loads(str(saved["meta"][()]))
    if (meta.get("format") != CUBE_FILE_FORMAT or meta.get("database") != database
            or meta.get("fingerprint") != fingerprint):
        raise CubeFileError("the file holds a cube of other data")
    n = int(meta["n"])
    columns = {}
    for name, dtype in _COLUMNS.items():
        column = saved[name]
        if column.dtype != dtype or column.shape != (n,):
            raise CubeFileError(f"column {name}: {column.dtype}{column.shape}, expected "
                                f"{dtype}({n},)")
        columns[name] = column
    if n and np.any(np.diff(columns["t"]) < 0):
        raise CubeFileError("the events are not in time order")
    categories: list[str | None] = [*saved["categories"].tolist()]
    if meta["unmapped"]:
        categories.append(None)
    if n and not (int(columns["category"].min()) >= 0
                  and int(columns["category"].max()) < len(categories)):
        raise CubeFileError("category codes outside the saved categories")
    areas = {}
    for index, area in enumerate(meta["areas"]):
        codes, labels = saved[f"area{index}_codes"], saved[f"area{index}_labels"].tolist()
        if codes.dtype != np.int32 or codes.shape != (n,) or (
                n and not (int(codes.min()) >= -1 and int(codes.max()) < len(labels))):
            raise CubeFileError(f"area kind {area['kind']!r}: codes do not fit the labels")
        areas[area["kind"]] = AreaColumn(kind=area["kind"], codes=codes, labels=labels,
                                         by_codes=bool(area["by_codes"]))
    offsets, blob = saved["geometry_offsets"], saved["geometry_wkb"].tobytes()
    keys = list(zip(saved["geometry_kinds"].tolist(), saved["geometry_codes"].tolist(),
                    strict=True))
    if offsets.shape != (len(keys) + 1,) or int(offsets[-1]) != len(blob):
        raise CubeFileError("the area geometries are truncated")
    geometries = shapely.from_wkb([blob[offsets[i]:offsets[i + 1]] for i in range(len(keys))])
    polygons: dict[tuple[str, str], BaseGeometry] = dict(zip(keys, geometries, strict=True))
    for geometry in polygons.values():
        shapely.prepare(geometry)
    return EventCube(version=tuple(fingerprint[1]), built_at=float(meta["built_at"]),  # type: ignore[arg-type]
                     build_seconds=float(meta["build_seconds"]), crs=meta["crs"],
                     timezone=meta["timezone"], categories=categories, areas=areas,
                     area_geometries=polygons, **columns)


def prune_cube_files(directory: Path, database: str, keep: Path) -> None:
    """Keep ``keep`` and the newest others up to ``CUBE_FILES_KEPT`` for this database;
    delete the rest (older data versions), any database's files unused for
    ``CUBE_FILE_MAX_AGE_SECONDS``, and temporary files left by a killed writer."""
    others = sorted((p for p in directory.glob(f"cube-{database}-*.npz") if p != keep),
                    key=_mtime, reverse=True)
    for old in others[CUBE_FILES_KEPT - 1:]:
        old.unlink(missing_ok=True)
    now = time.time()
    for unused in directory.glob("cube-*.npz"):
        if unused != keep and now - _mtime(unused) > CUBE_FILE_MAX_AGE_SECONDS:
            unused.unlink(missing_ok=True)
    for stale in directory.glob(".cube-*.tmp"):
        if now - _mtime(stale) > 3600:  # not one being written right now
            stale.unlink(missing_ok=True)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


# --------------------------------------------------------------------------------------------
# The cache: one cube per engine, rebuilt when the data version changes


_DEFAULT_DIRECTORY: Any = object()


class CubeCache:
    """The current cube of one engine; builds at most once at a time (other callers wait).

    ``directory`` holds the saved cubes (default: ``default_cube_directory()``; None: no
    files): a cube is loaded from there when one of the current data exists, and saved
    there in the background after every build that took at least ``min_build_seconds``
    (default ``CUBE_FILE_MIN_BUILD_SECONDS``)."""

    def __init__(self, directory: Path | None = _DEFAULT_DIRECTORY,
                 min_build_seconds: float | None = None) -> None:
        self.directory: Path | None = (default_cube_directory()
                                       if directory is _DEFAULT_DIRECTORY else directory)
        self.min_build_seconds = (CUBE_FILE_MIN_BUILD_SECONDS if min_build_seconds is None
                                  else min_build_seconds)
        # the thread saving the newest built cube (tests and benchmarks wait for it)
        self.saving: threading.Thread | None = None
        #: how the current cube came: "built" or "loaded" (from its file)
        self.source: str | None = None
        self._lock = threading.Lock()
        self._cube: EventCube | None = None
        self._warming: threading.Thread | None = None
        self._lock_warming = threading.Lock()
        self._warm_running = False
        self._warm_again = False
        self._counted = 0.0  # when the incidents were last counted against the cube
        self._counting: threading.Thread | None = None
        self._lock_counting = threading.Lock()
        # set by the background count when it differs from the cube's: rebuild on next use
        self._stale = False
        # results derived from the cube (emerging, forecasts...), dropped with the cube
        self.derived: dict[Any, Any] = {}

    def get(self, engine: Engine) -> EventCube:
        cube = self._cube
        if cube is not None and self._current(engine, cube):
            return cube
        with self._lock:
            cube = self._cube
            version = data_version(engine)
            if cube is not None and cube.version == version:
                self._counted = time.monotonic()
                self._stale = False
                return cube
            cube = self._load(engine, version)
            if cube is None:
                cube = build_cube(engine)
                self.source = "built"
                if cube.build_seconds >= self.min_build_seconds:
                    self._save(engine, cube)
            else:
                self.source = "loaded"
            self._cube = cube
            self._counted = time.monotonic()
            self._stale = False
            self.derived.clear()
            return cube

    def _load(self, engine: Engine, version: Version) -> EventCube | None:
        """The saved cube of exactly this data, or None (no file, or one not usable)."""
        database = database_key(engine) if self.directory is not None else None
        if self.directory is None or database is None:
            return None
        fingerprint = data_fingerprint(engine, version)
        path = cube_file(self.directory, database, fingerprint)
        if not path.is_file():
            return None
        started = time.perf_counter()
        try:
            cube = load_cube(path, database, fingerprint)
        except CubeFileError as exc:
            # the build that follows replaces the file (same name)
            log.warning("dashboard cube file not used, building instead: %s", exc)
            return None
        log.info("dashboard cube: %d incidents loaded from %s in %.2f s", len(cube), path,
                 time.perf_counter() - started)
        # in use: not one of the unused files pruning deletes (read-only directories serve too)
        with contextlib.suppress(OSError):
            os.utime(path)
        return cube

    def _save(self, engine: Engine, cube: EventCube) -> None:
        """Save ``cube`` in a daemon thread, if its data are still the database's (an
        import during the build leaves a cube labelled with the version before it: that
        one lives in memory until the next check, never in a file)."""
        directory = self.directory
        database = database_key(engine) if directory is not None else None
        if directory is None or database is None:
            return

        def run() -> None:
            try:
                if data_version(engine) != cube.version:
                    return
                fingerprint = data_fingerprint(engine, cube.version)
                path = cube_file(directory, database, fingerprint)
                started = time.perf_counter()
                save_cube(cube, path, database, fingerprint)
                prune_cube_files(directory, database, path)
                log.info("dashboard cube saved to %s in %.2f s", path,
                         time.perf_counter() - started)
            except Exception:  # a full disk or a read-only cache costs restarts, not answers
                log.exception("saving the dashboard cube failed")

        thread = threading.Thread(target=run, name="urbansec-dashboard-save", daemon=True)
        self.saving = thread
        thread.start()

    def _current(self, engine: Engine, cube: EventCube) -> bool:
        """The ids every request checks (three index look-ups); the count every few seconds
        only, in a background thread (a deletion made outside urbansec shows a few seconds
        late rather than every request paying for a count of the whole table)."""
        if self._stale:
            return False
        if data_version(engine, count=False)[:3] != cube.version[:3]:
            return False
        if time.monotonic() - self._counted >= COUNT_RECHECK_SECONDS:
            self._recount(engine, cube)
        return True

    def _recount(self, engine: Engine, cube: EventCube) -> None:
        """Count the incidents against ``cube`` in a daemon thread (one at a time)."""
        with self._lock_counting:
            if self._counting is not None and self._counting.is_alive():
                return
            self._counted = time.monotonic()

            def run() -> None:
                try:
                    if data_version(engine) != cube.version and self._cube is cube:
                        self._stale = True
                        self.warm(engine)
                except Exception:  # the next request's check reports a broken database
                    log.exception("counting the incidents for the dashboard cube failed")

            self._counting = threading.Thread(target=run, name="urbansec-dashboard-count",
                                              daemon=True)
            self._counting.start()

    def peek(self) -> EventCube | None:
        return self._cube

    @property
    def warming(self) -> bool:
        return self._warm_running

    def warm(self, engine: Engine) -> threading.Thread | None:
        """Build (or check) the cube in a daemon thread; None if one is already running, which
        then builds once more when done (the data may have changed after it read them)."""
        with self._lock_warming:
            if self._warm_running:
                self._warm_again = True
                return None
            self._warm_running = True
            self._warm_again = False

        def run() -> None:
            while True:
                try:
                    self.get(engine)
                except Exception:  # the request path will report the error properly
                    log.exception("warming the dashboard cube failed")
                with self._lock_warming:
                    if not self._warm_again:
                        self._warm_running = False
                        return
                    self._warm_again = False

        thread = threading.Thread(target=run, name="urbansec-dashboard-warm", daemon=True)
        self._warming = thread
        thread.start()
        return thread

    def drop(self) -> None:
        with self._lock:
            self._cube = None
            self.derived.clear()


_CACHES: weakref.WeakKeyDictionary[Engine, CubeCache] = weakref.WeakKeyDictionary()
_CACHES_LOCK = threading.Lock()


def cache_for(engine: Engine) -> CubeCache:
    with _CACHES_LOCK:
        cache = _CACHES.get(engine)
        if cache is None:
            cache = _CACHES[engine] = CubeCache()
        return cache


def get_cube(engine: Engine) -> EventCube:
    """The cube of the engine's current data (built now if the data changed)."""
    return cache_for(engine).get(engine)


def invalidate(engine: Engine, *, warm: bool = True) -> None:
    """Call after writing incidents or areas: forget the cube and rebuild it in the
    background so the next dashboard request finds it ready. Nothing happens for an engine
    whose cube was never built in this process (a CLI import: no dashboard to serve, and
    seconds of CPU saved)."""
    with _CACHES_LOCK:
        cache = _CACHES.get(engine)
    if cache is None:
        return
    # a cube being built now may hold the data from before this change: build again
    serving = cache.peek() is not None or cache.warming
    cache.drop()
    if warm and serving:
        cache.warm(engine)
