"""When incidents happen: hour x weekday tables with honest exposure, night share, monthly series.

All times here are **local wall-clock times** as naive ``numpy.datetime64`` (any unit; NaT is
allowed and counted as missing). The service layer converts stored UTC instants to the city's
local time before calling in; this module never needs pandas.

Exposure: an hour-of-week slot ("Sunday 02:00") does not occur equally often in every period.
In a year starting 1 January 2017 in America/Chicago there are 53 Sundays, but the Sunday 02:00
slot happened only 52 times (the clock jumped 02:00 -> 03:00 on 12 March) and Sunday 01:00 54
times (01:00-02:00 was lived twice on 5 November). Rates per slot divide by this exposure, so a
slot is not made to look busier or quieter by the calendar alone.

Periods are half-open ``[start, end)`` in local time. A ``start`` inside a spring-forward gap or
an ambiguous autumn hour follows Python's ``fold=0`` rule, the same as the importers
(``urbansec.ingest.localtime``).
"""

from __future__ import annotations

import datetime as _dt
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
from scipy import stats

from urbansec.errors import UsageError

WEEKDAYS: tuple[str, ...] = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
"""Row labels of every hour x weekday table (ISO order, Monday first)."""

_DAY = 86_400
_WEEK = 7 * _DAY
# 1970-01-05 was the first Monday after the epoch; slot arithmetic counts weeks from it.
_MONDAY_EPOCH = 4 * _DAY
# Offsets are sampled this often to find DST transitions; real zones never change twice
# within 6 hours, and every change found is then located to the second by bisection.
_SAMPLE_STEP = 6 * 3600
_MIN_MONTHS_FOR_SEASONALITY = 24

DateLike = _dt.datetime | _dt.date | np.datetime64 | str
Period = tuple[DateLike, DateLike]


# --------------------------------------------------------------------------------- helpers


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        message = f"unknown time zone {name!r} (use an IANA name like Europe/Berlin)"
        raise UsageError(message) from exc


def _seconds(t_local: object) -> tuple[np.ndarray, np.ndarray]:
    """Local times -> (int64 seconds since 1970-01-01 local midnight, valid mask), shape (n,)."""
    arr = np.asarray(t_local)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    if arr.dtype.kind != "M":
        if arr.size == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)
        try:
            arr = arr.astype("datetime64[s]")
        except (TypeError, ValueError) as exc:
            raise UsageError("event times must be local datetimes (numpy datetime64)") from exc
    # datetime64 casts floor, so hour and day stay right even before 1970.
    sec = arr.astype("datetime64[s]")
    valid = ~np.isnat(sec)
    return sec.view(np.int64), valid


def _to_second(value: DateLike, zone: ZoneInfo | None, what: str) -> int:
    """One local date/datetime (or ISO string) -> local seconds since the epoch."""
    if isinstance(value, _dt.datetime) and value.tzinfo is not None:
        if zone is None:
            raise UsageError(f"{what} has a time zone but no tz was given: pass tz=... "
                             "or a naive local datetime")
        value = value.astimezone(zone).replace(tzinfo=None)
    try:
        stamp = np.datetime64(value, "s")
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{what} {value!r} is not a date or datetime") from exc
    if np.isnat(stamp):
        raise UsageError(f"{what} is missing (NaT)")
    return int(stamp.view(np.int64))


def _period_seconds(period: Period, zone: ZoneInfo | None) -> tuple[int, int]:
    try:
        start, end = period
    except (TypeError, ValueError) as exc:
        raise UsageError("period must be a pair (start, end) of local datetimes") from exc
    s0 = _to_second(start, zone, "period start")
    s1 = _to_second(end, zone, "period end")
    if s1 <= s0:
        raise UsageError(f"period end {end} must be after its start {start}")
    return s0, s1


def _utc_offset(zone: ZoneInfo, utc_second: int) -> int:
    moment = _dt.datetime.fromtimestamp(utc_second, tz=zone)
    offset = moment.utcoffset()
    assert offset is not None
    return int(offset.total_seconds())


def _local_to_utc(zone: ZoneInfo, local_second: int) -> int:
    # fold=0, like the importers: an ambiguous time is its first occurrence, a time in the
    # spring gap is read with the offset from before the change.
    naive = _dt.datetime(1970, 1, 1) + _dt.timedelta(seconds=local_second)
    offset = naive.replace(tzinfo=zone).utcoffset()
    assert offset is not None
    return local_second - int(offset.total_seconds())


def _transitions(zone: ZoneInfo, u0: int, u1: int) -> list[int]:
    """UTC seconds in (u0, u1) at which the zone's offset changes, in order."""
    points = [*range(u0, u1, _SAMPLE_STEP), u1 - 1]
    offsets = [_utc_offset(zone, p) for p in points]
    found: list[int] = []
    for a, b, oa, ob in zip(points, points[1:], offsets, offsets[1:], strict=False):
        # Loop, not `if`: two changes between samples are located one after the other.
        while oa != ob:
            lo, hi = a, b
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if _utc_offset(zone, mid) == oa:
                    lo = mid
                else:
                    hi = mid
            found.append(hi)
            a, oa = hi, _utc_offset(zone, hi)
    return found


def _slot_coverage(local_start: int, local_end: int) -> np.ndarray:
    """Seconds of the local interval [start, end) falling in each hour-of-week slot, (168,)."""

    def cumulative(x: int) -> np.ndarray:
        # Seconds of [Monday epoch, x) in each slot: whole weeks plus the part of this week.
        rel = x - _MONDAY_EPOCH
        weeks, rem = divmod(rel, _WEEK)
        slot_starts = np.arange(168, dtype=np.int64) * 3600
        return weeks * 3600 + np.clip(rem - slot_starts, 0, 3600)

    return cumulative(local_end) - cumulative(local_start)


def exposure_hours(start: DateLike, end: DateLike, tz: str | None = None) -> np.ndarray:
    """Hours of real time the local clock spent in each hour-of-week slot during [start, end).

    Args:
        start, end: local wall-clock bounds of the period (naive; aware datetimes are
            converted to ``tz``).
        tz: IANA zone name. ``None`` means a clock without DST (every wall-clock hour
            happens exactly once), which is right for UTC and for fixed-offset zones.

    Returns:
        float64 array (7, 24), Monday first, local hour 0..23. For a period made of whole
        hours and a zone whose changes are whole hours, every entry is an integer: the number
        of times that slot occurred (0 for the skipped spring hour, 2 for the repeated autumn
        hour on those days). Half-hour changes (e.g. Australia/Lord_Howe) give halves.
    """
    zone = _zone(tz) if tz is not None else None
    s0, s1 = _period_seconds((start, end), zone)
    return _exposure(s0, s1, zone)


def _exposure(s0: int, s1: int, zone: ZoneInfo | None) -> np.ndarray:
    if zone is None:
        return (_slot_coverage(s0, s1) / 3600.0).reshape(7, 24)
    u0, u1 = _local_to_utc(zone, s0), _local_to_utc(zone, s1)
    total = np.zeros(168, dtype=np.int64)
    if u1 <= u0:
        # Both bounds inside one skipped/repeated hour in a way that leaves no real time.
        return total.reshape(7, 24).astype(np.float64)
    bounds = [u0, *_transitions(zone, u0, u1), u1]
    # Each stretch of constant offset is one contiguous run of local clock time.
    for a, b in itertools.pairwise(bounds):
        offset = _utc_offset(zone, a)
        total += _slot_coverage(a + offset, b + offset)
    return (total / 3600.0).reshape(7, 24)


def _slot_index(sec: np.ndarray) -> np.ndarray:
    day = sec // _DAY
    weekday = (day + 3) % 7  # 1970-01-01 was a Thursday (ISO weekday index 3)
    hour = (sec - day * _DAY) // 3600
    return weekday * 24 + hour


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast_shapes(num.shape, den.shape), np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


# ------------------------------------------------------------------------ hour x weekday


@dataclass(frozen=True)
class HourWeekday:
    """Events by local weekday (rows, Monday first, see ``WEEKDAYS``) and local hour (columns).

    Attributes:
        counts: int64 (7, 24) events per slot.
        by_hour: int64 (24,) events per local hour of day; ``by_weekday``: int64 (7,).
        total: events counted (inside the period when one was given; NaT never counted).
        exposure_hours: float64 (7, 24) hours the local clock spent in each slot during the
            period (occurrences of the slot), or None without a period.
        rate: float64 (7, 24) events per hour of exposure, i.e. per occurrence of the slot;
            NaN where the slot never occurred. None without a period.
        rate_by_hour: (24,) and ``rate_by_weekday`` (7,): events per hour of exposure of the
            marginals, or None without a period.
        n_missing: events with a missing time (NaT); ``n_outside``: events outside the period.
    """

    counts: np.ndarray
    by_hour: np.ndarray
    by_weekday: np.ndarray
    total: int
    exposure_hours: np.ndarray | None
    rate: np.ndarray | None
    rate_by_hour: np.ndarray | None
    rate_by_weekday: np.ndarray | None
    n_missing: int
    n_outside: int


def hour_weekday(
    t_local: np.ndarray | Sequence[object],
    *,
    period: Period | None = None,
    tz: str | None = None,
) -> HourWeekday:
    """Count events per local hour-of-week and, with a period, per occurrence of each slot.

    Args:
        t_local: (n,) naive local wall-clock times (datetime64, NaT allowed).
        period: local ``(start, end)``, half-open. Events outside it are not counted (they are
            reported in ``n_outside``) so that counts and exposure describe the same time.
        tz: IANA zone of the local times; needed for DST-honest exposure. With a period but no
            tz, every wall-clock hour is taken to occur once (a clock without DST).

    Raises:
        UsageError: end <= start, an unknown zone, tz without a period, times not datetimes.
    """
    if tz is not None and period is None:
        raise UsageError("tz only matters for exposure: give a period (start, end) as well")
    zone = _zone(tz) if tz is not None else None
    sec, valid = _seconds(t_local)
    n_missing = int((~valid).sum())
    keep = valid
    n_outside = 0
    bounds: tuple[int, int] | None = None
    if period is not None:
        bounds = _period_seconds(period, zone)
        inside = (sec >= bounds[0]) & (sec < bounds[1])
        n_outside = int((valid & ~inside).sum())
        keep = valid & inside
    slots = _slot_index(sec[keep])
    counts = np.bincount(slots, minlength=168).astype(np.int64).reshape(7, 24)
    exposure = rate = rate_by_hour = rate_by_weekday = None
    if bounds is not None:
        exposure = _exposure(bounds[0], bounds[1], zone)
        rate = _ratio(counts, exposure)
        rate_by_hour = _ratio(counts.sum(axis=0), exposure.sum(axis=0))
        rate_by_weekday = _ratio(counts.sum(axis=1), exposure.sum(axis=1))
    return HourWeekday(
        counts=counts,
        by_hour=counts.sum(axis=0),
        by_weekday=counts.sum(axis=1),
        total=int(counts.sum()),
        exposure_hours=exposure,
        rate=rate,
        rate_by_hour=rate_by_hour,
        rate_by_weekday=rate_by_weekday,
        n_missing=n_missing,
        n_outside=n_outside,
    )


# ------------------------------------------------------------------------------ night share


@dataclass(frozen=True)
class NightShare:
    """Share of events in a daily local time window.

    Attributes:
        night: events whose local time of day is in ``[start, end)``.
        total: events with a time (NaT excluded, counted in ``n_missing``).
        share: night / total; NaN when total is 0.
        ci_low, ci_high: exact (Clopper-Pearson) confidence interval of the share at
            ``confidence``; NaN when total is 0.
        start, end: the window as "HH:MM[:SS]" strings, local time.
    """

    night: int
    total: int
    share: float
    ci_low: float
    ci_high: float
    confidence: float
    start: str
    end: str
    n_missing: int


def _time_of_day(value: str | _dt.time, what: str) -> int:
    if isinstance(value, _dt.time):
        parsed = value
    else:
        try:
            parsed = _dt.time.fromisoformat(str(value))
        except ValueError as exc:
            raise UsageError(f"{what} {value!r} is not a time of day like '22:00'") from exc
    if parsed.tzinfo is not None:
        raise UsageError(f"{what} must be a local time of day without a time zone")
    return parsed.hour * 3600 + parsed.minute * 60 + parsed.second


def _clopper_pearson(k: np.ndarray, n: np.ndarray, confidence: float) -> tuple[
    np.ndarray, np.ndarray
]:
    """Exact two-sided interval for a binomial proportion k/n; NaN where n == 0."""
    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    tail = (1.0 - confidence) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        low = np.where(k > 0, stats.beta.ppf(tail, k, n - k + 1), 0.0)
        high = np.where(k < n, stats.beta.ppf(1.0 - tail, k + 1, n - k), 1.0)
    empty = n <= 0
    return np.where(empty, np.nan, low), np.where(empty, np.nan, high)


def night_share(
    t_local: np.ndarray | Sequence[object],
    *,
    start: str | _dt.time = "22:00",
    end: str | _dt.time = "06:00",
    confidence: float = 0.95,
) -> NightShare:
    """Count events in the local daily window ``[start, end)``.

    The window is half-open: with the defaults an event at 22:00:00 is night and one at
    06:00:00 is not. ``start > end`` wraps across midnight (22:00-06:00); ``start < end`` is a
    window within one day (e.g. school hours 08:00-16:00).

    Args:
        t_local: (n,) naive local times (datetime64, NaT allowed and excluded).
        start, end: "HH:MM" or "HH:MM:SS" strings or ``datetime.time``.
        confidence: level of the exact interval of the share, in (0, 1).

    Raises:
        UsageError: start == end (the window would be empty or the whole day), a bad time.
    """
    s = _time_of_day(start, "start")
    e = _time_of_day(end, "end")
    if s == e:
        raise UsageError("night window start and end are equal: the window would be empty "
                         "or the whole day; give two different times like 22:00 and 06:00")
    _check_confidence(confidence)
    sec, valid = _seconds(t_local)
    tod = sec[valid] % _DAY
    inside = (tod >= s) & (tod < e) if s < e else (tod >= s) | (tod < e)
    night = int(inside.sum())
    total = int(valid.sum())
    low, high = _clopper_pearson(np.array(night), np.array(total), confidence)
    return NightShare(
        night=night,
        total=total,
        share=night / total if total else float("nan"),
        ci_low=float(low),
        ci_high=float(high),
        confidence=confidence,
        start=_format_tod(s),
        end=_format_tod(e),
        n_missing=int((~valid).sum()),
    )


def _format_tod(seconds: int) -> str:
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h:02d}:{m:02d}" if s == 0 else f"{h:02d}:{m:02d}:{s:02d}"


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise UsageError(f"confidence must be between 0 and 1 (e.g. 0.95), got {confidence}")


# --------------------------------------------------------------------------- monthly series


@dataclass(frozen=True)
class Seasonality:
    """Classical multiplicative decomposition of a monthly series; arrays (m,) like its months.

    Attributes:
        trend: centred 2x12 moving average of counts (NaN for the first and last six full
            months and for partial months).
        seasonal: the seasonal index of each month's calendar month (NaN for partial months).
        seasonal_index: (12,) January..December, mean exactly 1.
        adjusted: counts / seasonal, the seasonally adjusted series (NaN for partial months).
        residual: counts / (trend * seasonal).
    """

    trend: np.ndarray
    seasonal: np.ndarray
    seasonal_index: np.ndarray
    adjusted: np.ndarray
    residual: np.ndarray


@dataclass(frozen=True)
class MonthlySeries:
    """Events per local calendar month, with a classical seasonal decomposition when possible.

    Every array has shape (m,), one entry per month from the month of ``start`` to the month
    of the last second before ``end``, months without events included (count 0).

    Attributes:
        months: datetime64[M].
        counts: int64 events in the month and inside ``[start, end)``.
        days: float64 days of the month inside the period (the exposure; partial at the edges).
        daily_rate: counts / days, events per day; ``per_30_days``: the same times 30, a
            month-length-neutral monthly figure (February is not made to look quiet).
        full: bool, the whole month lies inside the period.
        seasonality: the decomposition (see ``Seasonality``), or None when it is not possible.
        reason: why ``seasonality`` is None (None when there is a decomposition).
        start, end: the period used, local datetime64[s]; ``n_outside``/``n_missing`` events
            outside it / without a time.
    """

    months: np.ndarray
    counts: np.ndarray
    days: np.ndarray
    daily_rate: np.ndarray
    per_30_days: np.ndarray
    full: np.ndarray
    seasonality: Seasonality | None
    reason: str | None
    start: np.datetime64 | None
    end: np.datetime64 | None
    n_outside: int
    n_missing: int


def _month_number(sec: np.ndarray) -> np.ndarray:
    """Local seconds -> months since 1970-01 (int64)."""
    return sec.astype("datetime64[s]").astype("datetime64[M]").view(np.int64)


def _month_start(month: np.ndarray | int) -> np.ndarray:
    return np.asarray(month, dtype=np.int64).astype("datetime64[M]").astype(
        "datetime64[s]"
    ).view(np.int64)


def monthly_series(
    t_local: np.ndarray | Sequence[object],
    *,
    start: DateLike | None = None,
    end: DateLike | None = None,
) -> MonthlySeries:
    """Monthly counts over ``[start, end)`` and, with >= 24 full months, seasonality.

    The decomposition is the classical multiplicative one (as in statsmodels'
    ``seasonal_decompose(model="multiplicative")``) on the full months only: trend = centred
    2x12 moving average; seasonal index of a calendar month = mean of counts/trend over the
    years where the trend exists, rescaled so the twelve indices average 1; adjusted =
    counts / index. It works on raw counts, so month length is part of the seasonal index.

    Args:
        t_local: (n,) naive local times (datetime64, NaT allowed and counted as missing).
        start, end: local period bounds, half-open. Defaults: the first day of the earliest
            event's month, and the first day of the month after the latest event.

    Raises:
        UsageError: end <= start, or a bound that is not a date.
    """
    sec, valid = _seconds(t_local)
    n_missing = int((~valid).sum())
    good = sec[valid]
    if start is not None:
        s0 = _to_second(start, None, "start")
    elif good.size:
        s0 = int(_month_start(_month_number(good.min())))
    else:
        s0 = None
    if end is not None:
        s1 = _to_second(end, None, "end")
    elif good.size:
        s1 = int(_month_start(_month_number(good.max()) + 1))
    else:
        s1 = None
    if s0 is None or s1 is None:
        # No events and no complete period: the natural result is an empty series.
        empty_f = np.zeros(0, dtype=np.float64)
        return MonthlySeries(
            months=np.zeros(0, dtype="datetime64[M]"),
            counts=np.zeros(0, dtype=np.int64),
            days=empty_f,
            daily_rate=empty_f,
            per_30_days=empty_f,
            full=np.zeros(0, dtype=bool),
            seasonality=None,
            reason="no events and no period: nothing to decompose",
            start=None if s0 is None else np.datetime64(s0, "s"),
            end=None if s1 is None else np.datetime64(s1, "s"),
            n_outside=0,
            n_missing=n_missing,
        )
    if s1 <= s0:
        raise UsageError(f"end {np.datetime64(s1, 's')} must be after start "
                         f"{np.datetime64(s0, 's')}")

    inside = (good >= s0) & (good < s1)
    m0 = int(_month_number(np.int64(s0)))
    m1 = int(_month_number(np.int64(s1 - 1)))
    month_ids = np.arange(m0, m1 + 1, dtype=np.int64)
    counts = np.bincount(_month_number(good[inside]) - m0, minlength=month_ids.size)
    counts = counts.astype(np.int64)
    first = _month_start(month_ids)
    after = _month_start(month_ids + 1)
    days = (np.minimum(after, s1) - np.maximum(first, s0)) / _DAY
    full = (first >= s0) & (after <= s1)
    daily_rate = counts / days

    seasonality, reason = _decompose(counts, full, month_ids)
    return MonthlySeries(
        months=month_ids.astype("datetime64[M]"),
        counts=counts,
        days=days,
        daily_rate=daily_rate,
        per_30_days=daily_rate * 30.0,
        full=full,
        seasonality=seasonality,
        reason=reason,
        start=np.datetime64(s0, "s"),
        end=np.datetime64(s1, "s"),
        n_outside=int((~inside).sum()),
        n_missing=n_missing,
    )


def _decompose(
    counts: np.ndarray, full: np.ndarray, month_ids: np.ndarray
) -> tuple[Seasonality | None, str | None]:
    """Classical multiplicative decomposition on the full months (contiguous by construction)."""
    n_full = int(full.sum())
    if n_full < _MIN_MONTHS_FOR_SEASONALITY:
        return None, (f"seasonality needs at least {_MIN_MONTHS_FOR_SEASONALITY} full months, "
                      f"the period has {n_full}")
    idx = np.flatnonzero(full)
    x = counts[idx].astype(np.float64)
    weights = np.r_[0.5, np.ones(11), 0.5] / 12.0
    centre = np.convolve(x, weights, mode="valid")  # positions 6 .. n_full-7
    if np.any(centre <= 0):
        return None, ("the 12-month moving average is zero somewhere (a year without events): "
                      "a multiplicative decomposition needs events throughout")
    ratio = x[6 : 6 + centre.size] / centre
    calendar = month_ids[idx] % 12  # 0 = January, as months count from 1970-01
    ratio_calendar = calendar[6 : 6 + centre.size]
    sums = np.bincount(ratio_calendar, weights=ratio, minlength=12)
    seen = np.bincount(ratio_calendar, minlength=12)
    raw = sums / seen  # >= 24 full months: every calendar month has at least one ratio
    index = raw / raw.mean()

    n = counts.size
    trend = np.full(n, np.nan)
    trend[idx[6 : 6 + centre.size]] = centre
    seasonal = np.full(n, np.nan)
    seasonal[idx] = index[calendar]
    adjusted = counts / seasonal
    residual = counts / (trend * seasonal)
    return Seasonality(trend=trend, seasonal=seasonal, seasonal_index=index, adjusted=adjusted,
                       residual=residual), None
