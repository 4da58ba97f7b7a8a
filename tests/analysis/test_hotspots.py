"""Gi* and Local Moran's I: checked against esda 2.9, a naive permutation loop and hand cases."""

from __future__ import annotations

import importlib.util
import time
import warnings
from collections.abc import Callable, Iterator

import libpysal
import numpy as np
import pytest
import scipy.stats
from esda.getisord import G_Local
from esda.moran import Moran_Local
from scipy import sparse

from urbansec.analysis import hotspots
from urbansec.analysis.hotspots import (
    benjamini_hochberg,
    benjamini_hochberg_adjust,
    gi_star,
    local_moran,
)
from urbansec.analysis.weights import (
    as_binary_weights,
    cardinalities,
    distance_band,
    from_pairs,
    square_contiguity,
)
from urbansec.errors import UsageError

# Without numba esda draws its permutations with numpy's legacy global RNG, which we can replay.
ESDA_PURE_PYTHON = importlib.util.find_spec("numba") is None


# --------------------------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------------------------


def to_libpysal(w: sparse.csr_array) -> libpysal.weights.W:
    return libpysal.weights.WSP(sparse.csr_matrix(w)).to_W(silence_warnings=True)


@pytest.fixture(autouse=True)
def _quiet_esda() -> Iterator[None]:
    # esda warns about its future default alternative and libpysal about islands.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def grid_with_holes(nrows: int, ncols: int, seed: int, holes: float = 0.1
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Cells of a grid minus random holes, plus one far-away island cell (the last one)."""
    rng = np.random.default_rng(seed)
    rows, cols = np.divmod(np.arange(nrows * ncols), ncols)
    keep = rng.random(rows.size) >= holes
    return np.r_[rows[keep], nrows + 50], np.r_[cols[keep], ncols + 50]


def weight_cases() -> dict[str, tuple[sparse.csr_array, int]]:
    rows, cols = grid_with_holes(14, 12, seed=1)
    n = rows.size
    queen = square_contiguity(rows, cols, "queen")
    rook = square_contiguity(rows, cols, "rook")
    band = distance_band(cols * 250.0, rows * 250.0, 560.0)  # up to 20 neighbours
    rng = np.random.default_rng(2)
    i = rng.integers(0, n, 3 * n)
    j = (i + rng.integers(1, 6, i.size)) % n
    pairs = from_pairs(n, i, j)
    return {"queen": (queen, n), "rook": (rook, n), "band": (band, n), "pairs": (pairs, n)}


WEIGHT_CASES = weight_cases()


def esda_draws(seed: int, n: int, max_card: int, permutations: int) -> np.ndarray:
    """The draws esda 2.9's crand.vec_permutations makes when numba is absent."""
    np.random.seed(seed)
    ids = np.empty((permutations, max_card), dtype=np.int64)
    for r in range(permutations):
        ids[r] = np.random.choice(n - 1, size=max_card, replace=False)
    return ids


def use_esda_draws(monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    monkeypatch.setattr(hotspots, "_draw_ids",
                        lambda n, k, p, rng: esda_draws(seed, n, k, p))


def naive_counts(y: np.ndarray, card: np.ndarray, observed: np.ndarray, ids: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """esda's per-cell loop: remove cell i, read the first k draws, compare sums."""
    n = y.size
    upper = np.zeros(n, dtype=np.int64)
    lower = np.zeros(n, dtype=np.int64)
    z_delta = np.zeros(n)
    for i in range(n):
        sums = np.delete(y, i)[ids[:, :card[i]]].sum(axis=1)
        upper[i] = np.count_nonzero(sums >= observed[i])
        lower[i] = np.count_nonzero(sums <= observed[i])
        sd = sums.std()
        z_delta[i] = (sums.mean() - observed[i]) / sd if sd > 0 else 0.0
    return upper, lower, z_delta


def planted_grid(seed: int, size: int = 30) -> tuple[np.ndarray, sparse.csr_array, int]:
    """Poisson(1) counts with a 3x3 block of Poisson(12) in the middle; returns the centre."""
    rng = np.random.default_rng(seed)
    rows, cols = np.divmod(np.arange(size * size), size)
    y = rng.poisson(1.0, rows.size).astype(float)
    mid = size // 2
    block = (np.abs(rows - mid) <= 1) & (np.abs(cols - mid) <= 1)
    y[block] = rng.poisson(12.0, int(block.sum()))
    return y, square_contiguity(rows, cols), mid * size + mid


# --------------------------------------------------------------------------------------------
# Gi*: analytical z against esda
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(WEIGHT_CASES))
@pytest.mark.parametrize("kind", ["counts", "continuous"])
def test_gi_star_z_equals_esda(case: str, kind: str) -> None:
    w, n = WEIGHT_CASES[case]
    rng = np.random.default_rng(11)
    y = rng.poisson(2.0, n).astype(float) if kind == "counts" else rng.gamma(2.0, 3.0, n)
    y[:8] += 15  # some structure
    ref = G_Local(y, to_libpysal(w), star=True, transform="B", permutations=0)
    res = gi_star(y, w)
    assert res.z.shape == (n,)
    np.testing.assert_allclose(res.z, ref.Zs, rtol=0, atol=1e-6)
    # esda reports the one-sided normal p; ours is two-sided.
    np.testing.assert_allclose(res.p_norm, 2 * ref.p_norm, rtol=1e-9, atol=1e-12)
    assert res.p_sim is None and res.z_sim is None
    np.testing.assert_array_equal(res.p, res.p_norm)


def test_gi_star_z_is_arcgis_form_shift_invariant() -> None:
    w, n = WEIGHT_CASES["queen"]
    y = np.random.default_rng(5).normal(10.0, 3.0, n)
    # esda divides by the sum of values, so it breaks down for zero/negative sums; the ArcGIS
    # form we use is unchanged by a shift, so negative values (e.g. changes) work too.
    np.testing.assert_allclose(gi_star(y - 25.0, w).z, gi_star(y, w).z, atol=1e-9)
    assert np.isfinite(gi_star(y - y.mean(), w).z).all()


def test_gi_star_island_keeps_esda_z_but_is_never_a_hotspot() -> None:
    w, n = WEIGHT_CASES["queen"]
    island = n - 1
    assert cardinalities(w)[island] == 0
    y = np.random.default_rng(4).poisson(1.0, n).astype(float)
    y[island] = 40.0
    res = gi_star(y, w, permutations=99, seed=1)
    ref = G_Local(y, to_libpysal(w), star=True, transform="B", permutations=0)
    assert res.z[island] == pytest.approx(ref.Zs[island], abs=1e-9)
    assert res.z[island] == pytest.approx((y[island] - y.mean()) / y.std(), abs=1e-9)
    assert res.p_norm[island] < 1e-6
    assert res.classes[island] == 0
    assert res.p_sim is not None and res.p_sim[island] == 1.0  # nothing to permute


# --------------------------------------------------------------------------------------------
# Permutation engine
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["integers", "continuous"])
@pytest.mark.parametrize("layout", ["mixed", "contiguous", "tiny-masks"])
def test_permutation_engine_matches_naive_loop(
        monkeypatch: pytest.MonkeyPatch, kind: str, layout: str) -> None:
    rng = np.random.default_rng(21)
    n, max_card, perms = 300, 9, 199
    # Integers make many exact ties.
    y = rng.poisson(0.8, n).astype(float) if kind == "integers" else rng.normal(size=n)
    card = rng.integers(0, max_card + 1, n)
    card[:3] = max_card
    if layout == "contiguous":
        card = np.sort(card)  # each cardinality in one run of indices: events crowd together
    if layout == "tiny-masks":
        monkeypatch.setattr(hotspots, "_MASK_ELEMENTS", 64)
    ids = hotspots._draw_ids(n, max_card, perms, rng)
    # Observed sums spread around the random ones so both tails and exact ties occur.
    observed = np.array([np.delete(y, i)[ids[i % perms, :card[i]]].sum() for i in range(n)])
    observed[::3] += rng.integers(-2, 3, observed[::3].size)
    upper, lower, z_delta = hotspots._permutation_counts(y, card, observed, ids)
    ref_upper, ref_lower, ref_z = naive_counts(y, card, observed, ids)
    np.testing.assert_array_equal(upper, ref_upper)
    np.testing.assert_array_equal(lower, ref_lower)
    np.testing.assert_allclose(z_delta, ref_z, atol=1e-8)
    if kind == "integers":
        assert np.any(upper + lower > perms)  # ties were exercised


def test_draws_are_distinct_per_row_and_exclude_nothing_else() -> None:
    rng = np.random.default_rng(0)
    ids = hotspots._draw_ids(50, 12, 400, rng)
    assert ids.shape == (400, 12)
    assert ids.min() >= 0 and ids.max() <= 48  # indices into the n - 1 other cells
    assert all(np.unique(row).size == 12 for row in ids)
    # Each index about equally likely in the first column (prefixes must be uniform too).
    counts = np.bincount(ids[:, 0], minlength=49)
    assert scipy.stats.chisquare(counts).pvalue > 0.001


@pytest.mark.skipif(not ESDA_PURE_PYTHON, reason="esda uses numba's RNG, draws not replayable")
@pytest.mark.parametrize("case", ["queen", "band"])
@pytest.mark.parametrize("kind", ["counts", "continuous"])
def test_gi_star_p_sim_equals_esda_given_the_same_draws(
        monkeypatch: pytest.MonkeyPatch, case: str, kind: str) -> None:
    w, n = WEIGHT_CASES[case]
    rng = np.random.default_rng(8)
    y = rng.poisson(0.9, n).astype(float) if kind == "counts" else rng.gamma(2.0, 1.0, n)
    y[10:20] += 6
    ref = G_Local(y, to_libpysal(w), star=True, transform="B", permutations=499, seed=13,
                  n_jobs=1)
    use_esda_draws(monkeypatch, 13)
    res = gi_star(y, w, permutations=499, ties="esda")
    assert res.p_sim is not None and res.z_sim is not None
    # esda stores p_sim as float32.
    np.testing.assert_allclose(res.p_sim, ref.p_sim, rtol=0, atol=1e-6)
    finite = np.isfinite(ref.z_sim)
    np.testing.assert_allclose(res.z_sim[finite], ref.z_sim[finite], atol=1e-6)


def test_conservative_ties_equal_esda_rule_when_nothing_ties() -> None:
    w, n = WEIGHT_CASES["band"]
    y = np.random.default_rng(3).normal(5.0, 1.0, n)
    a = gi_star(y, w, permutations=299, seed=4)
    b = gi_star(y, w, permutations=299, seed=4, ties="esda")
    assert a.p_sim is not None and b.p_sim is not None
    islands = cardinalities(w) == 0
    np.testing.assert_array_equal(a.p_sim[~islands], b.p_sim[~islands])


def test_conservative_ties_do_not_make_empty_areas_significant() -> None:
    # Sparse counts (80 % empty cells): an empty cell among empty neighbours ties with every
    # all-empty draw, which happens for ~0.8^8 = 17 % of the draws: not a cold spot.
    rows, cols = np.divmod(np.arange(40 * 40), 40)
    rng = np.random.default_rng(6)
    y = np.where(rng.random(rows.size) < 0.8, 0.0, rng.poisson(3.0, rows.size) + 1.0)
    w = square_contiguity(rows, cols)
    quiet = np.flatnonzero((y == 0) & ((w @ y) == 0))
    assert quiet.size > 100
    esda_rule = gi_star(y, w, permutations=999, seed=1, ties="esda")
    ours = gi_star(y, w, permutations=999, seed=1)
    assert esda_rule.p_sim is not None and ours.p_sim is not None
    np.testing.assert_allclose(esda_rule.p_sim[quiet], 1 / 1000)
    assert np.all(ours.p_sim[quiet] > 0.05)
    assert np.all(ours.classes[quiet] == 0)
    assert np.all(ours.p_sim >= esda_rule.p_sim)


def test_permutations_are_reproducible_with_a_seed() -> None:
    y, w, _ = planted_grid(seed=2)
    a = gi_star(y, w, permutations=199, seed=42)
    b = gi_star(y, w, permutations=199, seed=42)
    c = gi_star(y, w, permutations=199, seed=43)
    assert a.p_sim is not None and b.p_sim is not None and c.p_sim is not None
    np.testing.assert_array_equal(a.p_sim, b.p_sim)
    np.testing.assert_array_equal(a.classes, b.classes)
    assert not np.array_equal(a.p_sim, c.p_sim)
    m1 = local_moran(y, w, permutations=199, seed=np.random.default_rng(5))
    m2 = local_moran(y, w, permutations=199, seed=np.random.default_rng(5))
    np.testing.assert_array_equal(m1.p_sim, m2.p_sim)


def test_gi_star_p_sim_statistically_consistent_with_esda_own_draws() -> None:
    rows, cols = np.divmod(np.arange(35 * 35), 35)
    rng = np.random.default_rng(9)
    y = rng.gamma(2.0, 1.0, rows.size)
    y[(np.abs(rows - 10) <= 2) & (np.abs(cols - 10) <= 2)] += 6  # hot
    y[(np.abs(rows - 25) <= 2) & (np.abs(cols - 25) <= 2)] = 0.0  # cold
    w = square_contiguity(rows, cols)
    ref = G_Local(y, to_libpysal(w), star=True, transform="B", permutations=999, seed=0,
                  n_jobs=1)
    res = gi_star(y, w, permutations=999, seed=0)
    assert res.p_sim is not None
    # Different random streams: close, not equal. Both libraries share one set of draws among
    # all cells, so Monte Carlo error is common to many cells: two esda seeds differ by
    # 0.015-0.017 on average (max ~0.07) on this map, two of ours by 0.017-0.028.
    diff = np.abs(res.p_sim - ref.p_sim)
    assert 0 < np.mean(diff) < 0.04
    assert np.max(diff) < 0.15
    assert np.corrcoef(res.p_sim, ref.p_sim)[0, 1] > 0.95
    strong = ref.p_sim <= 0.002
    assert strong.sum() > 10
    assert np.all(res.p_sim[strong] <= 0.02)
    assert res.classes[10 * 35 + 10] == 3
    assert res.classes[25 * 35 + 25] < 0


# --------------------------------------------------------------------------------------------
# Behaviour on planted and random maps
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("permutations", [0, 999])
def test_planted_hotspot_is_found(permutations: int) -> None:
    y, w, centre = planted_grid(seed=1)
    res = gi_star(y, w, permutations=permutations, seed=0)
    assert res.classes[centre] == 3
    assert res.z[centre] > 5
    assert np.argmax(res.z) in {centre, centre - 1, centre + 1, centre - 30, centre + 30,
                                centre - 31, centre - 29, centre + 29, centre + 31}
    assert np.sum(res.classes == 3) < 40  # the hot spot, not the map
    lisa = local_moran(y, w, seed=0)
    assert lisa.cluster[centre] == "HH"
    assert lisa.quadrant[centre] == 1


def test_random_field_gives_nominal_false_positive_rate() -> None:
    rows, cols = np.divmod(np.arange(50 * 50), 50)
    w = square_contiguity(rows, cols)
    gi_analytic, gi_perm, gi_folded, lisa = [], [], [], []
    for seed in range(3):
        y = np.random.default_rng(100 + seed).normal(size=rows.size)
        a = gi_star(y, w)
        b = gi_star(y, w, permutations=199, seed=seed)
        m = local_moran(y, w, permutations=199, seed=seed)
        assert b.p_sim is not None
        gi_analytic.append(np.mean(np.abs(a.classes) >= 2))
        gi_perm.append(np.mean(np.abs(b.classes) >= 2))
        gi_folded.append(np.mean(b.p_sim <= 0.05))
        lisa.append(np.mean(m.significant))
    # ~2500 overlapping tests per map, 3 maps: the rate's SE is under 1 point.
    assert 0.03 < np.mean(gi_analytic) < 0.07
    assert 0.03 < np.mean(gi_perm) < 0.07
    assert 0.03 < np.mean(lisa) < 0.07
    # Why classes use 2 * p_sim: the folded p alone rejects about twice as often.
    assert 0.07 < np.mean(gi_folded) < 0.13


# --------------------------------------------------------------------------------------------
# 2-D values, FDR, degenerate input
# --------------------------------------------------------------------------------------------


def test_2d_values_equal_per_column_results() -> None:
    w, n = WEIGHT_CASES["queen"]
    rng = np.random.default_rng(12)
    cube = rng.poisson(1.5, (n, 6)).astype(float)
    cube[:5, 2] += 20
    cube[:, 4] = 0.0  # an empty week
    for fdr in (False, True):
        res = gi_star(cube, w, fdr=fdr)
        assert res.z.shape == res.p_norm.shape == res.classes.shape == res.p.shape == (n, 6)
        for j in range(6):
            col = gi_star(cube[:, j], w, fdr=fdr)
            np.testing.assert_allclose(res.z[:, j], col.z, atol=1e-12)
            np.testing.assert_allclose(res.p[:, j], col.p, atol=1e-12)
            np.testing.assert_array_equal(res.classes[:, j], col.classes)
    assert np.all(res.z[:, 4] == 0) and np.all(res.classes[:, 4] == 0)
    with pytest.raises(UsageError, match="single values vector"):
        gi_star(cube, w, permutations=99)


def test_benjamini_hochberg_hand_cases() -> None:
    # m = 5, thresholds 0.01 .. 0.05: the 4th smallest passes (0.04 <= 0.04).
    p = np.array([0.04, 0.01, 0.2, 0.03, 0.02])
    np.testing.assert_array_equal(benjamini_hochberg(p, 0.05), [True, True, False, True, True])
    # Step-up: 0.03 > 2/4 * 0.05 alone, but 0.035 <= 3/4 * 0.05 carries it.
    p = np.array([0.001, 0.03, 0.035, 0.5])
    np.testing.assert_array_equal(benjamini_hochberg(p, 0.05), [True, True, True, False])
    np.testing.assert_allclose(benjamini_hochberg_adjust(p), [0.004, 0.04666667, 0.04666667,
                                                              0.5], atol=1e-8)
    # NaN = not tested: neither a discovery nor counted in m.
    p = np.array([0.01, np.nan, 0.04])
    np.testing.assert_array_equal(benjamini_hochberg(p, 0.05), [True, False, True])
    assert np.isnan(benjamini_hochberg_adjust(p)[1])
    assert benjamini_hochberg([], 0.05).shape == (0,)


def test_benjamini_hochberg_equals_scipy() -> None:
    rng = np.random.default_rng(1)
    p = np.concatenate([rng.uniform(size=400), rng.uniform(0, 0.002, 40)])
    q = benjamini_hochberg_adjust(p)
    np.testing.assert_allclose(q, scipy.stats.false_discovery_control(p), rtol=1e-12)
    for alpha in (0.01, 0.05, 0.1):
        np.testing.assert_array_equal(benjamini_hochberg(p, alpha),
                                      scipy.stats.false_discovery_control(p) <= alpha)


def test_gi_star_fdr_is_bh_per_confidence_level() -> None:
    y, w, centre = planted_grid(seed=3)
    plain = gi_star(y, w)
    res = gi_star(y, w, fdr=True)
    assert np.all(np.abs(res.classes) <= np.abs(plain.classes))
    for level, alpha in enumerate((0.10, 0.05, 0.01), start=1):
        np.testing.assert_array_equal(np.abs(res.classes) >= level,
                                      benjamini_hochberg(plain.p_norm, alpha))
    assert res.classes[centre] == 3
    assert np.sum(res.classes != 0) < np.sum(plain.classes != 0)
    perm = gi_star(y, w, permutations=199, seed=1, fdr=True)
    assert perm.p_sim is not None
    np.testing.assert_allclose(perm.p, benjamini_hochberg_adjust(np.minimum(2 * perm.p_sim, 1)))
    lisa = local_moran(y, w, permutations=199, seed=1, fdr=True, alpha=0.05)
    np.testing.assert_array_equal(lisa.significant,
                                  benjamini_hochberg(np.minimum(2 * lisa.p_sim, 1), 0.05))


def test_all_zero_input_is_quietly_nothing_significant() -> None:
    w, n = WEIGHT_CASES["queen"]
    for values in (np.zeros(n), np.full(n, 0.1), np.full(n, 7.0)):
        res = gi_star(values, w, permutations=99, seed=0)
        assert res.p_sim is not None and res.z_sim is not None
        for arr in (res.z, res.p_norm, res.p_sim, res.z_sim, res.p):
            assert np.isfinite(arr).all()
        assert np.all(res.z == 0)
        assert np.all(res.p_norm == 1) and np.all(res.p_sim == 1)
        assert np.all(res.classes == 0)
        lisa = local_moran(values, w, permutations=99, seed=0)
        assert np.all(lisa.I == 0) and np.all(lisa.p_sim == 1)
        assert np.all(lisa.quadrant == 0) and not lisa.significant.any()
        assert set(lisa.cluster) == {""}


def test_empty_input_gives_empty_results() -> None:
    w = sparse.csr_array((0, 0))
    res = gi_star(np.zeros(0), w, permutations=9)
    assert res.z.shape == res.classes.shape == (0,)
    assert res.p_sim is not None and res.p_sim.shape == (0,)
    lisa = local_moran(np.zeros(0), w)
    assert lisa.I.shape == lisa.cluster.shape == (0,)


def test_single_cell_and_full_neighbourhood_do_not_divide_by_zero() -> None:
    one = gi_star(np.array([3.0]), sparse.csr_array((1, 1)), permutations=9, seed=0)
    assert one.z.tolist() == [0.0] and one.classes.tolist() == [0]
    # Every cell neighbours every other: Gi* is the global sum everywhere, z undefined -> 0.
    full = sparse.csr_array(np.ones((4, 4)) - np.eye(4))
    res = gi_star(np.array([1.0, 2.0, 3.0, 10.0]), full, permutations=9, seed=0)
    assert np.all(res.z == 0) and np.all(res.classes == 0)


def test_usage_errors() -> None:
    w, n = WEIGHT_CASES["queen"]
    y = np.ones(n)
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: gi_star(y[:-1], w), "values were given"),
        (lambda: gi_star(np.r_[y[:-1], np.nan], w), "NaN"),
        (lambda: gi_star(y, w, permutations=-1), "permutations"),
        (lambda: gi_star(y, w, permutations=9.5), "permutations"),  # type: ignore[arg-type]
        (lambda: gi_star(y, w, alpha_levels=(0.1, 1.5)), "between 0 and 1"),
        (lambda: gi_star(y, w, alpha_levels=()), "alpha_levels"),
        (lambda: gi_star(y, w, ties="random"), "ties"),  # type: ignore[arg-type]
        (lambda: gi_star(np.ones((n, 2, 2)), w), "shape"),
        (lambda: gi_star(["a"] * n, w), "numbers"),
        (lambda: local_moran(y, w, permutations=0), "positive integer"),
        (lambda: local_moran(y, w, alpha=0), "between 0 and 1"),
        (lambda: local_moran(y, w, transformation="v"), "transformation"),  # type: ignore[arg-type]
        (lambda: local_moran(np.ones((n, 2)), w), "shape"),
        (lambda: benjamini_hochberg([0.5, 1.2], 0.05), "between 0 and 1"),
    ]
    for call, message in cases:
        with pytest.raises(UsageError, match=message):
            call()


# --------------------------------------------------------------------------------------------
# Local Moran's I against esda
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(WEIGHT_CASES))
@pytest.mark.parametrize("transformation", ["r", "b"])
def test_local_moran_i_and_quadrants_equal_esda(case: str, transformation: str) -> None:
    w, n = WEIGHT_CASES[case]
    rng = np.random.default_rng(17)
    y = rng.poisson(3.0, n).astype(float)
    y[:12] += 10
    ref = Moran_Local(y, to_libpysal(w), transformation=transformation, permutations=0)
    res = local_moran(y, w, permutations=9, seed=0, transformation=transformation)  # type: ignore[arg-type]
    np.testing.assert_allclose(res.I, ref.Is, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(res.quadrant, ref.q)


@pytest.mark.skipif(not ESDA_PURE_PYTHON, reason="esda uses numba's RNG, draws not replayable")
@pytest.mark.parametrize("case", ["queen", "band"])
def test_local_moran_p_sim_equals_esda_given_the_same_draws(
        monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    w, n = WEIGHT_CASES[case]
    y = np.random.default_rng(23).normal(size=n)
    y[:10] += 2.5
    ref = Moran_Local(y, to_libpysal(w), permutations=499, seed=5, n_jobs=1)
    use_esda_draws(monkeypatch, 5)
    res = local_moran(y, w, permutations=499, ties="esda")
    islands = cardinalities(w) == 0
    np.testing.assert_allclose(res.p_sim[~islands], ref.p_sim[~islands], rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.z_sim[~islands], ref.z_sim[~islands], atol=1e-6)


def test_local_moran_clusters_follow_quadrant_and_significance() -> None:
    y, w, centre = planted_grid(seed=4)
    outlier = 5 * 30 + 5
    y[[outlier - 31, outlier - 30, outlier - 29, outlier - 1, outlier + 1, outlier + 29,
       outlier + 30, outlier + 31]] = 0.0
    y[outlier] = 30.0  # a high value among empty neighbours: HL
    res = local_moran(y, w, permutations=999, seed=2)
    labels = {1: "HH", 2: "LH", 3: "LL", 4: "HL"}
    for i in range(y.size):
        expected = labels[int(res.quadrant[i])] if res.significant[i] else ""
        assert res.cluster[i] == expected
    np.testing.assert_array_equal(res.significant, res.p <= 0.05)
    assert res.cluster[outlier] == "HL"
    assert res.cluster[centre] == "HH"
    strict = local_moran(y, w, permutations=999, seed=2, alpha=0.01)
    assert strict.significant.sum() < res.significant.sum()


def test_local_moran_islands_are_never_clusters() -> None:
    w, n = WEIGHT_CASES["queen"]
    y = np.random.default_rng(1).poisson(1.0, n).astype(float)
    y[n - 1] = 50.0
    res = local_moran(y, w, permutations=99, seed=0)
    assert res.I[n - 1] == 0.0
    assert res.p_sim[n - 1] == 1.0
    assert res.cluster[n - 1] == ""


# --------------------------------------------------------------------------------------------
# Speed
# --------------------------------------------------------------------------------------------


def test_permutation_inference_is_much_faster_than_esda() -> None:
    rows, cols = np.divmod(np.arange(60 * 60), 60)
    y = np.random.default_rng(0).poisson(0.8, rows.size).astype(float)
    w = square_contiguity(rows, cols)
    lw = to_libpysal(w)
    t0 = time.perf_counter()
    G_Local(y, lw, star=True, transform="B", permutations=999, seed=0, n_jobs=1)
    t1 = time.perf_counter()
    gi_star(y, w, permutations=999, seed=0)
    t2 = time.perf_counter()
    # Typically ~50x; 5x leaves room for a busy machine.
    assert (t1 - t0) > 5 * (t2 - t1)


def test_weights_input_may_be_any_sparse_format() -> None:
    w, n = WEIGHT_CASES["rook"]
    y = np.random.default_rng(2).poisson(2.0, n).astype(float)
    base = gi_star(y, w).z
    for other in (sparse.csr_matrix(w), w.tocoo(), sparse.lil_matrix(w), 2.0 * w + sparse.eye(n)):
        np.testing.assert_allclose(gi_star(y, other).z, base, atol=1e-12)
    np.testing.assert_array_equal(as_binary_weights(2.0 * w).toarray(), w.toarray())
