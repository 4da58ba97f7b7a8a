"""The crowd state of zones from the stored observations: zone sources, minute series,
the current state of every zone, and hourly forecasts per datastream or zone.

Everything here reads the store and hands arrays to the pure :mod:`urbansec.crowd` functions
(occupancy, density, flow, level of service, trend, nowcasts); no crowd arithmetic is
re-implemented. Decisions worth knowing:

- **Minutes.** A series over ``[from, to)`` has one bin per minute, labelled by the minute's
  start; occupancy and density hold at the end of the minute, flows are the persons crossing
  during it. An observation at an instant ``t`` belongs to the minute ending at or after ``t``
  (``10:05:00`` is the minute ``10:04-10:05``: a counter's instant means "the minute ending
  then", and an area count at ``10:05:00`` is the occupancy at the end of that minute). An
  interval observation is spread evenly over the minutes it covers.
- **Occupancy precedence** per minute: the area count (latest in the minute; several cameras
  are added up while each has counted in the last :data:`AREA_COUNT_HOLD_MINUTES` minutes) >
  the beacon estimate (devices x ``zone.properties["beacon_persons_per_device"]``; without
  that calibration beacons are not used, and the state says so) > in/out flows. The first two
  are the anchors of :func:`urbansec.crowd.density.occupancy_from_flows`, which integrates the
  flows from the last anchor and clamps drift at zero; flows start from an empty zone at the
  series start, the event start, or :data:`STATE_LOOKBACK` before the state's instant.
- **Flow** (persons/m/min, where the zone's width is known) = the persons crossing per minute
  (in + out counters, plus ``footfall`` counters: a footfall count is pedestrian flow through
  a cross-section, spread over its interval like any count, so an hourly 3,000 is 50 persons
  a minute) / width. Footfall says nothing about how many are inside: it never touches the
  occupancy.
- **Level of service** from :class:`urbansec.crowd.los.LosConfig` for the zone type: the worse
  of the density and the flow level, the flow level alone where the density is unknown (a
  zone measured only by footfall); the trend is :func:`urbansec.crowd.trend.
  minutes_to_threshold` of the density towards the start of level E of the zone type's scale
  (or ``zone.properties["threshold_density"]``).
- **Stale data.** ``state()`` without an explicit instant uses now, unless the newest stored
  observation is more than :data:`STALE_AFTER` old: then the state is computed at the end of
  the minute of that observation and flagged ``stale`` (replayed history still shows).
- **Forecasts** work on the hourly series in the zone's (or counter's) local wall-clock time
  (``tz`` argument, else a ``timezone`` property of the datastream, its Thing or the zone,
  else UTC): the nowcast models' weekly profile follows people's clocks.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Connection, Engine, Text, select, type_coerce

from urbansec.crowd.density import beacon_estimate, density, flow_rate, occupancy_from_flows
from urbansec.crowd.los import LosConfig, LosScale
from urbansec.crowd.nowcast import ProfileRegression, SeasonalNaive
from urbansec.crowd.trend import minutes_to_threshold
from urbansec.crowd.zones import Zone as CrowdZone
from urbansec.crowd.zones import ZoneType
from urbansec.errors import NotFoundError, UsageError
from urbansec.store.sensors import Datastream, Observation, Thing, Zone

__all__ = ["InvalidRequestError", "MinuteSeries", "ZoneSource", "aware_utc", "compute_minutes",
           "crossings_per_minute", "event_window", "event_with_zones", "forecast", "iso",
           "light_state", "minute_series", "state",
           "zone_document", "zone_series", "zone_sources"]

zones_table = Zone.__table__
datastreams = Datastream.__table__
observations = Observation.__table__
things = Thing.__table__

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
#: the longest series window (a minute series of 10,080 points)
MAX_SERIES = timedelta(days=7)
#: without an event, flow-based occupancy of the state starts this long before its instant
STATE_LOOKBACK = timedelta(hours=12)
#: "now" moves back to the newest observation when that is older than this
STALE_AFTER = timedelta(minutes=10)
#: reads start this long before a window, so an interval count (e.g. an hourly one) that
#: began earlier still adds its share to the window's first minutes
MAX_INTERVAL = timedelta(hours=1)
#: an area count still counts towards a multi-camera sum for this many minutes
AREA_COUNT_HOLD_MINUTES = 5
#: the trend's window and the fewest measured minutes in it
TREND_WINDOW, TREND_MIN_POINTS = 10, 5
#: hours of history a forecast reads (the benchmark fits on 16 weeks)
FORECAST_HISTORY_HOURS = 16 * 168
FORECAST_MODELS = ("profile", "seasonal_naive")
OCCUPANCY_ROLES = ("area_count", "beacon_devices", "in_counter", "out_counter")
#: what the minute series reads: the occupancy sources and the flow-only footfall counters
SERIES_ROLES = (*OCCUPANCY_ROLES, "footfall")
LIGHT_STATES = ("on", "dimmed", "off", "failed")
_LIGHT_NUMBERS = {1.0: "on", 0.5: "dimmed", 0.0: "off", -1.0: "failed"}
_LOS = LosConfig()


class InvalidRequestError(UsageError):
    """Well-formed but unacceptable input (a window ending before it starts, too long, an
    unknown zone in a body): 422, like the API's own validation errors."""

    http_status = 422
    code = "invalid_request"


# --- zones and their sources ----------------------------------------------------------------

@dataclass(frozen=True)
class StreamRef:
    id: int
    name: str
    role: str
    thing: str  # the Thing's name: a light's or a tracked device's label


@dataclass(frozen=True)
class ZoneSource:
    """A zone with what measures it: datastreams by role, usable area, width, capacity."""

    id: int
    key: str
    name: str
    zone_type: str
    area_m2: float
    width_m: float | None
    capacity: int | None
    geometry: dict[str, Any] | None
    properties: dict[str, Any]
    streams: dict[str, list[StreamRef]] = field(default_factory=dict)

    def ids(self, *roles: str) -> list[int]:
        return [s.id for role in roles for s in self.streams.get(role, [])]

    @property
    def scale(self) -> LosScale:
        return _LOS.scale_for(self.zone_type)

    @property
    def threshold_density(self) -> float:
        """Persons/m² where level E starts on the zone type's scale, or the configured one."""
        configured = self.properties.get("threshold_density")
        if isinstance(configured, int | float) and math.isfinite(configured) and configured > 0:
            return float(configured)
        return float(self.scale.density_bounds[3])

    @property
    def effective_capacity(self) -> int:
        zone = CrowdZone(self.key, ZoneType(self.zone_type), self.area_m2, width_m=self.width_m,
                         capacity=self.capacity)
        return zone.capacity_for(self.scale.capacity_density)

    def beacon_factor(self) -> float | None:
        factor = self.properties.get("beacon_persons_per_device")
        if isinstance(factor, bool) or not isinstance(factor, int | float):
            return None
        return float(factor) if math.isfinite(factor) and factor > 0 else None


def zone_sources(engine: Engine | Connection, keys: Sequence[str] | None = None
                 ) -> list[ZoneSource]:
    """Zones (all, or those of ``keys`` in that order; an unknown key is a 404) with their
    datastreams grouped by role."""
    if isinstance(engine, Connection):
        return _zone_sources(engine, keys)
    with engine.connect() as connection:
        return _zone_sources(connection, keys)


def _zone_sources(connection: Connection, keys: Sequence[str] | None) -> list[ZoneSource]:
    query = select(zones_table).order_by(zones_table.c.id)
    if keys is not None:
        query = query.where(zones_table.c.key.in_(list(keys)))
    rows = {r.key: r for r in connection.execute(query)}
    if keys is not None:
        missing = [k for k in keys if k not in rows]
        if missing:
            raise NotFoundError(f"no zone {missing[0]!r}", details={"missing": missing})
        ordered = [rows[k] for k in keys]
    else:
        ordered = list(rows.values())
    members: dict[int, dict[str, list[StreamRef]]] = {}
    if ordered:
        for ds_id, name, role, zone_id, thing in connection.execute(
                select(datastreams.c.id, datastreams.c.name, datastreams.c.role,
                       datastreams.c.zone_id, things.c.name)
                .join(things, things.c.id == datastreams.c.thing_id)
                .where(datastreams.c.zone_id.in_([r.id for r in ordered]))
                .order_by(datastreams.c.id)):
            members.setdefault(zone_id, {}).setdefault(role or "", []).append(
                StreamRef(int(ds_id), name, role or "", thing))
    return [ZoneSource(int(r.id), r.key, r.name, r.zone_type, float(r.area_m2),
                       None if r.width_m is None else float(r.width_m), r.capacity,
                       json.loads(r.geometry) if r.geometry else None, dict(r.properties or {}),
                       members.get(r.id, {})) for r in ordered]


def zone_document(source: ZoneSource) -> dict[str, Any]:
    """The API's view of a zone (``GET /crowd/zones``)."""
    return {"key": source.key, "name": source.name, "zone_type": source.zone_type,
            "area_m2": source.area_m2, "width_m": source.width_m, "capacity": source.capacity,
            "effective_capacity": source.effective_capacity, "geometry": source.geometry,
            "properties": source.properties,
            "datastreams": [{"id": s.id, "name": s.name, "role": s.role}
                            for role in sorted(source.streams) for s in source.streams[role]]}


# --- reading observations -------------------------------------------------------------------

@dataclass(frozen=True)
class _Readings:
    """One datastream's observations: start and end in ms since the epoch (end == start for
    an instant), numeric result (NaN for non-numeric), and whether each is an interval."""

    start: NDArray[np.int64]
    end: NDArray[np.int64]
    value: NDArray[np.float64]
    interval: NDArray[np.bool_]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ms(value: datetime) -> int:
    return (value - _EPOCH) // timedelta(milliseconds=1)


def _datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def iso(value: datetime | None) -> str | None:
    """``2025-03-01T10:05:00Z`` (milliseconds only when there are some)."""
    if value is None:
        return None
    value = value.astimezone(UTC)
    spec = "milliseconds" if value.microsecond else "seconds"
    return value.isoformat(timespec=spec).replace("+00:00", "Z")


def _iso_many(ms: NDArray[np.int64]) -> list[str]:
    return [t + "Z" for t in np.datetime_as_string(ms.astype("datetime64[ms]"), unit="s")]


def _epoch_ms(values: Sequence[Any]) -> NDArray[np.int64]:
    """Milliseconds since the epoch of stored instants read without type processing: SQLite
    gives its naive-UTC text (parsed by numpy in one call), PostgreSQL aware datetimes."""
    if not values:
        return np.empty(0, dtype=np.int64)
    if isinstance(values[0], str):
        return np.array(values, dtype="datetime64[ms]").astype(np.int64)
    return np.fromiter((_ms(v if v.tzinfo else v.replace(tzinfo=UTC)) for v in values),
                       dtype=np.int64, count=len(values))


def _read(connection: Connection, stream_ids: Sequence[int], start: datetime, end: datetime
          ) -> dict[int, _Readings]:
    """Observations of the streams with a phenomenon time in ``[start - MAX_INTERVAL, end]``
    (intervals that began before the window still reach into it; an instant at ``end`` is the
    window's last minute), in one range select."""
    found: dict[int, _Readings] = {}
    if not stream_ids:
        return found
    # the instants are converted in bulk below: the column type's per-row conversion would
    # cost more than everything else a 7-day series does
    raw_start = type_coerce(observations.c.phenomenon_time, Text)
    raw_end = type_coerce(observations.c.phenomenon_time_end, Text)
    result = connection.execute(
        select(observations.c.datastream_id, raw_start, raw_end, observations.c.result_number)
        .where(observations.c.datastream_id.in_(list(stream_ids)),
               observations.c.phenomenon_time >= start - MAX_INTERVAL,
               observations.c.phenomenon_time <= end)
        .order_by(observations.c.datastream_id, observations.c.phenomenon_time))
    # the driver's plain tuples: no column here needs SQLAlchemy's result processing, which
    # costs more per row than the rest of the work
    rows = result.cursor.fetchall() if result.cursor is not None else []
    result.close()
    if not rows:
        return found
    stream, start_raw, end_raw, number = zip(*rows, strict=True)
    stream_of = np.array(stream, dtype=np.int64)
    start_ms = _epoch_ms(start_raw)
    has_end = np.array([e is not None for e in end_raw], dtype=bool)
    end_ms = start_ms.copy()
    end_ms[has_end] = _epoch_ms([e for e in end_raw if e is not None])
    value = np.array([math.nan if v is None else v for v in number], dtype=float)
    interval = end_ms > start_ms
    for stream_id in np.unique(stream_of):
        mine = stream_of == stream_id
        found[int(stream_id)] = _Readings(start_ms[mine], end_ms[mine], value[mine],
                                          interval[mine])
    return found


def _instant_bins(t_ms: NDArray[np.int64], origin_ms: int, step_ms: int) -> NDArray[np.int64]:
    """The bin ending at or after each instant: ``ceil((t - origin) / step) - 1``."""
    return -((origin_ms - t_ms) // step_ms) - 1


def _sum_bins(readings: _Readings, origin_ms: int, step_ms: int, n: int
              ) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Per bin, the sum of the stream's results (intervals spread evenly over the bins they
    cover) and whether anything was observed in it."""
    ok = ~np.isnan(readings.value)
    start, end = readings.start[ok], readings.end[ok]
    value, interval = readings.value[ok], readings.interval[ok]
    first = np.where(interval, (start - origin_ms) // step_ms,
                     _instant_bins(start, origin_ms, step_ms))
    last = np.where(interval, -((origin_ms - end) // step_ms) - 1, first)
    lengths = np.maximum(last - first + 1, 1)
    owner = np.repeat(np.arange(first.size), lengths)
    offsets = np.arange(owner.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    index = first[owner] + offsets
    share = (value / lengths)[owner]
    inside = (index >= 0) & (index < n)
    total = np.bincount(index[inside], weights=share[inside], minlength=n)
    seen = np.bincount(index[inside], minlength=n) > 0
    return total, seen


def _latest_bins(readings: _Readings, origin_ms: int, step_ms: int, n: int
                 ) -> NDArray[np.float64]:
    """Per bin, the result of the latest observation in it (intervals count at their end);
    NaN where none."""
    ok = ~np.isnan(readings.value)
    instant, value = readings.end[ok], readings.value[ok]
    order = np.argsort(instant, kind="stable")
    index = _instant_bins(instant[order], origin_ms, step_ms)
    value = value[order]
    inside = (index >= 0) & (index < n)
    index, value = index[inside], value[inside]
    result = np.full(n, np.nan)
    if index.size:
        # the last occurrence of each bin in time order: first occurrence in reverse
        unique, first_reversed = np.unique(index[::-1], return_index=True)
        result[unique] = value[::-1][first_reversed]
    return result


def _hold(values: NDArray[np.float64], minutes: int) -> NDArray[np.float64]:
    """Carry each value forward over up to ``minutes`` missing minutes."""
    n = values.size
    position = np.where(~np.isnan(values), np.arange(n), -1)
    last = np.maximum.accumulate(position)
    held = np.where(last >= 0, values[np.maximum(last, 0)], np.nan)
    return np.where((last >= 0) & (np.arange(n) - last <= minutes), held, np.nan)


# --- the minute series ----------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class MinuteSeries:
    """A zone's minute series: ``origin_ms`` is the start of minute 0."""

    origin_ms: int
    occupancy: NDArray[np.float64]
    density: NDArray[np.float64]
    flow: NDArray[np.float64]
    level: NDArray[np.int8]
    inflow: NDArray[np.float64]
    outflow: NDArray[np.float64]
    sources: list[str]
    warnings: list[str]

    @property
    def size(self) -> int:
        return int(self.occupancy.size)


@dataclass(eq=False)
class _ZoneInputs:
    """What one zone's sensors say per minute, before the occupancy is integrated."""

    inflow: NDArray[np.float64]
    outflow: NDArray[np.float64]
    footfall: NDArray[np.float64]  # persons passing per minute (flow only), NaN unmeasured
    anchors: NDArray[np.float64]  # area count, else calibrated beacon estimate, else NaN
    has_flows: bool
    used: list[str]
    notes: list[str]


def _inputs(source: ZoneSource, readings: dict[int, _Readings], origin_ms: int, n: int
            ) -> _ZoneInputs:
    notes: list[str] = []
    used: list[str] = []

    def observed(role: str) -> list[_Readings]:
        found = [readings[i] for i in source.ids(role) if i in readings]
        return [r for r in found if r.value.size]

    def summed(role: str) -> tuple[NDArray[np.float64], bool]:
        total, seen = np.zeros(n), np.zeros(n, dtype=bool)
        streams = observed(role)
        for r in streams:
            values, present = _sum_bins(r, origin_ms, MINUTE_MS, n)
            total += values
            seen |= present
        if np.any(seen):
            used.append(role)
        return np.where(seen, total, np.nan), bool(source.ids(role))

    def latest_sum(role: str) -> NDArray[np.float64]:
        streams = observed(role)
        if not streams:
            return np.full(n, np.nan)
        per_stream = [_latest_bins(r, origin_ms, MINUTE_MS, n) for r in streams]
        if len(per_stream) > 1:
            # several cameras or gateways: a minute's total needs each one's recent count
            per_stream = [_hold(v, AREA_COUNT_HOLD_MINUTES) for v in per_stream]
        total = np.sum(per_stream, axis=0)  # NaN unless every stream has a value
        if np.any(~np.isnan(total)):
            used.append(role)
        return total

    inflow, has_in = summed("in_counter")
    outflow, has_out = summed("out_counter")
    if np.any(inflow < 0) or np.any(outflow < 0):
        notes.append("negative in/out counts ignored")
        inflow = np.where(inflow < 0, np.nan, inflow)
        outflow = np.where(outflow < 0, np.nan, outflow)
    footfall, _ = summed("footfall")
    if np.any(footfall < 0):
        notes.append("negative footfall counts ignored")
        footfall = np.where(footfall < 0, np.nan, footfall)
    anchors = latest_sum("area_count")
    if np.any(anchors < 0):
        notes.append("negative area counts ignored")
        anchors = np.where(anchors < 0, np.nan, anchors)
    if source.ids("beacon_devices"):
        factor = source.beacon_factor()
        if factor is None:
            notes.append("beacon_devices streams not used: the zone has no positive "
                         "properties.beacon_persons_per_device calibration")
        else:
            devices = latest_sum("beacon_devices")
            devices = np.where(devices < 0, np.nan, devices)
            estimate = np.where(np.isnan(devices), np.nan,
                                beacon_estimate(np.nan_to_num(devices), factor))
            anchors = np.where(np.isnan(anchors), estimate, anchors)
            if "beacon_devices" in used:
                notes.append(f"beacon estimate: {factor:g} persons per device seen")
    return _ZoneInputs(inflow, outflow, footfall, anchors, has_in or has_out, used, notes)


def _finish(source: ZoneSource, inputs: _ZoneInputs, origin_ms: int,
            occupancy: NDArray[np.float64], clipped: NDArray[np.float64]) -> MinuteSeries:
    n = occupancy.size
    notes, used = inputs.notes, inputs.used
    occupancy_used = [r for r in used if r in OCCUPANCY_ROLES]
    if not inputs.has_flows:
        # nothing integrates before the first count: unknown, not an empty zone
        measured = np.flatnonzero(~np.isnan(inputs.anchors))
        first = measured[0] if measured.size else n
        occupancy = np.where(np.arange(n) < first, np.nan, occupancy)
    elif not occupancy_used:
        occupancy = np.full(n, np.nan)
    if not source.ids(*OCCUPANCY_ROLES):
        if source.ids("footfall"):
            notes.append("occupancy unknown: footfall counters measure the flow only")
        else:
            notes.append("no occupancy sensors: assign in_counter/out_counter, area_count "
                         "or beacon_devices datastreams to the zone")
    elif not occupancy_used and n:
        notes.append("no observations in the window")
    drift = float(clipped.sum())
    if drift > 0:
        notes.append(f"in/out counts drifted below zero: {drift:g} persons added back")
    zone_density = density(occupancy, source.area_m2)
    inflow, outflow = inputs.inflow, inputs.outflow
    crossing = crossings_per_minute(inflow, outflow, inputs.footfall)
    if source.width_m is not None:
        flow = flow_rate(crossing, source.width_m)
        # a NaN density leaves the flow's level (LosScale.level takes the worse of the two)
        level = _LOS.level(source.zone_type, zone_density, flow)
    else:
        flow = np.full(n, np.nan)
        level = _LOS.level(source.zone_type, zone_density)
        if inputs.has_flows or source.ids("footfall"):
            notes.append("no effective width: flow rate not computed")
    return MinuteSeries(origin_ms, occupancy, zone_density, flow, level, inflow, outflow,
                        [r for r in SERIES_ROLES if r in used], notes)


def crossings_per_minute(*persons: NDArray[np.float64]) -> NDArray[np.float64]:
    """Persons crossing per minute from in, out and footfall counts (each NaN where it did not
    report): their sum, NaN only where none reported."""
    stacked = np.stack(persons)
    return np.where(np.all(np.isnan(stacked), axis=0), np.nan, np.nansum(stacked, axis=0))


def compute_minutes(sources: Sequence[ZoneSource], readings: dict[int, _Readings],
                    origin_ms: int, n: int) -> list[MinuteSeries]:
    """Occupancy, density, flow and level of service of each zone for ``n`` minutes from
    ``origin_ms``, flows integrated from an empty zone at the origin (see the module notes).
    The zones share the window, so the occupancy is integrated for all of them in one call
    (vectorised over zones)."""
    inputs = [_inputs(source, readings, origin_ms, n) for source in sources]
    if not inputs:
        return []
    result = occupancy_from_flows(
        np.nan_to_num(np.stack([i.inflow for i in inputs]).reshape(len(inputs), n)),
        np.nan_to_num(np.stack([i.outflow for i in inputs]).reshape(len(inputs), n)),
        area_counts=np.stack([i.anchors for i in inputs]).reshape(len(inputs), n))
    return [_finish(source, zone_inputs, origin_ms, result.occupancy[k], result.clipped[k])
            for k, (source, zone_inputs) in enumerate(zip(sources, inputs, strict=True))]


def _floor_minute(ms: int) -> int:
    return ms - ms % MINUTE_MS


def _ceil_minute(ms: int) -> int:
    return -((-ms) // MINUTE_MS) * MINUTE_MS


#: instants outside these years are typing errors (and would overflow the window arithmetic)
YEARS = (1970, 2200)


def aware_utc(value: datetime, name: str) -> datetime:
    """An instant with its zone, in UTC; a naive or absurd one is a 422."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidRequestError(f"{name}: give a time zone (e.g. 2025-03-01T10:00:00Z)")
    if not YEARS[0] <= value.year <= YEARS[1]:
        raise InvalidRequestError(f"{name}: a year between {YEARS[0]} and {YEARS[1]}")
    return value.astimezone(UTC)


def minute_series(connection: Connection, sources: Sequence[ZoneSource], start: datetime,
                  end: datetime) -> list[MinuteSeries]:
    """The minute series of each zone over whole minutes from ``start`` (floored) to ``end``
    (floored: a minute that has not ended is left out), from one range select."""
    origin = _floor_minute(_ms(start))
    n = max((_floor_minute(_ms(end)) - origin) // MINUTE_MS, 0)
    ids = [i for source in sources for i in source.ids(*SERIES_ROLES)]
    readings = _read(connection, ids, _datetime(origin), _datetime(origin + n * MINUTE_MS))
    return compute_minutes(sources, readings, origin, n)


def _number(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _numbers(values: NDArray[np.float64], digits: int = 6) -> list[float | None]:
    rounded = np.round(values.astype(float), digits)
    return [None if not math.isfinite(v) else v for v in rounded.tolist()]


def _letters(source: ZoneSource, levels: NDArray[np.integer]) -> list[str | None]:
    return [letter or None for letter in source.scale.letters(levels).tolist()]


# --- events bound the reads -------------------------------------------------------------------

@dataclass(frozen=True)
class EventWindow:
    id: int
    name: str
    starts_at: datetime
    ends_at: datetime
    zone_keys: tuple[str, ...]


def event_with_zones(connection: Connection, event_id: int) -> tuple[Any, tuple[str, ...]]:
    """The stored event's row and its zone keys (in zone order); NotFoundError if none."""
    from urbansec.store.crowd import CrowdEvent, CrowdEventZone

    events, links = CrowdEvent.__table__, CrowdEventZone.__table__
    row = connection.execute(select(events).where(events.c.id == event_id)).first()
    if row is None:
        raise NotFoundError(f"no event {event_id}")
    keys = connection.execute(select(zones_table.c.key)
                              .join(links, links.c.zone_id == zones_table.c.id)
                              .where(links.c.event_id == event_id)
                              .order_by(zones_table.c.id)).scalars().all()
    return row, tuple(keys)


def event_window(connection: Connection, event_id: int) -> EventWindow:
    row, keys = event_with_zones(connection, event_id)
    return EventWindow(int(row.id), row.name, row.starts_at, row.ends_at, keys)


# --- the series of one zone -----------------------------------------------------------------

STEPS = ((timedelta(days=1), "PT1M", 1), (timedelta(days=3), "PT5M", 5),
         (MAX_SERIES, "PT1H", 60))


def zone_series(engine: Engine, key: str, start: datetime | None = None,
                end: datetime | None = None, event_id: int | None = None,
                now: datetime | None = None) -> dict[str, Any]:
    """``GET /crowd/zones/{key}/series``: the zone's minute series over ``[start, end)`` (at
    most 7 days; 5-minute steps beyond a day, hourly beyond 3 days, each coarse step showing
    its worst minute so a chart never hides a peak). ``end`` defaults to now (or the newest
    observation when stale), ``start`` to two hours before ``end``; an event bounds both and
    starts the flows from an empty zone at its start."""
    with engine.connect() as connection:
        source = _zone_sources(connection, [key])[0]
        event = None if event_id is None else event_window(connection, event_id)
        if event is not None and key not in event.zone_keys:
            raise InvalidRequestError(f"zone {key!r} is not a zone of event {event.id}")
        stale = False
        if end is None:
            end = aware_utc(now, "now") if now is not None else datetime.now(UTC)
            if event is not None:
                end = min(end, event.ends_at)
            newest = _newest(connection, source.ids(*SERIES_ROLES), end)
            if newest is not None and end - newest > STALE_AFTER:
                end, stale = _datetime(_ceil_minute(_ms(newest))), True
        end = aware_utc(end, "to")
        start = aware_utc(start, "from") if start is not None else end - timedelta(hours=2)
        if event is not None:
            start, end = max(start, event.starts_at), min(end, event.ends_at)
        if start >= end:
            raise InvalidRequestError("the window must end after it starts",
                                      details={"from": iso(start), "to": iso(end)})
        if end - start > MAX_SERIES:
            raise InvalidRequestError("a series covers at most 7 days",
                                      details={"from": iso(start), "to": iso(end)})
        (series,) = minute_series(connection, [source], start, end)
    span = end - start
    label, factor = next((lab, f) for limit, lab, f in STEPS if span <= limit)
    occupancy, zone_density, flow, level = (series.occupancy, series.density, series.flow,
                                            series.level)
    times = series.origin_ms + MINUTE_MS * np.arange(series.size, dtype=np.int64)
    if factor > 1:
        occupancy, zone_density, flow = (_worst(v, factor) for v in (occupancy, zone_density,
                                                                     flow))
        level = _worst(level.astype(float), factor, empty=-1.0).astype(np.int8)
        times = times[::factor]
    return {"zone": key, "event": event_id, "from": iso(start), "to": iso(end),
            "step": label, "stale": stale, "times": _iso_many(times),
            "occupancy": _numbers(occupancy, 3), "density": _numbers(zone_density),
            "los": _letters(source, level), "flow": _numbers(flow, 4),
            "threshold_density": source.threshold_density,
            "capacity": source.effective_capacity,
            "sources": series.sources, "warnings": series.warnings}


def _worst(values: NDArray[np.float64], factor: int, empty: float = math.nan
           ) -> NDArray[np.float64]:
    """The maximum of each run of ``factor`` values (the last run may be shorter)."""
    pad = (-values.size) % factor
    padded = np.concatenate([values.astype(float), np.full(pad, np.nan)]).reshape(-1, factor)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN steps stay NaN
        worst = np.nanmax(padded, axis=1)
    return np.where(np.isnan(worst), empty, worst)


# --- the current state ----------------------------------------------------------------------

@dataclass(frozen=True)
class _Latest:
    time: datetime  # the end of the latest observation (its instant, or its interval's end)
    result: Any
    number: float | None


def _latest(connection: Connection, stream_ids: Sequence[int], at: datetime
            ) -> dict[int, _Latest]:
    """Each stream's latest observation with a phenomenon time at or before ``at`` (one index
    lookup per stream)."""
    found = {}
    for stream_id in stream_ids:
        row = connection.execute(
            select(observations.c.phenomenon_time, observations.c.phenomenon_time_end,
                   observations.c.result, observations.c.result_number)
            .where(observations.c.datastream_id == stream_id,
                   observations.c.phenomenon_time <= at)
            .order_by(observations.c.phenomenon_time.desc()).limit(1)).first()
        if row is not None:
            found[stream_id] = _Latest(row[1] or row[0], row[2], row[3])
    return found


def _newest(connection: Connection, stream_ids: Sequence[int], at: datetime
            ) -> datetime | None:
    times = [latest.time for latest in _latest(connection, stream_ids, at).values()]
    return max(times) if times else None


def light_state(result: Any, number: float | None) -> str | None:
    """``on|dimmed|off|failed`` from a text result or from 1 / 0.5 / 0 / -1."""
    if isinstance(result, str) and result.strip().lower() in LIGHT_STATES:
        return result.strip().lower()
    value = number if number is not None else result
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return _LIGHT_NUMBERS.get(float(value))


def state(engine: Engine, at: datetime | None = None, event_id: int | None = None,
          now: datetime | None = None) -> dict[str, Any]:
    """``GET /crowd/state``: every zone (or the event's zones) at the end of the last
    complete minute before ``at``; see the module notes for the stale rule."""
    with engine.connect() as connection:
        event = None if event_id is None else event_window(connection, event_id)
        sources = _zone_sources(connection, list(event.zone_keys) if event else None)
        stale = False
        requested = at is not None
        at = aware_utc(at, "at") if requested else (
            aware_utc(now, "now") if now is not None else datetime.now(UTC))
        if event is not None:
            at = min(at, event.ends_at)
        # each stream's latest observation: the zones' last data and lights, and "newest"
        latest = _latest(connection, [i for s in sources for role in s.streams
                                      if role != "position" for i in s.ids(role)], at)
        newest = max((v.time for v in latest.values()), default=None)
        if not requested and newest is not None and at - newest > STALE_AFTER:
            at, stale = _datetime(_ceil_minute(_ms(newest))), True
        at = _datetime(_floor_minute(_ms(at)))
        start = at - STATE_LOOKBACK
        if event is not None:
            start = max(event.starts_at, at - MAX_SERIES)
        series = (minute_series(connection, sources, start, at) if start < at
                  else [None] * len(sources))
        documents = [_zone_state(source, zone_series, latest)
                     for source, zone_series in zip(sources, series, strict=True)]
    answer: dict[str, Any] = {"at": iso(at), "stale": stale, "zones": documents}
    if event is not None:
        answer["event"] = {"id": event.id, "name": event.name,
                           "starts_at": iso(event.starts_at), "ends_at": iso(event.ends_at)}
    return answer


def _zone_state(source: ZoneSource, series: MinuteSeries | None,
                latest_of: dict[int, _Latest]) -> dict[str, Any]:
    document: dict[str, Any] = {
        "key": source.key, "name": source.name, "zone_type": source.zone_type,
        "occupancy": None, "density": None, "los": None, "flow": None,
        "capacity": source.effective_capacity, "occupancy_share": None,
        "minutes_to_threshold": None, "threshold_density": source.threshold_density,
        "lights": dict.fromkeys(LIGHT_STATES, 0), "last_observation_at": None,
        "sources": [], "warnings": []}
    streams = [i for role in source.streams if role != "position" for i in source.ids(role)]
    latest = {i: latest_of[i] for i in streams if i in latest_of}
    if latest:
        document["last_observation_at"] = iso(max(v.time for v in latest.values()))
    for light in source.ids("lighting_status"):
        if light in latest:
            status = light_state(latest[light].result, latest[light].number)
            if status is None:
                document["warnings"].append(f"light datastream {light}: unknown status "
                                            f"{latest[light].result!r}")
            else:
                document["lights"][status] += 1
    if series is None:
        document["warnings"].append("the event has not started")
        return document
    document["sources"], document["warnings"] = (series.sources,
                                                 document["warnings"] + series.warnings)
    if series.size == 0:
        return document
    occupancy = _number(series.occupancy[-1])
    document["occupancy"] = None if occupancy is None else round(occupancy, 3)
    document["density"] = _number(series.density[-1])
    document["flow"] = _number(series.flow[-1])
    document["los"] = _letters(source, series.level[-1:])[0]
    if occupancy is not None and document["capacity"] > 0:
        document["occupancy_share"] = occupancy / document["capacity"]
    trend = minutes_to_threshold(series.density, source.threshold_density,
                                 window=TREND_WINDOW, min_points=TREND_MIN_POINTS)
    document["minutes_to_threshold"] = _number(float(trend.eta_minutes))
    return document


# --- forecasts ------------------------------------------------------------------------------

def _timezone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidRequestError(f"unknown time zone {name!r} (an IANA name such as "
                                  "Pacific/Auckland)") from None


def _property_timezone(*properties: Any) -> str | None:
    for props in properties:
        if isinstance(props, dict) and isinstance(props.get("timezone"), str):
            return props["timezone"]
    return None


def _subject_streams(connection: Connection, datastream_id: int | None, zone_key: str | None
                     ) -> tuple[dict[str, Any], list[int], str | None]:
    """What is forecast: the datastream, or the zone's in_counter streams (its footfall
    streams when it has no in_counters); the timezone its properties name."""
    if (datastream_id is None) == (zone_key is None):
        raise InvalidRequestError("give exactly one of datastream and zone")
    if datastream_id is not None:
        row = connection.execute(
            select(datastreams.c.id, datastreams.c.name, datastreams.c.role,
                   datastreams.c.properties, things.c.properties.label("thing_properties"),
                   zones_table.c.properties.label("zone_properties"))
            .join(things, things.c.id == datastreams.c.thing_id)
            .outerjoin(zones_table, zones_table.c.id == datastreams.c.zone_id)
            .where(datastreams.c.id == datastream_id)).first()
        if row is None:
            raise NotFoundError(f"Datastreams({datastream_id}) does not exist")
        subject = {"datastream": int(row.id), "name": row.name, "role": row.role}
        return subject, [int(row.id)], _property_timezone(
            row.properties, row.thing_properties, row.zone_properties)
    source = _zone_sources(connection, [zone_key])[0]  # type: ignore[list-item]
    role = "in_counter" if source.ids("in_counter") else "footfall"
    ids = source.ids(role)
    if not ids:
        raise InvalidRequestError(f"zone {zone_key!r} has no in_counter or footfall "
                                  "datastream to forecast")
    return {"zone": zone_key, "name": source.name, "role": role, "datastreams": ids}, ids, \
        _property_timezone(source.properties)


def hourly_history(connection: Connection, stream_ids: Sequence[int], end_ms: int,
                   hours: int) -> tuple[int, NDArray[np.float64]]:
    """Hourly totals of the streams over the ``hours`` UTC hours before ``end_ms`` (an hour
    boundary): the start of hour 0 and the totals, NaN where no stream reported."""
    origin = end_ms - hours * HOUR_MS
    readings = _read(connection, stream_ids, _datetime(origin), _datetime(end_ms))
    total, seen = np.zeros(hours), np.zeros(hours, dtype=bool)
    for r in readings.values():
        values, present = _sum_bins(r, origin, HOUR_MS, hours)
        total += values
        seen |= present
    return origin, np.where(seen, total, np.nan)


def _local_grid(origin_ms: int, values: NDArray[np.float64], tz: ZoneInfo
                ) -> tuple[datetime, NDArray[np.float64]]:
    """The UTC hourly values on a regular grid of local wall-clock hours (hour starts
    floored to the hour): the first local hour and the values; a local hour that occurs twice
    (autumn) gets the mean of both, one skipped in spring stays NaN."""
    hours = values.size
    local = [(_datetime(origin_ms + i * HOUR_MS).astimezone(tz).replace(
        tzinfo=None, minute=0, second=0, microsecond=0)) for i in range(hours)]
    first = local[0]
    index = np.array([int((t - first).total_seconds() // 3600) for t in local])
    size = int(index.max()) + 1 if hours else 0
    present = ~np.isnan(values)
    sums = np.bincount(index[present], weights=values[present], minlength=size)
    counts = np.bincount(index[present], minlength=size)
    with np.errstate(invalid="ignore"):
        grid = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return first, grid


def forecast(engine: Engine, datastream_id: int | None = None, zone_key: str | None = None,
             hours: int = 6, model: str = "profile", at: datetime | None = None,
             tz: str | None = None, now: datetime | None = None) -> dict[str, Any]:
    """``GET /crowd/forecast``: hourly counts for the ``hours`` hours after the latest complete
    hour with data at or before ``at`` (default now), from up to 16 weeks of stored history,
    with the 80 % interval, beside the seasonal naive baseline."""
    if not 1 <= hours <= 6:
        raise InvalidRequestError("hours must be between 1 and 6")
    if model not in FORECAST_MODELS:
        raise InvalidRequestError(f"unknown model {model!r} (known: "
                                  f"{', '.join(FORECAST_MODELS)})")
    at = aware_utc(at, "at") if at is not None else (
        aware_utc(now, "now") if now is not None else datetime.now(UTC))
    with engine.connect() as connection:
        subject, ids, property_tz = _subject_streams(connection, datastream_id, zone_key)
        zone_info = _timezone(tz or property_tz)
        newest = _newest(connection, ids, at)
        if newest is None:
            raise InvalidRequestError("no stored observations to forecast from",
                                      details=subject)
        # the origin is the last hour that has ended by the newest observation (and by at)
        end_ms = min(_ms(newest), _ms(at))
        end_ms -= end_ms % HOUR_MS
        origin_ms, history = hourly_history(connection, ids, end_ms, FORECAST_HISTORY_HOURS)
    measured = np.flatnonzero(~np.isnan(history))
    if measured.size == 0:
        raise InvalidRequestError("no complete hour of data to forecast from", details=subject)
    # drop the leading hours before the first count: a short history is short, not missing
    first_local, grid = _local_grid(origin_ms + int(measured[0]) * HOUR_MS,
                                    history[measured[0]:], zone_info)
    needed = 168 + hours + 24 if model == "profile" else 169
    if grid.size < needed:
        raise InvalidRequestError(
            f"the {model} model needs at least {needed} hours of history; "
            f"{grid.size} are stored", details={**subject, "hours_stored": int(grid.size)})
    baseline = SeasonalNaive(horizon=hours).fit(grid).predict()
    fitted = baseline if model == "seasonal_naive" else \
        ProfileRegression(horizon=hours).fit(grid).predict()
    last_local = first_local + timedelta(hours=grid.size - 1)
    times = [(last_local + timedelta(hours=step)).replace(tzinfo=zone_info).astimezone(UTC)
             for step in range(1, hours + 1)]
    issued = (last_local + timedelta(hours=1)).replace(tzinfo=zone_info).astimezone(UTC)
    return {"model": model, "issued_at": iso(issued), "timezone": zone_info.key,
            "subject": subject, "times": [iso(t) for t in times],
            "mean": _numbers(fitted.mean, 2), "lower": _numbers(fitted.lower, 2),
            "upper": _numbers(fitted.upper, 2), "coverage": fitted.coverage,
            "history_hours": int(grid.size),
            "stale": at - issued > timedelta(hours=2),
            "baseline": {"model": "seasonal_naive", "mean": _numbers(baseline.mean, 2),
                         "lower": _numbers(baseline.lower, 2),
                         "upper": _numbers(baseline.upper, 2)}}
