"""A learned forecast: gradient boosting on lagged cell counts, neighbour counts and season.

``GradientBoostingForecast`` learns, from the training window alone, how the number of events a
cell has in the next ``h`` days depends on what the cell and its neighbours had before; it then
applies that to the forecast origin. One row per (cell, training origin ``o``):

- **target**: the cell's events in ``[o, o + h)``, ``h`` the forecast period in whole days
  (at least one); the risk of a period of ``D`` days is the prediction times ``D / h``;
- **own counts** in ``[o - L, o)`` for each ``L`` in ``lags`` (days);
- **neighbour counts**: the same summed over the cell's neighbours (8 squares, or the 6
  hexagons of an H3 grid) for each ``L`` in ``neighbour_lags``;
- **long-run rate**: the cell's events per day over all the history before ``o``;
- **season** of the forecast period: day of the week of ``o`` and, when the training origins
  span a whole year (a window of about two years), day of the year of the period's middle
  (as its sine and cosine); local dates in the events' time zone. Over a shorter span no
  origin shares the forecast's season, and the trees would read the day of the year as a
  clock, carrying the last weeks' noise forward (on a simulated stationary process it cost
  a fifth of the expected count).

The model is ``mu = b * f(features)``: ``b``, the offset, is the cell's own long-run count
over ``h`` days with a prior of two events per history (``(own + 2) * h / history days``), and
the trees learn the factor ``f``. So the forecast keeps the historical average's resolution
between busy cells (trees alone put many of them in one leaf, and ties lose the top 1%) and
the trees only learn what moves a cell away from its own past: recent counts, neighbours,
season. Under the Poisson loss ``mu = b * f`` fitted to ``y`` with weights ``w`` is exactly
``f`` fitted to ``y / b`` with weights ``w * b``, which is how it is trained.

Rules worth knowing:

- Time is cut in days counted back from the forecast start (``start - 1 day``, ``start - 2
  days``, ...), so training origins share the start's time of day (a local midnight in a
  backtest) and nothing after ``start`` is ever read. Training origins step ``h`` days back
  from the last one whose target period ends by ``start`` (targets do not overlap), down to
  where the history first covers the longest lag, or to half the history when it never does
  (a 365-day window: origins in its second half). Day 0 is the window's first day, or the day
  of the first training event when the history is shorter.
- When a lag reaches back before day 0, its count is scaled up from the days available
  (``count * L / available``), so those rows speak the forecast's units, only noisier. Rows
  with short histories teach the trees to distrust long lags; starting the origins halfway
  through the window keeps them few (it raised hit rates at 1-2% on the 2016 backtest).
- Rows of cells with no event before ``o``, in the cell or its neighbours, share the same
  features and offset; under the Poisson loss they collapse exactly into one row per origin
  (weight: the number of cells, target: their mean count). The other rows are sampled down to
  ``max_rows`` (rows with events in their target first, up to half of it; then rows without):
  each row is kept with a probability growing with how busy its neighbourhood was before the
  origin (seeded systematic sampling) and weighted by the inverse of that probability, so the
  weighted loss is an unbiased estimate of the full one, and the rare quiet weeks of busy
  cells, which decide their forecasts, are not left to chance.
- scikit-learn's ``HistGradientBoostingRegressor`` with ``loss="poisson"`` (so predictions
  are expected counts, ``expected=True``), no early stopping, ``random_state=seed`` and at
  least ``_MIN_LEAF`` (200) rows per leaf: the offset already tells busy cells apart, so the
  trees need no leaf for one cell, and a leaf of a few dozen rows of the busiest cell learns
  its weekday noise.
- The factor is constrained to grow with every count and the rate (monotonic): more past
  events, recent or old, in the cell or around it, never lower a forecast. On the 2016
  backtests this mattered more than any other choice (without it the hit rate at 1-2% fell
  below the historical average's on robbery). The price: a hotspot that went quiet is
  forgotten slowly (in a simulation where busy spells end abruptly, the model cut a
  switched-off hotspot to a third of its long-run count rather than to the background).
- Training happens in ``predict``, which is the first moment the grid and the horizon are
  known; the booster is cached per (grid, study cells, horizon). ``fit`` stores the events and
  drops the cache; ``update`` swaps the events but keeps the boosters, so a backtest with
  ``refit_every = k`` retrains every ``k`` folds and in between only reads fresher counts.
- Training and prediction run on the study cells sorted by key, so the order of ``cells``
  changes nothing but the order of the result.
- scikit-learn is imported lazily (in ``fit``): the module imports without it, and a missing
  scikit-learn is a ``UsageError`` saying how to install it.

The window rules (training events before ``start``, window ``[start - window, start)``, short
histories, ``cells`` in any order) are those of ``baselines.py``.
"""

from __future__ import annotations

import math
import time
from typing import Any

import h3
import numpy as np

from urbansec.domain.events import Events, to_local_time
from urbansec.domain.grid import Grid, HexGrid, SquareGrid
from urbansec.errors import UsageError
from urbansec.forecast.base import RiskSurface
from urbansec.forecast.models.baselines import WindowModel, positive_number

__all__ = ["GradientBoostingForecast"]

_DAY = np.timedelta64(86_400, "s")
# Fewest whole days of history beyond the horizon a forecast needs to learn from.
_MIN_DAYS_BEYOND_HORIZON = 14
# Share of max_rows the rows with events in their target may take before they too are sampled.
_POSITIVE_SHARE = 0.5
# Day-of-year angle per day.
_YEAR_DAYS = 365.25
# Prior events per history added to every cell's own count in the offset the trees multiply
# (see _baseline), so that a cell without events still has a risk the trees can raise. Chosen
# on the 2016 weekly backtests (0.5 and 2 tried; 2 better on burglary, equal on robbery).
_PRIOR_EVENTS = 2.0
# Fewest training rows per leaf (see the module docstring).
_MIN_LEAF = 200


def _training_origins(n_days: int, horizon: int, longest_lag: int) -> np.ndarray:
    """Day indices of the training origins, ascending: every ``horizon`` days back from the
    last origin whose target ends by the forecast start (``n_days - horizon``), down to where
    the history first covers the longest lag, or half the history when it never does."""
    first = max(1, min(longest_lag, n_days // 2, n_days - horizon))
    return np.arange(n_days - horizon, first - 1, -horizon)[::-1]


def _sample(rows: np.ndarray, size: np.ndarray, limit: int, rng: np.random.Generator
            ) -> tuple[np.ndarray, np.ndarray]:
    """About ``limit`` of ``rows`` (all of them when they are fewer), each kept with a
    probability ``p`` growing with its ``size`` (``p = min(1, a * (size + mean size))``, ``a``
    such that the ``p`` add up to ``limit``), by systematic sampling (a seeded random start,
    then steps of one along the cumulative probabilities: ``limit`` rows give or take one,
    each at most once); returns the kept rows and their weights ``1 / p``, so that weighted
    sums estimate the full ones without bias.
    """
    if rows.size <= limit:
        return rows, np.ones(rows.size)
    value = size + size.mean() + 1e-12
    scale = limit / value.sum()
    # rows whose probability would pass 1 are kept for sure; spread the rest of the budget
    for _ in range(50):
        capped = scale * value >= 1.0
        rest = value[~capped].sum()
        new = (limit - capped.sum()) / rest if rest > 0 else scale
        if np.isclose(new, scale, rtol=1e-9, atol=0):
            break
        scale = new
    p = np.minimum(1.0, scale * value)
    cumulative = np.cumsum(p)
    start = rng.random()
    points = start + np.arange(max(0, int(np.floor(cumulative[-1] - start)) + 1))
    chosen = np.unique(np.searchsorted(cumulative, points, side="left"))
    chosen = chosen[chosen < rows.size]
    return rows[chosen], 1.0 / p[chosen]


def _booster_class() -> Any:
    """scikit-learn's ``HistGradientBoostingRegressor``, or a UsageError saying how to get it."""
    try:
        from sklearn.ensemble import HistGradientBoostingRegressor
    except ImportError:  # pragma: no cover - exercised only without scikit-learn
        raise UsageError("the gbm forecast (GradientBoostingForecast) needs scikit-learn: "
                         "pip install scikit-learn") from None
    return HistGradientBoostingRegressor


def _whole_days(model: str, name: str, values: Any, *, allow_empty: bool) -> tuple[int, ...]:
    """``values`` as a tuple of distinct whole numbers of days >= 1, or a UsageError."""
    try:
        items = tuple(values)
    except TypeError:
        raise UsageError(f"{model}: {name} must be a sequence of whole days, not "
                         f"{values!r}") from None
    if not items and not allow_empty:
        raise UsageError(f"{model}: {name} needs at least one number of days")
    for item in items:
        if (isinstance(item, bool) or not isinstance(item, int | np.integer)) or item < 1:
            raise UsageError(f"{model}: {name} must be whole numbers of days >= 1, not "
                             f"{values!r}")
    if len(set(items)) != len(items):
        raise UsageError(f"{model}: {name} repeats a lag: {values!r}")
    return tuple(int(item) for item in items)


class _History:
    """Cumulative daily counts of the window, per study cell and summed over its neighbours.

    ``own``, ``near``: (n_days + 1, n) int32, row ``d`` holding the events of days ``[0, d)``
    (day ``k`` is ``[day0 + k days, day0 + (k + 1) days)``, ``day0 = start - n_days days``), of
    the cell and of its neighbours; ``n_days``: whole days of history; ``day0``: UTC instant;
    ``n_neighbours``: neighbours per cell (8 squares, 6 hexagons).
    """

    def __init__(self, own: np.ndarray, near: np.ndarray, day0: np.datetime64,
                 n_neighbours: int) -> None:
        self.own = own
        self.near = near
        self.day0 = day0
        self.n_days = own.shape[0] - 1
        self.n_neighbours = n_neighbours


class GradientBoostingForecast(WindowModel):
    """Gradient-boosted Poisson regression of a cell's next-period count on its recent past.

    See the module docstring for the features, the sampling of rows and the caching.

    Args:
        window_days: trailing window the model learns from, days (> 0).
        lags: trailing windows of the cell's own counts, whole days (>= 1, at least one).
        neighbour_lags: trailing windows of the neighbours' summed counts, whole days (may be
            empty).
        max_iter: boosting iterations (>= 1).
        learning_rate: shrinkage of each tree, in (0, 1].
        max_rows: most training rows after sampling (>= 1000); fit time grows with it.
        seed: seeds the sampling of rows and scikit-learn's ``random_state``.

    Fitted attributes (after ``fit``): those of ``WindowModel`` (``x_``, ``y_``, ``t_``,
    ``n_events_``, ``crs_``) and ``timezone_`` (for the season features).
    """

    name = "gbm"
    min_events = 50

    def __init__(self, window_days: float = 365.0, lags: tuple[int, ...] = (1, 7, 28, 91, 365),
                 neighbour_lags: tuple[int, ...] = (7, 28, 91), max_iter: int = 200,
                 learning_rate: float = 0.05, max_rows: int = 100_000, seed: int = 0) -> None:
        self.window_days = window_days
        self.lags = lags
        self.neighbour_lags = neighbour_lags
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_rows = max_rows
        self.seed = seed

    # --- hyper-parameters -----------------------------------------------------------------

    def _validate(self) -> None:
        positive_number(self.name, "window_days", self.window_days)
        _whole_days(self.name, "lags", self.lags, allow_empty=False)
        _whole_days(self.name, "neighbour_lags", self.neighbour_lags, allow_empty=True)
        for name, low in (("max_iter", 1), ("max_rows", 1000)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
                raise UsageError(f"{self.name}: {name} must be a whole number >= {low}, not "
                                 f"{value!r}")
        rate = positive_number(self.name, "learning_rate", self.learning_rate)
        if rate > 1:
            raise UsageError(f"{self.name}: learning_rate must be in (0, 1], not {rate}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int | np.integer) \
                or self.seed < 0:
            raise UsageError(f"{self.name}: seed must be a whole number >= 0, not "
                             f"{self.seed!r}")

    def feature_names(self, seasonal: bool = True) -> list[str]:
        """Names of the feature columns, in order (``seasonal``: with the day of the year)."""
        return ([f"own_{lag}d" for lag in self.lags]
                + [f"neighbours_{lag}d" for lag in self.neighbour_lags]
                + ["own_rate_per_day", "day_of_week"]
                + (["day_of_year_sin", "day_of_year_cos"] if seasonal else []))

    # --- fit / update -----------------------------------------------------------------------

    def fit(self, events: Events) -> GradientBoostingForecast:
        """Validate, check scikit-learn is there, keep the located events sorted by time and
        drop every trained booster (they are trained again, lazily, by ``predict``).

        Args:
            events: training events, all before the forecast start to come.

        Returns:
            ``self``.

        Raises:
            UsageError: a bad hyper-parameter, fewer than ``min_events`` located events, or
                no scikit-learn.
        """
        super().fit(events)
        _booster_class()
        self.timezone_ = events.timezone
        self._boosters: dict[tuple[Grid, int], tuple[np.ndarray, Any, dict[str, Any]]] = {}
        return self

    def update(self, events: Events) -> GradientBoostingForecast:
        """Swap in the events up to a later origin, keeping the trained boosters: the next
        ``predict`` reads fresher counts through the trees of the last full fit.

        Returns:
            ``self``.
        """
        boosters = getattr(self, "_boosters", None)
        self.fit(events)
        if boosters is not None:
            self._boosters = boosters
        return self

    # --- predict ----------------------------------------------------------------------------

    def predict(self, grid: Grid, start: Any, end: Any, cells: np.ndarray | None = None
                ) -> RiskSurface:
        """Expected events per cell in ``[start, end)``.

        Args:
            grid: square or H3 grid of ``cells`` (same CRS as the training events).
            start, end: the forecast period (UTC; ``start`` after every training event).
            cells: (m,) int64 cell keys, any order; default the training events' bounding box.

        Returns:
            ``risk`` (m,) expected events over the period, ``expected=True``; ``details``:
            ``horizon_days`` (the whole-day horizon trained on), ``window_days`` (days of
            history read), ``trained_at`` (the origin the booster was trained for; earlier
            than ``start`` after an ``update``), ``training_rows``, ``training_origins``,
            ``training_positive_rows``, ``seasonal`` (whether the day of the year was a
            feature), ``train_seconds`` (0 when the cached booster was used).

        Raises:
            UsageError: not fitted; a bad period; a grid other than square or H3; a history
                shorter than the horizon plus two weeks; no event in any training target.
        """
        start64, end64, days = self._period(grid, start, end)
        keys, sorted_keys, order = self._study(grid, cells)
        horizon = max(1, round(days))
        if keys.size == 0:
            return RiskSurface(grid=grid, keys=keys, risk=np.zeros(0), start=start64,
                               end=end64, model=self.name, expected=True,
                               details={"horizon_days": horizon})
        # everything runs on the sorted cells, so the caller's order cannot change the rows
        # sampled nor, therefore, the trees
        neighbours = self._neighbours(grid, sorted_keys)
        history = self._history(grid, sorted_keys, neighbours, start64, horizon)

        booster, info, seconds = self._booster(grid, sorted_keys, horizon, history, start64)
        now = np.full(keys.size, history.n_days)
        cells_at = np.arange(keys.size)
        features = self._features(history, now, cells_at, horizon, info["seasonal"])
        base = self._baseline(history, now, cells_at, horizon)
        expected = np.empty(keys.size)
        expected[order] = base * np.maximum(booster.predict(features), 0.0) * (days / horizon)
        details = {"horizon_days": horizon, "window_days": history.n_days,
                   "train_seconds": seconds, **info}
        return RiskSurface(grid=grid, keys=keys, risk=expected, start=start64, end=end64,
                           model=self.name, expected=True, details=details)

    # --- the pieces -------------------------------------------------------------------------

    def _neighbours(self, grid: Grid, keys: np.ndarray) -> np.ndarray:
        """(n, k) position in the sorted ``keys`` of each cell's neighbours, -1 outside the
        study (k = 8 squares or 6 hexagons). Cached: depends on the grid and the cells only."""
        cached = getattr(self, "_neighbour_cache", None)
        if cached is not None and cached[0] == grid and np.array_equal(cached[1], keys):
            return cached[2]
        if isinstance(grid, SquareGrid):
            cols, rows = grid.col_row(keys)
            offsets = [(dc, dr) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if dc or dr]
            near = np.stack([SquareGrid.key(cols + dc, rows + dr) for dc, dr in offsets], axis=1)
        elif isinstance(grid, HexGrid):
            ring = h3.api.basic_int.grid_ring
            rings = [list(ring(int(k), 1)) for k in keys.astype(np.uint64).tolist()]
            # pentagons have 5 neighbours: pad with a key no study holds
            near = np.array([r + [-1] * (6 - len(r)) for r in rings], dtype=np.uint64
                            ).astype(np.int64)
        else:
            raise UsageError(f"{self.name} works on square or H3 grids, not {grid.label}")
        table = grid.index_of(keys, near.ravel()).reshape(near.shape)
        self._neighbour_cache = (grid, keys.copy(), table)
        return table

    def _history(self, grid: Grid, keys: np.ndarray, neighbours: np.ndarray,
                 start: np.datetime64, horizon: int) -> _History:
        """Cumulative daily counts of the window before ``start`` per cell of the sorted
        ``keys`` (see ``_History``)."""
        span_days = float((start - self.t_[0]) / _DAY)
        n_days = min(math.ceil(float(self.window_days) - 1e-9), math.ceil(span_days))
        needed = horizon + _MIN_DAYS_BEYOND_HORIZON
        if n_days < needed:
            raise UsageError(
                f"{self.name} learns a {horizon}-day horizon from its own history: it needs at "
                f"least {needed} days of events before the forecast start, this window has "
                f"{n_days} (widen the window or the data)")
        day0 = start - n_days * _DAY
        lo = int(np.searchsorted(self.t_, day0, side="left"))
        hi = int(np.searchsorted(self.t_, start, side="left"))
        pos = grid.index_of(keys, self._event_keys(grid)[lo:hi])
        day = ((self.t_[lo:hi] - day0) // _DAY).astype(np.int64)
        inside = pos >= 0
        n = keys.size
        daily = np.bincount(day[inside] * n + pos[inside], minlength=n_days * n)
        own = np.zeros((n_days + 1, n), dtype=np.int32)
        np.cumsum(daily.reshape(n_days, n), axis=0, out=own[1:])
        near = np.zeros_like(own)
        for k in range(neighbours.shape[1]):
            column = neighbours[:, k]
            has = column >= 0
            near[:, has] += own[:, column[has]]
        return _History(own, near, day0, int(neighbours.shape[1]))

    def _season(self, history: _History, origins: np.ndarray, horizon: int
                ) -> tuple[np.ndarray, np.ndarray]:
        """Day of week of each origin day index and day-of-year angle of its period's middle,
        local dates in the events' time zone: two (len(origins),) float arrays."""
        instants = history.day0 + origins.astype(np.int64) * _DAY
        local = to_local_time(instants, self.timezone_).astype("datetime64[D]")
        dow = ((local.astype(np.int64) + 3) % 7).astype(np.float64)  # 1970-01-01 was a Thursday
        middle = local.astype(np.int64) + horizon / 2.0
        years = local.astype("datetime64[Y]")
        doy = middle - years.astype("datetime64[D]").astype(np.int64)
        return dow, 2.0 * np.pi * doy / _YEAR_DAYS

    def _features(self, history: _History, d: np.ndarray, c: np.ndarray, horizon: int,
                  seasonal: bool) -> np.ndarray:
        """(m, f) float64 features of the rows (origin day index ``d``, cell position ``c``),
        both (m,) int, ``d >= 1``; columns as ``feature_names(seasonal)``."""
        columns: list[np.ndarray] = []
        d = d.astype(np.int64)
        for table, lags in ((history.own, self.lags), (history.near, self.neighbour_lags)):
            now = table[d, c].astype(np.float64)
            for lag in lags:
                available = np.minimum(lag, d)
                # a lag reaching before day 0 is scaled up from the days there are
                columns.append((now - table[d - available, c]) * (lag / available))
        columns.append(history.own[d, c] / d.astype(np.float64))
        unique, inverse = np.unique(d, return_inverse=True)
        dow, angle = self._season(history, unique, horizon)
        columns.append(dow[inverse])
        if seasonal:
            columns.extend([np.sin(angle)[inverse], np.cos(angle)[inverse]])
        return np.stack(columns, axis=1)

    def _monotonic(self, n_features: int) -> list[int]:
        """1 (the factor grows with it) for every count and the rate, 0 for the season."""
        n_counts = len(self.lags) + len(self.neighbour_lags) + 1
        return [1] * n_counts + [0] * (n_features - n_counts)

    def _baseline(self, history: _History, d: np.ndarray, c: np.ndarray | None, horizon: int
                  ) -> np.ndarray:
        """(m,) the offset the trees' factor multiplies: the cell's long-run count over
        ``horizon`` days at origin index ``d``, with a prior of ``_PRIOR_EVENTS`` events per
        history so that it is never 0 (``c`` None: cells without events)."""
        own = 0.0 if c is None else history.own[d, c]
        return (own + _PRIOR_EVENTS) * (horizon / d.astype(np.float64))

    def _booster(self, grid: Grid, keys: np.ndarray, horizon: int, history: _History,
                 start: np.datetime64) -> tuple[Any, dict[str, Any], float]:
        """The booster for (grid, cells, horizon): cached, or trained on ``history``."""
        cached = self._boosters.get((grid, horizon))
        if cached is not None and np.array_equal(cached[0], keys):
            return cached[1], cached[2], 0.0
        t0 = time.perf_counter()
        features, target, weight, info = self._training_rows(history, horizon)
        booster = _booster_class()(
            loss="poisson", max_iter=int(self.max_iter), learning_rate=float(self.learning_rate),
            early_stopping=False, random_state=int(self.seed), min_samples_leaf=_MIN_LEAF,
            monotonic_cst=self._monotonic(features.shape[1]))
        booster.fit(features, target, sample_weight=weight)
        info = {**info, "trained_at": str(start)}
        self._boosters[(grid, horizon)] = (keys.copy(), booster, info)
        return booster, info, time.perf_counter() - t0

    def _training_rows(self, history: _History, horizon: int
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Features (m, f), targets (m,), weights (m,) and a summary of the training rows."""
        n_days = history.n_days
        origins = _training_origins(n_days, horizon, max(self.lags + self.neighbour_lags))
        own, near = history.own, history.near
        target = own[origins + horizon] - own[origins]            # (o, n)
        seen = (own[origins] + near[origins]) > 0                 # any event before o nearby
        positive = seen & (target > 0)
        quiet = seen & (target == 0)
        if not (target > 0).any():
            raise UsageError(
                f"{self.name} found no event in any of its training periods ({origins.size} "
                f"periods of {horizon} days): widen the window or the filter")
        rng = np.random.default_rng([int(self.seed), n_days, horizon])
        # how busy each row's neighbourhood was before its origin, events per day: rows of busy
        # cells are sampled more often (their rare quiet weeks are what the trees must see)
        busy = (own[origins] + near[origins] / history.n_neighbours) / origins[:, None]
        budget = int(self.max_rows) - origins.size
        rows_o: list[np.ndarray] = []
        rows_c: list[np.ndarray] = []
        weights: list[np.ndarray] = []
        n_pos = int(positive.sum())
        for mask, cap in ((positive, int(budget * _POSITIVE_SHARE)), (quiet, None)):
            flat = np.flatnonzero(mask)
            limit = budget - sum(w.size for w in weights) if cap is None else cap
            flat, weight = _sample(flat, busy.ravel()[flat], limit, rng)
            o_idx, c_idx = np.divmod(flat, mask.shape[1])
            rows_o.append(origins[o_idx])
            rows_c.append(c_idx)
            weights.append(weight)
        d = np.concatenate(rows_o)
        c = np.concatenate(rows_c)
        # the day of the year only once the origins span a year: over less, no origin shares
        # the forecast's season and the trees would read the feature as a clock, carrying the
        # last weeks' noise forward
        seasonal = bool(origins[-1] - origins[0] + horizon >= 365)
        features = self._features(history, d, c, horizon, seasonal)
        y = target[np.searchsorted(origins, d), c].astype(np.float64)
        w = np.concatenate(weights)
        # cells with nothing before o, in themselves or around them: identical rows per
        # origin, which the Poisson loss lets us merge into one (weight n, target the mean)
        unseen = ~seen
        n_unseen = unseen.sum(axis=1)
        keep = n_unseen > 0
        if keep.any():
            unseen_origins = origins[keep]
            zero_rows = self._features(history, unseen_origins,
                                       np.zeros(unseen_origins.size, dtype=np.int64), horizon,
                                       seasonal)
            zero_rows[:, : len(self.lags) + len(self.neighbour_lags) + 1] = 0.0
            mean = (np.where(unseen, target, 0).sum(axis=1)[keep] / n_unseen[keep])
            features = np.concatenate([features, zero_rows])
            y = np.concatenate([y, mean])
            w = np.concatenate([w, n_unseen[keep].astype(np.float64)])
        # the trees learn a factor on the cell's own long-run count (see _baseline): under the
        # Poisson loss, mu = b * f fitted to y with weight w is f fitted to y / b with w * b
        base = self._baseline(history, d, c, horizon)
        if keep.any():
            base = np.concatenate([base, self._baseline(history, origins[keep], None, horizon)])
        y = y / base
        w = w * base
        info = {"training_rows": int(y.size), "training_origins": int(origins.size),
                "seasonal": seasonal,
                "training_positive_rows": n_pos}
        return features, y, w, info
