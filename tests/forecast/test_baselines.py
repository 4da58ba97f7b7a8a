"""Naive and HistoricalAverage: hand-computed counts, window rules, a planted hotspot, errors."""

from __future__ import annotations

import numpy as np
import pytest

from urbansec.domain.events import Events
from urbansec.domain.grid import HexGrid, SquareGrid
from urbansec.errors import UsageError
from urbansec.forecast.models import MODELS, HistoricalAverage, Naive

CRS = "EPSG:32616"
T0 = np.datetime64("2017-06-01T00:00:00", "s")
DAY = np.timedelta64(86_400, "s")
X0, Y0 = 440_000.0, 4_630_000.0  # a corner of Chicago in UTM 16N; multiples of 250 m


def make_events(x: list[float] | np.ndarray, y: list[float] | np.ndarray,
                t: list[np.datetime64] | np.ndarray) -> Events:
    x = np.asarray(x, dtype=float)
    return Events(x=x, y=np.asarray(y, dtype=float), t=np.asarray(t, dtype="datetime64[s]"),
                  category=np.full(x.size, "burglary", dtype=object), crs=CRS)


def planted_hotspot(seed: int = 1, days: int = 365, n_side: int = 20, rate: float = 0.1,
                    factor: float = 20.0, hot: tuple[int, int] = (13, 6)
                    ) -> tuple[Events, SquareGrid, np.ndarray, int]:
    """A homogeneous Poisson process on n_side x n_side 250 m cells over ``days`` before T0,
    ``rate`` events per cell per day, the cell ``hot`` (col, row) ``factor`` times as busy.
    Returns the events, the grid, the study cells and the hot cell's key."""
    rng = np.random.default_rng(seed)
    grid = SquareGrid(250.0, CRS)
    c0, r0 = int(X0 // 250), int(Y0 // 250)
    cols, rows = np.meshgrid(np.arange(n_side), np.arange(n_side))
    cols, rows = cols.ravel(), rows.ravel()
    lam = np.full(cols.size, rate * days)
    is_hot = (cols == hot[0]) & (rows == hot[1])
    lam[is_hot] *= factor
    n = rng.poisson(lam)
    col = np.repeat(cols, n) + c0
    row = np.repeat(rows, n) + r0
    x = (col + rng.random(col.size)) * 250.0
    y = (row + rng.random(row.size)) * 250.0
    t = T0 - (rng.random(col.size) * days * 86_400).astype("timedelta64[s]") - np.timedelta64(
        1, "s")
    cells = np.sort(SquareGrid.key(cols + c0, rows + r0))
    hot_key = int(SquareGrid.key(np.array([hot[0] + c0]), np.array([hot[1] + r0]))[0])
    return make_events(x, y, t), grid, cells, hot_key


@pytest.fixture(scope="module")
def tiny() -> tuple[Events, SquareGrid, np.ndarray]:
    """Events in three 100 m cells A, B, C (cols 0, 1, 2 of row 0 at X0, Y0)."""
    grid = SquareGrid(100.0, CRS)
    a, b, c = X0 + 50, X0 + 150, X0 + 250
    x = [a, a, b, c, a, b]
    ages = [1, 3, 6, 7, 8, 30]  # days before T0; C's event is exactly 7 days old
    t = [T0 - age * DAY for age in ages]
    events = make_events(x, [Y0 + 50] * 6, t)
    cells = grid.study_cells(np.array([X0 + 1, X0 + 399]), np.array([Y0 + 1, Y0 + 1]))
    return events, grid, cells


def test_registry_names_the_baselines() -> None:
    assert MODELS["naive"] is Naive
    assert MODELS["historical"] is HistoricalAverage
    assert Naive().name == "naive" and HistoricalAverage().name == "historical"


def test_naive_counts_the_last_period_scaled_to_the_horizon(tiny) -> None:
    events, grid, cells = tiny
    assert cells.size == 4  # A, B, C and an empty D
    surface = Naive(period_days=7.0).fit(events).predict(grid, T0, T0 + 2 * DAY, cells)
    # last 7 days: A at 1 and 3 days, B at 6, C at exactly 7 (the window is [T0 - 7d, T0))
    np.testing.assert_allclose(surface.risk, np.array([2, 1, 1, 0]) * 2 / 7)
    assert surface.expected and surface.model == "naive"
    assert surface.details["window_events"] == 4
    np.testing.assert_array_equal(surface.keys, cells)


def test_historical_average_is_the_daily_mean_times_the_horizon(tiny) -> None:
    events, grid, cells = tiny
    surface = HistoricalAverage(window_days=28.0).fit(events).predict(
        grid, T0, T0 + 2 * DAY, cells)
    # 28 days: A 3 events (1, 3, 8 days), B 1 (6; its 30-day-old one is out), C 1
    np.testing.assert_allclose(surface.risk, np.array([3, 1, 1, 0]) * 2 / 28)
    assert surface.details["window_days"] == 28.0


def test_a_short_history_gives_the_rate_over_the_span_it_covers(tiny) -> None:
    events, grid, cells = tiny
    # the first event is 30 days old: a 365-day window only saw those 30 days
    surface = HistoricalAverage(window_days=365.0).fit(events).predict(
        grid, T0, T0 + DAY, cells)
    np.testing.assert_allclose(surface.risk, np.array([3, 2, 1, 0]) / 30)
    assert surface.details["window_days"] == pytest.approx(30.0)
    # the origin may be later than the data: the window then only holds what it holds
    late = HistoricalAverage(window_days=28.0).fit(events).predict(
        grid, T0 + 20 * DAY, T0 + 21 * DAY, cells)
    # [T0 - 8d, T0 + 20d): every event but B's 30-day-old one, the 8-day-old A one just in
    np.testing.assert_allclose(late.risk, np.array([3, 1, 1, 0]) / 28)


def test_cells_in_any_order_are_echoed_and_aligned(tiny) -> None:
    events, grid, cells = tiny
    model = HistoricalAverage(window_days=28.0).fit(events)
    sorted_surface = model.predict(grid, T0, T0 + DAY, cells)
    perm = np.array([2, 0, 3, 1])
    shuffled = model.predict(grid, T0, T0 + DAY, cells[perm])
    np.testing.assert_array_equal(shuffled.keys, cells[perm])
    np.testing.assert_allclose(shuffled.risk, sorted_surface.risk[perm])
    # default cells: the bounding box of the training events (A, B, C)
    default = model.predict(grid, T0, T0 + DAY)
    np.testing.assert_array_equal(default.keys, cells[:3])
    # an empty study area has the empty surface
    empty = model.predict(grid, T0, T0 + DAY, np.empty(0, dtype=np.int64))
    assert empty.keys.size == 0 and empty.risk.size == 0


def test_hex_grid_counts_match_the_grid(tiny) -> None:
    events, _, _ = tiny
    grid = HexGrid(10, CRS)
    cells = grid.study_cells(events.x, events.y)
    surface = HistoricalAverage(window_days=28.0).fit(events).predict(grid, T0, T0 + DAY, cells)
    window = events.t >= T0 - 28 * DAY
    expected = grid.counts(cells, events.x[window], events.y[window]) / 28
    np.testing.assert_allclose(surface.risk, expected)
    assert surface.risk.sum() == pytest.approx(5 / 28)


@pytest.mark.parametrize("model", [Naive(), HistoricalAverage()], ids=["naive", "historical"])
def test_planted_hotspot_is_ranked_first(model) -> None:
    events, grid, cells, hot = planted_hotspot()
    surface = model.fit(events).predict(grid, T0, T0 + 7 * DAY, cells)
    assert surface.keys[surface.ranking()[0]] == hot
    if isinstance(model, HistoricalAverage):
        # the estimated rates: 2 a day in the hot cell, 0.1 elsewhere (7-day horizon)
        hot_pos = int(np.flatnonzero(cells == hot)[0])
        assert surface.risk[hot_pos] == pytest.approx(14.0, rel=0.1)
        assert np.delete(surface.risk, hot_pos).mean() == pytest.approx(0.7, rel=0.05)


def test_same_input_same_output_and_update_refits() -> None:
    events, grid, cells, _ = planted_hotspot(seed=2)
    first = HistoricalAverage().fit(events).predict(grid, T0, T0 + DAY, cells)
    model = HistoricalAverage().fit(events.subset(events.t < T0 - 40 * DAY))
    second = model.update(events).predict(grid, T0, T0 + DAY, cells)
    np.testing.assert_array_equal(first.risk, second.risk)


def test_unlocated_events_are_ignored(tiny) -> None:
    events, grid, cells = tiny
    extra = make_events([np.nan], [np.nan], [T0 - DAY])
    both = Events(x=np.concatenate([events.x, extra.x]), y=np.concatenate([events.y, extra.y]),
                  t=np.concatenate([events.t, extra.t]),
                  category=np.concatenate([events.category, extra.category]), crs=CRS)
    model = Naive().fit(both)
    assert model.n_events_ == len(events)
    surface = model.predict(grid, T0, T0 + 2 * DAY, cells)
    np.testing.assert_allclose(surface.risk, np.array([2, 1, 1, 0]) * 2 / 7)


@pytest.mark.parametrize("cls", [Naive, HistoricalAverage])
def test_too_few_events_say_how_many(cls, tiny) -> None:
    events, _, _ = tiny
    with pytest.raises(UsageError, match="at least 1"):
        cls().fit(events.subset(np.zeros(len(events), dtype=bool)))
    unlocated = make_events([np.nan], [np.nan], [T0 - DAY])
    with pytest.raises(UsageError, match="at least 1"):
        cls().fit(unlocated)


@pytest.mark.parametrize("value", [0, -7.0, float("nan"), float("inf"), "7", True, None])
def test_bad_hyper_parameters(value, tiny) -> None:
    events, _, _ = tiny
    with pytest.raises(UsageError, match="period_days"):
        Naive(period_days=value).fit(events)
    with pytest.raises(UsageError, match="window_days"):
        HistoricalAverage(window_days=value).fit(events)


def test_predict_errors(tiny) -> None:
    events, grid, cells = tiny
    with pytest.raises(UsageError, match="not fitted"):
        Naive().predict(grid, T0, T0 + DAY, cells)
    model = Naive().fit(events)
    with pytest.raises(UsageError, match="end after it starts"):
        model.predict(grid, T0, T0, cells)
    with pytest.raises(UsageError, match="end after it starts"):
        model.predict(grid, T0, T0 - DAY, cells)
    # a start before the last training event would let the model see the future
    with pytest.raises(UsageError, match="before the start"):
        model.predict(grid, T0 - 2 * DAY, T0, cells)
    with pytest.raises(UsageError, match="not a time"):
        model.predict(grid, "tomorrow", T0, cells)
    with pytest.raises(UsageError, match="EPSG:32617"):
        model.predict(SquareGrid(100.0, "EPSG:32617"), T0, T0 + DAY, cells)
    with pytest.raises(UsageError, match="repeat"):
        model.predict(grid, T0, T0 + DAY, cells[[0, 1, 1]])
    with pytest.raises(UsageError, match="integer"):
        model.predict(grid, T0, T0 + DAY, cells.astype(float))
