"""GradientBoostingForecast: the estimator idiom, hand-computed features, exact row weights, a
planted hotspot, a hotspot that moved, caching and errors."""

from __future__ import annotations

import inspect
import sys

import numpy as np
import pytest

pytest.importorskip("sklearn")

from urbansec.domain.events import Events
from urbansec.domain.grid import Grid, HexGrid, SquareGrid
from urbansec.errors import UsageError
from urbansec.forecast.base import ForecastModel, RiskSurface
from urbansec.forecast.models import HistoricalAverage
from urbansec.forecast.models.learned import (
    GradientBoostingForecast,
    _sample,
    _training_origins,
)

CRS = "EPSG:32616"
T0 = np.datetime64("2017-06-01T05:00:00", "s")  # local midnight in Chicago (CDT)
DAY = np.timedelta64(86_400, "s")
X0, Y0 = 440_000.0, 4_630_000.0  # multiples of 250 m
# small and quick: the tests check behaviour, not the benchmark's settings
FAST = {"max_iter": 60, "max_rows": 20_000}


def make_events(x: np.ndarray, y: np.ndarray, t: np.ndarray) -> Events:
    x = np.asarray(x, dtype=float)
    return Events(x=x, y=np.asarray(y, dtype=float), t=np.asarray(t, dtype="datetime64[s]"),
                  category=np.full(x.size, "burglary", dtype=object), crs=CRS,
                  timezone="America/Chicago")


def poisson_cells(rng: np.random.Generator, rate: np.ndarray, days: float,
                  t_end: np.datetime64 = T0, n_side: int = 20) -> Events:
    """Events of a homogeneous Poisson process per cell over ``days`` before ``t_end``;
    ``rate`` (n_side * n_side,) events per cell per day, cells row-major from (X0, Y0)."""
    n = rng.poisson(rate * days)
    cell = np.repeat(np.arange(rate.size), n)
    col, row = cell % n_side, cell // n_side
    x = X0 + (col + rng.random(cell.size)) * 250.0
    y = Y0 + (row + rng.random(cell.size)) * 250.0
    t = t_end - (rng.random(cell.size) * days * 86_400).astype("timedelta64[s]") - np.timedelta64(
        1, "s")
    order = np.argsort(t)
    return make_events(x[order], y[order], t[order])


def study_cells(n_side: int = 20) -> tuple[SquareGrid, np.ndarray]:
    grid = SquareGrid(250.0, CRS)
    cols, rows = np.meshgrid(np.arange(n_side), np.arange(n_side))
    c0, r0 = int(X0 // 250), int(Y0 // 250)
    return grid, np.sort(SquareGrid.key(cols.ravel() + c0, rows.ravel() + r0))


def key_of(col: int, row: int) -> int:
    return int(SquareGrid.key(np.array([int(X0 // 250) + col]),
                              np.array([int(Y0 // 250) + row]))[0])


@pytest.fixture(scope="module")
def planted() -> tuple[Events, SquareGrid, np.ndarray, int]:
    """A year of background at 0.02 events per cell per day on 20 x 20 cells, with cell
    (13, 6) 25 times as busy."""
    rate = np.full(400, 0.02)
    rate[6 * 20 + 13] *= 25
    events = poisson_cells(np.random.default_rng(3), rate, 365.0)
    grid, cells = study_cells()
    return events, grid, cells, key_of(13, 6)


# --- the estimator idiom ------------------------------------------------------------------------


def test_hyper_parameters_are_stored_untouched() -> None:
    model = GradientBoostingForecast(window_days=200, lags=(2, 9), neighbour_lags=(),
                                     max_iter=7, learning_rate=0.5, max_rows=5000, seed=4)
    assert model.get_params() == {"window_days": 200, "lags": (2, 9), "neighbour_lags": (),
                                  "max_iter": 7, "learning_rate": 0.5, "max_rows": 5000,
                                  "seed": 4}
    defaults = {k: p.default for k, p in
                inspect.signature(GradientBoostingForecast.__init__).parameters.items()
                if k != "self"}
    assert GradientBoostingForecast().get_params() == defaults
    assert isinstance(model, ForecastModel)
    assert not [a for a in vars(model) if a.endswith("_") and not a.startswith("_")]
    assert repr(model).startswith("GradientBoostingForecast(window_days=200")


def test_predict_before_fit_is_a_clear_error() -> None:
    grid, cells = study_cells()
    with pytest.raises(UsageError, match="not fitted"):
        GradientBoostingForecast().predict(grid, T0, T0 + 7 * DAY, cells)


def test_fit_returns_self_and_the_surface_is_aligned_and_reproducible(planted) -> None:
    events, grid, cells, _ = planted
    model = GradientBoostingForecast(**FAST)
    assert model.fit(events) is model
    assert model.n_events_ == len(events) and model.timezone_ == "America/Chicago"
    surface = model.predict(grid, T0, T0 + 7 * DAY, cells)
    assert isinstance(surface, RiskSurface)
    assert surface.expected and surface.model == "gbm"
    np.testing.assert_array_equal(surface.keys, cells)
    assert np.all(np.isfinite(surface.risk)) and surface.risk.min() >= 0
    again = GradientBoostingForecast(**FAST).fit(events).predict(grid, T0, T0 + 7 * DAY, cells)
    np.testing.assert_array_equal(surface.risk, again.risk)
    # cells in another order: the same risks, in that order
    shuffled = np.random.default_rng(0).permutation(cells)
    other = GradientBoostingForecast(**FAST).fit(events).predict(grid, T0, T0 + 7 * DAY,
                                                                 shuffled)
    np.testing.assert_array_equal(other.keys, shuffled)
    np.testing.assert_allclose(other.risk, surface.risk[np.searchsorted(cells, shuffled)],
                               rtol=1e-9)


def test_too_few_events_say_how_many_are_needed(planted) -> None:
    events = planted[0]
    model = GradientBoostingForecast()
    with pytest.raises(UsageError, match=r"at least 50 located events"):
        model.fit(events.subset(np.arange(len(events)) < 49))


# --- what it learns --------------------------------------------------------------------------


def test_planted_stationary_hotspot_is_in_the_top_percent(planted) -> None:
    events, grid, cells, hot = planted
    for days in (7, 1):
        surface = GradientBoostingForecast(**FAST).fit(events).predict(
            grid, T0, T0 + days * DAY, cells)
        top = surface.keys[surface.ranking()[: max(1, cells.size // 100)]]
        assert hot in top
        # expected counts: the hot cell's rate (0.5 a day) within a third, the whole city's
        # (0.02 * 399 + 0.5 a day) within a fifth
        risk = surface.risk[np.searchsorted(cells, hot)]
        assert risk == pytest.approx(0.5 * days, rel=0.33)
        assert surface.risk.sum() == pytest.approx((0.02 * 399 + 0.5) * days, rel=0.2)


def test_a_hotspot_that_moved_is_followed() -> None:
    """Cell A was very busy for ten months and then went quiet; cell B became busy a month
    ago. The historical average ranks A about seven times above B; the learned model, which
    saw many cells switch on and off in its training year, moves towards where the hotspot is
    now (monotonic in past counts, it forgets A slowly: see the module)."""
    rng = np.random.default_rng(11)
    days = 365.0
    parts = [poisson_cells(rng, np.full(400, 0.01), days)]
    # 40 cells that each switch on for 60 days at a random time of the year, so the training
    # window shows that recent counts matter more than old ones
    switching = rng.choice(np.arange(1, 399), size=40, replace=False)
    for cell in switching:
        on_end = T0 - rng.integers(0, 300) * DAY
        rate = np.zeros(400)
        rate[cell] = 0.4
        parts.append(poisson_cells(rng, rate, 60.0, t_end=on_end))
    a, b = 0, 399  # corners, away from each other
    rate_a = np.zeros(400)
    rate_a[a] = 0.4
    parts.append(poisson_cells(rng, rate_a, 300.0, t_end=T0 - 65 * DAY))
    rate_b = np.zeros(400)
    rate_b[b] = 0.4
    parts.append(poisson_cells(rng, rate_b, 30.0))
    x = np.concatenate([p.x for p in parts])
    y = np.concatenate([p.y for p in parts])
    t = np.concatenate([p.t for p in parts])
    events = make_events(x, y, t)
    grid, cells = study_cells()
    key_a, key_b = key_of(0, 0), key_of(19, 19)
    ia, ib = np.searchsorted(cells, key_a), np.searchsorted(cells, key_b)
    historical = HistoricalAverage().fit(events).predict(grid, T0, T0 + 7 * DAY, cells)
    assert historical.risk[ia] > 5 * historical.risk[ib]
    learned = GradientBoostingForecast(**FAST).fit(events).predict(grid, T0, T0 + 7 * DAY,
                                                                   cells)
    # B up, A down, against the long-run counts: their ratio moves more than threefold
    assert learned.risk[ib] > 1.5 * historical.risk[ib]
    assert learned.risk[ia] < 0.5 * historical.risk[ia]
    ratio = (learned.risk[ib] / learned.risk[ia]) / (historical.risk[ib] / historical.risk[ia])
    assert ratio > 3
    # both in the top 2% of the 400 cells
    top = set(learned.keys[learned.ranking()[:8]].tolist())
    assert {key_a, key_b} <= top


# --- features and training rows, by hand -------------------------------------------------


def test_features_match_hand_counts() -> None:
    """Cells (0, 0) and its east neighbour (1, 0); events at known days before T0."""
    grid, cells = study_cells(n_side=3)
    own_days = [1.5, 3.5, 6.5, 20.5, 40.5]   # days before T0, in cell (0, 0)
    near_days = [2.5, 10.5]                 # in cell (1, 0)
    filler = np.arange(61) + 0.5            # one a day in the far corner (2, 2), for min_events
    ages = np.array(own_days + near_days + list(filler))
    x = np.array([X0 + 100] * 5 + [X0 + 350] * 2 + [X0 + 600] * 61)
    y = np.array([Y0 + 100] * 7 + [Y0 + 600] * 61)
    t = T0 - (ages * 86_400).astype("timedelta64[s]")
    order = np.argsort(t)
    events = make_events(x[order], y[order], t[order])
    model = GradientBoostingForecast(lags=(1, 7, 28), neighbour_lags=(7, 90)).fit(events)
    neighbours = model._neighbours(grid, cells)
    history = model._history(grid, cells, neighbours, T0, 7)
    assert history.n_days == 61  # the first event is 60.5 days old: 61 whole days
    c = np.searchsorted(cells, key_of(0, 0))
    features = model._features(history, np.array([61, 51]), np.array([c, c]), 7, True)
    names = model.feature_names(seasonal=True)
    assert names == ["own_1d", "own_7d", "own_28d", "neighbours_7d", "neighbours_90d",
                     "own_rate_per_day", "day_of_week", "day_of_year_sin",
                     "day_of_year_cos"]
    at_start = dict(zip(names, features[0], strict=True))
    assert at_start["own_1d"] == 0          # the youngest is 1.5 days old
    assert at_start["own_7d"] == 3
    assert at_start["own_28d"] == 4
    assert at_start["neighbours_7d"] == 1   # the east neighbour's 2.5-day-old event
    # 90 days reach before day 0: 2 events over the 61 days there are, scaled to 90
    assert at_start["neighbours_90d"] == pytest.approx(2 * 90 / 61)
    assert at_start["own_rate_per_day"] == pytest.approx(5 / 61)
    assert at_start["day_of_week"] == 3     # 2017-06-01 was a Thursday
    angle = 2 * np.pi * (151 + 3.5) / 365.25  # 1 June is day 151 of 2017 (from 0), +h/2
    assert at_start["day_of_year_sin"] == pytest.approx(np.sin(angle))
    # ten days earlier (origin index 51): of the cell's events only the 20.5- and 40.5-day-old
    # ones are behind it, of the neighbour's the 10.5-day-old one (its day, index 50, is)
    earlier = dict(zip(names, features[1], strict=True))
    assert earlier["own_7d"] == 0 and earlier["own_28d"] == 1
    assert earlier["neighbours_7d"] == 1
    assert earlier["neighbours_90d"] == pytest.approx(90 / 51)
    assert earlier["own_rate_per_day"] == pytest.approx(2 / 51)
    assert earlier["day_of_week"] == 0      # 2017-05-22, a Monday


def test_training_origins_step_back_by_the_horizon_to_half_the_history() -> None:
    # 365 days, weekly: 358, 351, ... down to the first at or after day 182 (183)
    origins = _training_origins(365, 7, 365)
    assert origins[-1] == 358 and origins[0] == 183 and np.all(np.diff(origins) == 7)
    # the history covers the longest lag: origins from there on
    np.testing.assert_array_equal(_training_origins(100, 1, 28), np.arange(28, 100))
    # a history too short for half of it: at least one origin, never past the start
    np.testing.assert_array_equal(_training_origins(20, 14, 365), [6])


def test_sampling_is_unbiased_and_keeps_the_busiest_rows() -> None:
    rng = np.random.default_rng(0)
    size = rng.exponential(1.0, 10_000)
    size[:5] = 1000.0
    rows = np.arange(10_000)
    totals = []
    for seed in range(100):
        kept, weight = _sample(rows, size, 500, np.random.default_rng(seed))
        assert np.unique(kept).size == kept.size and abs(kept.size - 500) <= 1
        assert set(range(5)) <= set(kept.tolist())  # the busiest rows are always kept
        totals.append([weight.sum(), (weight * size[kept]).sum()])
    mean = np.mean(totals, axis=0)
    assert mean[0] == pytest.approx(10_000, rel=0.01)
    assert mean[1] == pytest.approx(size.sum(), rel=0.01)
    kept, weight = _sample(rows, size, 20_000, rng)  # fewer rows than the limit: all, weight 1
    np.testing.assert_array_equal(kept, rows)
    np.testing.assert_array_equal(weight, 1.0)


@pytest.mark.parametrize("max_rows", [1000, 200_000])
def test_training_rows_are_weighted_to_stand_for_every_cell_and_origin(planted, max_rows
                                                                       ) -> None:
    """Sampled or not, the weights add up to the offsets of every (cell, origin) and the
    weighted targets to the events of every training period (the Poisson loss of the factor
    over the offset: an unbiased estimate of the full one): exactly without sampling,
    closely with it."""
    events, grid, cells, _ = planted
    model = GradientBoostingForecast(max_rows=max_rows).fit(events)
    neighbours = model._neighbours(grid, cells)
    history = model._history(grid, cells, neighbours, T0, 7)
    features, target, weight, info = model._training_rows(history, 7)
    origins = np.arange(183, 359, 7)
    assert info["training_origins"] == origins.size
    assert target.size == features.shape[0] == weight.size == info["training_rows"]
    assert info["training_rows"] <= max_rows
    sampled = max_rows < info["training_positive_rows"] * 2
    tolerance = 0.05 if sampled else 1e-9
    offsets = (history.own[origins] + 2.0) * 7 / origins[:, None]
    assert weight.sum() == pytest.approx(offsets.sum(), rel=tolerance)
    full = (history.own[origins + 7] - history.own[origins]).sum()
    assert (target * weight).sum() == pytest.approx(full, rel=tolerance)


def test_a_short_period_is_scaled_from_whole_days(planted) -> None:
    events, grid, cells, _ = planted
    model = GradientBoostingForecast(**FAST).fit(events)
    day = model.predict(grid, T0, T0 + DAY, cells)
    half = model.predict(grid, T0, T0 + DAY // 2, cells)
    assert half.details["horizon_days"] == day.details["horizon_days"] == 1
    np.testing.assert_allclose(half.risk, day.risk / 2, rtol=1e-12)


def test_update_keeps_the_trees_and_fit_drops_them(planted) -> None:
    events, grid, cells, _ = planted
    model = GradientBoostingForecast(**FAST)
    early = events.subset(events.t < T0 - 7 * DAY)
    first = model.fit(early).predict(grid, T0 - 7 * DAY, T0, cells)
    assert first.details["train_seconds"] > 0
    assert first.details["trained_at"] == str(T0 - 7 * DAY)
    cached = model.predict(grid, T0 - 7 * DAY, T0, cells)
    assert cached.details["train_seconds"] == 0
    np.testing.assert_array_equal(cached.risk, first.risk)
    later = model.update(events).predict(grid, T0, T0 + 7 * DAY, cells)
    assert later.details["train_seconds"] == 0
    assert later.details["trained_at"] == str(T0 - 7 * DAY)   # the same trees ...
    assert not np.array_equal(later.risk, first.risk)          # ... on fresher counts
    refitted = model.fit(events).predict(grid, T0, T0 + 7 * DAY, cells)
    assert refitted.details["trained_at"] == str(T0)
    assert refitted.details["train_seconds"] > 0


def test_hexagons_work(planted) -> None:
    events, _, _, _ = planted
    grid = HexGrid(9, CRS)
    cells = grid.study_cells(events.x, events.y)
    surface = GradientBoostingForecast(**FAST).fit(events).predict(grid, T0, T0 + 7 * DAY,
                                                                   cells)
    np.testing.assert_array_equal(surface.keys, cells)
    hot = grid.locate(np.array([X0 + 13.5 * 250]), np.array([Y0 + 6.5 * 250]))[0]
    top = surface.keys[surface.ranking()[:5]]
    assert hot in top


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("params, message", [
    ({"window_days": 0}, "window_days"),
    ({"lags": ()}, "lags needs at least one"),
    ({"lags": (1, 2.5)}, "whole numbers of days"),
    ({"lags": (7, 7)}, "repeats"),
    ({"neighbour_lags": (0,)}, "whole numbers of days"),
    ({"neighbour_lags": 7}, "sequence"),
    ({"max_iter": 0}, "max_iter"),
    ({"max_rows": 10}, "max_rows"),
    ({"learning_rate": 2.0}, "learning_rate"),
    ({"seed": -1}, "seed"),
])
def test_bad_hyper_parameters_are_usage_errors(planted, params, message) -> None:
    with pytest.raises(UsageError, match=message):
        GradientBoostingForecast(**params).fit(planted[0])


def test_a_history_shorter_than_the_horizon_plus_two_weeks_is_refused(planted) -> None:
    events, grid, cells, _ = planted
    recent = events.subset(events.t >= T0 - 20 * DAY)
    model = GradientBoostingForecast(**FAST).fit(recent)
    with pytest.raises(UsageError, match="at least 21 days of events"):
        model.predict(grid, T0, T0 + 7 * DAY, cells)
    model.predict(grid, T0, T0 + DAY, cells)  # 15 days are enough for one day ahead


def test_no_look_ahead(planted) -> None:
    events, grid, cells, _ = planted
    model = GradientBoostingForecast(**FAST).fit(events)
    with pytest.raises(UsageError, match="before the forecast start"):
        model.predict(grid, T0 - 3 * DAY, T0 + 4 * DAY, cells)


class _OtherGrid(Grid):
    """A grid that is neither square nor H3 (square cells behind another type)."""

    crs = CRS
    label = "other cells"

    def __init__(self) -> None:
        self.inner = SquareGrid(250.0, CRS)

    def locate(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return self.inner.locate(x, y)

    def study_cells(self, x: np.ndarray, y: np.ndarray, area: object = None) -> np.ndarray:
        return self.inner.study_cells(x, y)

    def cell_ids(self, keys: np.ndarray) -> list[str]:
        return self.inner.cell_ids(keys)

    def centroids(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.inner.centroids(keys)

    def cell_area_km2(self, keys: np.ndarray) -> np.ndarray:
        return self.inner.cell_area_km2(keys)

    def polygons(self, keys: np.ndarray) -> list:
        return self.inner.polygons(keys)


def test_grids_without_neighbours_are_refused(planted) -> None:
    model = GradientBoostingForecast(**FAST).fit(planted[0])
    with pytest.raises(UsageError, match="square or H3 grids, not other cells"):
        model.predict(_OtherGrid(), T0, T0 + DAY, study_cells()[1])


def test_without_scikit_learn_fit_says_how_to_install_it(planted, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "sklearn.ensemble", None)
    with pytest.raises(UsageError, match="pip install scikit-learn"):
        GradientBoostingForecast().fit(planted[0])
