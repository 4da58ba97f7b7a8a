"""``Events``: the one in-memory type that carries incidents into the maths.

Coordinates are metres in a local projected CRS chosen from the data (its UTM zone), so that
cell sizes, bandwidths and distance bands mean what they say; the database keeps WGS84 and the
projection happens once, on the way in (``Events.from_lonlat``) and once on the way out
(``Events.to_lonlat`` / the grid's polygons).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
from pyproj import CRS, Transformer

WGS84 = "EPSG:4326"


def utm_crs_for(lon: float, lat: float) -> str:
    """The UTM zone of a point, as an EPSG code (326xx north, 327xx south)."""
    if not (-180.0 <= lon <= 180.0 and -80.0 <= lat <= 84.0):
        raise ValueError(f"({lon}, {lat}) is outside the UTM zones")
    zone = min(int((lon + 180.0) // 6.0) + 1, 60)
    return f"EPSG:{32600 + zone if lat >= 0 else 32700 + zone}"


@lru_cache(maxsize=32)
def transformer(source: str, target: str) -> Transformer:
    """Cached, thread-safe enough for our use (always_xy: lon/lat order everywhere)."""
    return Transformer.from_crs(CRS.from_user_input(source), CRS.from_user_input(target),
                                always_xy=True)


def utc64(instant: datetime) -> np.datetime64:
    """An aware instant as the naive UTC ``datetime64[s]`` that ``Events.t`` holds."""
    return np.datetime64(instant.astimezone(UTC).replace(tzinfo=None), "s")


def to_local_time(t_utc: np.ndarray, timezone: str) -> np.ndarray:
    """UTC instants (datetime64) as naive local wall-clock datetime64[s] in ``timezone``.

    The offset changes only at DST transitions, so it is looked up once per distinct UTC hour
    (a few thousand a year) with ``zoneinfo`` and mapped back, instead of once per event.
    """
    seconds = np.asarray(t_utc, dtype="datetime64[s]")
    if seconds.size == 0 or timezone in ("UTC", "Etc/UTC"):
        return seconds.copy()
    zone = ZoneInfo(timezone)
    valid = ~np.isnat(seconds)
    hours = seconds[valid].astype("datetime64[h]")
    unique_hours, inverse = np.unique(hours, return_inverse=True)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    offsets = np.empty(unique_hours.size, dtype=np.int64)
    for i, hour in enumerate(unique_hours.astype(np.int64)):
        instant = epoch + timedelta(hours=int(hour))
        offset = instant.astimezone(zone).utcoffset()
        offsets[i] = int(offset.total_seconds()) if offset is not None else 0
    local = seconds.copy()
    local[valid] = seconds[valid] + offsets[inverse].astype("timedelta64[s]")
    return local


@dataclass(frozen=True)
class Events:
    """Incidents as arrays, one entry per incident.

    ``x``, ``y``: metres in ``crs`` (NaN for an unlocated incident: it still counts in time
    patterns, never on a map); ``t``: UTC instants, ``datetime64[s]``; ``category``: canonical
    category codes (``object`` array of str, ``None`` where unmapped); ``timezone``: the IANA
    zone of the city, for local-time patterns; ``ids``: store ids when loaded from the store;
    ``time_of_day_known``: False where the source gave only a day or a month (UK police data),
    whose times must not enter hour-of-day patterns (None: every time is exact).
    """

    x: np.ndarray
    y: np.ndarray
    t: np.ndarray
    category: np.ndarray
    crs: str
    timezone: str = "UTC"
    ids: np.ndarray | None = None
    time_of_day_known: np.ndarray | None = None
    _lonlat: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False,
                                                          compare=False)

    def __post_init__(self) -> None:
        n = len(self.x)
        for name in ("y", "t", "category"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Events.{name} has {len(getattr(self, name))} entries, x {n}")
        for name in ("ids", "time_of_day_known"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"Events.{name} must have one entry per event")

    @classmethod
    def from_lonlat(
        cls, lon: Sequence[float] | np.ndarray, lat: Sequence[float] | np.ndarray,
        t: Sequence[object] | np.ndarray, category: Sequence[object] | np.ndarray | None = None,
        *, crs: str | None = None, timezone: str = "UTC", ids: np.ndarray | None = None,
        time_of_day_known: np.ndarray | None = None,
    ) -> Events:
        """Project WGS84 points into ``crs`` (default: the UTM zone of the points' median)."""
        lon_a = np.asarray(lon, dtype=float)
        lat_a = np.asarray(lat, dtype=float)
        located = np.isfinite(lon_a) & np.isfinite(lat_a)
        if crs is None:
            crs = (utm_crs_for(float(np.median(lon_a[located])), float(np.median(lat_a[located])))
                   if located.any() else "EPSG:3857")
        x = np.full(lon_a.shape, np.nan)
        y = np.full(lat_a.shape, np.nan)
        if located.any():
            x[located], y[located] = transformer(WGS84, crs).transform(lon_a[located],
                                                                       lat_a[located])
        categories = (np.full(lon_a.shape, None, dtype=object) if category is None
                      else np.asarray(category, dtype=object))
        return cls(x=x, y=y, t=np.asarray(t, dtype="datetime64[s]"), category=categories,
                   crs=crs, timezone=timezone, ids=ids, time_of_day_known=time_of_day_known,
                   _lonlat=(lon_a, lat_a))

    def __len__(self) -> int:
        return len(self.x)

    @property
    def located(self) -> np.ndarray:
        """Boolean mask of incidents with coordinates."""
        return np.isfinite(self.x) & np.isfinite(self.y)

    def subset(self, mask: np.ndarray) -> Events:
        """The events where ``mask`` (boolean or index array) selects them."""
        lonlat = (None if self._lonlat is None
                  else (self._lonlat[0][mask], self._lonlat[1][mask]))
        return Events(x=self.x[mask], y=self.y[mask], t=self.t[mask],
                      category=self.category[mask], crs=self.crs, timezone=self.timezone,
                      ids=None if self.ids is None else self.ids[mask],
                      time_of_day_known=None if self.time_of_day_known is None
                      else self.time_of_day_known[mask], _lonlat=lonlat)

    def only_located(self) -> Events:
        return self.subset(self.located)

    def to_lonlat(self) -> tuple[np.ndarray, np.ndarray]:
        """WGS84 lon, lat of every event (NaN where unlocated)."""
        if self._lonlat is not None:
            return self._lonlat
        lon = np.full(self.x.shape, np.nan)
        lat = np.full(self.y.shape, np.nan)
        ok = self.located
        if ok.any():
            lon[ok], lat[ok] = transformer(self.crs, WGS84).transform(self.x[ok], self.y[ok])
        return lon, lat

    def local_times(self) -> np.ndarray:
        """Naive local wall-clock times in the city's time zone, ``datetime64[s]``."""
        return to_local_time(self.t, self.timezone)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """min x, min y, max x, max y of the located events (metres)."""
        ok = self.located
        if not ok.any():
            raise ValueError("no located events")
        return (float(self.x[ok].min()), float(self.y[ok].min()),
                float(self.x[ok].max()), float(self.y[ok].max()))
