"""Rolling-origin backtest: fold dates, windows, refit/update schedule, reproducibility, empty
folds, bootstrap intervals and a model that is truly better than the baseline."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pytest

from urbansec.domain.events import Events
from urbansec.domain.grid import Grid, HexGrid, SquareGrid
from urbansec.errors import UsageError
from urbansec.forecast.backtest import bootstrap_mean, fold_origins, rolling_origin_backtest
from urbansec.forecast.base import ForecastModel, RiskSurface, as_instant
from urbansec.forecast.metrics import evaluate

CRS = "EPSG:32616"
GRID = SquareGrid(100.0, CRS)
X0, Y0 = 440_000.0, 4_630_000.0  # a corner in Chicago's UTM zone, multiple of 100 m
SIDE = 20  # 20 x 20 cells of 100 m
T0 = np.datetime64("2017-01-01T00:00:00", "s")
CELLS = GRID.study_cells(np.array([X0 + 1, X0 + SIDE * 100 - 1]),
                         np.array([Y0 + 1, Y0 + SIDE * 100 - 1]))


def intensity() -> np.ndarray:
    """True expected events per cell per day: a flat background and two hot spots."""
    cx, cy = GRID.centroids(CELLS)
    d1 = np.hypot(cx - (X0 + 500), cy - (Y0 + 500))
    d2 = np.hypot(cx - (X0 + 1500), cy - (Y0 + 1300))
    return 0.01 + 0.25 * np.exp(-(d1 / 200) ** 2) + 0.15 * np.exp(-(d2 / 250) ** 2)


def simulate(days: int, seed: int, gap: tuple[int, int] | None = None) -> Events:
    """Poisson events from ``intensity()``, uniform within cells and days; none during
    ``gap`` (day numbers) when given."""
    rng = np.random.default_rng(seed)
    rate = intensity()
    counts = rng.poisson(np.tile(rate, (days, 1)))  # (days, cells)
    day, cell = np.nonzero(counts)
    reps = counts[day, cell]
    day, cell = np.repeat(day, reps), np.repeat(cell, reps)
    if gap is not None:
        keep = (day < gap[0]) | (day >= gap[1])
        day, cell = day[keep], cell[keep]
    cols, rows = GRID.col_row(CELLS[cell])
    x = (cols + rng.random(cell.size)) * 100.0
    y = (rows + rng.random(cell.size)) * 100.0
    t = T0 + (day * 86_400 + rng.integers(0, 86_400, cell.size)).astype("timedelta64[s]")
    # a few unlocated events, which a backtest must ignore
    x[:5] = np.nan
    return Events(x=x, y=y, t=t, category=np.full(x.size, "burglary", dtype=object), crs=CRS)


class Counts(ForecastModel):
    """Training counts per cell: a stand-in for HistoricalAverage."""

    name = "counts"

    def __init__(self, min_events: int = 1) -> None:
        self.min_events = min_events

    def fit(self, events: Events) -> Counts:
        located = self._check_events(events)
        self.x_, self.y_ = located.x, located.y
        self.window_ = (located.t.min(), located.t.max()) if len(located) else None
        return self

    def predict(self, grid: Grid, start: Any, end: Any, cells: np.ndarray | None = None
                ) -> RiskSurface:
        keys = np.asarray(cells, dtype=np.int64)
        risk = grid.counts(keys, self.x_, self.y_)
        return RiskSurface(grid, keys, risk, as_instant(start), as_instant(end), self.name)


class Constant(ForecastModel):
    """The same risk everywhere: its flags are random (seeded tie-breaks)."""

    name = "constant"

    def fit(self, events: Events) -> Constant:
        self.fitted_ = True
        return self

    def predict(self, grid: Grid, start: Any, end: Any, cells: np.ndarray | None = None
                ) -> RiskSurface:
        keys = np.asarray(cells, dtype=np.int64)
        return RiskSurface(grid, keys, np.ones(keys.size), as_instant(start), as_instant(end),
                           self.name)


class Oracle(Constant):
    """Knows the true intensity: truly better than noisy short-window counts."""

    name = "oracle"

    def predict(self, grid: Grid, start: Any, end: Any, cells: np.ndarray | None = None
                ) -> RiskSurface:
        keys = np.asarray(cells, dtype=np.int64)
        assert np.array_equal(keys, CELLS)
        return RiskSurface(grid, keys, intensity(), as_instant(start), as_instant(end),
                           self.name)


class Recorder(Counts):
    """Counts that records every call, to check windows and the refit/update schedule."""

    calls: ClassVar[list[tuple[str, np.datetime64, np.datetime64, int]]] = []

    def fit(self, events: Events) -> Recorder:
        Recorder.calls.append(("fit", events.t.min(), events.t.max(), id(self)))
        return super().fit(events)  # type: ignore[return-value]

    def update(self, events: Events) -> Recorder:
        Recorder.calls.append(("update", events.t.min(), events.t.max(), id(self)))
        self.x_, self.y_ = events.x, events.y
        return self


def test_fold_origins_and_counts() -> None:
    origins = fold_origins("2017-01-01", "2017-01-31", 7)
    assert [str(o)[:10] for o in origins] == ["2017-01-01", "2017-01-08", "2017-01-15",
                                               "2017-01-22"]
    # step 3 days: origins 1, 4, ..., 22 (22 + 7 <= 31)
    assert fold_origins("2017-01-01", "2017-01-31", 7, 3).size == 8
    # the last test period may end exactly at ``end``
    assert fold_origins("2017-01-01", "2017-01-29", 7).size == 4
    assert fold_origins("2017-01-01", "2017-01-28T23:59:59", 7).size == 3
    with pytest.raises(UsageError, match="does not fit"):
        fold_origins("2017-01-01", "2017-01-05", 7)


def test_fold_dates_windows_and_event_counts() -> None:
    events = simulate(60, seed=1)
    Recorder.calls.clear()
    result = rolling_origin_backtest(
        events, GRID, CELLS, {"rec": Recorder}, start="2017-01-15", end="2017-02-26",
        horizon_days=7, step_days=7, train_days=14, coverages=(0.05, 0.1), n_boot=200)
    assert result.n_folds == 6
    assert str(result.origins[0]) == "2017-01-15T00:00:00"
    assert np.all(result.ends - result.origins == np.timedelta64(7 * 86_400, "s"))
    located = events.located
    for f in range(result.n_folds):
        in_test = located & (events.t >= result.origins[f]) & (events.t < result.ends[f])
        assert result.n_events[f] == in_test.sum()
        kind, first, last, _ = Recorder.calls[f]
        assert kind == "fit"
        # the training window is [origin - 14 days, origin)
        assert first >= result.origins[f] - np.timedelta64(14 * 86_400, "s")
        assert last < result.origins[f]
        assert first < result.origins[f] - np.timedelta64(13 * 86_400, "s")
    assert result.events_per_cell.sum() == result.n_events.sum()
    rows = result.fold_rows()
    assert len(rows) == 6 and rows[0]["model"] == "rec" and "pai_10" in rows[0]


def test_refit_every_uses_update_in_between() -> None:
    events = simulate(60, seed=2)
    Recorder.calls.clear()
    result = rolling_origin_backtest(
        events, GRID, CELLS, {"rec": Recorder}, start="2017-01-15", end="2017-02-26",
        horizon_days=7, train_days=14, refit_every=3, n_boot=100)
    kinds = [c[0] for c in Recorder.calls]
    assert kinds == ["fit", "update", "update", "fit", "update", "update"]
    np.testing.assert_array_equal(result.refitted[0], [True, False, False, True, False, False])
    ids = [c[3] for c in Recorder.calls]
    # a full fit starts from a fresh model; updates refresh the previous one
    assert ids[0] == ids[1] == ids[2] != ids[3] == ids[4] == ids[5]
    # update received the fold's own window
    assert Recorder.calls[1][2] < result.origins[1]
    assert Recorder.calls[1][1] >= result.origins[1] - np.timedelta64(14 * 86_400, "s")


def test_reproducible_with_a_seed_and_flags_rescore() -> None:
    events = simulate(70, seed=3)
    models = {"historical": Counts, "constant": Constant}
    kwargs: dict[str, Any] = {"start": "2017-02-01", "end": "2017-03-10", "horizon_days": 1,
                              "train_days": 28, "n_boot": 300}
    a = rolling_origin_backtest(events, GRID, CELLS, models, seed=5, **kwargs)
    b = rolling_origin_backtest(events, GRID, CELLS, models, seed=5, **kwargs)
    c = rolling_origin_backtest(events, GRID, CELLS, models, seed=6, **kwargs)
    assert a.n_folds == 37
    for name in a.scores:
        np.testing.assert_array_equal(a.scores[name], b.scores[name])
    assert a.summary_rows() == b.summary_rows()
    np.testing.assert_array_equal(a.flagged_masks("constant"), b.flagged_masks("constant"))
    # another seed breaks the constant model's ties differently
    assert not np.array_equal(a.flagged_masks("constant"), c.flagged_masks("constant"))
    # ties are not broken the same way in every fold (no fake concentration)
    masks = a.flagged_masks("constant", 0.1)
    assert not np.array_equal(masks[0], masks[1])
    # the stored flags reproduce the stored hit rates
    for name in ("historical", "constant"):
        masks = a.flagged_masks(name, 0.05)
        i = a.models.index(name)
        assert np.all(masks.sum(axis=1) == round(0.05 * CELLS.size))
        for f in range(a.n_folds):
            t = events.t
            sel = events.located & (t >= a.origins[f]) & (t < a.ends[f])
            observed = GRID.counts(CELLS, events.x[sel], events.y[sel])
            if observed.sum():
                assert a.scores["hit_rate"][i, f, 2] == pytest.approx(
                    observed[masks[f]].sum() / observed.sum())
    reports = a.bias()
    assert set(reports) == {"historical", "constant"}
    assert reports["constant"].n_folds == a.n_folds


def test_truly_better_model_beats_the_baseline_and_random_loses() -> None:
    events = simulate(150, seed=4)
    result = rolling_origin_backtest(
        events, GRID, CELLS,
        {"historical": Counts, "oracle": Oracle, "constant": Constant},
        start="2017-01-15", end="2017-05-30", horizon_days=7, train_days=7, seed=1)
    assert result.n_folds == 19
    rows = {(r.model, r.metric, r.coverage): r for r in result.summary}
    for metric in ("hit_rate", "pai", "pei"):
        oracle = rows[("oracle", metric, 0.1)]
        assert oracle.low <= oracle.mean <= oracle.high
        assert oracle.diff_low > 0 and oracle.better is True
        rand = rows[("constant", metric, 0.1)]
        assert rand.diff_high < 0 and rand.better is False
        base = rows[("historical", metric, 0.1)]
        assert base.better is None and base.diff == 0.0
    assert rows[("oracle", "auc", None)].better is True
    # a random forecast's PAI is about 1, the oracle's far above
    assert rows[("constant", "pai", 0.05)].low < 1.0 < rows[("constant", "pai", 0.05)].high
    assert rows[("oracle", "pai", 0.05)].mean > 3
    d = result.summary_rows()[0]
    assert set(d) >= {"model", "metric", "coverage", "mean", "low", "high",
                      "diff_vs_historical", "folds"}
    assert d["coverage"] == 1 and d["folds"] == 19
    # mean curve: from 0 to 1, oracle above random
    assert result.curve.shape == (3, 101)
    assert result.curve[1, 10] > result.curve[2, 10]


def test_empty_folds_are_reported_not_crashed() -> None:
    events = simulate(60, seed=5, gap=(35, 42))  # no event from Feb 5 to Feb 11
    result = rolling_origin_backtest(
        events, GRID, CELLS, {"historical": Counts}, start="2017-01-29", end="2017-02-26",
        horizon_days=7, train_days=14, n_boot=100)
    assert result.n_folds == 4
    np.testing.assert_array_equal(result.empty, [False, True, False, False])
    assert np.all(np.isnan(result.scores["pai"][0, 1]))
    row = next(r for r in result.summary if r.metric == "pai")
    assert row.folds == 3
    assert result.fold_rows()[1]["empty"] is True


def test_clear_errors() -> None:
    events = simulate(30, seed=6)
    common: dict[str, Any] = {"start": "2017-01-10", "end": "2017-01-30", "train_days": 7}
    with pytest.raises(UsageError, match="longer than the data"):
        rolling_origin_backtest(events, GRID, CELLS, {"h": Counts}, horizon_days=60, **common)
    with pytest.raises(UsageError, match="does not fit"):
        rolling_origin_backtest(events, GRID, CELLS, {"h": Counts}, horizon_days=25, **common)
    with pytest.raises(UsageError, match=r"fold 1 of 2 .* model h: counts needs at least "
                                         r"1000000 located events"):
        rolling_origin_backtest(events, GRID, CELLS, {"h": lambda: Counts(min_events=10**6)},
                                horizon_days=10, **common)
    with pytest.raises(UsageError, match="at least one model"):
        rolling_origin_backtest(events, GRID, CELLS, {}, horizon_days=7, **common)
    with pytest.raises(UsageError, match="refit_every"):
        rolling_origin_backtest(events, GRID, CELLS, {"h": Counts}, horizon_days=7,
                                refit_every=0, **common)
    with pytest.raises(UsageError, match="positive number of days"):
        rolling_origin_backtest(events, GRID, CELLS, {"h": Counts}, horizon_days=-1, **common)
    with pytest.raises(UsageError, match="coverage"):
        rolling_origin_backtest(events, GRID, CELLS, {"h": Counts}, horizon_days=7,
                                coverages=(0.0,), **common)
    result = rolling_origin_backtest(events, GRID, CELLS, {"h": Counts}, horizon_days=7,
                                     n_boot=50, **common)
    with pytest.raises(UsageError, match="was not evaluated"):
        result.flagged_masks("h", 0.5)
    with pytest.raises(UsageError, match="no model"):
        result.flagged_masks("sepp")
    # no baseline in the run: differences are NaN, never "better"
    assert all(r.better is None and np.isnan(r.diff) for r in result.summary)


def test_progress_is_reported_per_fold_and_model() -> None:
    events = simulate(40, seed=7)
    seen: list[tuple[int, int]] = []
    rolling_origin_backtest(events, GRID, CELLS, {"historical": Counts, "c": Constant},
                            start="2017-01-15", end="2017-02-05", horizon_days=7,
                            train_days=14, n_boot=50, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(i, 6) for i in range(1, 7)]


def test_bootstrap_interval_contains_the_mean_and_has_normal_width() -> None:
    rng = np.random.default_rng(8)
    values = rng.normal(2.0, 1.0, 200)
    mean, low, high, n = bootstrap_mean(values, n_boot=2000, seed=3)
    assert n == 200 and mean == pytest.approx(values.mean())
    assert low < mean < high
    half = 1.96 * values.std(ddof=1) / np.sqrt(200)
    assert (high - low) / 2 == pytest.approx(half, rel=0.12)
    # reproducible, and NaNs (empty folds) ignored
    assert bootstrap_mean(np.r_[values, np.nan], n_boot=2000, seed=3) == (mean, low, high, n)
    assert bootstrap_mean(np.array([5.0]))[1:3] == (5.0, 5.0)
    assert np.isnan(bootstrap_mean(np.array([np.nan]))[0])


class Distinct(Constant):
    """The true intensity made strictly decreasing in cell order: no ties at all."""

    name = "distinct"

    @staticmethod
    def risk() -> np.ndarray:
        return intensity() + 1e-9 * np.arange(CELLS.size)[::-1]

    def predict(self, grid: Grid, start: Any, end: Any, cells: np.ndarray | None = None
                ) -> RiskSurface:
        keys = np.asarray(cells, dtype=np.int64)
        return RiskSurface(grid, keys, self.risk(), as_instant(start), as_instant(end),
                           self.name)


def test_backtest_scores_match_direct_evaluation_of_one_fold() -> None:
    events = simulate(40, seed=9)
    result = rolling_origin_backtest(events, GRID, CELLS, {"d": Distinct},
                                     start="2017-01-20", end="2017-01-27", horizon_days=7,
                                     train_days=7, n_boot=50)
    sel = events.located & (events.t >= result.origins[0]) & (events.t < result.ends[0])
    observed = GRID.counts(CELLS, events.x[sel], events.y[sel])
    direct = evaluate(Distinct.risk(), observed, seed=12345)  # no ties: the seed is moot
    for metric in ("hit_rate", "pai", "pei", "pei_star"):
        np.testing.assert_allclose(result.scores[metric][0, 0], getattr(direct, metric))
    assert result.scores["auc"][0, 0] == pytest.approx(direct.auc)
    assert result.scores["spearman"][0, 0] == pytest.approx(direct.spearman)


def test_hexagons_are_flagged_by_area() -> None:
    events = simulate(40, seed=10)
    hexes = HexGrid(10, CRS)
    cells = hexes.study_cells(events.x, events.y)
    result = rolling_origin_backtest(events, hexes, cells, {"historical": Counts},
                                     start="2017-01-15", end="2017-02-05", horizon_days=7,
                                     train_days=14, coverages=(0.05, 0.1), n_boot=50)
    areas = hexes.cell_area_km2(result.cells)
    assert areas.std() > 0  # hexagons differ in area: coverage is an area share
    masks = result.flagged_masks("historical", 0.1)
    for f in range(result.n_folds):
        share = areas[masks[f]].sum() / areas.sum()
        assert share == pytest.approx(result.area_share[0, f, 1])
        assert abs(share - 0.1) < areas.max() / areas.sum()
    assert np.all(np.isfinite(result.scores["pai"]))


def test_better_needs_the_whole_interval_above_zero() -> None:
    from urbansec.forecast.backtest import _summarise
    from urbansec.forecast.metrics import COVERAGE_METRICS, RANKING_METRICS

    folds = 40
    rng = np.random.default_rng(13)
    base = rng.uniform(0.2, 0.4, folds)
    # half the folds +0.11, half -0.09: mean gain +0.01, interval about +-0.03
    noisy = base + rng.permutation(np.repeat([-0.1, 0.1], folds // 2)) + 0.01
    steady = base + 0.01  # the same mean gain in every fold
    scores = {m: np.stack([base, noisy, steady])[:, :, None] for m in COVERAGE_METRICS}
    scores.update({m: np.stack([base, noisy, steady]) for m in RANKING_METRICS})
    rows = {(r.model, r.metric): r for r in _summarise(
        ("historical", "noisy", "steady"), np.array([0.1]), scores, "historical", 2000, 0.95,
        0) if r.coverage is not None}
    noisy_row = rows[("noisy", "pai")]
    assert noisy_row.diff == pytest.approx(0.01)
    assert noisy_row.diff_low < 0 < noisy_row.diff_high
    assert noisy_row.better is False
    steady_row = rows[("steady", "pai")]
    assert steady_row.diff == pytest.approx(0.01) and steady_row.better is True
