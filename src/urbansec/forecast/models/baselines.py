"""The naive baselines every forecast has to beat: last period's counts and the long-run average.

Both models read a trailing window of the training events before the forecast origin, which is
the ``start`` of the period passed to ``predict``, and return the *expected number of events*
per cell in ``[start, end)``: the window's counts divided by the window's length in days, times
the period's length in days (``RiskSurface.expected`` is True).

Rules shared by every model of this package (``kernel.py`` builds on them):

- Training events must all lie before the forecast start (no look-ahead); ``predict`` refuses a
  start at or before the last training event.
- The window is ``[start - window, start)``. When the training events begin inside it (a short
  history), the rate is taken over the span they cover, from the first training event to the
  start, so that days never observed do not dilute the expected counts.
- A window without events gives an all-zero surface (a natural empty result, not an error).
- ``cells`` may come in any order and is echoed unchanged in the surface; without it the study
  cells are those of the training events' bounding box.
- Fitting only validates and keeps the located events sorted by time (microseconds); whatever
  depends on the grid (cell of every event, sampling rasters) is cached on the instance, so
  one instance refitted or updated fold after fold reuses it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from urbansec.domain.events import Events
from urbansec.domain.grid import Grid
from urbansec.errors import UsageError
from urbansec.forecast.base import ForecastModel, RiskSurface, as_instant

__all__ = ["HistoricalAverage", "Naive"]

_DAY = 86_400.0


def positive_number(model: str, name: str, value: Any) -> float:
    """``value`` as a finite float > 0, or a UsageError naming the hyper-parameter."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise UsageError(f"{model}: {name} must be a positive number, not {value!r}")
    number = float(value)
    if not (math.isfinite(number) and number > 0):
        raise UsageError(f"{model}: {name} must be a positive number, not {value!r}")
    return number


class WindowModel(ForecastModel):
    """Shared machinery of the models that look back over a window of past events.

    Fitted state: ``x_``, ``y_`` (n,) float64 metres, ``t_`` (n,) datetime64[s] UTC, sorted by
    time, located events only; ``n_events_`` their number; ``crs_`` their CRS.
    """

    def _validate(self) -> None:
        """Check the hyper-parameters (UsageError); subclasses override."""

    def fit(self, events: Events) -> WindowModel:
        """Validate the hyper-parameters and keep the located events, sorted by time.

        Args:
            events: training events, all before the forecast start to come.

        Returns:
            ``self``.

        Raises:
            UsageError: a bad hyper-parameter, or fewer than ``min_events`` located events.
        """
        self._validate()
        located = self._check_events(events)
        t = np.asarray(located.t, dtype="datetime64[s]")
        if np.isnat(t).any():
            raise UsageError(f"{self.name}: every training event needs a time")
        order = np.argsort(t, kind="stable")
        self.x_ = np.asarray(located.x, dtype=np.float64)[order]
        self.y_ = np.asarray(located.y, dtype=np.float64)[order]
        self.t_ = t[order]
        self.n_events_ = int(order.size)
        self.crs_ = located.crs
        # the cell of each event depends on these events: drop the previous fit's
        self._event_keys_cache: tuple[Grid, np.ndarray] | None = None
        return self

    # --- helpers for predict --------------------------------------------------------------

    def _period(self, grid: Grid, start: Any, end: Any) -> tuple[np.datetime64, np.datetime64,
                                                                  float]:
        """Checked ``start``, ``end`` and the period's length in days."""
        if not hasattr(self, "t_"):
            raise UsageError(f"{self.name} is not fitted yet: call fit(events) before predict")
        start64, end64 = as_instant(start), as_instant(end)
        if end64 <= start64:
            raise UsageError(f"the forecast period must end after it starts ({start64} to "
                             f"{end64})")
        if self.t_[-1] >= start64:
            raise UsageError(
                f"{self.name} was fitted on events up to {self.t_[-1]}, not before the forecast "
                f"start {start64}: fit on the events before the start only")
        if str(grid.crs).upper() != str(self.crs_).upper():
            raise UsageError(f"the grid is in {grid.crs} but the events in {self.crs_}: use "
                             "one CRS for both")
        days = float((end64 - start64) / np.timedelta64(1, "s")) / _DAY
        return start64, end64, days

    def _window(self, start: np.datetime64, days: float) -> tuple[slice, float]:
        """Events in ``[start - days, start)`` as a slice of the fitted arrays, and the span in
        days they stand for (``days``, or less when the history starts inside the window)."""
        window_start = start - np.timedelta64(round(days * _DAY), "s")
        lo = int(np.searchsorted(self.t_, window_start, side="left"))
        hi = int(np.searchsorted(self.t_, start, side="left"))
        history = float((start - self.t_[0]) / np.timedelta64(1, "s")) / _DAY
        return slice(lo, hi), min(days, history)

    def _ages_days(self, start: np.datetime64, window: slice) -> np.ndarray:
        """Age of each event of ``window`` at ``start``, days (> 0)."""
        return (start - self.t_[window]).astype(np.float64) / _DAY

    def _event_keys(self, grid: Grid) -> np.ndarray:
        """Cell key of every fitted event on ``grid`` (cached: the backtest asks fold after
        fold with the same grid)."""
        cached = getattr(self, "_event_keys_cache", None)
        if cached is not None and cached[0] == grid:
            return cached[1]
        keys = grid.locate(self.x_, self.y_)
        self._event_keys_cache = (grid, keys)
        return keys

    def _study(self, grid: Grid, cells: np.ndarray | None) -> tuple[np.ndarray, np.ndarray,
                                                                     np.ndarray]:
        """The study cells as given (``keys``), sorted (``sorted_keys``) and the permutation
        ``order`` with ``keys[order] == sorted_keys``."""
        if cells is None:
            keys = grid.study_cells(self.x_, self.y_)
        else:
            keys = np.asarray(cells)
            if keys.ndim != 1 or not (keys.size == 0 or np.issubdtype(keys.dtype, np.integer)):
                raise UsageError("cells must be a 1-D array of integer cell keys of the grid")
            keys = keys.astype(np.int64)
        if keys.size > 1 and np.all(keys[1:] > keys[:-1]):
            return keys, keys, np.arange(keys.size)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        if sorted_keys.size > 1 and np.any(sorted_keys[1:] == sorted_keys[:-1]):
            raise UsageError("cells must not repeat a cell key")
        return keys, sorted_keys, order

    @staticmethod
    def _positions(grid: Grid, sorted_keys: np.ndarray, order: np.ndarray,
                   points: np.ndarray) -> np.ndarray:
        """Position in the caller's ``cells`` of each point key; -1 outside the study."""
        if sorted_keys.size == 0:
            return np.full(points.shape, -1, dtype=np.int64)
        pos = grid.index_of(sorted_keys, points)
        return np.where(pos >= 0, order[np.maximum(pos, 0)], -1)

    def _window_counts(self, grid: Grid, sorted_keys: np.ndarray, order: np.ndarray,
                       window: slice) -> np.ndarray:
        """Events of ``window`` per study cell, float64 aligned with the caller's cells."""
        pos = self._positions(grid, sorted_keys, order, self._event_keys(grid)[window])
        return np.bincount(pos[pos >= 0], minlength=order.size).astype(np.float64)


class _CountModel(WindowModel):
    """Expected counts from the counts of one trailing window (Naive, HistoricalAverage)."""

    min_events = 1

    def _window_days(self) -> float:
        raise NotImplementedError

    def predict(self, grid: Grid, start: Any, end: Any, cells: np.ndarray | None = None
                ) -> RiskSurface:
        """Expected events per cell in ``[start, end)``: window counts / window days x period
        days.

        Args:
            grid: the grid of ``cells`` (same CRS as the training events).
            start, end: the forecast period (UTC instants, ``start`` after every training
                event).
            cells: (m,) int64 cell keys, any order; default the training events' bounding box.

        Returns:
            A surface with ``risk`` (m,) in expected events over the period, ``expected=True``;
            ``details``: ``window_events`` (events of the window inside the study cells) and
            ``window_days`` (the span the rate was taken over).
        """
        start64, end64, days = self._period(grid, start, end)
        keys, sorted_keys, order = self._study(grid, cells)
        window, span = self._window(start64, self._window_days())
        counts = self._window_counts(grid, sorted_keys, order, window)
        return RiskSurface(grid=grid, keys=keys, risk=counts * (days / span), start=start64,
                           end=end64, model=self.name, expected=True,
                           details={"window_events": int(counts.sum()), "window_days": span})


class Naive(_CountModel):
    """Last period's counts: "tomorrow looks like the last ``period_days``".

    Args:
        period_days: length of the trailing window, days (> 0); its counts are scaled to the
            forecast period (a 7-day window forecasting 1 day gives counts / 7).
    """

    name = "naive"

    def __init__(self, period_days: float = 7.0) -> None:
        self.period_days = period_days

    def _validate(self) -> None:
        positive_number(self.name, "period_days", self.period_days)

    def _window_days(self) -> float:
        return float(self.period_days)


class HistoricalAverage(_CountModel):
    """Mean count per cell per day over a trailing window, times the period's length.

    The reference every other model is compared to: "the usual places" at their usual rate.

    Args:
        window_days: length of the trailing window, days (> 0).
    """

    name = "historical"

    def __init__(self, window_days: float = 365.0) -> None:
        self.window_days = window_days

    def _validate(self) -> None:
        positive_number(self.name, "window_days", self.window_days)

    def _window_days(self) -> float:
        return float(self.window_days)
