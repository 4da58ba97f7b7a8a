"""Rules over the crowd state, producing de-duplicated alerts. Pure: no clock, no delivery.

Every minute (or on every observation) the caller builds a :class:`CrowdState` (the readings of
each zone, when each sensor last reported, the lights' status, the tracked devices' positions)
and calls :func:`evaluate` with the rules and the :class:`RuleMemory` the previous call
returned. It gets back the alerts **raised** now, the ones still **ongoing**, the keys that
**cleared**, and the memory to pass next time. Delivery (dashboard, webhooks), acknowledgement
and the audit trail belong to the services; they store the memory between calls.

De-duplication: every alert has a key naming the rule, its subject (zone, sensor, light,
device) and, for one-off events, the instant. A condition that holds minute after minute
(density above a threshold, a silent sensor, a device dwelling in a fence) keeps one key: it is
raised once, then ongoing, then cleared when the condition ends, and raised again (new key
occurrence) only if it comes back after clearing. A threshold rule can have a hysteresis: once
raised, the alert stays until the value falls below ``threshold - hysteresis``, so a value
wavering around the threshold does not raise a storm of alerts. Geofence enter and exit are
one-off events: each crossing is one alert whose key holds the crossing time, so evaluating the
same state twice (a replayed message) raises nothing twice.

Rules:

- :class:`ThresholdRule`: a zone metric (density, occupancy, occupancy share of capacity, flow,
  level of service) at or above a threshold.
- :class:`TrendRule`: the zone's density will reach a threshold within N minutes at its
  current robust rate (:mod:`urbansec.crowd.trend`).
- :class:`SensorSilentRule`: a sensor has not reported for N minutes (or never).
- :class:`LightFailedRule`: a light reports ``failed`` in a zone holding people.
- :class:`GeofenceRule`: a tracked device (steward, patrol, beacon) enters, exits or dwells
  for N minutes in a polygon. The first time a device is seen its side of the fence is learnt
  without an enter/exit alert (a restart must not announce every steward); dwell counts from
  then.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Any, Literal, Protocol

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from urbansec.crowd.trend import minutes_to_threshold
from urbansec.crowd.zones import ZoneType
from urbansec.errors import UsageError

__all__ = ["Alert", "CrowdState", "DevicePosition", "Evaluation", "GeofenceRule", "LightFailedRule",
           "LightStatus", "RuleMemory", "SensorSilentRule", "Severity", "ThresholdRule",
           "TrendRule", "ZoneReading", "evaluate"]

MINUTE = np.timedelta64(60, "s")
ZONE_METRICS = ("density", "occupancy", "occupancy_share", "flow", "los")


class Severity(IntEnum):
    INFO = 1
    WARNING = 2
    CRITICAL = 3


@dataclass(frozen=True)
class ZoneReading:
    """A zone's state at ``CrowdState.now``.

    Attributes:
        zone_id, zone_type: which zone, and what kind (for rules limited to some types).
        occupancy: persons; density: persons/m²; flow: persons/m/min (NaN if not measured);
        los: level index 0 (A) .. 5 (F), -1 unknown; capacity: persons allowed (None unknown).
        density_recent: the last minutes' densities, oldest first, ending now (for trends).
    """

    zone_id: str
    zone_type: ZoneType
    occupancy: float
    density: float
    flow: float = float("nan")
    los: int = -1
    capacity: int | None = None
    density_recent: np.ndarray = field(default_factory=lambda: np.empty(0), compare=False)

    def metric(self, name: str) -> float:
        if name == "occupancy_share":
            return (self.occupancy / self.capacity if self.capacity else float("nan"))
        return float(getattr(self, name))


@dataclass(frozen=True)
class LightStatus:
    light_id: str
    zone_id: str
    status: Literal["on", "dimmed", "off", "failed"]


@dataclass(frozen=True)
class DevicePosition:
    """A tracked device's latest position, in the CRS of the geofence polygons."""

    device_id: str
    x: float
    y: float
    kind: str = ""


@dataclass(frozen=True)
class CrowdState:
    """Everything the rules look at, as of ``now`` (UTC ``datetime64[s]``)."""

    now: np.datetime64
    zones: Mapping[str, ZoneReading] = field(default_factory=dict)
    sensor_last_seen: Mapping[str, np.datetime64 | None] = field(default_factory=dict)
    lights: Sequence[LightStatus] = ()
    devices: Sequence[DevicePosition] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "now", np.datetime64(self.now, "s"))


@dataclass(frozen=True)
class Alert:
    """One alert. ``key`` is the de-duplication key; ``value`` the measured value that fired
    it (NaN for events without one)."""

    key: str
    rule_id: str
    kind: str
    severity: Severity
    subject: str
    time: np.datetime64
    message: str
    value: float = float("nan")
    details: Mapping[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class RuleMemory:
    """What :func:`evaluate` remembers between calls.

    ``active``: alerts raised and not yet cleared, by key. ``fences``: per (fence id, device id)
    the instant the device was first seen inside the fence, or None when it was last seen
    outside (absent: never seen)."""

    active: Mapping[str, Alert] = field(default_factory=dict)
    fences: Mapping[tuple[str, str], np.datetime64 | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Evaluation:
    raised: list[Alert]
    ongoing: list[Alert]
    cleared: list[str]
    memory: RuleMemory


class Rule(Protocol):
    rule_id: str
    severity: Severity

    def check(self, state: CrowdState, memory: RuleMemory) -> list[Alert]:
        """Alerts whose condition holds now (condition alerts) or happened now (events)."""
        ...


def _zone_selected(reading: ZoneReading, zone_ids: frozenset[str] | None,
                   zone_types: frozenset[ZoneType] | None) -> bool:
    return ((zone_ids is None or reading.zone_id in zone_ids)
            and (zone_types is None or reading.zone_type in zone_types))


def _frozen(values: Iterable[Any] | None) -> frozenset[Any] | None:
    return None if values is None else frozenset(values)


@dataclass(frozen=True)
class ThresholdRule:
    """``metric >= threshold`` in a zone (``metric`` one of density, occupancy,
    occupancy_share, flow, los; for ``los`` the threshold is a level index or letter)."""

    rule_id: str
    metric: str
    threshold: float | str
    severity: Severity = Severity.WARNING
    hysteresis: float = 0.0
    zone_ids: frozenset[str] | None = None
    zone_types: frozenset[ZoneType] | None = None

    def __post_init__(self) -> None:
        if self.metric not in ZONE_METRICS:
            raise UsageError(f"unknown zone metric {self.metric!r}; one of {ZONE_METRICS}")
        if isinstance(self.threshold, str):
            letter = self.threshold.upper()
            if self.metric != "los" or letter not in "ABCDEF" or len(letter) != 1:
                raise UsageError(f"threshold {self.threshold!r} is not a level of service")
            object.__setattr__(self, "threshold", float("ABCDEF".index(letter)))
        if self.hysteresis < 0:
            raise UsageError("hysteresis cannot be negative")
        object.__setattr__(self, "zone_ids", _frozen(self.zone_ids))
        object.__setattr__(self, "zone_types", _frozen(
            None if self.zone_types is None else (ZoneType(z) for z in self.zone_types)))

    def _shown(self, value: float) -> str:
        return "ABCDEF"[int(value)] if self.metric == "los" else f"{value:.3g}"

    def check(self, state: CrowdState, memory: RuleMemory) -> list[Alert]:
        alerts = []
        for reading in state.zones.values():
            if not _zone_selected(reading, self.zone_ids, self.zone_types):
                continue
            value = reading.metric(self.metric)
            key = f"{self.rule_id}|{reading.zone_id}"
            limit = float(self.threshold)
            if key in memory.active:
                limit -= self.hysteresis
            if np.isnan(value) or value < limit:
                continue
            alerts.append(Alert(
                key, self.rule_id, f"threshold:{self.metric}", self.severity, reading.zone_id,
                state.now, f"zone {reading.zone_id}: {self.metric} {self._shown(value)} at or "
                f"above {self._shown(float(self.threshold))}", float(value),
                {"threshold": float(self.threshold)}))
        return alerts


@dataclass(frozen=True)
class TrendRule:
    """A zone's density reaches ``threshold`` (persons/m²) within ``within_minutes`` at the
    rate of the last ``window`` minutes (and is not there yet: that is a threshold rule)."""

    rule_id: str
    threshold: float
    within_minutes: float
    severity: Severity = Severity.WARNING
    window: int = 10
    min_points: int = 5
    zone_ids: frozenset[str] | None = None
    zone_types: frozenset[ZoneType] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "zone_ids", _frozen(self.zone_ids))
        object.__setattr__(self, "zone_types", _frozen(
            None if self.zone_types is None else (ZoneType(z) for z in self.zone_types)))

    def check(self, state: CrowdState, memory: RuleMemory) -> list[Alert]:
        alerts = []
        for reading in state.zones.values():
            recent = np.asarray(reading.density_recent, dtype=float)
            if (not _zone_selected(reading, self.zone_ids, self.zone_types)
                    or recent.size < self.min_points):
                continue
            trend = minutes_to_threshold(recent, self.threshold, window=self.window,
                                         min_points=self.min_points)
            eta = float(trend.eta_minutes)
            if not 0 < eta <= self.within_minutes:
                continue
            alerts.append(Alert(
                f"{self.rule_id}|{reading.zone_id}", self.rule_id, "trend", self.severity,
                reading.zone_id, state.now,
                f"zone {reading.zone_id}: density {float(trend.level):.2f}/m² rising "
                f"{float(trend.slope):.3f}/m² per minute, reaches {self.threshold:g}/m² in "
                f"about {eta:.0f} min", eta,
                {"slope_per_minute": float(trend.slope), "threshold": self.threshold}))
        return alerts


@dataclass(frozen=True)
class SensorSilentRule:
    """A sensor has sent nothing for more than ``minutes`` minutes (or never)."""

    rule_id: str
    minutes: float
    severity: Severity = Severity.WARNING
    sensor_ids: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.minutes <= 0:
            raise UsageError("a silence needs a positive number of minutes")
        object.__setattr__(self, "sensor_ids", _frozen(self.sensor_ids))

    def check(self, state: CrowdState, memory: RuleMemory) -> list[Alert]:
        alerts = []
        for sensor_id, last in state.sensor_last_seen.items():
            if self.sensor_ids is not None and sensor_id not in self.sensor_ids:
                continue
            if last is None or np.isnat(np.datetime64(last, "s")):
                silent, text = float("inf"), "has never reported"
            else:
                silent = float((state.now - np.datetime64(last, "s")) / MINUTE)
                text = f"silent for {silent:.0f} min"
            if silent > self.minutes:
                alerts.append(Alert(f"{self.rule_id}|{sensor_id}", self.rule_id,
                                    "sensor_silent", self.severity, sensor_id, state.now,
                                    f"sensor {sensor_id} {text}", silent))
        return alerts


@dataclass(frozen=True)
class LightFailedRule:
    """A light reports ``failed`` in a zone with at least ``min_occupancy`` persons."""

    rule_id: str
    min_occupancy: float = 1.0
    severity: Severity = Severity.WARNING

    def check(self, state: CrowdState, memory: RuleMemory) -> list[Alert]:
        alerts = []
        for light in state.lights:
            zone = state.zones.get(light.zone_id)
            if light.status != "failed" or zone is None or not zone.occupancy >= \
                    self.min_occupancy:
                continue
            alerts.append(Alert(
                f"{self.rule_id}|{light.light_id}", self.rule_id, "light_failed",
                self.severity, light.light_id, state.now,
                f"light {light.light_id} failed in zone {light.zone_id} holding "
                f"{zone.occupancy:.0f} persons", float(zone.occupancy),
                {"zone_id": light.zone_id}))
        return alerts


@dataclass(frozen=True)
class GeofenceRule:
    """Devices entering, exiting, or dwelling ``dwell_minutes`` inside ``polygon`` (in the
    devices' CRS; a point on the boundary counts as inside). ``device_kinds`` limits it to
    some kinds of device (e.g. ``{"steward"}``)."""

    rule_id: str
    fence_id: str
    polygon: BaseGeometry
    trigger: Literal["enter", "exit", "dwell"]
    dwell_minutes: float = 0.0
    severity: Severity = Severity.INFO
    device_kinds: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.trigger not in ("enter", "exit", "dwell"):
            raise UsageError("a geofence triggers on enter, exit or dwell")
        if self.trigger == "dwell" and self.dwell_minutes <= 0:
            raise UsageError("a dwell geofence needs a positive number of minutes")
        object.__setattr__(self, "device_kinds", _frozen(self.device_kinds))

    def devices(self, state: CrowdState) -> list[DevicePosition]:
        return [d for d in state.devices
                if self.device_kinds is None or d.kind in self.device_kinds]

    def check(self, state: CrowdState, memory: RuleMemory) -> list[Alert]:
        devices = self.devices(state)
        if not devices:
            return []
        inside = inside_fence(self.polygon, devices)
        alerts = []
        for device, is_in in zip(devices, inside, strict=True):
            pair = (self.fence_id, device.device_id)
            known = pair in memory.fences
            was_in = known and memory.fences[pair] is not None
            subject = f"{device.device_id}@{self.fence_id}"
            if self.trigger in ("enter", "exit") and known and is_in != was_in:
                if (self.trigger == "enter") == bool(is_in):
                    alerts.append(Alert(
                        f"{self.rule_id}|{subject}|{self.trigger}|{state.now}", self.rule_id,
                        f"geofence_{self.trigger}", self.severity, subject, state.now,
                        f"{device.kind or 'device'} {device.device_id} "
                        f"{'entered' if is_in else 'left'} {self.fence_id}"))
            elif self.trigger == "dwell" and is_in:
                since = memory.fences[pair] if was_in else state.now
                dwelt = float((state.now - since) / MINUTE)
                if dwelt >= self.dwell_minutes:
                    alerts.append(Alert(
                        f"{self.rule_id}|{subject}|dwell|{since}", self.rule_id,
                        "geofence_dwell", self.severity, subject, state.now,
                        f"{device.kind or 'device'} {device.device_id} in {self.fence_id} "
                        f"for {dwelt:.0f} min", dwelt, {"since": str(since)}))
        return alerts


def inside_fence(polygon: BaseGeometry, devices: Sequence[DevicePosition]) -> np.ndarray:
    """Whether each device is inside or on the boundary of ``polygon``."""
    x = np.fromiter((d.x for d in devices), float, len(devices))
    y = np.fromiter((d.y for d in devices), float, len(devices))
    return np.asarray(shapely.intersects_xy(polygon, x, y), dtype=bool)


def _update_fences(rules: Sequence[Rule], state: CrowdState, memory: RuleMemory
                   ) -> dict[tuple[str, str], np.datetime64 | None]:
    fences = dict(memory.fences)
    seen: set[tuple[str, str]] = set()
    for rule in rules:
        if not isinstance(rule, GeofenceRule):
            continue
        devices = rule.devices(state)
        if not devices:
            continue
        for device, is_in in zip(devices, inside_fence(rule.polygon, devices), strict=True):
            pair = (rule.fence_id, device.device_id)
            if pair in seen:
                continue
            seen.add(pair)
            was_in = fences.get(pair) is not None
            if is_in and not was_in:
                fences[pair] = state.now
            elif not is_in:
                fences[pair] = None
    return fences


def evaluate(rules: Sequence[Rule], state: CrowdState, memory: RuleMemory | None = None
             ) -> Evaluation:
    """Check every rule against ``state``; de-duplicate against ``memory`` (see the module
    notes). Alerts are ordered by severity (highest first), then key."""
    memory = memory or RuleMemory()
    keys = [rule.rule_id for rule in rules]
    if len(set(keys)) != len(keys):
        raise UsageError("rule ids must be unique")
    current: dict[str, Alert] = {}
    for rule in rules:
        for alert in rule.check(state, memory):
            current.setdefault(alert.key, alert)
    raised = [a for k, a in current.items() if k not in memory.active]
    ongoing = [a for k, a in current.items() if k in memory.active]
    # one-off events (enter/exit) are not conditions that can stay active
    one_off = {k for k, a in current.items() if a.kind in ("geofence_enter", "geofence_exit")}
    cleared = sorted(k for k in memory.active if k not in current)
    active = {k: (memory.active.get(k) or a) for k, a in current.items() if k not in one_off}
    def order(alert: Alert) -> tuple[int, str]:
        return -int(alert.severity), alert.key

    new_memory = replace(memory, active=active, fences=_update_fences(rules, state, memory))
    return Evaluation(sorted(raised, key=order), sorted(ongoing, key=order), cleared,
                      new_memory)
