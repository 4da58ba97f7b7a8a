"""Zones of a crowd-managed area, their usable area and capacity, and events.

A zone is a polygon where a crowd is measured as one: a walkway, a queue or standing area, a
stair, an exit. What matters for safety is the **usable** area (the polygon minus stages,
barriers, stalls, planting: ``usable_fraction``) and, for flows, the **effective width** (the
clear width people can walk through, in metres). Area and width come from the caller or from a
WGS84 polygon (geodesic area on the WGS84 ellipsoid, so no projection needs choosing).

The capacity defaults to usable area x the capacity density of the zone type's scale (see
:mod:`urbansec.crowd.los`), e.g. 4.7 persons/m² for standing areas as the UK Green Guide allows
on standing terraces; a capacity set by the event's safety plan overrides it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
from pyproj import Geod
from shapely.geometry.base import BaseGeometry

from urbansec.errors import UsageError

__all__ = ["Event", "Zone", "ZoneType", "geodesic_area_m2"]

_WGS84 = Geod(ellps="WGS84")


class ZoneType(StrEnum):
    """What people do in a zone; each type has its own level-of-service scale."""

    WALKWAY = "walkway"
    QUEUE = "queue"  # people wait in line (ticket, security, bar): Fruin's queuing scale
    STANDING = "standing"  # an audience standing in front of a stage, a viewing area
    STAIRS = "stairs"
    EXIT = "exit"


def geodesic_area_m2(polygon: BaseGeometry) -> float:
    """Area in m² of a WGS84 (lon, lat) polygon or multipolygon on the WGS84 ellipsoid.

    The sign of pyproj's area depends on the ring orientation; the absolute value is the area.
    """
    if polygon.is_empty:
        return 0.0
    area, _ = _WGS84.geometry_area_perimeter(polygon)
    return abs(float(area))


@dataclass(frozen=True)
class Zone:
    """One zone.

    Attributes:
        id: stable identifier (the store's key, the sensors' zone reference).
        zone_type: what people do there (:class:`ZoneType`).
        area_m2: usable area in m² (> 0).
        width_m: effective clear width in metres for flow rates, or None when flow does not
            apply (a standing area).
        capacity: maximum number of persons allowed, or None to derive it from the area (see
            :meth:`capacity_for`).
        name: a label for people.
        polygon: the zone's WGS84 polygon when known (for maps and geofences), else None.
    """

    id: str
    zone_type: ZoneType
    area_m2: float
    width_m: float | None = None
    capacity: int | None = None
    name: str = ""
    polygon: BaseGeometry | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "zone_type", ZoneType(self.zone_type))
        if not np.isfinite(self.area_m2) or self.area_m2 <= 0:
            raise UsageError(f"zone {self.id!r}: usable area must be a positive number of m²")
        if self.width_m is not None and (not np.isfinite(self.width_m) or self.width_m <= 0):
            raise UsageError(f"zone {self.id!r}: effective width must be positive metres")
        if self.capacity is not None and self.capacity < 0:
            raise UsageError(f"zone {self.id!r}: capacity cannot be negative")

    @classmethod
    def from_polygon(cls, id: str, zone_type: ZoneType | str, polygon: BaseGeometry, *,
                     usable_fraction: float = 1.0, **kwargs: Any) -> Zone:
        """A zone whose usable area is ``usable_fraction`` of the WGS84 polygon's area."""
        if not 0 < usable_fraction <= 1:
            raise UsageError("usable_fraction must be in (0, 1]")
        area = geodesic_area_m2(polygon) * usable_fraction
        if area <= 0:
            raise UsageError(f"zone {id!r}: the polygon has no area")
        return cls(id=id, zone_type=ZoneType(zone_type), area_m2=area, polygon=polygon,
                   **kwargs)

    def capacity_for(self, max_density: float) -> int:
        """The zone's capacity: the one set, else ``floor(area x max_density)`` persons."""
        if self.capacity is not None:
            return self.capacity
        return int(np.floor(self.area_m2 * max_density + 1e-9))


@dataclass(frozen=True)
class Event:
    """A planned event: a name, a local time window ``[start, end)``, its zones and the
    expected attendance (persons over the whole event, None if unknown)."""

    name: str
    start: np.datetime64
    end: np.datetime64
    zone_ids: tuple[str, ...]
    expected_attendance: int | None = None

    def __post_init__(self) -> None:
        start, end = np.datetime64(self.start, "s"), np.datetime64(self.end, "s")
        if np.isnat(start) or np.isnat(end) or end <= start:
            raise UsageError(f"event {self.name!r}: the end must come after the start")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)
        object.__setattr__(self, "zone_ids", tuple(self.zone_ids))
        if self.expected_attendance is not None and self.expected_attendance < 0:
            raise UsageError(f"event {self.name!r}: expected attendance cannot be negative")

    def is_active(self, t: Any) -> bool:
        """Whether the instant ``t`` falls in ``[start, end)``."""
        instant = np.datetime64(t, "s")
        return bool(self.start <= instant < self.end)
