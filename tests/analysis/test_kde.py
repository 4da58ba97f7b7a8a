"""Kernel density on a grid: mass, brute force, scipy's gaussian_kde, weights, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy.stats import gaussian_kde

from urbansec.analysis import kde
from urbansec.analysis.kde import GAUSSIAN_TRUNCATE, default_bandwidth, kernel_density
from urbansec.errors import UsageError

KERNELS = ["quartic", "gaussian"]


def centres(x0: float, y0: float, cell: float, n_cols: int, n_rows: int
            ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Cell-centre coordinates, each shape (n_rows, n_cols)."""
    cx = x0 + (np.arange(n_cols) + 0.5) * cell
    cy = y0 + (np.arange(n_rows) + 0.5) * cell
    return np.meshgrid(cx, cy)


def brute_force(x: NDArray[np.float64], y: NDArray[np.float64], w: NDArray[np.float64],
                x0: float, y0: float, cell: float, n_cols: int, n_rows: int, h: float,
                kernel: str) -> NDArray[np.float64]:
    """The documented kernels, summed event by event over every cell, in events per km²."""
    gx, gy = centres(x0, y0, cell, n_cols, n_rows)
    out = np.zeros((n_rows, n_cols))
    for xi, yi, wi in zip(x, y, w, strict=True):
        dx, dy = gx - xi, gy - yi
        d2 = dx * dx + dy * dy
        if kernel == "quartic":
            k = np.where(d2 < h * h, 3 / (math.pi * h * h) * (1 - d2 / (h * h)) ** 2, 0.0)
        else:
            k = np.exp(-d2 / (2 * h * h)) / (2 * math.pi * h * h)
            reach = GAUSSIAN_TRUNCATE * h
            k[(np.abs(dx) > reach) | (np.abs(dy) > reach)] = 0.0
        out += wi * k
    return out * 1e6


@pytest.mark.parametrize("kernel", KERNELS)
def test_density_integrates_to_the_event_count(kernel: str) -> None:
    rng = np.random.default_rng(1)
    n = 500
    # Events well inside a 10 km square; the kernels reach at most 1.2 km beyond an event.
    x = rng.uniform(3_000, 7_000, n)
    y = rng.uniform(3_000, 7_000, n)
    cell = 50.0
    density = kernel_density(x, y, x0=0.0, y0=0.0, cell_size=cell, n_cols=200, n_rows=200,
                             bandwidth=200.0, kernel=kernel)
    assert density.shape == (200, 200)
    total = density.sum() * (cell / 1000) ** 2
    assert total == pytest.approx(n, rel=0.01)


@pytest.mark.parametrize("kernel", KERNELS)
def test_matches_brute_force_including_events_outside_and_weights(kernel: str) -> None:
    rng = np.random.default_rng(2)
    x0, y0, cell, n_cols, n_rows = 1_234.5, -678.25, 37.5, 23, 17
    n = 150
    # Some events lie outside the grid (up to 400 m) and still reach into it.
    x = rng.uniform(x0 - 400, x0 + n_cols * cell + 400, n)
    y = rng.uniform(y0 - 400, y0 + n_rows * cell + 400, n)
    w = rng.uniform(0.1, 3.0, n)
    for h in (55.0, 140.0):  # reach of 1.5 and 4 cells
        got = kernel_density(x, y, x0=x0, y0=y0, cell_size=cell, n_cols=n_cols,
                             n_rows=n_rows, bandwidth=h, kernel=kernel, weights=w)
        want = brute_force(x, y, w, x0, y0, cell, n_cols, n_rows, h, kernel)
        assert (want > 0).mean() > 0.3  # the comparison is not of empty grids
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=0)


@pytest.mark.parametrize("kernel", KERNELS)
def test_chunking_does_not_change_the_result(kernel: str, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    # A dense cluster (hundreds of events per block) through the chunked code paths.
    rng = np.random.default_rng(6)
    x = rng.normal(500, 60, 3_000)
    y = rng.normal(400, 60, 3_000)
    grid = {"x0": 0.0, "y0": 0.0, "cell_size": 20.0, "n_cols": 50, "n_rows": 40,
            "bandwidth": 90.0, "kernel": kernel}
    whole = kernel_density(x, y, **grid)
    monkeypatch.setattr(kde, "_CHUNK_ELEMENTS", 5_000)
    monkeypatch.setattr(kde, "_GEMM_SIZE", 1)
    chunked = kernel_density(x, y, **grid)
    np.testing.assert_allclose(chunked, whole, rtol=1e-12)
    want = brute_force(x[:300], y[:300], np.ones(300), 0.0, 0.0, 20.0, 50, 40, 90.0, kernel)
    np.testing.assert_allclose(kernel_density(x[:300], y[:300], **grid), want, rtol=1e-9)


def test_gaussian_truncation_matches_its_documentation() -> None:
    # A narrow kernel on a wide grid: most event/cell pairs are beyond the truncation, so the
    # brute force (with the documented truncation) checks exactly which terms are dropped.
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 2_000, 40)
    y = rng.uniform(0, 2_000, 40)
    w = np.ones(40)
    got = kernel_density(x, y, x0=0, y0=0, cell_size=25, n_cols=80, n_rows=80, bandwidth=30,
                         kernel="gaussian")
    want = brute_force(x, y, w, 0, 0, 25, 80, 80, 30, "gaussian")
    assert (want == 0).mean() > 0.3
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=0)


def test_gaussian_matches_scipy_gaussian_kde() -> None:
    rng = np.random.default_rng(4)
    n, spread, sigma = 300, 400.0, 120.0
    # Data whose sample covariance is exactly spread² I, so that gaussian_kde with the scalar
    # factor sigma / spread has the isotropic covariance sigma² I that our kernel uses.
    z = rng.normal(size=(2, n))
    z -= z.mean(axis=1, keepdims=True)
    z = np.linalg.solve(np.linalg.cholesky(np.cov(z)), z)
    data = z * spread + np.array([[5_000.0], [2_000.0]])
    ref = gaussian_kde(data, bw_method=sigma / spread)
    np.testing.assert_allclose(ref.covariance, sigma**2 * np.eye(2), rtol=1e-12, atol=1e-6)

    x0, y0, cell, n_cols, n_rows = 3_500.0, 500.0, 40.0, 75, 80
    gx, gy = centres(x0, y0, cell, n_cols, n_rows)
    # gaussian_kde is a probability density per m² averaging the events: times n for events,
    # divided by 1e-6 km² per m².
    want = ref(np.vstack([gx.ravel(), gy.ravel()])).reshape(n_rows, n_cols) * n / 1e-6
    got = kernel_density(data[0], data[1], x0=x0, y0=y0, cell_size=cell, n_cols=n_cols,
                         n_rows=n_rows, bandwidth=sigma, kernel="gaussian")
    # Only the truncation (terms < 1.5e-8 of a kernel's peak) separates the two.
    np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-8 * want.max())


@pytest.mark.parametrize("kernel", KERNELS)
def test_integer_weights_equal_repeated_events(kernel: str) -> None:
    rng = np.random.default_rng(5)
    x = rng.uniform(0, 1_000, 30)
    y = rng.uniform(0, 1_000, 30)
    w = rng.integers(0, 4, 30)
    # The grid extends 800 m (over 5 bandwidths) beyond the events, so it holds their mass.
    grid = {"x0": -800.0, "y0": -800.0, "cell_size": 20.0, "n_cols": 130, "n_rows": 130,
            "bandwidth": 150.0, "kernel": kernel}
    weighted = kernel_density(x, y, weights=w, **grid)
    repeated = kernel_density(np.repeat(x, w), np.repeat(y, w), **grid)
    np.testing.assert_allclose(weighted, repeated, rtol=1e-12, atol=1e-12 * repeated.max())
    assert weighted.sum() * 0.02**2 == pytest.approx(w.sum(), rel=0.01)


@pytest.mark.parametrize("kernel", KERNELS)
def test_rows_run_south_to_north(kernel: str) -> None:
    # One event at the centre of cell (row 7, col 2) of a non-square grid.
    density = kernel_density([100 + 2.5 * 10], [300 + 7.5 * 10], x0=100, y0=300,
                             cell_size=10, n_cols=9, n_rows=12, bandwidth=25, kernel=kernel)
    assert np.unravel_index(np.argmax(density), density.shape) == (7, 2)
    peak = (3 / math.pi if kernel == "quartic" else 1 / (2 * math.pi)) / 25**2 * 1e6
    assert density[7, 2] == pytest.approx(peak, rel=1e-12)


@pytest.mark.parametrize("kernel", KERNELS)
def test_empty_input_and_far_events_give_zeros(kernel: str) -> None:
    grid = {"x0": 0.0, "y0": 0.0, "cell_size": 100.0, "n_cols": 4, "n_rows": 3,
            "bandwidth": 200.0, "kernel": kernel}
    empty = kernel_density(np.array([]), np.array([]), **grid)
    assert empty.shape == (3, 4)
    assert not empty.any()
    far = kernel_density([1e6, -1e6], [5e5, 0.0], **grid)
    assert not far.any()


def test_usage_errors() -> None:
    ok = {"x0": 0.0, "y0": 0.0, "cell_size": 100.0, "n_cols": 4, "n_rows": 3,
          "bandwidth": 200.0}
    x = y = np.array([10.0, 20.0])
    bad_params = [
        {"bandwidth": 0.0}, {"bandwidth": -5.0}, {"bandwidth": math.nan},
        {"cell_size": 0.0}, {"cell_size": -1.0}, {"n_cols": 0}, {"n_rows": 2.5},
        {"n_cols": 4_000, "n_rows": 3_000}, {"kernel": "epanechnikov"},
        {"weights": [1.0]}, {"weights": [1.0, -1.0]}, {"x0": math.inf},
    ]
    for bad in bad_params:
        with pytest.raises(UsageError):
            kernel_density(x, y, **{**ok, **bad})
    with pytest.raises(UsageError, match="10,000,000"):
        kernel_density(x, y, **{**ok, "n_cols": 4_000, "n_rows": 3_000})
    with pytest.raises(UsageError, match="equal length"):
        kernel_density([1.0, 2.0], [1.0], **ok)
    with pytest.raises(UsageError, match="unlocated"):
        kernel_density([1.0, math.nan], [1.0, 2.0], **ok)


def test_default_bandwidth_hand_computed() -> None:
    # Square of side 2: mean centre (1, 1), every distance to it sqrt(2), SD = sqrt(2).
    x = [0.0, 2.0, 0.0, 2.0]
    y = [0.0, 0.0, 2.0, 2.0]
    assert default_bandwidth(x, y) == pytest.approx(0.9 * math.sqrt(2) * 4**-0.2, rel=1e-12)

    # An outlier inflates SD; the median distance term takes over.
    x = [0.0, 1.0, 0.0, 1.0, 100.0]
    y = [0.0, 0.0, 1.0, 1.0, 0.0]
    mx, my = np.mean(x), np.mean(y)
    d = np.hypot(np.subtract(x, mx), np.subtract(y, my))
    sd = math.sqrt(np.mean((np.subtract(x, mx)) ** 2) + np.mean((np.subtract(y, my)) ** 2))
    dm = float(np.median(d))
    assert math.sqrt(1 / math.log(2)) * dm < sd
    assert default_bandwidth(x, y) == pytest.approx(
        0.9 * math.sqrt(1 / math.log(2)) * dm * 5**-0.2, rel=1e-12)


def test_default_bandwidth_degenerate_cases() -> None:
    # Most events on the mean centre: median distance 0, SD alone is used.
    x = [0.0, 0.0, 0.0, 3.0, -3.0]
    y = [0.0] * 5
    assert default_bandwidth(x, y) == pytest.approx(0.9 * math.sqrt(18 / 5) * 5**-0.2)
    with pytest.raises(UsageError, match="at least 2"):
        default_bandwidth([1.0], [2.0])
    with pytest.raises(UsageError, match="one location"):
        default_bandwidth([1.0, 1.0], [2.0, 2.0])
