"""Where a zone is heading: the robust rate of change over the last minutes and the minutes
left until a threshold at that rate.

The rate is the Theil-Sen slope (the median of the slopes between every pair of minutes;
H. Theil 1950, P. K. Sen 1968) over the last ``window`` minutes: one miscounted minute or a
burst from a sensor reconnecting moves it little, unlike a least-squares slope. The level "now"
is the Theil-Sen line at the last minute (intercept ``median(y) - slope x median(t)``, the one
``scipy.stats.theilslopes`` reports), not the last raw value, for the same reason.

The estimated time to a threshold is ``(threshold - level) / slope`` minutes when the level is
below the threshold and rising; 0 when it is already at or above; infinity when it is flat or
falling; NaN when the window holds fewer than ``min_points`` measurements.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from urbansec.errors import UsageError

__all__ = ["TrendResult", "minutes_to_threshold", "theil_sen"]


@dataclass(frozen=True, eq=False)
class TrendResult:
    """Per series (shape ``(n_series,)``, or scalars' 0-d arrays for one series).

    Attributes:
        slope: units per minute (e.g. persons/m² per minute).
        level: the fitted value at the last minute of the window.
        eta_minutes: minutes until the threshold at the current rate (see the module notes).
    """

    slope: NDArray[np.float64]
    level: NDArray[np.float64]
    eta_minutes: NDArray[np.float64]


def theil_sen(values: ArrayLike, minutes: ArrayLike | None = None
              ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Theil-Sen slope and intercept of each row of ``values`` (``(n_series, n)`` or
    ``(n,)``) against ``minutes`` (default 0, 1, ..., n-1), ignoring NaN values; NaN where a
    row has fewer than two values."""
    y = np.asarray(values, dtype=float)
    one = y.ndim == 1
    y = np.atleast_2d(y)
    n = y.shape[1]
    x = np.arange(n, dtype=float) if minutes is None else np.asarray(minutes, dtype=float)
    if x.shape != (n,):
        raise UsageError("minutes must give one time per column of values")
    i, j = np.triu_indices(n, k=1)
    dx = x[j] - x[i]
    if np.any(dx <= 0):
        raise UsageError("minutes must be strictly increasing")
    slopes = (y[:, j] - y[:, i]) / dx  # NaN where either end is missing
    valid = ~np.isnan(y)
    enough = valid.sum(axis=1) >= 2
    slope = np.full(y.shape[0], np.nan)
    intercept = np.full(y.shape[0], np.nan)
    if np.any(enough):
        slope[enough] = np.nanmedian(slopes[enough], axis=1)
        x_rows = np.where(valid[enough], x, np.nan)
        intercept[enough] = (np.nanmedian(y[enough], axis=1)
                             - slope[enough] * np.nanmedian(x_rows, axis=1))
    if one:
        return slope[0], intercept[0]
    return slope, intercept


def minutes_to_threshold(values: ArrayLike, threshold: ArrayLike, *, window: int = 10,
                         min_points: int = 5) -> TrendResult:
    """Minutes until each series reaches ``threshold`` at its current robust rate.

    Args:
        values: per-minute values, oldest first, ``(n_series, n_minutes)`` or
            ``(n_minutes,)``; NaN for a missing minute. Only the last ``window`` minutes are
            used; the last column is "now".
        threshold: one threshold, or one per series.
        window: minutes in the slope's window (>= 2).
        min_points: fewest measured minutes in the window for a result.
    """
    if window < 2 or min_points < 2:
        raise UsageError("a trend needs a window and at least two points")
    y = np.asarray(values, dtype=float)
    one = y.ndim == 1
    y = np.atleast_2d(y)[:, -window:]
    n = y.shape[1]
    slope, intercept = theil_sen(y)
    slope, intercept = np.atleast_1d(slope), np.atleast_1d(intercept)
    level = intercept + slope * (n - 1)
    limit = np.broadcast_to(np.asarray(threshold, dtype=float), level.shape)
    eta = np.full(level.shape, np.inf)
    rising = slope > 0
    np.divide(limit - level, slope, out=eta, where=rising)
    eta = np.where(level >= limit, 0.0, eta)
    measured = (~np.isnan(y)).sum(axis=1)
    eta = np.where(measured >= min_points, eta, np.nan)
    slope = np.where(measured >= min_points, slope, np.nan)
    level = np.where(measured >= min_points, level, np.nan)
    if one:
        return TrendResult(slope[0], level[0], eta[0])
    return TrendResult(slope, level, eta)
