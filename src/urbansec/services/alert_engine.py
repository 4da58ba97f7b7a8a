"""The live alert engine: hangs on the ingester (``IngestPipeline.add_listener``), keeps each
zone's crowd state up to date from the observations each committed batch stored, evaluates
the rules (:func:`urbansec.crowd.rules.evaluate`), stores what was raised, updated and cleared
in one transaction per batch (with the audit trail and the webhook outbox), then publishes.

Live state, per zone, kept incrementally (no database read per observation):

- occupancy, by precedence (contract of issue 8): the area counts (sum of each camera's latest
  count) when one is fresh (reported within ``FRESH``), else the beacon estimate (devices x
  ``zone.properties["beacon_persons_per_device"]``) when calibrated and fresh, else the flows:
  cumulative in - out, clamped at zero, re-anchored on every area count
  (as :func:`urbansec.crowd.density.occupancy_from_flows` does). At start the flows are
  summed since the start of the zone's current event, else over the last 12 hours (the rule of
  :func:`urbansec.services.crowd.state`), and the latest stored reading of every datastream is
  loaded. Running on, the engine integrates from there: a zone measured only by counters can
  drift from the state view (which recomputes over 12 hours) after the engine has run longer
  than that; an area count or an event start re-anchors it;
- capacity: the one set, else the zone type's capacity density x area (as the state);
- density = occupancy / usable area; flow = persons crossing (in + out + footfall) in the last
  minute / effective width, an interval count spread evenly over its interval (an hourly
  footfall count of 3,000 is 50 persons in each of its minutes), as the crowd state's minute
  series does; footfall never touches the occupancy; level of service from
  :class:`urbansec.crowd.los.LosConfig` (the flow's alone where the density is unknown); the last
  ``TREND_MINUTES`` minutes of density (carried forward over silent minutes) for trend rules;
- the last phenomenon time of every zone datastream and every position datastream (silent
  rules), the lights' status, the tracked devices' latest positions (WGS84 lon/lat; geofence
  polygons are given in lon/lat too).

Evaluation per batch looks only at what the batch touched: the zones whose datastreams
reported (with their lights), the devices that moved and the sensors that reported (so their
silence clears at once). A timer evaluates everything every ``tick_seconds`` (default 5 s):
that is what raises silent-sensor alerts, dwell alerts and picks up rule changes made through
the API.

The clock ("now" for the rules): the wall clock for live feeds; for replayed history the
newest phenomenon time seen. ``clock="auto"`` (default) switches to the data's time when it
lags the wall clock by more than an hour. On the data clock a batch holding several minutes of
data time (a replay faster than the commits) is judged minute by minute, in time order. With
the data clock a datastream that has not reported since the engine started is not watched by
silent rules (a replay publishes every stream in turn; only a stream that falls behind the
others in data time is silent). With the
wall clock a datastream that never reported counts as silent from the engine's start.

De-duplication: alert keys are unique in the store, the memory of active alerts is reloaded
from the store on start, and observations the ingester had stored already (a QoS 1
redelivery) never reach listeners: a replayed batch raises nothing twice.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import Engine, func, select

from urbansec.crowd import rules as crowd_rules
from urbansec.crowd.los import LosConfig
from urbansec.crowd.zones import Zone as CrowdZone
from urbansec.crowd.zones import ZoneType
from urbansec.services import alerts as service
from urbansec.services.sensor_ingest import StoredObservation
from urbansec.store.engine import write_transaction
from urbansec.store.sensors import Datastream, Observation, Thing, Zone

log = logging.getLogger("urbansec.alerts.engine")

FRESH_SECONDS = 300.0  # an area count or beacon reading older than this no longer counts
TREND_MINUTES = 15
#: without an event, flows loaded at start count from this long ago (the crowd state's rule)
FLOW_LOOKBACK_SECONDS = 12 * 3600.0
DATA_CLOCK_LAG_SECONDS = 3600.0
LIGHT_NUMBERS = {1.0: "on", 0.5: "dimmed", 0.0: "off", -1.0: "failed"}
LIGHT_WORDS = ("on", "dimmed", "off", "failed")
ONE_OFF_KINDS = ("geofence_enter", "geofence_exit")
ZONE_ROLES = ("in_counter", "out_counter", "area_count", "beacon_devices", "lighting_status",
              "footfall")
CROSSING_ROLES = ("in_counter", "out_counter", "footfall")


def _epoch(value: datetime) -> float:
    return value.timestamp()


def _np_time(seconds: float) -> np.datetime64:
    return np.datetime64(int(seconds), "s")


@dataclass
class StreamInfo:
    id: int
    role: str | None
    zone: str | None
    thing: str
    kind: str


@dataclass
class ZoneLive:
    key: str
    zone_type: ZoneType
    area_m2: float
    width_m: float | None
    capacity: int | None
    beacon_factor: float | None
    flow_occupancy: float = 0.0
    has_flows: bool = False  # in/out counters: the occupancy can be integrated
    has_crossings: bool = False  # in/out or footfall counters: the flow is measured
    area_counts: dict[int, tuple[float, float]] = field(default_factory=dict)
    beacons: dict[int, tuple[float, float]] = field(default_factory=dict)
    # (start, end, persons per minute) of each count, in epoch seconds; start == end for an
    # instant, which means the minute ending then
    crossings: deque[tuple[float, float, float]] = field(default_factory=deque)
    densities: dict[int, float] = field(default_factory=dict)  # epoch minute -> density
    trigger: dict[str, Any] | None = None

    def occupancy(self, now: float) -> tuple[float, str]:
        fresh = [v for t, v in self.area_counts.values() if now - t <= FRESH_SECONDS]
        if fresh:
            return float(sum(fresh)), "area_count"
        if self.beacon_factor:
            devices = [v for t, v in self.beacons.values() if now - t <= FRESH_SECONDS]
            if devices:
                return float(sum(devices)) * self.beacon_factor, "beacon_devices"
        if self.has_flows:
            return self.flow_occupancy, "flows"
        return math.nan, ""

    def flow(self, now: float) -> float:
        """Persons/m/min crossing in the minute ``(now - 60, now]``."""
        if any(end <= now - 120 for _start, end, _rate in self.crossings):
            self.crossings = deque(c for c in self.crossings if c[1] > now - 120)
        if not self.width_m:
            return math.nan
        if not self.crossings:
            return 0.0 if self.has_crossings else math.nan
        return crossing_persons(self.crossings, now) / self.width_m

    def recent_densities(self, now_minute: int) -> np.ndarray:
        values = np.full(TREND_MINUTES, np.nan)
        earlier = [m for m in self.densities if m <= now_minute - TREND_MINUTES]
        last = self.densities[max(earlier)] if earlier else math.nan
        for i, minute in enumerate(range(now_minute - TREND_MINUTES + 1, now_minute + 1)):
            last = self.densities.get(minute, last)
            values[i] = last
        for minute in [m for m in self.densities if m < now_minute - 2 * TREND_MINUTES]:
            del self.densities[minute]
        return values


def crossing_persons(crossings: Iterable[tuple[float, float, float]], now: float) -> float:
    """Persons crossing in the minute ``(now - 60, now]``: an instant count whole when it falls
    in it, an interval count by its per-minute rate times the minutes of overlap."""
    persons = 0.0
    for start, end, rate in crossings:
        if end <= start:
            persons += rate if now - 60 < end <= now else 0.0
        else:
            persons += rate * max(0.0, min(end, now) - max(start, now - 60)) / 60
    return persons


@dataclass
class ActiveRecord:
    alert_id: int
    value: float | None
    updated: float  # monotonic seconds of the last stored update


def alert_scope(alert: crowd_rules.Alert) -> tuple[str, str]:
    """What an alert is about, to evaluate it only when that changed: a zone, a sensor, or
    a device."""
    if alert.kind == "light_failed":
        return "zone", str(alert.details.get("zone_id", ""))
    if alert.kind == "sensor_silent":
        return "sensor", alert.subject
    if alert.kind.startswith("geofence"):
        return "device", alert.subject.split("@", 1)[0]
    return "zone", alert.subject


def parse_position(result: Any) -> tuple[float, float] | None:
    """(lon, lat) of a GeoJSON Point or ``{"lat", "lon"}`` (a JSON text of either too)."""
    if isinstance(result, str):
        try:
            result = json.loads(result)
        except ValueError:
            return None
    if not isinstance(result, dict):
        return None
    try:
        if result.get("type") == "Point":
            lon, lat = result["coordinates"][:2]
        else:
            lon, lat = result["lon"], result["lat"]
        lon, lat = float(lon), float(lat)
    except (KeyError, TypeError, ValueError, IndexError):
        return None
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        return None
    return lon, lat


def light_status(result: Any, number: float | None) -> str | None:
    if isinstance(result, str) and result.strip().lower() in LIGHT_WORDS:
        return result.strip().lower()
    if number is not None:
        return LIGHT_NUMBERS.get(float(number))
    return None


class AlertEngine:
    """See the module notes. Use as ``pipeline.add_listener(engine)`` after :meth:`start`."""

    def __init__(self, engine: Engine, publish: Callable[[list[service.AlertEvent]], None]
                 | None = None, *, clock: str = "auto", tick_seconds: float = 5.0,
                 update_seconds: float = 5.0, los: LosConfig | None = None,
                 wall_clock: Callable[[], float] | None = None) -> None:
        if clock not in ("auto", "wall", "data"):
            raise ValueError("clock must be auto, wall or data")
        self.engine = engine
        self.publish = publish
        self.clock_mode = clock
        self.tick_seconds = tick_seconds
        self.update_seconds = update_seconds
        self.los = los or LosConfig()
        self.wall_clock = wall_clock or time.time
        self.started_at = self.wall_clock()
        self.streams: dict[int, StreamInfo] = {}
        self.zones: dict[str, ZoneLive] = {}
        self.last_seen: dict[str, float] = {}
        self.lights: dict[int, crowd_rules.LightStatus] = {}
        self.devices: dict[str, crowd_rules.DevicePosition] = {}
        self.device_trigger: dict[str, dict[str, Any]] = {}
        self.device_times: dict[str, float] = {}
        self.newest_data = 0.0
        self.rules: list[service.LoadedRule] = []
        self.memory = crowd_rules.RuleMemory()
        self.active: dict[str, ActiveRecord] = {}
        self.counters = {"batches": 0, "evaluations": 0, "raised": 0, "cleared": 0,
                         "updated": 0, "errors": 0}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_topology = 0.0
        self.event_starts: dict[str, float] = {}
        self.known_streams: set[int] = set()

    # --- set-up -----------------------------------------------------------------------------
    def load(self) -> AlertEngine:
        """Topology, rules, the latest stored readings and the active alerts."""
        with self._lock:
            self._load_topology(initial=True)
            self._load_rules()
            self._load_memory()
        return self

    def start(self) -> AlertEngine:
        self.load()
        if self.tick_seconds > 0:
            self._thread = threading.Thread(target=self._tick_loop, name="urbansec-alerts",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _load_topology(self, initial: bool = False) -> None:
        self._last_topology = time.monotonic()
        datastreams, zones, things = (Datastream.__table__, Zone.__table__, Thing.__table__)
        with self.engine.connect() as connection:
            zone_rows = connection.execute(select(zones)).all()
            stream_rows = connection.execute(
                select(datastreams.c.id, datastreams.c.role, datastreams.c.properties,
                       zones.c.key, things.c.name, things.c.properties.label("thing_props"))
                .join(things, things.c.id == datastreams.c.thing_id)
                .outerjoin(zones, zones.c.id == datastreams.c.zone_id)).all()
        for row in zone_rows:
            props = row.properties or {}
            factor = props.get("beacon_persons_per_device")
            factor = float(factor) if isinstance(factor, int | float) and factor > 0 else None
            try:
                zone_type = ZoneType(row.zone_type)
            except ValueError:
                continue
            # the capacity set, else the zone type's (as the crowd state reports it)
            capacity = CrowdZone(row.key, zone_type, float(row.area_m2), width_m=row.width_m,
                                 capacity=row.capacity).capacity_for(
                self.los.scale_for(zone_type).capacity_density)
            live = self.zones.get(row.key)
            if live is None:
                self.zones[row.key] = ZoneLive(row.key, zone_type, float(row.area_m2),
                                               row.width_m, capacity, factor)
            else:
                live.zone_type, live.area_m2, live.width_m = zone_type, float(row.area_m2), \
                    row.width_m
                live.capacity, live.beacon_factor = capacity, factor
        new_streams = {}
        for row in stream_rows:
            kind = ((row.thing_props or {}).get("kind") or (row.properties or {}).get("kind")
                    or "")
            if row.role == "position" or (row.key is not None and row.role in ZONE_ROLES):
                new_streams[row.id] = StreamInfo(row.id, row.role, row.key, row.name,
                                                 str(kind))
        added = [s for i, s in new_streams.items() if i not in self.streams]
        self.streams = new_streams
        # datastreams that feed no rule (footfall, unassigned) must not trigger reloads
        self.known_streams = {row.id for row in stream_rows}
        self._follow_events(initial)
        for info in new_streams.values():
            if info.zone in self.zones and info.role in CROSSING_ROLES:
                self.zones[info.zone].has_crossings = True
                if info.role != "footfall":
                    self.zones[info.zone].has_flows = True
        if added:
            self._load_latest(added, flows=initial)

    def _follow_events(self, initial: bool) -> None:
        """Flows count from an empty zone at the start of the event holding it (as the crowd
        state does): an event starting while the engine runs empties its zones' flow count
        (crossings in the seconds between the start and this check are not counted)."""
        from urbansec.store.crowd import CrowdEvent, CrowdEventZone

        events, links, zones = (CrowdEvent.__table__, CrowdEventZone.__table__,
                                Zone.__table__)
        now = datetime.fromtimestamp(self.now(), UTC)
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(zones.c.key, func.max(events.c.starts_at))
                .join(links, links.c.zone_id == zones.c.id)
                .join(events, events.c.id == links.c.event_id)
                .where(events.c.starts_at <= now, events.c.ends_at > now)
                .group_by(zones.c.key)).all()
        starts = {key: _epoch(start) for key, start in rows}
        for key, start in starts.items():
            if not initial and start > self.event_starts.get(key, -math.inf) \
                    and key in self.zones:
                self.zones[key].flow_occupancy = 0.0
        self.event_starts = starts

    def _flow_start(self, zone: str | None) -> datetime:
        start = self.now() - FLOW_LOOKBACK_SECONDS
        start = max(start, self.event_starts.get(zone or "", -math.inf))
        return datetime.fromtimestamp(start, UTC)

    def _load_latest(self, streams: Sequence[StreamInfo], flows: bool) -> None:
        """The latest stored reading of each stream, and (at start) the flows since the
        zone's event started, or :data:`FLOW_LOOKBACK_SECONDS` (as the crowd state)."""
        observations = Observation.__table__
        with self.engine.connect() as connection:
            latest = []
            for info in streams:
                row = connection.execute(
                    select(observations.c.id, observations.c.datastream_id,
                           observations.c.phenomenon_time, observations.c.phenomenon_time_end,
                           observations.c.result, observations.c.result_number)
                    .where(observations.c.datastream_id == info.id)
                    .order_by(observations.c.phenomenon_time.desc()).limit(1)).first()
                if row is not None:
                    latest.append(StoredObservation(*row))
            totals: dict[int, float] = {}
            counters = [s for s in streams if s.role in ("in_counter", "out_counter")]
            for info in counters if flows else ():
                totals[info.id] = float(connection.execute(
                    select(func.sum(observations.c.result_number))
                    .where(observations.c.datastream_id == info.id,
                           observations.c.phenomenon_time >= self._flow_start(info.zone))
                ).scalar() or 0.0)
        for info in streams:
            if info.id in totals and info.zone in self.zones:
                sign = 1.0 if info.role == "in_counter" else -1.0
                live = self.zones[info.zone]
                live.flow_occupancy = max(0.0, live.flow_occupancy + sign * totals[info.id])
        for observation in latest:
            if self.streams[observation.datastream_id].role not in ("in_counter",
                                                                    "out_counter"):
                self._apply(observation, history=True)
            else:
                self._seen(observation)

    def _load_rules(self) -> None:
        sensors_of_zones: dict[str, list[str]] = {}
        for info in self.streams.values():
            if info.zone is not None:
                sensors_of_zones.setdefault(info.zone, []).append(service.sensor_name(info.id))
        with self.engine.connect() as connection:
            self.rules = service.load_rules(connection, sensors_of_zones)

    def _load_memory(self) -> None:
        active: dict[str, crowd_rules.Alert] = {}
        fences = dict(self.memory.fences)
        records: dict[str, ActiveRecord] = {}
        with self.engine.connect() as connection:
            rows = service.active_alerts(connection)
        for row in rows:
            if row.kind in ONE_OFF_KINDS:
                continue  # an event, not a condition: it stays open until acknowledged
            details = dict(row.details or {})
            alert = crowd_rules.Alert(
                row.rule_key, str(row.rule_id), row.kind, service.SEVERITY_OF[row.severity],
                row.subject, np.datetime64(row.raised_at.replace(tzinfo=None), "s"),
                row.message, math.nan if row.value is None else row.value, details)
            active[row.rule_key] = alert
            records[row.rule_key] = ActiveRecord(row.id, row.value, time.monotonic())
            if row.kind == "geofence_dwell" and details.get("since") and row.rule_id:
                # a restart must not reset how long a device has dwelt in its fence
                rule = next((r.rule for r in self.rules if r.id == row.rule_id), None)
                if isinstance(rule, crowd_rules.GeofenceRule):
                    device = row.subject.split("@", 1)[0]
                    fences[(rule.fence_id, device)] = np.datetime64(details["since"], "s")
        self.memory = crowd_rules.RuleMemory(active, fences)
        self.active = records

    # --- observations -----------------------------------------------------------------------
    def _seen(self, observation: StoredObservation) -> float:
        end = observation.phenomenon_time_end or observation.phenomenon_time
        t = _epoch(end)
        sensor = service.sensor_name(observation.datastream_id)
        if t > self.last_seen.get(sensor, -math.inf):
            self.last_seen[sensor] = t
        self.newest_data = max(self.newest_data, t)
        return t

    def _apply(self, observation: StoredObservation, history: bool = False
               ) -> tuple[str, str] | None:
        """Fold one observation into the live state; returns what it touched."""
        info = self.streams.get(observation.datastream_id)
        if info is None:
            return None
        t = self._seen(observation)
        trigger = {"datastream_id": observation.datastream_id,
                   "phenomenon_time": service.iso(observation.phenomenon_time),
                   "received_at": service.iso(observation.received_at)}
        if info.role == "position":
            position = parse_position(observation.result)
            if position is None:
                return None
            if self.device_times.get(info.thing, -math.inf) > t:
                return None  # an older position arriving late
            self.device_times[info.thing] = t
            self.devices[info.thing] = crowd_rules.DevicePosition(info.thing, *position,
                                                                  kind=info.kind)
            self.device_trigger[info.thing] = trigger
            return "device", info.thing
        if info.zone is None or info.zone not in self.zones:
            return None
        live = self.zones[info.zone]
        value = observation.result_number
        if info.role == "lighting_status":
            status = light_status(observation.result, value)
            if status is None:
                return None
            self.lights[info.id] = crowd_rules.LightStatus(info.thing, info.zone, status)
        elif value is None or not math.isfinite(value):
            return None
        elif info.role == "area_count":
            previous = live.area_counts.get(info.id)
            if previous is None or t >= previous[0]:
                live.area_counts[info.id] = (t, value)
                live.flow_occupancy = value  # the count is the truth; flows go on from it
        elif info.role == "beacon_devices":
            previous = live.beacons.get(info.id)
            if previous is None or t >= previous[0]:
                live.beacons[info.id] = (t, value)
        elif info.role in CROSSING_ROLES:
            if info.role == "footfall":
                if value < 0:
                    return None  # as the crowd state: a negative count is ignored
            else:  # footfall passes by: only in/out counts move the occupancy
                sign = 1.0 if info.role == "in_counter" else -1.0
                live.flow_occupancy = max(0.0, live.flow_occupancy + sign * value)
            start = _epoch(observation.phenomenon_time) \
                if observation.phenomenon_time_end else t
            minutes = max(1.0, (t - start) / 60) if t > start else 1.0
            live.crossings.append((start, t, value / minutes))
        if not history:
            live.trigger = trigger
        return "zone", info.zone

    def data_clock(self) -> bool:
        """Whether "now" is the newest phenomenon time (replayed history) rather than the
        wall clock (see the module notes)."""
        if self.clock_mode != "auto":
            return self.clock_mode == "data" and bool(self.newest_data)
        return bool(self.newest_data) and \
            self.wall_clock() - self.newest_data > DATA_CLOCK_LAG_SECONDS

    def now(self) -> float:
        return self.newest_data if self.data_clock() else self.wall_clock()

    # --- the crowd state --------------------------------------------------------------------
    def _reading(self, live: ZoneLive, now: float) -> crowd_rules.ZoneReading:
        occupancy, _source = live.occupancy(now)
        density = occupancy / live.area_m2 if math.isfinite(occupancy) else math.nan
        flow = live.flow(now)
        level = int(self.los.level(live.zone_type, density,
                                   flow if math.isfinite(flow) else None))
        minute = int(now // 60)
        if math.isfinite(density):
            live.densities[minute] = density
        return crowd_rules.ZoneReading(live.key, live.zone_type, occupancy, density, flow,
                                       level, live.capacity, live.recent_densities(minute))

    def _state(self, now: float, zones: Iterable[str] | None, devices: Iterable[str] | None,
               sensors: Iterable[str] | None) -> crowd_rules.CrowdState:
        zone_keys = list(self.zones) if zones is None else [z for z in zones
                                                           if z in self.zones]
        readings = {k: self._reading(self.zones[k], now) for k in zone_keys}
        lights = [light for light in self.lights.values() if light.zone_id in readings]
        chosen = self.devices if devices is None else {
            d: self.devices[d] for d in devices if d in self.devices}
        if sensors is None:
            watched = [service.sensor_name(i) for i in self.streams]
            data_clock = self.data_clock()
            last_seen: dict[str, np.datetime64 | None] = {}
            for sensor in watched:
                seen = self.last_seen.get(sensor)
                if seen is None:
                    if data_clock:
                        continue  # a replay: not watched until it reports once
                    seen = self.started_at
                last_seen[sensor] = _np_time(seen)
        else:
            last_seen = {s: _np_time(self.last_seen[s]) for s in sensors
                         if s in self.last_seen}
        return crowd_rules.CrowdState(_np_time(now), readings, last_seen, lights,
                                      list(chosen.values()))

    # --- evaluation -------------------------------------------------------------------------
    def __call__(self, observations: Sequence[StoredObservation]) -> None:
        """The ingest listener: fold the batch in, evaluate what it touched, store, publish."""
        try:
            self.on_batch(observations)
        except Exception:
            self.counters["errors"] += 1
            raise

    def on_batch(self, observations: Sequence[StoredObservation]) -> list[service.AlertEvent]:
        with self._lock:
            self.counters["batches"] += 1
            if any(o.datastream_id not in self.known_streams for o in observations) and \
                    time.monotonic() - self._last_topology > 1.0:
                self._load_topology()
                self._load_rules()
            events: list[service.AlertEvent] = []
            for group in self._data_time_groups(observations):
                zones: set[str] = set()
                devices: set[str] = set()
                sensors: set[str] = set()
                for observation in group:
                    touched = self._apply(observation)
                    if touched is None:
                        continue
                    sensors.add(service.sensor_name(observation.datastream_id))
                    (zones if touched[0] == "zone" else devices).add(touched[1])
                if zones or devices or sensors:
                    events.extend(self._evaluate(zones, devices, sensors))
            return events

    def _data_time_groups(self, observations: Sequence[StoredObservation]
                          ) -> list[Sequence[StoredObservation]]:
        """The batch as one group, or, on the data clock, split by the minute of each
        observation's (end) time in time order: a replay published faster than the ingester
        commits puts several hours in one batch, and each hour must be judged at its own
        time (an hour's counts would otherwise be judged an hour or more after they ended,
        when they no longer count as the current flow)."""
        if len(observations) < 2 or self.clock_mode == "wall":
            return [observations]
        minute = {id(o): int(_epoch(o.phenomenon_time_end or o.phenomenon_time) // 60)
                  for o in observations}
        if self.clock_mode == "auto" and \
                self.wall_clock() - 60 * max(minute.values()) <= DATA_CLOCK_LAG_SECONDS:
            return [observations]
        if len(set(minute.values())) == 1:
            return [observations]
        ordered = sorted(observations, key=lambda o: minute[id(o)])
        return [list(group) for _, group in itertools.groupby(ordered,
                                                               key=lambda o: minute[id(o)])]

    def tick(self) -> list[service.AlertEvent]:
        """Evaluate everything (silences, dwell, rule changes); the timer calls this."""
        with self._lock:
            self._load_topology()
            self._load_rules()
            return self._evaluate(None, None, None)

    def _tick_loop(self) -> None:
        while not self._stop.wait(self.tick_seconds):
            try:
                self.tick()
            except Exception:
                self.counters["errors"] += 1
                log.exception("alert engine tick failed")

    def _evaluate(self, zones: set[str] | None, devices: set[str] | None,
                  sensors: set[str] | None) -> list[service.AlertEvent]:
        now = self.now()
        state = self._state(now, zones, devices, sensors)
        partial = zones is not None
        if partial:
            scopes = ({("zone", z) for z in zones or ()} | {("device", d) for d in devices or ()}
                      | {("sensor", s) for s in sensors or ()})
            memory = crowd_rules.RuleMemory(
                {k: a for k, a in self.memory.active.items() if alert_scope(a) in scopes},
                self.memory.fences)
        else:
            memory = self.memory
        rules = [r.rule for r in self.rules]
        # a deleted or disabled rule's alerts clear: they are in memory, no rule keeps them
        evaluation = crowd_rules.evaluate(rules, state, memory)
        self.counters["evaluations"] += 1
        if partial:
            active = {k: a for k, a in self.memory.active.items() if k not in memory.active}
            active.update(evaluation.memory.active)
        else:
            active = dict(evaluation.memory.active)
        events = self._store(evaluation, now)
        self.memory = crowd_rules.RuleMemory(active, evaluation.memory.fences)
        if events and self.publish is not None:
            try:
                self.publish(events)
            except Exception:
                log.exception("publishing %d alert events failed", len(events))
        return events

    def _zone_of(self, alert: crowd_rules.Alert) -> str | None:
        scope, name = alert_scope(alert)
        if scope == "zone":
            return name or None
        if scope == "sensor":
            stream_id = int(name.removeprefix("Datastreams(").rstrip(")"))
            info = self.streams.get(stream_id)
            return info.zone if info else None
        return None

    def _trigger(self, alert: crowd_rules.Alert) -> dict[str, Any] | None:
        scope, name = alert_scope(alert)
        if scope == "zone" and name in self.zones:
            return self.zones[name].trigger
        if scope == "device":
            return self.device_trigger.get(name)
        return None

    def _store(self, evaluation: crowd_rules.Evaluation, now: float
               ) -> list[service.AlertEvent]:
        by_id = {str(r.id): r for r in self.rules}
        raised = []
        for alert in evaluation.raised:
            rule = by_id.get(alert.rule_id)
            if rule is None:
                continue
            details: dict[str, Any] = {}
            trigger = self._trigger(alert)
            if trigger is not None:
                details["observation"] = trigger
            if self.data_clock():
                details["clock"] = "data"
            raised.append(service.RaisedAlert(alert, rule, self._zone_of(alert), details))
        monotonic = time.monotonic()
        updates = []
        for alert in evaluation.ongoing:
            record = self.active.get(alert.key)
            value = service.finite(alert.value)
            if record is None or value == record.value \
                    or monotonic - record.updated < self.update_seconds:
                continue
            updates.append((alert.key, service.AlertUpdate(
                record.alert_id, value, alert.message, datetime.fromtimestamp(now, UTC))))
        cleared = {self.active[k].alert_id: datetime.fromtimestamp(now, UTC)
                   for k in evaluation.cleared if k in self.active}
        if not (raised or updates or cleared):
            return []
        with write_transaction(self.engine) as connection:
            events, ids = service.store_changes(connection, raised, [u for _, u in updates],
                                                cleared)
            missing = [r.alert.key for r in raised if r.alert.key not in ids]
            if missing:  # stored by an earlier evaluation of the same batch
                for key, alert_id in connection.execute(
                        select(service.alerts_table.c.rule_key, service.alerts_table.c.id)
                        .where(service.alerts_table.c.rule_key.in_(missing),
                               service.alerts_table.c.cleared_at.is_(None))):
                    ids[key] = int(alert_id)
        for item in raised:
            if item.alert.key in ids and item.alert.kind not in ONE_OFF_KINDS:
                self.active[item.alert.key] = ActiveRecord(
                    ids[item.alert.key], service.finite(item.alert.value), monotonic)
        for key, change in updates:
            self.active[key] = ActiveRecord(change.alert_id, change.value, monotonic)
        for key in evaluation.cleared:
            self.active.pop(key, None)
        for event in events:
            self.counters[{"raised": "raised", "cleared": "cleared"}.get(
                event.change, "updated")] += 1
        return events


@dataclass
class AlertRuntime:
    """The engine wired to an ingester: the MQTT alert publisher, the webhook worker and
    (optionally) this process's SSE broadcaster. :meth:`stop` stops them in order."""

    engine: AlertEngine
    publisher: Any
    webhooks: Any
    fanout: Any

    def stop(self) -> None:
        self.engine.stop()
        self.webhooks.stop()
        if self.publisher is not None:
            self.publisher.flush(10)
            self.publisher.stop()


def attach_alerts(ingester: Any, database: Engine, broker_url: str | None, *,
                  topic: str = "urbansec/alerts", clock: str = "auto",
                  tick_seconds: float = 5.0, local: Any = None,
                  client_id: str | None = None, webhook_attempts: int = 8) -> AlertRuntime:
    """Run the alert engine on ``ingester``'s batches (an ``Ingester`` or an
    ``IngestPipeline``): commits publish on ``topic`` of ``broker_url`` (when given), reach
    ``local`` (a :class:`~urbansec.services.alert_delivery.Broadcaster` of an API in this
    process) and wake the webhook worker."""
    from urbansec.sensors.mqtt import Publisher
    from urbansec.services.alert_delivery import EventFanout, WebhookWorker

    publisher = None
    if broker_url:
        name = client_id or f"{getattr(ingester, 'client_id', 'urbansec-ingest')}-alerts"
        publisher = Publisher(broker_url, client_id=name).start()
    webhooks = WebhookWorker(database, max_attempts=webhook_attempts).start()
    fanout = EventFanout(publisher, topic, local, webhooks)
    engine = AlertEngine(database, fanout, clock=clock, tick_seconds=tick_seconds).start()
    ingester.add_listener(engine)
    return AlertRuntime(engine, publisher, webhooks, fanout)
