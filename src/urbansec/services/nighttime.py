"""The night-time view: footfall beside incidents for an area and period, and incidents per
1,000 passers-by where people counters measure footfall (``analysis.ambient``).

One service function, :func:`nighttime_view`, serves the API (``GET /api/v1/nighttime``) and
the CLI (``urbansec nighttime``):

- the area is an imported one (``area_kind`` + code); its incidents come through the shared
  incident path (``services.events.load_events`` with an ``IncidentFilter``), so "in the area"
  means exactly what it means for counts and hot spots;
- footfall is the sum of the observations of every datastream with role ``footfall`` whose
  Thing's Location (a GeoJSON point) lies inside the area's polygon, read with
  ``services.sensors.datastream_series``;
- the period ``[from, to)`` is read in the city's local time (a bare ``YYYY-MM-DD`` is local
  midnight) and cut into absolute hours, each labelled with its local hour of day, so that a
  DST change neither loses nor doubles an hour;
- viewers and the public get k-suppressed incident counts (``services.aggregates`` rules), and
  a rate only where it cannot reveal a suppressed or unpublished count.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import shapely
from shapely.geometry import shape
from sqlalchemy import Engine, select

from urbansec.analysis import ambient
from urbansec.domain.events import to_local_time
from urbansec.errors import NotFoundError, UsageError
from urbansec.ingest.localtime import LocalToUTC, zone
from urbansec.services.aggregates import Privacy, check_filter, suppress_counts
from urbansec.services.events import city_timezone, load_events
from urbansec.services.hotspots import check_period
from urbansec.services.incidents import AREAS, IncidentFilter, iso_utc
from urbansec.services.sensors import datastream_series
from urbansec.store.sensors import Datastream, Location, Thing, ThingLocation

#: one request reads at most this long a period (hourly footfall of every counter in it)
MAX_PERIOD_DAYS = 1096
DEFAULT_NIGHT = "22:00-06:00"
PER = 1000.0
CONFIDENCE = 0.95
_HOUR = timedelta(hours=1)


class NighttimeInputError(UsageError):
    """A parameter of the night-time view is wrong (the API answers 422)."""

    http_status = 422
    code = "invalid_request"


@dataclass(frozen=True)
class FootfallCounter:
    datastream_id: int
    name: str
    lon: float
    lat: float


def nighttime_view(
    engine: Engine, *, area_kind: str, area: str, start: str, end: str,
    night: str | None = None, category: str | None = None, privacy: Privacy | None = None,
    timezone: str | None = None, population_attribute: str = "population",
    sensor_details: bool = True,
) -> dict[str, Any]:
    """Footfall, incidents and incidents per 1,000 passers-by per local hour of day, night
    against day, for one imported area over ``[start, end)`` (local time).

    Args:
        area_kind, area: the imported area (e.g. ``cbd``, ``auckland-cbd``).
        start, end: ``YYYY-MM-DD`` (local midnight), a local ``YYYY-MM-DDTHH:MM``, or an ISO
            instant with an offset; on whole local hours; ``end`` is excluded.
        night: ``HH:MM-HH:MM`` local whole hours (default ``22:00-06:00``).
        category: category filter as everywhere (``0501``, ``05``, comma-separated).
        privacy: how the caller sees counts (None: unsuppressed, as for the CLI).
        timezone: IANA zone of the period and the hours; default: the city's (the zone of
            the sources most stored incidents come from).
        population_attribute: the area attribute holding its residents, for the
            per-1,000-residents rate beside the ambient one.
        sensor_details: list each counter's datastream id and position (callers who may
            read the sensor feeds); otherwise counters are named with their hours only.

    Raises:
        NotFoundError: no such imported area.
        NighttimeInputError: bad window, period or time zone.
    """
    window = _window(night or DEFAULT_NIGHT)
    kind, code, name, polygon, attributes = _area(engine, area_kind, area)
    tz_name = timezone or city_timezone(engine)
    try:
        tz = zone(tz_name)
    except UsageError as exc:
        raise NighttimeInputError(exc.message) from None
    start_utc = _local_instant(start, tz_name, "from")
    end_utc = _local_instant(end, tz_name, "to")
    if start_utc >= end_utc:
        raise NighttimeInputError(f"from {start} is not before to {end}")
    if end_utc - start_utc > timedelta(days=MAX_PERIOD_DAYS):
        raise NighttimeInputError(f"the period is longer than {MAX_PERIOD_DAYS} days; "
                                  "shorten it")
    if privacy is not None:
        try:
            check_filter(privacy, bbox=None, start=start, end=end)
        except UsageError as exc:
            raise NighttimeInputError(exc.message) from None
    slots = int((end_utc - start_utc) / _HOUR)
    start64 = np.datetime64(start_utc.replace(tzinfo=None), "s")
    slot_starts = start64 + np.arange(slots, dtype=np.int64) * np.timedelta64(3600, "s")
    hour_of_day = (to_local_time(slot_starts, tz.key).astype("datetime64[h]").astype(np.int64)
                   % 24)

    try:
        flt = IncidentFilter.parse(category=category)
    except UsageError as exc:
        raise NighttimeInputError(exc.message) from None
    flt.start, flt.end, flt.area = start_utc, end_utc, (kind, code)
    flt.description.update({"area": f"{kind}:{code}", "from": start, "to": end})
    events = load_events(engine, flt)
    timed = (np.ones(len(events), dtype=bool) if events.time_of_day_known is None
             else np.asarray(events.time_of_day_known, dtype=bool))
    incident_slot = ambient.slot_index(events.t[timed], start64, slots)
    incidents = np.bincount(incident_slot[incident_slot >= 0], minlength=slots)

    counters = _counters_in(engine, polygon)
    footfall, counter_hours = _footfall(engine, counters, start_utc, end_utc, start64, slots)
    profile = ambient.ambient_profile(hour_of_day, footfall, incidents, window, per=PER,
                                      confidence=CONFIDENCE)
    population = _population(attributes, population_attribute)

    result: dict[str, Any] = {
        "area": {"kind": kind, "code": code, "name": name},
        "period": {"from": iso_utc(start_utc), "to": iso_utc(end_utc), "hours": slots,
                   "from_local": start_utc.astimezone(tz).isoformat(),
                   "to_local": end_utc.astimezone(tz).isoformat()},
        "night_window": window.label, "timezone": tz.key, "filter": flt.description,
        "per": int(PER), "confidence": CONFIDENCE,
        "counters": [_counter(c, counter_hours[c.datastream_id], sensor_details)
                     for c in counters],
        "footfall_coverage": round(profile.coverage, 4),
        "incidents_total": len(events),
        "incidents_without_time": int((~timed).sum()),
    }
    published, residential = _published(profile, population, len(events), privacy)
    result.update(published)
    if residential is not None:
        residential["attribute"] = population_attribute
    result["residential"] = residential
    if not len(events):
        try:
            check_period(engine, flt)
        except UsageError as exc:
            # zeros from a period the store has no incidents for mean missing data, not safety
            result["warning"] = exc.message
    if not counters:
        result["message"] = (f"no footfall counter stands in {kind} {code}: incidents only, "
                             "no rate per passer-by")
    elif profile.total.slots_with_footfall == 0:
        result["message"] = "the counters in this area reported nothing in this period"
    elif profile.coverage < 1.0:
        result["message"] = (f"footfall was counted in {profile.total.slots_with_footfall} of "
                             f"{slots} hours; rates use only those hours and their incidents")
    return result


# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------


def _window(text: str) -> ambient.NightWindow:
    try:
        return ambient.NightWindow.parse(text)
    except UsageError as exc:
        raise NighttimeInputError(exc.message) from None


def _area(engine: Engine, area_kind: str, area: str
          ) -> tuple[str, str, str | None, Any, dict[str, Any]]:
    from urbansec.ingest.areas import normalize_area_code

    kind = (area_kind or "").strip().lower()
    code = normalize_area_code(area)
    if not kind or not code:
        raise NighttimeInputError("give area_kind and area, e.g. area_kind=district&area=18")
    with engine.connect() as connection:
        row = connection.execute(
            select(AREAS.c.name, AREAS.c.geometry, AREAS.c.attributes)
            .where(AREAS.c.kind == kind, AREAS.c.code == code)).first()
    if row is None:
        raise NotFoundError(f"no imported {kind} area {code!r} (import boundaries with: "
                            "urbansec import areas FILE --kind KIND)")
    attributes = row.attributes if isinstance(row.attributes, dict) else \
        json.loads(row.attributes or "{}")
    polygon = shape(json.loads(row.geometry))
    shapely.prepare(polygon)
    return kind, code, row.name, polygon, attributes


def _local_instant(text: str, tz_name: str, what: str) -> datetime:
    """``YYYY-MM-DD`` / local ``YYYY-MM-DDTHH[:MM]`` / ISO with offset -> aware UTC, checked
    to fall on a whole local hour (footfall is hourly)."""
    text = (text or "").strip()
    if not text:
        raise NighttimeInputError(f"{what}: give a day (YYYY-MM-DD) or an ISO 8601 time")
    try:
        if len(text) == 10:
            value = datetime.combine(date.fromisoformat(text), datetime.min.time())
        else:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise NighttimeInputError(f"{what} {text!r}: use YYYY-MM-DD or an ISO 8601 time"
                                  ) from None
    if value.tzinfo is None:
        instant = LocalToUTC(tz_name).to_utc_aware(value)
    else:
        instant = value.astimezone(UTC)
    local = instant.astimezone(ZoneInfo(tz_name))
    if (local.minute, local.second, local.microsecond) != (0, 0, 0):
        raise NighttimeInputError(f"{what} {text!r}: give a whole local hour (footfall is "
                                  "counted per hour)")
    return instant


def _population(attributes: dict[str, Any], key: str) -> float | None:
    wanted = key.strip().lower()
    for name, value in attributes.items():
        if str(name).strip().lower() == wanted:
            try:
                number = float(value)
            except (TypeError, ValueError):
                return None
            return number if math.isfinite(number) and number > 0 else None
    return None


# --------------------------------------------------------------------------------------------
# footfall
# --------------------------------------------------------------------------------------------


def _counters_in(engine: Engine, polygon: Any) -> list[FootfallCounter]:
    """Footfall datastreams whose Thing's Location is a point inside ``polygon``."""
    ds, things = Datastream.__table__, Thing.__table__
    links, locations = ThingLocation.__table__, Location.__table__
    with engine.connect() as connection:
        rows = connection.execute(
            select(ds.c.id, things.c.name, locations.c.location)
            .select_from(ds.join(things, things.c.id == ds.c.thing_id)
                         .join(links, links.c.thing_id == things.c.id)
                         .join(locations, locations.c.id == links.c.location_id))
            .where(ds.c.role == "footfall").order_by(things.c.name, ds.c.id)).all()
    found: dict[int, FootfallCounter] = {}
    for datastream_id, name, location in rows:
        point = _point(location)
        if point is None or datastream_id in found:
            continue
        if shapely.contains_xy(polygon, point[0], point[1]):
            found[datastream_id] = FootfallCounter(int(datastream_id), str(name), *point)
    return list(found.values())


def _counter(counter: FootfallCounter, hours: int, details: bool) -> dict[str, Any]:
    if not details:
        return {"name": counter.name, "hours": hours}
    return {"name": counter.name, "hours": hours, "datastream": counter.datastream_id,
            "lon": counter.lon, "lat": counter.lat}


def _point(location: Any) -> tuple[float, float] | None:
    """(lon, lat) of a GeoJSON Point (or a Feature holding one); None for anything else."""
    if isinstance(location, str):
        try:
            location = json.loads(location)
        except ValueError:
            return None
    if isinstance(location, dict) and location.get("type") == "Feature":
        location = location.get("geometry")
    if not isinstance(location, dict) or location.get("type") != "Point":
        return None
    coordinates = location.get("coordinates")
    try:
        lon, lat = float(coordinates[0]), float(coordinates[1])  # type: ignore[index]
    except (TypeError, ValueError, IndexError):
        return None
    return (lon, lat) if math.isfinite(lon) and math.isfinite(lat) else None


def _footfall(engine: Engine, counters: list[FootfallCounter], start: datetime, end: datetime,
              start64: np.datetime64, slots: int) -> tuple[np.ndarray, dict[int, int]]:
    """People counted per hour slot by all ``counters`` together (NaN where none reported),
    and per counter how many slots it reported."""
    total = np.zeros(slots)
    reported = np.zeros(slots, dtype=bool)
    hours: dict[int, int] = {}
    if counters:
        series = datastream_series(engine, [c.datastream_id for c in counters], start, end)
        for counter in counters:
            found = series[counter.datastream_id]
            ok = np.isfinite(found.value) & (found.value >= 0)
            index = ambient.slot_index(found.t[ok], start64, slots)
            inside = index >= 0
            np.add.at(total, index[inside], found.value[ok][inside])
            reported[index[inside]] = True
            hours[counter.datastream_id] = int(np.unique(index[inside]).size)
    return np.where(reported, total, np.nan), hours


# --------------------------------------------------------------------------------------------
# output, with the privacy rules
# --------------------------------------------------------------------------------------------


def _published(profile: ambient.AmbientProfile, population: float | None, total: int,
               privacy: Privacy | None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The profile as JSON-ready values; for suppressed callers the counts follow
    ``services.aggregates`` (primary and complementary suppression, per table), and a rate is
    shown only when its numerator is a published count (the incidents of hours without
    footfall would otherwise be the difference)."""
    suppress = privacy is not None and privacy.suppress
    k = privacy.k if privacy is not None else 0
    hour_counts = [int(v) for v in profile.incidents]
    if suppress:
        table = suppress_counts(hour_counts, k)
        hour_values, hour_hidden = table.values, list(table.suppressed)
        groups = _group_suppression(profile, hour_hidden, k)
        total_shown: int | None = total if not 0 < total < k else None
    else:
        hour_values, hour_hidden = list(hour_counts), [False] * ambient.HOURS
        groups = {"night": False, "day": False}
        total_shown = total
    hours = []
    for h in range(ambient.HOURS):
        rate_ok = not hour_hidden[h] and (
            not suppress or profile.incidents_counted[h] == profile.incidents[h])
        row: dict[str, Any] = {
            "hour": h, "slots": int(profile.slots[h]),
            "slots_with_footfall": int(profile.slots_with_footfall[h]),
            "footfall": _count(profile.footfall[h]) if profile.slots_with_footfall[h] else None,
            "incidents": hour_values[h],
            "rate_per_1000": _num(profile.rate[h]) if rate_ok else None,
            "ci_low": _num(profile.ci_low[h]) if rate_ok else None,
            "ci_high": _num(profile.ci_high[h]) if rate_ok else None,
        }
        if suppress:
            row["suppressed"] = hour_hidden[h]
        else:
            row["incidents_counted"] = int(profile.incidents_counted[h])
        hours.append(row)
    night = _group(profile.night, groups["night"], suppress)
    day = _group(profile.day, groups["day"], suppress)
    ratio = profile.night_vs_day
    ratio_ok = night["rate_per_1000"] is not None and day["rate_per_1000"] is not None
    out: dict[str, Any] = {
        "hours": hours, "night": night, "day": day,
        "rate_ratio_night_vs_day": {
            "value": _num(ratio.value) if ratio_ok else None,
            "ci_low": _num(ratio.ci_low) if ratio_ok else None,
            "ci_high": _num(ratio.ci_high) if ratio_ok else None},
        "suppressed": suppress,
    }
    if suppress:
        out["k"] = k
        out["incidents_total"] = total_shown
        untimed = total - int(profile.incidents.sum())
        out["incidents_without_time"] = untimed if total_shown is not None and \
            not 0 < untimed < k else None
    residential = None if population is None else _residential(
        population, total_shown, None if groups["night"] else profile.night.incidents,
        None if groups["day"] else profile.day.incidents)
    return out, residential


def _group_suppression(profile: ambient.AmbientProfile, hour_hidden: list[bool], k: int
                       ) -> dict[str, bool]:
    """Whether the night and the day totals must be withheld: below ``k`` themselves, or
    the group total minus its visible hours would give back exactly one hidden hour; and if
    one of the two is withheld, so is the other (their sum is the published hour total)."""
    mask = profile.night_window.mask()
    hidden = {}
    for name, members, group in (("night", mask, profile.night), ("day", ~mask, profile.day)):
        hidden_hours = sum(1 for h in range(ambient.HOURS) if members[h] and hour_hidden[h])
        hidden[name] = 0 < group.incidents < k or hidden_hours == 1
    if hidden["night"] or hidden["day"]:
        hidden = {"night": True, "day": True}
    return hidden


def _group(group: ambient.Group, hidden: bool, suppress: bool) -> dict[str, Any]:
    rate_ok = not hidden and (not suppress or group.incidents_counted == group.incidents)
    out: dict[str, Any] = {
        "hours": group.slots, "hours_with_footfall": group.slots_with_footfall,
        "footfall": _count(group.footfall) if group.slots_with_footfall else None,
        "incidents": None if hidden else group.incidents,
        "rate_per_1000": _num(group.rate) if rate_ok else None,
        "ci_low": _num(group.ci_low) if rate_ok else None,
        "ci_high": _num(group.ci_high) if rate_ok else None,
    }
    if suppress:
        out["suppressed"] = hidden
    else:
        out["incidents_counted"] = group.incidents_counted
    return out


def _residential(population: float, total: int | None, night: int | None, day: int | None
                 ) -> dict[str, Any]:
    """Incidents per 1,000 residents over the same period: the measure that makes a busy
    centre look worse than it is for the people there, shown beside the ambient rate. The
    whole period's figures sit at the top level too (as ``total``), for a one-figure view."""
    out: dict[str, Any] = {"population": population}
    for name, count in (("total", total), ("night", night), ("day", day)):
        if count is None:
            out[name] = {"incidents": None, "rate_per_1000": None, "ci_low": None,
                         "ci_high": None}
            continue
        rate = ambient.rates_per([count], [population], per=PER, confidence=CONFIDENCE)
        out[name] = {"incidents": count, "rate_per_1000": _num(rate.rate[0]),
                     "ci_low": _num(rate.ci_low[0]), "ci_high": _num(rate.ci_high[0])}
    out.update(out["total"])
    return out


def _num(value: Any) -> float | None:
    """Six significant digits (rates per passer-by are small numbers); None when undefined."""
    value = float(value)
    return float(f"{value:.6g}") if math.isfinite(value) else None


def _count(value: float) -> int | float:
    value = float(value)
    return int(value) if value.is_integer() else round(value, 3)


