"""Emerging hot spot analysis: Gi* cube against esda, category rules, vectorised vs per cell."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from scipy import stats
from scipy.special import ndtr

from urbansec.analysis.emerging import (
    CATEGORIES,
    classify_emerging,
    emerging_hotspots,
    space_time_gi_star,
)
from urbansec.analysis.weights import square_contiguity
from urbansec.errors import UsageError


def grid_weights(n_rows: int, n_cols: int) -> sp.csr_array:
    """Queen weights of a full n_rows x n_cols grid, cells numbered row by row."""
    rows, cols = np.divmod(np.arange(n_rows * n_cols), n_cols)
    return square_contiguity(rows, cols, kind="queen")


def esda_gi_star_z(y: np.ndarray, adjacency: sp.sparray) -> np.ndarray:
    """Analytical Gi* z of esda (binary weights, self included)."""
    from esda.getisord import G_Local
    from libpysal.weights import WSP

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w = WSP(sp.csr_matrix(adjacency)).to_W(silence_warnings=True)
        return G_Local(y, w, transform="B", star=True, permutations=0).Zs


def two_sided(z: np.ndarray) -> np.ndarray:
    return 2 * ndtr(-np.abs(z))


# --------------------------------------------------------------------------------------------
# Gi* over the space-time cube


def test_slice_window_is_esda_gi_star_per_slice() -> None:
    rng = np.random.default_rng(1)
    w = grid_weights(6, 7)
    counts = rng.poisson(2.0, size=(42, 5)).astype(float)
    z, p = space_time_gi_star(counts, w, time_window=1, global_window="slice")
    for t in range(counts.shape[1]):
        np.testing.assert_allclose(z[:, t], esda_gi_star_z(counts[:, t], w), rtol=1e-12)
    np.testing.assert_allclose(p, two_sided(z))


def test_slice_window_equals_project_gi_star() -> None:
    from urbansec.analysis.hotspots import gi_star

    rng = np.random.default_rng(2)
    w = grid_weights(5, 6)
    counts = rng.poisson(3.0, size=(30, 8)).astype(float)
    z, _ = space_time_gi_star(counts, w, global_window="slice")
    np.testing.assert_allclose(z, gi_star(counts, w).z, rtol=1e-10)


def test_cube_window_with_time_lags_is_esda_on_space_time_weights() -> None:
    # Flatten the cube into one feature per bin with explicit space-time neighbours: bin
    # (i, t) neighbours (j, s) for j in queen(i) or i itself, t - 2 < s <= t. One esda run over
    # all bins is exactly ArcGIS's "entire cube" global window.
    rng = np.random.default_rng(3)
    n_rows, n_cols, n_slices, window = 4, 5, 6, 3
    w = grid_weights(n_rows, n_cols)
    n = n_rows * n_cols
    counts = rng.poisson(1.5, size=(n, n_slices)).astype(float)
    lags = np.zeros((n_slices, n_slices))
    for t in range(n_slices):
        lags[t, max(0, t - window + 1) : t + 1] = 1
    space_time = sp.kron(sp.csr_matrix(lags), (w + sp.eye_array(n)).tocsr()).tocsr()
    space_time.setdiag(0)
    space_time.eliminate_zeros()
    reference = esda_gi_star_z(counts.T.ravel(), space_time).reshape(n_slices, n).T

    z, p = space_time_gi_star(counts, w, time_window=window, global_window="cube")
    np.testing.assert_allclose(z, reference, rtol=1e-12)
    np.testing.assert_allclose(p, two_sided(reference))


def test_neighborhood_window_by_brute_force() -> None:
    rng = np.random.default_rng(4)
    n_rows, n_cols, n_slices, window = 4, 4, 5, 2
    w = grid_weights(n_rows, n_cols)
    n = n_rows * n_cols
    counts = rng.poisson(2.0, size=(n, n_slices)).astype(float)
    dense = w.toarray() + np.eye(n)
    expected = np.zeros((n, n_slices))
    for t in range(n_slices):
        slices = list(range(max(0, t - window + 1), t + 1))
        reference = counts[:, slices].ravel()
        big_n, mean, sd = reference.size, reference.mean(), reference.std()
        for i in range(n):
            neighbours = np.flatnonzero(dense[i])
            local = counts[np.ix_(neighbours, slices)].sum()
            size = neighbours.size * len(slices)
            expected[i, t] = (local - mean * size) / (
                sd * math.sqrt((big_n * size - size**2) / (big_n - 1))
            )
    z, _ = space_time_gi_star(counts, w, time_window=window, global_window="neighborhood")
    np.testing.assert_allclose(z, expected, rtol=1e-12)


def test_constant_cube_gives_zero_z() -> None:
    z, p = space_time_gi_star(np.full((9, 4), 3.0), grid_weights(3, 3))
    assert (z == 0).all() and (p == 1).all()


# --------------------------------------------------------------------------------------------
# Category rules on hand-made z series (20 slices: "90%" means at least 18 hot bins)

T = 20
ZERO = np.zeros(T)


def series(**hot_at: float) -> np.ndarray:
    """A z series of zeros with the given values at slices named s0 .. s19."""
    z = ZERO.copy()
    for key, value in hot_at.items():
        z[int(key[1:])] = value
    return z


def hot_except(*quiet: int, level: float = 3.0) -> np.ndarray:
    # Small wobble with no trend (a saw-tooth), so "no significant trend" is certain.
    z = level + 0.1 * (np.arange(T) % 2)
    z[list(quiet)] = 0.0
    return z


HOT_CASES: dict[str, np.ndarray] = {
    "new_hot": series(s19=3.0),
    "consecutive_hot": series(s17=2.5, s18=3.0, s19=3.5),
    "intensifying_hot": np.linspace(2.5, 8.0, T),
    "persistent_hot": hot_except(),
    "diminishing_hot": np.linspace(8.0, 2.5, T),
    "sporadic_hot": series(s3=3.0, s9=2.8, s18=3.0, s19=3.0),
    "oscillating_hot": series(s4=-3.0, s10=3.0, s19=3.0),
    "historical_hot": hot_except(19),
    "no_pattern": series(s5=3.0, s6=-3.0),
}


def classify(rows: list[np.ndarray], **kwargs: object) -> list[str]:
    z = np.vstack(rows)
    return list(classify_emerging(z, two_sided(z), fdr=False, **kwargs).category)


@pytest.mark.parametrize("expected", list(HOT_CASES))
def test_each_hot_category_and_its_cold_mirror(expected: str) -> None:
    z = HOT_CASES[expected]
    mirror = expected.replace("_hot", "_cold")
    assert classify([z, -z]) == [expected, mirror]


def test_every_category_is_covered_by_the_hand_made_cases() -> None:
    names = set(HOT_CASES) | {k.replace("_hot", "_cold") for k in HOT_CASES}
    assert names == set(CATEGORIES)


def test_trend_preconditions_of_the_hand_made_cases() -> None:
    # The classes above hinge on these trends; check them so a change in the trend test cannot
    # make the category tests pass for the wrong reason.
    z = np.vstack([HOT_CASES[k] for k in ("intensifying_hot", "persistent_hot", "diminishing_hot")])
    result = classify_emerging(z, two_sided(z), fdr=False)
    assert result.trend_p[0] < 0.001 and result.trend_z[0] > 0
    assert result.trend_p[1] > 0.5
    assert result.trend_p[2] < 0.001 and result.trend_z[2] < 0


def test_ninety_percent_boundary() -> None:
    # 18 of 20 hot bins (final included) is "at least 90%"; 17 is not, and with hot bins
    # before the final run and no cold bin that is sporadic.
    assert classify([hot_except(3, 11), hot_except(3, 7, 11)]) == ["persistent_hot", "sporadic_hot"]
    # 18 hot bins but the final one not significant: historical.
    assert classify([hot_except(5, 19)]) == ["historical_hot"]
    # A consecutive run covering 17 of 20 slices is still "consecutive" (< 90%).
    assert classify([hot_except(0, 1, 2)]) == ["consecutive_hot"]
    # persistent_share changes the threshold: with 0.8, 17 of 20 is enough.
    assert classify([hot_except(3, 7, 11)], persistent_share=0.8) == ["persistent_hot"]


def test_precedence_decisions() -> None:
    # Cold history outranks new and consecutive: a former cold spot now hot is oscillating.
    assert classify([series(s2=-3.0, s19=3.0), series(s2=-3.0, s18=3.0, s19=3.0)]) == [
        "oscillating_hot",
        "oscillating_hot",
    ]
    # The final significant bin outranks "historical": hot 95% of the time, cold at the end.
    z = hot_except()
    z[19] = -3.0
    assert classify([z]) == ["oscillating_cold"]
    # Bins just inside / outside significance at alpha = 0.05 (two-sided): |z| 1.97 vs 1.95.
    assert classify([series(s19=1.97), series(s19=1.95)]) == ["new_hot", "no_pattern"]
    # A stricter alpha removes the bin.
    assert classify([series(s19=2.2)], alpha=0.01) == ["no_pattern"]


def test_unanalysed_rows_are_no_pattern() -> None:
    z = np.vstack([np.full(T, np.nan), HOT_CASES["new_hot"]])
    result = classify_emerging(z, np.where(np.isnan(z), np.nan, two_sided(z)), fdr=False)
    assert list(result.category) == ["no_pattern", "new_hot"]
    assert list(result.analysed) == [False, True]
    assert np.isnan(result.trend_z[0]) and (result.bins[0] == 0).all()


def test_fdr_is_benjamini_hochberg_over_all_bins() -> None:
    rng = np.random.default_rng(5)
    z = rng.normal(0, 1.6, size=(300, 12))
    p = two_sided(z)
    result = classify_emerging(z, p, fdr=True, alpha=0.05)
    adjusted = stats.false_discovery_control(p.ravel(), method="bh").reshape(p.shape)
    expected = np.where(adjusted <= 0.05, np.sign(z), 0)
    np.testing.assert_array_equal(result.bins, expected)
    assert 0 < np.count_nonzero(result.bins) < np.count_nonzero(p <= 0.05)


# --------------------------------------------------------------------------------------------
# Vectorised classification equals a straightforward per-cell implementation


def reference_mann_kendall(x: np.ndarray) -> tuple[float, float]:
    n = x.size
    s = sum(np.sign(x[j] - x[i]) for i in range(n) for j in range(i + 1, n))
    _, ties = np.unique(x, return_counts=True)
    var = (n * (n - 1) * (2 * n + 5) - sum(t * (t - 1) * (2 * t + 5) for t in ties)) / 18
    if var == 0:
        return 0.0, 1.0
    z = (s - np.sign(s)) / math.sqrt(var)
    return z, 2 * stats.norm.sf(abs(z))


def reference_category(
    z: np.ndarray, p: np.ndarray, alpha: float = 0.05, trend_alpha: float = 0.05
) -> str:
    bins = [int(np.sign(zt)) if pt <= alpha else 0 for zt, pt in zip(z, p, strict=True)]
    trend_z, trend_p = reference_mann_kendall(z)
    need = math.ceil(0.9 * len(bins) - 1e-9)
    for sign, side in ((1, "hot"), (-1, "cold")):
        if bins[-1] != sign:
            continue
        mine = [b == sign for b in bins]
        n_mine = sum(mine)
        if n_mine >= need:
            if trend_p <= trend_alpha and trend_z * sign > 0:
                return f"intensifying_{side}"
            if trend_p <= trend_alpha and trend_z * sign < 0:
                return f"diminishing_{side}"
            return f"persistent_{side}"
        if -sign in bins:
            return f"oscillating_{side}"
        if n_mine == 1:
            return f"new_{side}"
        run = 0
        for is_mine in reversed(mine):
            if not is_mine:
                break
            run += 1
        return f"consecutive_{side}" if run == n_mine else f"sporadic_{side}"
    if bins.count(1) >= need:
        return "historical_hot"
    if bins.count(-1) >= need:
        return "historical_cold"
    return "no_pattern"


def varied_z_cube(rng: np.random.Generator, n: int, n_slices: int) -> np.ndarray:
    """Random z series with levels, trends, noise and quiet beginnings: every category occurs."""
    t = np.arange(n_slices)
    level = rng.uniform(-4, 4, size=(n, 1))
    slope = rng.normal(0, 0.12, size=(n, 1))
    noise = rng.uniform(0.3, 2.5, size=(n, 1))
    z = level + slope * (t - n_slices / 2) + noise * rng.normal(size=(n, n_slices))
    start = rng.integers(0, n_slices, size=(n, 1))
    quiet = (t < start) & (rng.random((n, 1)) < 0.4)
    z[quiet] = rng.normal(0, 0.7, size=int(quiet.sum()))
    return z


def test_vectorised_classes_equal_per_cell_reference() -> None:
    rng = np.random.default_rng(6)
    z = varied_z_cube(rng, 1500, T)
    # Quantise a share of the values so z series carry ties, as Gi* of counts do.
    z[::3] = np.round(z[::3])
    p = two_sided(z)
    result = classify_emerging(z, p, fdr=False)
    expected = [reference_category(z[i], p[i]) for i in range(z.shape[0])]
    assert list(result.category) == expected
    assert set(expected) == set(CATEGORIES)  # the comparison exercised every rule


def test_full_pipeline_equals_per_cell_reference_on_random_cube() -> None:
    # Poisson counts around random bumps that grow or fade: hot and cold areas with trends.
    rng = np.random.default_rng(7)
    n_rows, n_cols, n_slices = 14, 14, 16
    rows, cols = np.divmod(np.arange(n_rows * n_cols), n_cols)
    t = np.linspace(-1, 1, n_slices)
    rate = np.full((n_rows * n_cols, n_slices), 3.0)
    for _ in range(8):
        r0, c0 = rng.uniform(0, n_rows, 2)
        bump = np.exp(-((rows - r0) ** 2 + (cols - c0) ** 2) / 4.0)[:, np.newaxis]
        rate = rate + bump * rng.uniform(-3, 8) * (1 + rng.uniform(-1, 1) * t)
    counts = rng.poisson(np.maximum(rate, 0.05)).astype(float)
    result = emerging_hotspots(counts, grid_weights(n_rows, n_cols), fdr=False)
    expected = [reference_category(result.z[i], result.p[i]) for i in range(counts.shape[0])]
    assert list(result.category) == expected
    assert len(set(expected)) >= 7


# --------------------------------------------------------------------------------------------
# End to end from counts


def block(row: int, col: int) -> tuple[slice, slice]:
    return slice(row - 1, row + 2), slice(col - 1, col + 2)


def test_hot_patterns_from_counts() -> None:
    rng = np.random.default_rng(8)
    n_rows = n_cols = 18
    t = np.arange(T)
    counts = rng.poisson(6, size=(n_rows, n_cols, T)).astype(float)
    counts[(*block(3, 3), T - 1)] += 30  # a surge in the final week only
    counts[block(3, 9)] = 18 + 2 * t  # busy and getting busier
    counts[block(3, 14)] = 25  # steadily busy
    counts[block(9, 3)] = 50 - 1.2 * t  # busy but calming down, still hot at the end
    counts[block(9, 9)] = np.where(t < T - 1, 25, 6)  # busy until the final week
    counts[14:, 14:] = 0  # a lake: no event ever
    result = emerging_hotspots(counts.reshape(-1, T), grid_weights(n_rows, n_cols))
    category = result.category.reshape(n_rows, n_cols)
    assert category[3, 3] == "new_hot"
    assert category[3, 9] == "intensifying_hot"
    assert category[3, 14] == "persistent_hot"
    assert category[9, 3] == "diminishing_hot"
    assert category[9, 9] == "historical_hot"
    lake = np.zeros((n_rows, n_cols), dtype=bool)
    lake[14:, 14:] = True
    assert (category[lake] == "no_pattern").all()
    assert not result.analysed.reshape(n_rows, n_cols)[lake].any()
    assert np.isnan(result.z.reshape(n_rows, n_cols, T)[lake]).all()
    # Pure Poisson background away from the blocks: no cold spot, few patterns at all.
    assert not any(name.endswith("_cold") and n for name, n in result.tally().items())
    # The blocks make the city as a whole busier over time.
    assert result.cube_trend is not None
    assert result.cube_trend.z[0] > 0 and result.cube_trend.p[0] < 0.01


def test_cold_patterns_from_counts() -> None:
    rng = np.random.default_rng(9)
    n_rows = n_cols = 15
    t = np.arange(T)
    counts = rng.poisson(20, size=(n_rows, n_cols, T)).astype(float)
    counts[block(3, 3)] = rng.poisson(1, size=(3, 3, T))  # always quiet
    counts[block(3, 11)] = np.maximum(0, 8 - 0.5 * t)  # quiet and getting quieter
    counts[(*block(11, 3), slice(T - 3, T))] = 1  # quiet for the last three weeks
    counts[block(11, 11)] = np.where(t < T - 1, 20, 2)  # quiet in the final week only
    result = emerging_hotspots(counts.reshape(-1, T), grid_weights(n_rows, n_cols))
    category = result.category.reshape(n_rows, n_cols)
    assert category[3, 3] == "persistent_cold"
    assert category[3, 11] == "intensifying_cold"
    assert category[11, 3] == "consecutive_cold"
    assert category[11, 11] == "new_cold"
    assert result.tally()["no_pattern"] > 150


def test_random_cube_is_mostly_no_pattern() -> None:
    rng = np.random.default_rng(10)
    counts = rng.poisson(3.0, size=(400, 30)).astype(float)
    w = grid_weights(20, 20)
    with_fdr = emerging_hotspots(counts, w)
    assert (with_fdr.category == "no_pattern").all()
    # Without the FDR correction about 5% of bins pass by chance, but patterns stay rare.
    without = emerging_hotspots(counts, w, fdr=False)
    assert 0.9 < np.mean(without.category == "no_pattern") < 1.0


def test_empty_cells_are_left_out_of_the_baseline() -> None:
    # ArcGIS analyses only locations with data: surrounding the study area with a border of
    # empty cells must not change any z-score of the cells with data.
    rng = np.random.default_rng(11)
    inner = rng.poisson(4, size=(6, 6, 10)).astype(float)
    padded = np.zeros((10, 10, 10))
    padded[2:8, 2:8] = inner
    alone = emerging_hotspots(inner.reshape(-1, 10), grid_weights(6, 6), fdr=False)
    framed = emerging_hotspots(padded.reshape(-1, 10), grid_weights(10, 10), fdr=False)
    z_framed = framed.z.reshape(10, 10, 10)[2:8, 2:8].reshape(-1, 10)
    np.testing.assert_allclose(z_framed, alone.z, rtol=1e-12)
    assert list(framed.category.reshape(10, 10)[2:8, 2:8].ravel()) == list(alone.category)


def test_cell_cut_off_by_empty_cells_is_an_island() -> None:
    # A busy cell whose neighbours never see an event has no analysed neighbour: its own count
    # alone must not make it a hot spot (as in hotspots.gi_star).
    rng = np.random.default_rng(12)
    counts = rng.poisson(3, size=(8, 8, T)).astype(float)
    counts[5:8, 5:8] = 0
    counts[7, 7] = 40
    result = emerging_hotspots(counts.reshape(-1, T), grid_weights(8, 8))
    island = result.island.reshape(8, 8)
    assert island[7, 7] and island.sum() == 1
    assert result.z.reshape(8, 8, T)[7, 7, 0] > 5  # strongly high on its own ...
    assert result.category.reshape(8, 8)[7, 7] == "no_pattern"  # ... but never a hot spot
    assert (result.bins.reshape(8, 8, T)[7, 7] == 0).all()


def test_islands_stay_out_of_the_fdr_family() -> None:
    # One cell with z = 2.5 (p = 0.0124) in all 20 slices, four cells with z = 0 (p = 1).
    z = np.vstack([np.full(T, 2.5), *[np.zeros(T)] * 4])
    p = two_sided(z)
    # Counting all 100 bins, BH needs p <= 20/100 * 0.05 = 0.01 at rank 20: nothing passes.
    assert (classify_emerging(z, p).bins == 0).all()
    # With the four quiet cells flagged as islands the family is the 20 strong bins: all pass.
    flagged = classify_emerging(z, p, islands=[False, True, True, True, True])
    assert (flagged.bins[0] == 1).all() and (flagged.bins[1:] == 0).all()
    assert list(flagged.island) == [False, True, True, True, True]
    assert flagged.category[0] == "persistent_hot"


def test_all_zero_and_empty_cubes() -> None:
    zeros = emerging_hotspots(np.zeros((9, 6)), grid_weights(3, 3))
    assert (zeros.category == "no_pattern").all() and not zeros.analysed.any()
    assert zeros.cube_trend is not None and zeros.cube_trend.p[0] == 1.0
    empty = emerging_hotspots(np.zeros((0, 6)), sp.csr_array((0, 0)))
    assert empty.category.shape == (0,) and empty.z.shape == (0, 6)
    assert sum(empty.tally().values()) == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"counts": np.ones((4, 1))}, "at least 2 time slices"),
        ({"counts": -np.ones((4, 3))}, "non-negative"),
        ({"counts": np.full((4, 3), np.nan)}, "finite"),
        ({"counts": np.ones(4)}, "dimensions"),
        ({"weights": sp.eye_array(3)}, "4 values"),
        ({"alpha": 0.0}, "alpha"),
        ({"trend_alpha": 1.5}, "trend_alpha"),
        ({"time_window": 0}, "time_window"),
        ({"time_window": 4}, "time_window"),
        ({"global_window": "city"}, "global_window"),
        ({"persistent_share": 0.5}, "persistent_share"),
    ],
)
def test_usage_errors(kwargs: dict, message: str) -> None:
    arguments: dict = {"counts": np.ones((4, 3)), "weights": grid_weights(2, 2)}
    arguments.update(kwargs)
    counts = arguments.pop("counts")
    weights = arguments.pop("weights")
    with pytest.raises(UsageError, match=message):
        emerging_hotspots(counts, weights, **arguments)


def test_categories_table() -> None:
    assert len(CATEGORIES) == 17 and CATEGORIES[0] == "no_pattern"
    assert CATEGORIES[1:9] == tuple(
        f"{name}_hot"
        for name in (
            "new",
            "consecutive",
            "intensifying",
            "persistent",
            "diminishing",
            "sporadic",
            "oscillating",
            "historical",
        )
    )
