"""Anomalies in hourly counts against the expected profile, merged into episodes.

1. **Expected profile** (:func:`seasonal_profile`): for every hour, the median of the same hour
   of the week over the previous ``weeks`` weeks (only the past, so a live detector can compute
   it the same way). A long window (a year) keeps a weeks-long disruption such as a lockdown
   from becoming "normal"; a short one (a few weeks) follows the recent level. The caller may
   pass any other expectation, e.g. a :mod:`~urbansec.crowd.nowcast` forecast.
2. **Robust z** (:func:`detect_anomalies`): the residual ``r = log1p(observed) -
   log1p(expected)`` (a ratio, so busy and quiet counters compare), centred on its median and
   divided by 1.4826 x its median absolute deviation (the MAD's consistency factor for normal
   data), separately for each hour of the day, because a quiet 4 a.m. hour varies more in
   ratio terms than a busy noon.
3. **Episodes**: hours with ``|z| >= threshold`` of one sign form runs; runs of the same sign
   separated by at most ``max_gap`` ordinary hours merge into one episode (a lockdown's quiet
   nights do not split it into days). Episodes shorter than ``min_hours`` are dropped.
4. Across counters (:func:`merge_across_series`): hours when at least a given share of the
   counters are anomalous in the same direction form common episodes, listing the counters
   involved and scored by the sum of their ``|z|``, so a city-wide disruption outranks one
   counter's glitch.

Arrays: hourly values ``(n_hours,)`` oldest first, NaN for missing hours (never anomalous).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from urbansec.crowd._hourly import WEEK, lagged, nanquantile
from urbansec.errors import UsageError

__all__ = ["Anomalies", "CombinedEpisode", "Episode", "detect_anomalies", "merge_across_series",
           "seasonal_profile"]

MAD_TO_SD = 1.4826


def seasonal_profile(y: ArrayLike, weeks: int = 8, season: int = WEEK,
                     min_weeks: int = 2) -> NDArray[np.float64]:
    """Expected count of every hour: the median of the same hour ``1..weeks`` seasons earlier
    (NaN where fewer than ``min_weeks`` of them were measured)."""
    values = np.asarray(y, dtype=float)
    if values.ndim != 1:
        raise UsageError("seasonal_profile takes one series")
    if weeks < 1 or not 1 <= min_weeks <= weeks:
        raise UsageError("weeks must be >= 1 and min_weeks between 1 and weeks")
    stack = np.stack([lagged(values[None, :], k * season)[0] for k in range(1, weeks + 1)])
    enough = (~np.isnan(stack)).sum(axis=0) >= min_weeks
    return np.where(enough, nanquantile(stack, 0.5, axis=0), np.nan)


@dataclass(frozen=True)
class Episode:
    """A run of anomalous hours ``[start, end]`` (indices, inclusive).

    ``sign``: +1 busier, -1 quieter than expected; ``peak_z``: the largest ``|z|`` (signed);
    ``score``: the sum of ``|z|`` over its anomalous hours; ``observed``/``expected``: the
    counts over the episode's measured hours."""

    start: int
    end: int
    sign: int
    peak_z: float
    score: float
    observed: float
    expected: float

    @property
    def hours(self) -> int:
        return self.end - self.start + 1


@dataclass(frozen=True, eq=False)
class Anomalies:
    """``z``: robust z of every hour (NaN where unknown); ``episodes`` in time order."""

    z: NDArray[np.float64]
    episodes: list[Episode]


def _robust_z(residual: NDArray[np.float64], period: int) -> NDArray[np.float64]:
    z = np.full(residual.shape, np.nan)
    phase = np.arange(residual.size) % period
    for p in range(period):
        sel = phase == p
        r = residual[sel]
        if np.all(np.isnan(r)):
            continue
        centre = nanquantile(r, 0.5)
        mad = nanquantile(np.abs(r - centre), 0.5) * MAD_TO_SD
        if not mad > 0:
            continue
        z[sel] = (r - centre) / mad
    return z


def detect_anomalies(observed: ArrayLike, expected: ArrayLike, *, threshold: float = 4.0,
                     max_gap: int = 3, min_hours: int = 1, period: int = 24) -> Anomalies:
    """Robust z of each hour against ``expected`` and the episodes (see the module notes).

    Args:
        observed, expected: hourly counts, same shape ``(n_hours,)``; NaN where unknown.
        threshold: ``|z|`` that makes an hour anomalous.
        max_gap: ordinary hours allowed inside an episode between anomalous runs.
        min_hours: fewest hours (first to last anomalous hour) an episode must span.
        period: hours per cycle of the scale (24: each hour of the day has its own spread).
    """
    obs = np.asarray(observed, dtype=float)
    exp = np.asarray(expected, dtype=float)
    if obs.shape != exp.shape or obs.ndim != 1:
        raise UsageError("observed and expected must be two series of the same length")
    if threshold <= 0 or max_gap < 0 or min_hours < 1 or period < 1:
        raise UsageError("threshold > 0, max_gap >= 0, min_hours >= 1 and period >= 1")
    if np.any(obs < 0) or np.any(exp < 0):
        raise UsageError("counts cannot be negative")
    z = _robust_z(np.log1p(obs) - np.log1p(exp), period)
    episodes: list[Episode] = []
    for sign in (1, -1):
        flagged = np.flatnonzero(np.nan_to_num(sign * z) >= threshold)
        if flagged.size == 0:
            continue
        breaks = np.flatnonzero(np.diff(flagged) > max_gap + 1)
        for run in np.split(flagged, breaks + 1):
            start, end = int(run[0]), int(run[-1])
            if end - start + 1 < min_hours:
                continue
            span = slice(start, end + 1)
            measured = ~np.isnan(obs[span]) & ~np.isnan(exp[span])
            peak = run[np.argmax(np.abs(z[run]))]
            episodes.append(Episode(start, end, sign, float(z[peak]),
                                    float(np.abs(z[run]).sum()),
                                    float(obs[span][measured].sum()),
                                    float(exp[span][measured].sum())))
    episodes.sort(key=lambda e: e.start)
    return Anomalies(z, episodes)


@dataclass(frozen=True)
class CombinedEpisode:
    """Hours ``[start, end]`` when many series were anomalous in the same direction: the
    series flagged within it, the summed ``|z|`` of their flagged hours, the largest
    ``|z|`` (signed) and the largest share of measured series flagged in one hour."""

    start: int
    end: int
    sign: int
    series: tuple[str, ...]
    score: float
    peak_z: float
    peak_share: float


def merge_across_series(z: Mapping[str, ArrayLike], *, threshold: float = 4.0,
                        min_share: float = 0.25, max_gap: int = 3, min_hours: int = 1
                        ) -> list[CombinedEpisode]:
    """Episodes common to many series (e.g. a city's counters), highest score first.

    An hour is a common anomaly when at least ``min_share`` of the series measured in that
    hour have ``z >= threshold`` (or ``<= -threshold``, for quieter). Runs of such hours merge
    across gaps of up to ``max_gap`` hours, like single-series episodes. Requiring a share of
    the series, rather than merging every overlapping episode, keeps one counter's months-long
    fault (road works, a broken sensor) from swallowing every other episode that overlaps it.

    Args:
        z: the robust z of each series (``Anomalies.z``), all of the same length.
    """
    if not 0 < min_share <= 1:
        raise UsageError("min_share must be in (0, 1]")
    names = list(z)
    matrix = np.vstack([np.asarray(z[n], dtype=float) for n in names])
    measured = (~np.isnan(matrix)).sum(axis=0)
    combined: list[CombinedEpisode] = []
    for sign in (1, -1):
        flagged = np.nan_to_num(sign * matrix) >= threshold
        share = flagged.sum(axis=0) / np.maximum(measured, 1)
        hours = np.flatnonzero(share >= min_share)
        if hours.size == 0:
            continue
        breaks = np.flatnonzero(np.diff(hours) > max_gap + 1)
        for run in np.split(hours, breaks + 1):
            start, end = int(run[0]), int(run[-1])
            if end - start + 1 < min_hours:
                continue
            cells = flagged[:, start: end + 1]
            values = np.where(cells, np.abs(matrix[:, start: end + 1]), 0.0)
            peak_series, peak_hour = np.unravel_index(np.argmax(values), values.shape)
            combined.append(CombinedEpisode(
                start, end, sign, tuple(n for n, hit in zip(names, cells.any(axis=1),
                                                            strict=True) if hit),
                float(values.sum()), float(matrix[peak_series, start + peak_hour]),
                float(share[start: end + 1].max())))
    combined.sort(key=lambda c: -c.score)
    return combined
