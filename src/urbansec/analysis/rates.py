"""Rates per area (per 1,000 residents, per km2, per 1,000 visitors ...) and crime-mix quotients.

Counts in small areas are small, so every rate carries an exact Poisson (Garwood 1936)
confidence interval: for k events the interval of the expected count is
``[chi2.ppf(a/2, 2k) / 2, chi2.ppf(1 - a/2, 2k + 2) / 2]`` (lower bound 0 when k = 0), divided
by the denominator and multiplied by ``per``. The interval is conservative (coverage at least
the nominal level), which is the honest choice for a table that ranks areas.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from urbansec.errors import UsageError


@dataclass(frozen=True)
class AreaRates:
    """Rates per ``per`` denominator units with exact intervals; every array is (n,).

    Attributes:
        counts: int64 events per area.
        denominators: float64 denominators as given (NaN where missing).
        rate: counts / denominator * per; NaN where ``has_denominator`` is False.
        ci_low, ci_high: exact Poisson (Garwood) interval of the rate at ``confidence``;
            NaN where ``has_denominator`` is False.
        has_denominator: bool, the denominator is present and > 0. An area with events but
            no population (a park, an airport) gets no rate rather than an infinite one.
    """

    counts: np.ndarray
    denominators: np.ndarray
    rate: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    has_denominator: np.ndarray
    per: float
    confidence: float

    @property
    def n_without_denominator(self) -> int:
        return int((~self.has_denominator).sum())


def whole_counts(values: object, what: str) -> np.ndarray:
    """``values`` as int64 counts, or a UsageError naming ``what`` and what is wrong."""
    arr = np.asarray(values)
    if arr.size and arr.dtype.kind not in "biuf":
        raise UsageError(f"{what} must be numbers, got {arr.dtype}")
    as_float = arr.astype(np.float64)
    if not np.all(np.isfinite(as_float)):
        raise UsageError(f"{what} contain missing or infinite values; use 0 for none")
    if np.any(as_float < 0) or np.any(as_float != np.round(as_float)):
        raise UsageError(f"{what} must be whole numbers >= 0")
    return as_float.astype(np.int64)


def _denominators(values: object, n: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype == object:
        # None marks a missing denominator, as it comes from a table with gaps.
        arr = np.array([np.nan if v is None else v for v in arr.reshape(-1)])
    try:
        out = arr.astype(np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise UsageError("denominators must be numbers (None or NaN where missing)") from exc
    if out.size != n:
        raise UsageError(f"{n} counts but {out.size} denominators; give one per area")
    if np.any(out[~np.isnan(out)] < 0):
        raise UsageError("denominators must not be negative (use NaN or None when unknown)")
    if np.any(np.isinf(out)):
        raise UsageError("denominators must be finite")
    return out


def poisson_interval(
    counts: np.ndarray | Sequence[int], confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Exact (Garwood) two-sided interval of a Poisson mean for observed counts, elementwise.

    Returns:
        (low, high) float64 arrays shaped like ``counts``; low is 0 where the count is 0.
    """
    _check_confidence(confidence)
    k = whole_counts(counts, "counts").astype(np.float64)
    tail = (1.0 - confidence) / 2.0
    with np.errstate(invalid="ignore"):
        low = np.where(k > 0, stats.chi2.ppf(tail, 2.0 * k) / 2.0, 0.0)
    high = stats.chi2.ppf(1.0 - tail, 2.0 * k + 2.0) / 2.0
    return low, high


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise UsageError(f"confidence must be between 0 and 1 (e.g. 0.95), got {confidence}")


def area_rates(
    counts: np.ndarray | Sequence[int],
    denominators: np.ndarray | Sequence[float | None],
    *,
    per: float = 1000.0,
    confidence: float = 0.95,
) -> AreaRates:
    """Events per ``per`` units of denominator for each area, with exact Poisson intervals.

    Args:
        counts: (n,) whole event counts per area.
        denominators: (n,) population (or area in km2, visitors ...) per area; NaN or None
            where unknown. Missing or zero gives a NaN rate and ``has_denominator`` False.
        per: rate multiplier, e.g. 1000.0 for "per 1,000 residents", 1.0 for "per km2".
        confidence: interval level in (0, 1).

    Raises:
        UsageError: negative or fractional counts, negative denominators, lengths differ,
            per <= 0, confidence outside (0, 1).
    """
    k = whole_counts(counts, "counts").reshape(-1)
    d = _denominators(denominators, k.size)
    if not np.isfinite(per) or per <= 0:
        raise UsageError(f"per must be a positive number like 1000, got {per}")
    low, high = poisson_interval(k, confidence)
    ok = np.isfinite(d) & (d > 0)
    safe = np.where(ok, d, 1.0)  # avoids 0-division; masked below
    scale = np.where(ok, per / safe, np.nan)
    return AreaRates(
        counts=k,
        denominators=d,
        rate=k * scale,
        ci_low=low * scale,
        ci_high=high * scale,
        has_denominator=ok,
        per=float(per),
        confidence=confidence,
    )


def location_quotient(
    counts_area: np.ndarray | Sequence[float],
    counts_area_total: np.ndarray | Sequence[float],
    counts_category_city: np.ndarray | float,
    counts_city: np.ndarray | float,
) -> np.ndarray:
    """Crime-mix location quotient: how over-represented a category is in an area's crime.

    ``LQ = (counts_area / counts_area_total) / (counts_category_city / counts_city)``. LQ = 2
    means the category is twice as large a share of this area's crime as of the city's. It is
    about mix, not level: an area with little crime can have a high LQ for burglary. Use it
    beside rates, and treat LQs from areas with few events with care (no interval is given).

    Arguments broadcast with numpy rules. Two common uses:

    - one category: ``counts_area`` (n,) events of the category per area,
      ``counts_area_total`` (n,) all events per area, scalars for the city;
    - a whole table ``T`` of shape (areas, categories):
      ``location_quotient(T, T.sum(1, keepdims=True), T.sum(0), T.sum())`` -> (areas,
      categories).

    Returns:
        float64 array; NaN where an area has no events at all or the category none in the city.

    Raises:
        UsageError: negative or non-finite counts, shapes that do not broadcast.
    """
    parts = [np.asarray(v, dtype=np.float64) for v in
             (counts_area, counts_area_total, counts_category_city, counts_city)]
    for value in parts:
        if not np.all(np.isfinite(value)) or np.any(value < 0):
            raise UsageError("location quotient counts must be finite and >= 0")
    try:
        a, at, cc, c = np.broadcast_arrays(*parts)
    except ValueError as exc:
        raise UsageError("location quotient inputs have shapes that do not match: "
                         f"{[p.shape for p in parts]}") from exc
    area_share = _divide(a, at)
    city_share = _divide(cc, c)
    return _divide(area_share, city_share)


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(np.broadcast_shapes(np.shape(num), np.shape(den)), np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out
