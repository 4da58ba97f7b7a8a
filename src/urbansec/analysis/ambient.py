"""Incidents per 1,000 passers-by: the ambient-population rate of busy (night-time) areas.

A city centre at 23:00 has few residents and many visitors, so incidents per 1,000 residents
makes it look far more dangerous than it is for the people actually there. Where people
counters measure footfall, the fairer denominator is the number of people passing: incidents
per 1,000 passers-by (Boivin & Felson's "ambient population" rate). This module is the pure
arithmetic of that view:

- the period is a sequence of **slots**, one per absolute hour (a DST day has 23 or 25 of
  them; each is labelled with its local hour of day, so nothing is lost or counted twice);
- each slot has the footfall counted in it (NaN where no counter reported) and the incidents
  that happened in it;
- a rate only uses the slots **with** footfall (incidents in hours nobody counted have no
  denominator), and says how many slots that was (coverage);
- rates carry exact Poisson (Garwood) intervals (``analysis.rates``), and the night-versus-day
  rate ratio the exact conditional interval (Clopper-Pearson on the night share of incidents,
  given the total, mapped to the ratio scale).

Footfall counters see the people passing a few points, not every visitor of the area: the rate
is per 1,000 *counted* passers-by, a proxy whose level depends on where the counters stand.
Compare areas, hours and periods measured by the same counters, not absolute levels.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from urbansec.analysis.rates import area_rates, whole_counts
from urbansec.errors import UsageError

HOURS = 24
_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


@dataclass(frozen=True)
class NightWindow:
    """Local hours ``[start_hour, end_hour)``, crossing midnight when ``end_hour <=
    start_hour`` (22:00-06:00 is hours 22, 23, 0 ... 5). Whole hours only: footfall is
    counted per hour, so a window edge inside an hour could not be honoured."""

    start_hour: int
    end_hour: int  # 1..24 (24 means midnight at the end of the day)

    def __post_init__(self) -> None:
        if not 0 <= self.start_hour <= 23 or not 1 <= self.end_hour <= 24:
            raise UsageError("night window hours must be 00-23 (start) and 01-24 (end)")
        if self.start_hour == self.end_hour % HOURS:
            raise UsageError("the night window must not be empty nor the whole day "
                             "(start and end differ, e.g. 22:00-06:00)")

    @classmethod
    def parse(cls, text: str) -> NightWindow:
        """``HH:MM-HH:MM`` local time, e.g. ``22:00-06:00``; minutes must be ``00``."""
        match = _WINDOW.match(text or "")
        if match is None:
            raise UsageError(f"night window {text!r}: use HH:MM-HH:MM, e.g. 22:00-06:00")
        start_h, start_m, end_h, end_m = (int(g) for g in match.groups())
        if start_m or end_m:
            raise UsageError(f"night window {text!r}: whole hours only (footfall is counted "
                             "per hour), e.g. 22:00-06:00")
        if start_h > 23 or end_h > 24:
            raise UsageError(f"night window {text!r}: hours go from 00 to 24")
        if end_h == 0:
            end_h = 24
        return cls(start_h, end_h)

    @property
    def label(self) -> str:
        return f"{self.start_hour:02d}:00-{self.end_hour % HOURS:02d}:00"

    def mask(self) -> np.ndarray:
        """(24,) bool: which local hours of day are night."""
        hours = np.arange(HOURS)
        if self.start_hour < self.end_hour:
            return (hours >= self.start_hour) & (hours < self.end_hour)
        return (hours >= self.start_hour) | (hours < self.end_hour % HOURS)

    def contains(self, hour_of_day: np.ndarray) -> np.ndarray:
        return self.mask()[np.asarray(hour_of_day, dtype=np.int64)]


@dataclass(frozen=True)
class Rates:
    """Events per ``per`` units of exposure with exact intervals; arrays of one shape.

    ``rate``, ``ci_low``, ``ci_high`` are NaN where the exposure is 0 or missing."""

    events: np.ndarray
    exposure: np.ndarray
    rate: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray


def rates_per(events: np.ndarray | Sequence[int], exposure: np.ndarray | Sequence[float],
              *, per: float = 1000.0, confidence: float = 0.95) -> Rates:
    """Events per ``per`` passers-by (or residents), Garwood interval; elementwise."""
    events_a = np.asarray(events)
    shape = events_a.shape
    exposure_a = np.asarray(exposure, dtype=float)
    if exposure_a.shape != shape:
        raise UsageError(f"{events_a.size} event counts but {exposure_a.size} exposures")
    result = area_rates(events_a.reshape(-1), exposure_a.reshape(-1), per=per,
                        confidence=confidence)
    return Rates(events=result.counts.reshape(shape), exposure=exposure_a,
                 rate=np.asarray(result.rate).reshape(shape),
                 ci_low=np.asarray(result.ci_low).reshape(shape),
                 ci_high=np.asarray(result.ci_high).reshape(shape))


@dataclass(frozen=True)
class RateRatio:
    """``(events_a / exposure_a) / (events_b / exposure_b)`` with its exact interval.

    NaN when undefined (no events at all, or an exposure of 0); ``value`` and ``ci_high``
    are ``inf`` when ``events_b`` is 0 but ``events_a`` is not."""

    value: float
    ci_low: float
    ci_high: float


def rate_ratio(events_a: int, exposure_a: float, events_b: int, exposure_b: float, *,
               confidence: float = 0.95) -> RateRatio:
    """Exact conditional interval of a Poisson rate ratio.

    Given ``n = events_a + events_b``, ``events_a`` is binomial with ``p = R e_a / (R e_a +
    e_b)``, where ``R`` is the ratio; the Clopper-Pearson interval of ``p`` maps to ``R =
    p / (1 - p) * e_b / e_a``. Like Garwood's, the interval is conservative.
    """
    a, b = (int(v) for v in whole_counts([events_a, events_b], "event counts"))
    if not 0.0 < confidence < 1.0:
        raise UsageError(f"confidence must be between 0 and 1, got {confidence}")
    e_a, e_b = float(exposure_a), float(exposure_b)
    n = a + b
    if n == 0 or not (np.isfinite(e_a) and np.isfinite(e_b)) or e_a <= 0 or e_b <= 0:
        return RateRatio(np.nan, np.nan, np.nan)
    tail = (1.0 - confidence) / 2.0
    p_low = stats.beta.ppf(tail, a, n - a + 1) if a > 0 else 0.0
    p_high = stats.beta.ppf(1.0 - tail, a + 1, n - a) if a < n else 1.0
    scale = e_b / e_a

    def to_ratio(p: float) -> float:
        return np.inf if p >= 1.0 else float(p / (1.0 - p) * scale)

    value = np.inf if b == 0 else (a / e_a) / (b / e_b)
    return RateRatio(float(value), to_ratio(float(p_low)), to_ratio(float(p_high)))


@dataclass(frozen=True)
class Group:
    """Totals of a set of slots (the night, the day, or the whole period)."""

    slots: int
    slots_with_footfall: int
    footfall: float  # summed over the slots with footfall
    incidents: int  # all incidents of the slots
    incidents_counted: int  # incidents of the slots with footfall: the rate's numerator
    rate: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class AmbientProfile:
    """The hour-of-day profile of a period and its night/day totals.

    Per local hour of day (arrays of shape (24,)): ``slots`` (how many slots of the period
    fall on that hour: 1 per day, DST days aside), ``slots_with_footfall``, ``footfall``,
    ``incidents``, ``incidents_counted`` and the rate with its interval (NaN without footfall).
    """

    night_window: NightWindow
    slots: np.ndarray
    slots_with_footfall: np.ndarray
    footfall: np.ndarray
    incidents: np.ndarray
    incidents_counted: np.ndarray
    rate: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    night: Group
    day: Group
    total: Group
    night_vs_day: RateRatio
    per: float
    confidence: float

    @property
    def coverage(self) -> float:
        """The share of the period's slots with footfall (0 for an empty period)."""
        return self.total.slots_with_footfall / self.total.slots if self.total.slots else 0.0


def ambient_profile(hour_of_day: np.ndarray | Sequence[int],
                    footfall: np.ndarray | Sequence[float],
                    incidents: np.ndarray | Sequence[int], night: NightWindow, *,
                    per: float = 1000.0, confidence: float = 0.95) -> AmbientProfile:
    """Hour-of-day and night/day rates per ``per`` passers-by from slot arrays.

    Args:
        hour_of_day: (n,) local hour (0-23) of each slot of the period.
        footfall: (n,) people counted in each slot; NaN where no counter reported.
        incidents: (n,) whole incidents that happened in each slot.
        night: the night window; every other hour is day.
    """
    hour = np.asarray(hour_of_day, dtype=np.int64).reshape(-1)
    flow = np.asarray(footfall, dtype=float).reshape(-1)
    counts = whole_counts(incidents, "incident counts").reshape(-1)
    if not (hour.size == flow.size == counts.size):
        raise UsageError(f"slot arrays differ in length: {hour.size} hours, {flow.size} "
                         f"footfall values, {counts.size} incident counts")
    if hour.size and (hour.min() < 0 or hour.max() >= HOURS):
        raise UsageError("hours of day must be 0-23")
    if np.any(np.isinf(flow)) or np.any(flow[np.isfinite(flow)] < 0):
        raise UsageError("footfall must be finite and >= 0 (NaN where not counted)")
    counted = np.isfinite(flow)
    flow0 = np.where(counted, flow, 0.0)
    counts_counted = np.where(counted, counts, 0)

    def by_hour(values: np.ndarray) -> np.ndarray:
        return np.bincount(hour, weights=values, minlength=HOURS)

    slots = np.bincount(hour, minlength=HOURS)
    slots_with = np.bincount(hour[counted], minlength=HOURS)
    hour_footfall = by_hour(flow0)
    hour_incidents = np.bincount(hour, weights=counts, minlength=HOURS).astype(np.int64)
    hour_counted = np.bincount(hour, weights=counts_counted, minlength=HOURS).astype(np.int64)
    hour_rates = rates_per(hour_counted, np.where(slots_with > 0, hour_footfall, np.nan),
                           per=per, confidence=confidence)
    is_night = night.contains(hour) if hour.size else np.zeros(0, dtype=bool)

    def group(selected: np.ndarray) -> Group:
        with_flow = selected & counted
        exposure = float(flow0[with_flow].sum()) if with_flow.any() else np.nan
        numerator = int(counts[with_flow].sum())
        rate = rates_per([numerator], [exposure], per=per, confidence=confidence)
        return Group(slots=int(selected.sum()), slots_with_footfall=int(with_flow.sum()),
                     footfall=float(flow0[with_flow].sum()),
                     incidents=int(counts[selected].sum()), incidents_counted=numerator,
                     rate=float(rate.rate[0]), ci_low=float(rate.ci_low[0]),
                     ci_high=float(rate.ci_high[0]))

    night_group = group(is_night)
    day_group = group(~is_night)
    total_group = group(np.ones(hour.size, dtype=bool))
    ratio = rate_ratio(night_group.incidents_counted, night_group.footfall,
                       day_group.incidents_counted, day_group.footfall, confidence=confidence)
    return AmbientProfile(
        night_window=night, slots=slots, slots_with_footfall=slots_with,
        footfall=hour_footfall, incidents=hour_incidents, incidents_counted=hour_counted,
        rate=hour_rates.rate, ci_low=hour_rates.ci_low, ci_high=hour_rates.ci_high,
        night=night_group, day=day_group, total=total_group, night_vs_day=ratio,
        per=float(per), confidence=confidence)


def slot_index(instants: np.ndarray, start: np.datetime64, slots: int) -> np.ndarray:
    """Which hour slot of a period starting at ``start`` each instant falls in (-1 outside
    ``[start, start + slots hours)``); instants and start as UTC datetime64."""
    t = np.asarray(instants).astype("datetime64[s]")
    offset = (t - np.datetime64(start, "s")).astype(np.int64)
    index = np.floor_divide(offset, 3600)
    index[(offset < 0) | (index >= slots)] = -1
    if t.size:
        index[np.isnat(t)] = -1
    return index
