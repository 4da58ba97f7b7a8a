"""When incidents happen: hour x weekday, night-time share and the monthly series.

Everything is in the city's local time (the sources' time zone), DST included: the analyst
reading "Saturday 23:00" means the wall clock in the city, not UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import Engine

from urbansec.analysis import temporal
from urbansec.errors import UsageError
from urbansec.services.events import load_events
from urbansec.services.hotspots import check_period
from urbansec.services.incidents import IncidentFilter

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _local_naive(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None)


def time_patterns(engine: Engine, flt: IncidentFilter, *, night: str = "22:00-06:00"
                  ) -> dict[str, Any]:
    """Hour x weekday counts (and rates per occurrence of each hour), night share, months."""
    check_period(engine, flt)
    events = load_events(engine, flt)
    tz = events.timezone
    local = events.local_times()
    result: dict[str, Any] = {"filter": flt.description, "timezone": tz,
                              "events": int(local.size)}
    if local.size == 0:
        result["message"] = "no incidents match this filter"
        result["hour_weekday"] = {"weekdays": list(WEEKDAYS), "counts": [[0] * 24] * 7}
        return result
    zone = ZoneInfo(tz)
    start = _local_naive(flt.start, zone) if flt.start else \
        local.min().astype("datetime64[D]").astype(datetime)
    end = _local_naive(flt.end, zone) if flt.end else \
        (local.max().astype("datetime64[D]") + np.timedelta64(1, "D")).astype(datetime)
    if not isinstance(start, datetime):
        start = datetime.combine(start, datetime.min.time())
    if not isinstance(end, datetime):
        end = datetime.combine(end, datetime.min.time())
    # a time known only to the day or the month (UK police data) says nothing about the hour:
    # it counts in the monthly series only, never piled up at midnight
    exact = (events.time_of_day_known if events.time_of_day_known is not None
             else np.ones(local.size, dtype=bool))
    untimed = int((~exact).sum())
    if untimed:
        result["without_time_of_day"] = untimed
    hw = temporal.hour_weekday(local[exact], period=(start, end), tz=tz)
    result["period_local"] = {"start": start.isoformat(), "end": end.isoformat()}
    result["hour_weekday"] = {
        "weekdays": list(WEEKDAYS), "hours": list(range(24)),
        "counts": np.asarray(hw.counts).astype(int).tolist(),
        "exposure_hours": None if hw.exposure_hours is None
        else np.asarray(hw.exposure_hours).round(3).tolist(),
        "rate": None if hw.rate is None
        else [[None if not np.isfinite(v) else round(float(v), 4) for v in row]
              for row in np.asarray(hw.rate, dtype=float)],
    }
    night_start, _, night_end = night.partition("-")
    if not night_end:
        raise UsageError(f"--night {night!r}: use START-END in local time, e.g. 22:00-06:00")
    share = temporal.night_share(local[exact], start=night_start.strip(),
                                 end=night_end.strip())
    result["night"] = {
        "window": night, "count": int(share.night), "total": int(share.total),
        "share": None if share.total == 0 else round(float(share.share), 4),
        "ci_low": None if share.total == 0 else round(float(share.ci_low), 4),
        "ci_high": None if share.total == 0 else round(float(share.ci_high), 4)}
    series = temporal.monthly_series(local, start=np.datetime64(start, "s"),
                                     end=np.datetime64(end, "s"))
    monthly: dict[str, Any] = {
        "months": [str(m) for m in np.asarray(series.months).astype("datetime64[M]")],
        "counts": np.asarray(series.counts).astype(int).tolist(),
        "per_30_days": np.round(np.asarray(series.per_30_days, dtype=float), 2).tolist(),
        "full_month": np.asarray(series.full).astype(bool).tolist(),
    }
    if series.seasonality is not None:
        monthly["seasonal_index"] = np.round(
            np.asarray(series.seasonality.seasonal_index), 4).tolist()
        monthly["seasonally_adjusted"] = [
            None if not np.isfinite(v) else round(float(v), 2)
            for v in np.asarray(series.seasonality.adjusted, dtype=float)]
    else:
        monthly["seasonality"] = series.reason
    result["monthly"] = monthly
    busiest = np.unravel_index(int(np.argmax(hw.counts)), np.asarray(hw.counts).shape)
    result["busiest_slot"] = None if hw.total == 0 else {
        "weekday": WEEKDAYS[busiest[0]], "hour": int(busiest[1]),
        "count": int(np.asarray(hw.counts)[busiest])}
    result["generated_at"] = datetime.now(UTC).isoformat()
    return result
