"""Nowcasts and short-term forecasts (1-6 hours ahead) of hourly pedestrian counts, with 80 %
prediction intervals.

Input everywhere: hourly counts of one counter (or zone) as ``(n_hours,)``, or of many as
``(n_series, n_hours)``, oldest first, NaN for a missing hour, on a regular grid of **local**
wall-clock hours (people's week follows the local clock; a DST change shifts nothing that
matters at the hourly scale). The last column is the forecast origin: the latest complete hour.
``predict()`` gives the ``horizon`` hours after it, step 1 being the next hour.

Models follow the estimator idiom of :mod:`urbansec.forecast`: hyper-parameters in
``__init__``, ``fit(y)`` stores fitted state in attributes ending in ``_``, ``predict()``
returns a :class:`Nowcast`.

- :class:`SeasonalNaive`: the same hour last week (``season`` = 168 hours). The baseline that
  every model is scored against (MASE).
- :class:`ProfileRegression`: the hour-of-week profile (median of the same hour over the last
  ``profile_weeks`` weeks) plus the recent departure from it, carried forward by a direct
  regression per horizon: ``r[o+h] = b0 + b1 r[o] + b2 r[o-1] + b3 r[o-2] + b4 mean(r[o-23..o])``
  with ``r = log1p(y) - profile``. It adapts to a day that runs busier or quieter than usual
  (rain, a holiday, an event) within an hour, which the seasonal naive cannot.

Intervals: both models work on ``log1p`` counts and take the 10th and 90th percentiles of their
own in-sample errors at each horizon, per hour of day (night errors on small counts are wider
in log terms than day errors): an empirical, distribution-free 80 % interval, mapped back to
counts. The point forecast is the back-transformed log forecast, a median-like value, the right
target for the absolute-error metrics (MAE, MASE) used to score it.

Scoring helpers: :func:`mase_scale` (the in-sample mean absolute error of the seasonal naive)
and :func:`interval_hits`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from urbansec.crowd._hourly import DAY, WEEK, lagged, nanquantile
from urbansec.errors import UsageError

__all__ = ["NOWCAST_MODELS", "Nowcast", "ProfileRegression", "SeasonalNaive", "interval_hits",
           "mase_scale"]


@dataclass(frozen=True, eq=False)
class Nowcast:
    """Forecasts for steps ``1..horizon`` after the origin.

    ``mean``, ``lower``, ``upper``: ``(n_series, horizon)`` counts (``(horizon,)`` when one
    series was fitted); ``lower``/``upper`` bound the central ``coverage`` interval; NaN where
    the model had no data for a series.
    """

    mean: NDArray[np.float64]
    lower: NDArray[np.float64]
    upper: NDArray[np.float64]
    coverage: float
    model: str

    @property
    def steps(self) -> NDArray[np.int64]:
        return np.arange(1, self.mean.shape[-1] + 1)


def _as_series(y: ArrayLike) -> tuple[NDArray[np.float64], bool]:
    values = np.asarray(y, dtype=float)
    if values.ndim not in (1, 2):
        raise UsageError("hourly counts must be (n_hours,) or (n_series, n_hours)")
    if np.any(values < 0):
        raise UsageError("hourly counts cannot be negative")
    return np.atleast_2d(values), values.ndim == 1


def _hourly_error_quantiles(errors: NDArray[np.float64], hour: NDArray[np.int64],
                            alpha: float, min_samples: int
                            ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per series and hour of day (0..23 relative to the series' start), the ``alpha/2`` and
    ``1 - alpha/2`` quantiles of ``errors`` (``(n_series, n)``, NaN ignored); hours with fewer
    than ``min_samples`` errors use the quantiles of all hours. Returns two ``(n_series, 24)``
    arrays."""
    lo_all = nanquantile(errors, alpha / 2, axis=1, weibull=True)
    hi_all = nanquantile(errors, 1 - alpha / 2, axis=1, weibull=True)
    lo = np.repeat(lo_all[:, None], DAY, axis=1)
    hi = np.repeat(hi_all[:, None], DAY, axis=1)
    for h in range(DAY):
        sel = errors[:, hour == h]
        enough = (~np.isnan(sel)).sum(axis=1) >= min_samples
        if np.any(enough):
            lo[enough, h] = nanquantile(sel[enough], alpha / 2, axis=1, weibull=True)
            hi[enough, h] = nanquantile(sel[enough], 1 - alpha / 2, axis=1, weibull=True)
    return lo, hi


class _NowcastModel:
    name = "model"

    def get_params(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.endswith("_")}

    def _check_common(self, horizon: int, coverage: float) -> None:
        if not 1 <= horizon <= WEEK:
            raise UsageError("the horizon must be between 1 and 168 hours")
        if not 0 < coverage < 1:
            raise UsageError("the interval coverage must be between 0 and 1")

    def _finish(self, mean: NDArray[np.float64], lower: NDArray[np.float64],
                upper: NDArray[np.float64]) -> Nowcast:
        mean = np.clip(np.expm1(mean), 0, None)
        lower = np.clip(np.expm1(lower), 0, None)
        upper = np.clip(np.expm1(upper), 0, None)
        if self.one_series_:  # type: ignore[attr-defined]
            mean, lower, upper = mean[0], lower[0], upper[0]
        return Nowcast(mean, lower, upper, self.coverage, self.name)  # type: ignore[attr-defined]


class SeasonalNaive(_NowcastModel):
    """The value of the same hour ``season`` hours earlier (168: last week).

    Interval: quantiles of the in-sample seasonal errors ``log1p(y[t]) - log1p(y[t-season])``
    over the last ``window_weeks`` weeks, per hour of day.
    """

    name = "seasonal_naive"

    def __init__(self, horizon: int = 6, season: int = WEEK, window_weeks: int = 8,
                 coverage: float = 0.8) -> None:
        self.horizon = horizon
        self.season = season
        self.window_weeks = window_weeks
        self.coverage = coverage

    def fit(self, y: ArrayLike) -> SeasonalNaive:
        self._check_common(self.horizon, self.coverage)
        if self.horizon > self.season:
            raise UsageError("the seasonal naive cannot forecast beyond one season")
        values, self.one_series_ = _as_series(y)
        n = values.shape[1]
        if n < self.season + 1:
            raise UsageError(f"the seasonal naive needs at least {self.season + 1} hours")
        z = np.log1p(values)
        window = min(n - self.season, self.window_weeks * WEEK)
        errors = z[:, n - window:] - z[:, n - window - self.season: n - self.season]
        hour = np.arange(n - window, n) % DAY
        alpha = 1 - self.coverage
        self.error_lo_, self.error_hi_ = _hourly_error_quantiles(errors, hour, alpha, 20)
        self.z_, self.n_ = z, n
        return self

    def predict(self) -> Nowcast:
        steps = np.arange(1, self.horizon + 1)
        target = self.n_ - 1 + steps
        mean = self.z_[:, target - self.season]
        hour = target % DAY
        return self._finish(mean, mean + self.error_lo_[:, hour], mean + self.error_hi_[:, hour])


class ProfileRegression(_NowcastModel):
    """Hour-of-week profile plus the recent departure from it (see the module notes).

    Args:
        horizon: hours ahead (a regression is fitted for each step 1..horizon).
        profile_weeks: weeks in the median profile of each hour of the week.
        train_weeks: weeks of origins the regressions and interval errors are fitted on.
        ridge: L2 penalty on the slope coefficients (not the intercept), relative to the
            number of rows; it only matters when few rows are left after gaps.
        coverage: central coverage of the prediction interval.
    """

    name = "profile_regression"
    n_features = 5

    def __init__(self, horizon: int = 6, profile_weeks: int = 6, train_weeks: int = 8,
                 ridge: float = 1e-3, coverage: float = 0.8) -> None:
        self.horizon = horizon
        self.profile_weeks = profile_weeks
        self.train_weeks = train_weeks
        self.ridge = ridge
        self.coverage = coverage

    def _profile(self, z: NDArray[np.float64], extra: int) -> NDArray[np.float64]:
        """The median of the same hour 1..profile_weeks weeks earlier, for every hour of
        ``z`` and ``extra`` hours beyond it: only past weeks, so it is a real forecast."""
        stack = np.stack([lagged(z, k * WEEK, extra)
                          for k in range(1, self.profile_weeks + 1)])
        return nanquantile(stack, 0.5, axis=0)

    @staticmethod
    def _features(r: NDArray[np.float64], origins: NDArray[np.int64]) -> NDArray[np.float64]:
        """``(n_series, len(origins), 5)``: 1, r[o], r[o-1], r[o-2], mean r[o-23..o]; a
        missing residual counts as 0 (on profile)."""
        filled = np.nan_to_num(r)
        csum = np.concatenate([np.zeros((r.shape[0], 1)), np.cumsum(filled, axis=1)], axis=1)
        counts = np.concatenate([np.zeros((r.shape[0], 1)),
                                 np.cumsum(~np.isnan(r), axis=1)], axis=1)
        first = np.maximum(origins - (DAY - 1), 0)
        n_day = counts[:, origins + 1] - counts[:, first]
        day_mean = np.where(n_day > 0, (csum[:, origins + 1] - csum[:, first])
                            / np.maximum(n_day, 1), 0.0)
        lag = lambda k: filled[:, np.maximum(origins - k, 0)]  # noqa: E731
        return np.stack([np.ones_like(day_mean), lag(0), lag(1), lag(2), day_mean], axis=2)

    def fit(self, y: ArrayLike) -> ProfileRegression:
        self._check_common(self.horizon, self.coverage)
        if self.profile_weeks < 1 or self.train_weeks < 1:
            raise UsageError("profile_weeks and train_weeks must be at least 1")
        values, self.one_series_ = _as_series(y)
        n = values.shape[1]
        if n < WEEK + self.horizon + DAY:
            raise UsageError(f"the profile regression needs at least {WEEK + self.horizon + DAY}"
                             " hours (a week and a day)")
        # only the hours the regressions and the forecast use: origins of the training
        # window, their day of lags, and their profile weeks
        keep = (self.train_weeks + self.profile_weeks) * WEEK + 2 * DAY + self.horizon
        values = values[:, -keep:]
        n = values.shape[1]
        z = np.log1p(values)
        profile = self._profile(z, self.horizon)
        r = z - profile[:, :n]
        first_origin = max(WEEK + DAY, n - 1 - self.horizon - self.train_weeks * WEEK)
        origins = np.arange(first_origin, n - 1)
        features = self._features(r, origins)
        n_series = z.shape[0]
        coef = np.full((n_series, self.horizon, self.n_features), np.nan)
        errors = np.full((n_series, self.horizon, origins.size), np.nan)
        penalty = np.diag([0.0] + [1.0] * (self.n_features - 1))
        for step in range(1, self.horizon + 1):
            target_index = origins + step
            valid = target_index < n
            target = np.where(valid, r[:, np.minimum(target_index, n - 1)], np.nan)
            for s in range(n_series):
                use = ~np.isnan(target[s])
                if use.sum() < 2 * self.n_features:
                    continue
                x, t = features[s, use], target[s, use]
                gram = x.T @ x + self.ridge * use.sum() * penalty
                beta = np.linalg.solve(gram, x.T @ t)
                coef[s, step - 1] = beta
                errors[s, step - 1, use] = t - x @ beta
        alpha = 1 - self.coverage
        lo = np.full((n_series, self.horizon, DAY), np.nan)
        hi = np.full_like(lo, np.nan)
        for step in range(1, self.horizon + 1):
            hour = (origins + step) % DAY
            lo[:, step - 1], hi[:, step - 1] = _hourly_error_quantiles(
                errors[:, step - 1], hour, alpha, 20)
        self.coef_, self.error_lo_, self.error_hi_ = coef, lo, hi
        self.profile_ahead_ = profile[:, n:]
        self.last_features_ = self._features(r, np.array([n - 1]))[:, 0]
        self.n_ = n
        return self

    def predict(self) -> Nowcast:
        steps = np.arange(self.horizon)
        departure = np.einsum("shf,sf->sh", self.coef_, self.last_features_)
        # a series whose regression could not be fitted falls back on its profile
        departure = np.where(np.isnan(departure), 0.0, departure)
        mean = self.profile_ahead_ + departure
        hour = (self.n_ + steps) % DAY
        lo = self.error_lo_[:, steps, hour]
        hi = self.error_hi_[:, steps, hour]
        return self._finish(mean, mean + lo, mean + hi)


NOWCAST_MODELS: dict[str, type[_NowcastModel]] = {
    SeasonalNaive.name: SeasonalNaive, ProfileRegression.name: ProfileRegression}


def mase_scale(y: ArrayLike, season: int = WEEK, window: int | None = None
               ) -> NDArray[np.float64] | float:
    """The MASE denominator: the mean absolute error of the seasonal naive in sample,
    ``mean |y[t] - y[t - season]|`` over the last ``window`` hours (all when None), per
    series (NaN pairs ignored). Hyndman & Koehler (2006), "Another look at measures of forecast
    accuracy", with the seasonal naive as the scaling forecast."""
    values, one = _as_series(y)
    diffs = np.abs(values[:, season:] - values[:, :-season])
    if window is not None:
        diffs = diffs[:, -window:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        scale = np.nanmean(diffs, axis=1)
    return float(scale[0]) if one else scale


def interval_hits(actual: ArrayLike, lower: ArrayLike, upper: ArrayLike
                  ) -> NDArray[np.float64]:
    """1.0 where ``lower <= actual <= upper``, 0.0 where not, NaN where the actual is
    missing: the mean over many forecasts is the empirical coverage."""
    a = np.asarray(actual, dtype=float)
    hit = ((np.asarray(lower) <= a) & (a <= np.asarray(upper))).astype(float)
    return np.where(np.isnan(a), np.nan, hit)
