"""KDEForecast and ProspectiveHotspot: exact cell integrals (scipy quadrature), total mass,
time decay, Bowers et al.'s weights by hand, planted hotspots, errors."""

from __future__ import annotations

import math

import h3
import numpy as np
import pytest
from scipy import integrate

from urbansec.domain.events import Events
from urbansec.domain.grid import HexGrid, SquareGrid
from urbansec.errors import UsageError
from urbansec.forecast.models import MODELS, KDEForecast, ProspectiveHotspot

CRS = "EPSG:32616"
T0 = np.datetime64("2017-06-01T00:00:00", "s")
DAY = np.timedelta64(86_400, "s")
X0, Y0 = 440_000.0, 4_630_000.0  # multiples of 250 m
C0, R0 = int(X0 // 250), int(Y0 // 250)


def make_events(x: list[float] | np.ndarray, y: list[float] | np.ndarray,
                t: list[np.datetime64] | np.ndarray) -> Events:
    x = np.asarray(x, dtype=float)
    return Events(x=x, y=np.asarray(y, dtype=float), t=np.asarray(t, dtype="datetime64[s]"),
                  category=np.full(x.size, "burglary", dtype=object), crs=CRS)


def poisson_cells(rng: np.random.Generator, rates: np.ndarray, start_days: float,
                  end_days: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Homogeneous Poisson events in 250 m cells of a square block at (C0, R0): ``rates``
    (n_side, n_side) per cell per day (row-major, row = y), between ``start_days`` and
    ``end_days`` before T0. Returns x, y, t."""
    n_side = rates.shape[0]
    rows, cols = np.divmod(np.arange(n_side * n_side), n_side)
    n = rng.poisson(rates.ravel() * (start_days - end_days))
    col = np.repeat(cols, n) + C0
    row = np.repeat(rows, n) + R0
    x = (col + rng.random(col.size)) * 250.0
    y = (row + rng.random(row.size)) * 250.0
    age = end_days + rng.random(col.size) * (start_days - end_days)
    t = T0 - (age * 86_400).astype("timedelta64[s]") - np.timedelta64(1, "s")
    return x, y, t


def block_cells(n_side: int, margin: int = 0) -> np.ndarray:
    cols, rows = np.meshgrid(np.arange(-margin, n_side + margin),
                             np.arange(-margin, n_side + margin))
    return np.sort(SquareGrid.key(cols.ravel() + C0, rows.ravel() + R0))


def key_of(col: int, row: int) -> int:
    return int(SquareGrid.key(np.array([col + C0]), np.array([row + R0]))[0])


GRID = SquareGrid(250.0, CRS)
HOT = (13, 6)


@pytest.fixture(scope="module")
def planted() -> Events:
    """20 x 20 cells, 0.1 events per cell per day for a year, one cell 20 times as busy."""
    rates = np.full((20, 20), 0.1)
    rates[HOT[1], HOT[0]] *= 20
    x, y, t = poisson_cells(np.random.default_rng(7), rates, 365.0, 0.0)
    return make_events(x, y, t)


def test_registry_names_the_kernel_models() -> None:
    assert MODELS["kde"] is KDEForecast and MODELS["prospective"] is ProspectiveHotspot


@pytest.mark.parametrize("model", [
    KDEForecast(), KDEForecast(kernel="gaussian", bandwidth=150.0),
    KDEForecast(decay_days=30.0), ProspectiveHotspot(),
], ids=["kde", "kde-gaussian", "kde-decay", "prospective"])
def test_planted_hotspot_is_ranked_first(model, planted: Events) -> None:
    cells = block_cells(20)
    surface = model.fit(planted).predict(GRID, T0, T0 + 7 * DAY, cells)
    assert surface.keys[surface.ranking()[0]] == key_of(*HOT)
    assert np.all(surface.risk >= 0) and np.all(np.isfinite(surface.risk))


# --- KDEForecast -------------------------------------------------------------------------------


def quartic(h: float, ex: float, ey: float):
    return lambda y, x: 3 / (math.pi * h * h) * max(0.0, 1 - ((x - ex) ** 2 + (y - ey) ** 2)
                                                    / (h * h)) ** 2


def gaussian(h: float, ex: float, ey: float):
    return lambda y, x: math.exp(-((x - ex) ** 2 + (y - ey) ** 2) / (2 * h * h)) / (
        2 * math.pi * h * h)


@pytest.mark.parametrize(("kernel", "bandwidth", "tolerance"), [
    ("quartic", 200.0, 6e-3), ("quartic", 300.0, 6e-3), ("gaussian", 150.0, 1e-3)])
def test_kde_is_the_kernel_integrated_over_each_cell(kernel: str, bandwidth: float,
                                                     tolerance: float) -> None:
    # one event off-centre in cell (4, 4); the study cells hold the whole kernel
    ex, ey = X0 + 4 * 250 + 37.0, Y0 + 4 * 250 + 191.0
    events = make_events([ex], [ey], [T0 - 10 * DAY])
    cells = block_cells(9, margin=4)
    surface = KDEForecast(bandwidth=bandwidth, window_days=20.0, kernel=kernel).fit(
        events).predict(GRID, T0, T0 + 4 * DAY, cells)
    # the history starts 10 days before T0: one event in 10 days, 4 days ahead
    assert surface.risk.sum() == pytest.approx(0.4)
    share = surface.risk / 0.4
    density = quartic(bandwidth, ex, ey) if kernel == "quartic" else gaussian(bandwidth, ex, ey)
    cols, rows = GRID.col_row(cells)
    for i in np.argsort(-share)[:9]:
        x0, y0 = cols[i] * 250.0, rows[i] * 250.0
        exact, _ = integrate.dblquad(density, x0, x0 + 250.0, y0, y0 + 250.0, epsabs=1e-9)
        assert share[i] == pytest.approx(exact, abs=tolerance)
    assert surface.keys[np.argmax(share)] == key_of(4, 4)


def test_kde_total_is_the_expected_count_of_the_study_cells(planted: Events) -> None:
    model = KDEForecast(window_days=100.0, decay_days=20.0).fit(planted)
    cells = block_cells(20)
    surface = model.predict(GRID, T0, T0 + 7 * DAY, cells)
    in_window = planted.t >= T0 - 100 * DAY
    assert surface.expected
    assert surface.risk.sum() == pytest.approx(in_window.sum() / 100 * 7)
    assert surface.details["window_events"] == in_window.sum()
    # a part of the study area gets the expected count of its own events
    half = cells[GRID.col_row(cells)[0] < C0 + 10]
    part = model.predict(GRID, T0, T0 + 7 * DAY, half)
    in_half = in_window & (GRID.col_row(GRID.locate(planted.x, planted.y))[0] < C0 + 10)
    assert part.risk.sum() == pytest.approx(in_half.sum() / 100 * 7)
    # the horizon only scales
    day = model.predict(GRID, T0, T0 + DAY, cells)
    np.testing.assert_allclose(day.risk * 7, surface.risk)


def test_time_decay_follows_a_moved_hotspot() -> None:
    """The hotspot sat at A for 300 days and then moved to B for the last 65."""
    rng = np.random.default_rng(11)
    before = np.full((20, 20), 0.1)
    before[5, 5] *= 20  # A = (5, 5)
    after = np.full((20, 20), 0.1)
    after[14, 12] *= 20  # B = (12, 14)
    x1, y1, t1 = poisson_cells(rng, before, 365.0, 65.0)
    x2, y2, t2 = poisson_cells(rng, after, 65.0, 0.0)
    events = make_events(np.concatenate([x1, x2]), np.concatenate([y1, y2]),
                         np.concatenate([t1, t2]))
    cells = block_cells(20)
    a, b = np.searchsorted(cells, [key_of(5, 5), key_of(12, 14)])

    plain = KDEForecast().fit(events).predict(GRID, T0, T0 + DAY, cells)
    decayed = KDEForecast(decay_days=14.0).fit(events).predict(GRID, T0, T0 + DAY, cells)
    assert plain.risk[a] > 2 * plain.risk[b]  # a year's average still favours A
    assert decayed.risk[b] > 10 * decayed.risk[a]  # recent events count more: B
    assert decayed.keys[decayed.ranking()[0]] == key_of(12, 14)
    # both hand out the same expected total
    assert decayed.risk.sum() == pytest.approx(plain.risk.sum())
    # a very short decay on a long window neither underflows nor divides by zero
    tiny = KDEForecast(decay_days=0.001).fit(events).predict(GRID, T0, T0 + DAY, cells)
    assert np.isfinite(tiny.risk).all() and tiny.risk.sum() == pytest.approx(plain.risk.sum())


def test_kde_on_hexagons_matches_monte_carlo() -> None:
    # one event: the share of each hexagon is the Gaussian kernel's probability of it,
    # estimated by sampling the kernel
    grid = HexGrid(9, CRS)
    ex, ey = X0 + 1234.0, Y0 + 567.0
    events = make_events([ex], [ey], [T0 - 30 * DAY])
    ring = np.linspace(0, 2 * np.pi, 64)
    cells = grid.study_cells(ex + 1500 * np.cos(ring), ey + 1500 * np.sin(ring))
    surface = KDEForecast(bandwidth=250.0, window_days=30.0, kernel="gaussian").fit(
        events).predict(grid, T0, T0 + 3 * DAY, cells)
    assert surface.risk.sum() == pytest.approx(0.1)
    rng = np.random.default_rng(3)
    n = 200_000
    sample = grid.locate(ex + 250.0 * rng.standard_normal(n), ey + 250.0 * rng.standard_normal(n))
    frequency = grid.counts(cells, np.zeros(0), np.zeros(0))  # zeros aligned with cells
    pos = grid.index_of(cells, sample)
    frequency += np.bincount(pos[pos >= 0], minlength=cells.size)
    np.testing.assert_allclose(surface.risk / 0.1, frequency / n, atol=5e-3)
    assert surface.keys[np.argmax(surface.risk)] == grid.locate(np.array([ex]),
                                                               np.array([ey]))[0]


def test_kde_hexagon_hotspot_and_total(planted: Events) -> None:
    grid = HexGrid(9, CRS)
    cells = grid.study_cells(planted.x, planted.y)
    surface = KDEForecast(bandwidth=250.0).fit(planted).predict(grid, T0, T0 + DAY, cells)
    # the history starts with the first event, a little after T0 - 365 days
    span = (T0 - planted.t.min()) / DAY
    assert 364.9 < span < 365
    assert surface.risk.sum() == pytest.approx(len(planted) / span)
    hot_x, hot_y = (C0 + HOT[0] + 0.5) * 250.0, (R0 + HOT[1] + 0.5) * 250.0
    cx, cy = grid.centroids(surface.keys[surface.ranking()[:1]])
    assert math.hypot(cx[0] - hot_x, cy[0] - hot_y) < 350


def test_kde_empty_window_is_all_zero(planted: Events) -> None:
    # the origin 400 days after the data: the 365-day window is empty
    model = KDEForecast().fit(planted)
    late = T0 + 400 * DAY
    surface = model.predict(GRID, late, late + DAY, block_cells(20))
    assert surface.risk.shape == (400,) and not surface.risk.any()


def test_kde_caches_follow_the_cells(planted: Events) -> None:
    model = KDEForecast().fit(planted)
    cells = block_cells(20)
    part = cells[::3][::-1]
    first = model.predict(GRID, T0, T0 + DAY, cells)
    second = model.predict(GRID, T0, T0 + DAY, part)
    fresh = KDEForecast().fit(planted).predict(GRID, T0, T0 + DAY, part)
    np.testing.assert_array_equal(second.keys, part)
    np.testing.assert_allclose(second.risk, fresh.risk)
    np.testing.assert_allclose(model.predict(GRID, T0, T0 + DAY, cells).risk, first.risk)
    # refitting keeps the cache valid: a later fold equals a fresh model's
    later = planted.subset(planted.t < T0 - 10 * DAY)
    start = T0 - 10 * DAY
    again = model.update(later).predict(GRID, start, start + DAY, cells)
    np.testing.assert_allclose(
        again.risk, KDEForecast().fit(later).predict(GRID, start, start + DAY, cells).risk)


# --- ProspectiveHotspot ------------------------------------------------------------------------


def test_prospective_weights_by_hand() -> None:
    """100 m cells, 250 m bandwidth (2.5 cells), 56 days, weekly bands."""
    grid = SquareGrid(100.0, CRS)
    c0, r0 = int(X0 // 100), int(Y0 // 100)

    def centre(col: int, row: int) -> tuple[float, float]:
        return (c0 + col + 0.3) * 100.0, (r0 + row + 0.8) * 100.0  # anywhere in the cell

    spots = [((0, 0), 2.0), ((1, 0), 10.0), ((0, 2), 20.0), ((0, 0), 60.0), ((4, 4), 14.0)]
    x, y = zip(*(centre(*cell) for cell, _ in spots), strict=True)
    t = [T0 - np.timedelta64(int(age * 86_400), "s") for _, age in spots]
    events = make_events(list(x), list(y), t)
    cols, rows = np.meshgrid(np.arange(-3, 8), np.arange(-3, 8))
    cells = np.sort(SquareGrid.key(cols.ravel() + c0, rows.ravel() + r0))
    surface = ProspectiveHotspot(bandwidth=250.0).fit(events).predict(
        grid, T0, T0 + DAY, cells)
    risk = dict(zip((cells - SquareGrid.key(np.array([c0]), np.array([r0]))[0]).tolist(),
                    surface.risk.tolist(), strict=True))

    def at(col: int, row: int) -> float:
        return risk[int(SquareGrid.key(np.array([col]), np.array([row]))[0]
                        - SquareGrid.key(np.array([0]), np.array([0]))[0])]

    s2 = math.sqrt(2.0)
    # weights: event 1 (0,0) 2 days -> 1; event 2 (1,0) 10 days -> 1/2; event 3 (0,2) 20 days
    # -> 1/3; event 4 is 60 days old (out); event 5 (4,4) exactly 14 days -> band 2 -> 1/3
    assert at(0, 0) == pytest.approx(1 + 0.5 / 2 + (1 / 3) / 3)
    assert at(1, 1) == pytest.approx(1 / (1 + s2) + 0.5 / 2 + (1 / 3) / (1 + s2))
    assert at(2, 2) == pytest.approx(0.5 / (1 + math.sqrt(5)) + (1 / 3) / 3)  # (0,0) at 2.83
    assert at(3, 0) == pytest.approx(0.5 / 3)  # only event 2, two cells away
    assert at(4, 4) == pytest.approx(1 / 3)
    assert at(4, 2) == pytest.approx((1 / 3) / 3)  # event 5 two cells below
    assert at(-3, -3) == 0.0
    assert not surface.expected and surface.details["window_events"] == 4

    # the same by brute force over every cell, from the definition
    ccols, crows = SquareGrid.col_row(cells)
    ecols, erows = grid.col_row(grid.locate(events.x, events.y))
    ages = np.array([age for _, age in spots])
    expected = np.zeros(cells.size)
    for i in range(cells.size):
        for ec, er, age in zip(ecols, erows, ages, strict=True):
            d = math.hypot(ccols[i] - ec, crows[i] - er)
            if age < 56 and d * 100 <= 250:
                expected[i] += 1 / (1 + d) / (1 + math.floor(age / 7))
    np.testing.assert_allclose(surface.risk, expected)


def test_prospective_on_hexagons_uses_hexagon_steps() -> None:
    grid = HexGrid(9, CRS)
    ex, ey = X0 + 1000.0, Y0 + 1000.0
    events = make_events([ex, ex], [ey, ey], [T0 - 3 * DAY, T0 - 9 * DAY])
    own = int(grid.locate(np.array([ex]), np.array([ey]))[0])
    ring1 = {int(k) for k in h3.api.basic_int.grid_ring(own, 1)}
    ring2 = {int(k) for k in h3.api.basic_int.grid_ring(own, 2)}
    cells = np.array(sorted({own} | ring1 | ring2), dtype=np.int64)
    spacing = math.sqrt(2 * float(np.median(grid.cell_area_km2(cells))) * 1e6 / math.sqrt(3))
    surface = ProspectiveHotspot(bandwidth=1.5 * spacing).fit(events).predict(
        grid, T0, T0 + DAY, cells)
    weight = 1 + 1 / 2  # 3 days old (this week) and 9 days old (last week)
    risk = dict(zip(cells.tolist(), surface.risk.tolist(), strict=True))
    assert risk[own] == pytest.approx(weight)
    for k in ring1:
        assert risk[k] == pytest.approx(weight / 2)
    for k in ring2:
        assert risk[k] == 0.0


def test_prospective_ignores_the_horizon_and_is_deterministic(planted: Events) -> None:
    cells = block_cells(20)
    a = ProspectiveHotspot().fit(planted).predict(GRID, T0, T0 + DAY, cells)
    b = ProspectiveHotspot().fit(planted).predict(GRID, T0, T0 + 7 * DAY, cells)
    np.testing.assert_array_equal(a.risk, b.risk)


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "match"), [
    (KDEForecast(bandwidth=0.0), "bandwidth"),
    (KDEForecast(bandwidth=float("nan")), "bandwidth"),
    (KDEForecast(window_days=-1.0), "window_days"),
    (KDEForecast(decay_days=0.0), "decay_days"),
    (KDEForecast(decay_days="week"), "decay_days"),  # type: ignore[arg-type]
    (KDEForecast(kernel="box"), "kernel"),
    (ProspectiveHotspot(bandwidth=-400.0), "bandwidth"),
    (ProspectiveHotspot(time_window_days=0), "time_window_days"),
    (ProspectiveHotspot(time_decay_days=float("inf")), "time_decay_days"),
])
def test_bad_hyper_parameters(model, match: str, planted: Events) -> None:
    with pytest.raises(UsageError, match=match):
        model.fit(planted)


@pytest.mark.parametrize("cls", [KDEForecast, ProspectiveHotspot])
def test_usage_errors(cls, planted: Events) -> None:
    cells = block_cells(20)
    with pytest.raises(UsageError, match="not fitted"):
        cls().predict(GRID, T0, T0 + DAY, cells)
    with pytest.raises(UsageError, match="at least 1"):
        cls().fit(planted.subset(np.zeros(len(planted), dtype=bool)))
    model = cls().fit(planted)
    with pytest.raises(UsageError, match="end after it starts"):
        model.predict(GRID, T0, T0 - DAY, cells)
    with pytest.raises(UsageError, match="before the start"):
        model.predict(GRID, T0 - 30 * DAY, T0, cells)
