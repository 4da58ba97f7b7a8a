"""Small helpers shared by the hourly-series modules (nowcast, anomaly)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

WEEK = 168
DAY = 24


def nanquantile(values: NDArray[np.float64], q: float, axis: int = -1,
                 weibull: bool = False) -> NDArray[np.float64]:
    """Quantile ``q`` along ``axis`` ignoring NaN (NaN where a slice has no value).

    Sorting once and interpolating is much faster than ``np.nanquantile``, which loops over
    slices in Python. The default position ``q (n - 1)`` is numpy's "linear" method;
    ``weibull=True`` uses ``q (n + 1) - 1`` (numpy's "weibull"), under which the interval
    between the ``a`` and ``1 - a`` sample quantiles of ``n`` exchangeable errors covers a new
    error with probability ``1 - 2a`` exactly (the order-statistic argument of split conformal
    prediction), where the linear positions cover only ``(1 - 2a)(n - 1)/(n + 1)``: 77 % instead
    of 80 % for 56 errors.
    """
    data = np.moveaxis(np.asarray(values, dtype=float), axis, -1)
    ordered = np.sort(data, axis=-1)  # NaN sort last
    n = (~np.isnan(data)).sum(axis=-1)
    position = q * (n + 1) - 1 if weibull else q * (n - 1)
    position = np.clip(position, 0, np.maximum(n - 1, 0))
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, np.maximum(n - 1, 0))
    low = np.take_along_axis(ordered, below[..., None], axis=-1)[..., 0]
    high = np.take_along_axis(ordered, above[..., None], axis=-1)[..., 0]
    out = low + (position - below) * (high - low)
    return np.where(n > 0, out, np.nan)


def lagged(z: NDArray[np.float64], lag: int, extra: int = 0) -> NDArray[np.float64]:
    """``z`` delayed by ``lag`` hours along the last axis and extended ``extra`` hours into
    the future: column ``t`` holds ``z[t - lag]`` (NaN before the start or past the end)."""
    n = z.shape[1]
    out = np.full((z.shape[0], n + extra), np.nan)
    stop = min(n + extra, n + lag)
    if lag < stop:
        out[:, lag:stop] = z[:, : stop - lag]
    return out
