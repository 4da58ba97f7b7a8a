"""Knox near-repeat test: brute-force counts, permutation inference, planted and null data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from urbansec.analysis import near_repeat
from urbansec.analysis.near_repeat import knox_test
from urbansec.errors import UsageError

CHICAGO_2017 = Path(__file__).resolve().parents[3] / "shared" / "data" / "chicago" / \
    "crimes_2017.csv.gz"
SPACE = [100.0, 200.0, 300.0, 400.0]
TIME = [7.0, 14.0, 21.0, 28.0]


def brute_table(x: NDArray[np.float64], y: NDArray[np.float64], t: NDArray[np.float64],
                space: list[float], time: list[float], metric: str = "euclidean"
                ) -> NDArray[np.int64]:
    """Every pair i < j classified by the documented band rules, O(n²)."""
    n = len(x)
    i, j = np.triu_indices(n, k=1)
    dx, dy = x[i] - x[j], y[i] - y[j]
    d = np.hypot(dx, dy) if metric == "euclidean" else np.abs(dx) + np.abs(dy)
    dt = np.abs(t[i] - t[j])
    # Band (lo, hi]: the number of upper edges strictly below the value.
    sb = np.where(d == 0, 0, 1 + (d[:, None] > np.asarray(space)[None, :]).sum(axis=1))
    tb = (dt[:, None] > np.asarray(time)[None, :]).sum(axis=1)
    table = np.zeros((len(space) + 2, len(time) + 1), dtype=np.int64)
    np.add.at(table, (sb, tb), 1)
    return table


def lattice_events(seed: int, n: int) -> tuple[NDArray[np.float64], ...]:
    """Events on a 20 m lattice (many repeats and distances exactly on band edges, e.g. 100 m
    from 60-80-100 triangles) at times on whole hours (differences on and near whole days)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 30, n) * 20.0
    y = rng.integers(0, 30, n) * 20.0
    t = rng.integers(0, 60, n) + rng.integers(0, 24, n) / 24
    return x, y, t


@pytest.mark.parametrize("metric", ["euclidean", "manhattan"])
def test_observed_counts_equal_brute_force(metric: str) -> None:
    x, y, t = lattice_events(1, 250)
    result = knox_test(x, y, t, space_bands=SPACE, time_bands=TIME, permutations=1, seed=0,
                       metric=metric)
    want = brute_table(x, y, t, SPACE, TIME, metric)
    assert want[0].sum() > 0 and want[-1].sum() > 0  # same location and beyond both occur
    np.testing.assert_array_equal(result.observed, want)
    assert result.observed.sum() == result.n_pairs == 250 * 249 // 2


def test_band_edges_belong_to_the_lower_band() -> None:
    # 3-4-5 triangle: exactly 100 m apart, exactly 7 days apart -> (0, 100] m x [0, 7] days.
    x = np.array([0.0, 60.0, 0.0, 0.0])
    y = np.array([0.0, 80.0, 0.0, 200.0])
    t = np.array([0.0, 7.0, 14.0, 21.5])
    result = knox_test(x, y, t, space_bands=[100, 200], time_bands=[7, 14], permutations=1)
    assert result.space_labels == ("same location", "(0, 100] m", "(100, 200] m", "> 200 m")
    assert result.time_labels == ("[0, 7] days", "(7, 14] days", "> 14 days")
    # 0-1 and 1-2: 100 m, 7 days; 0-2: same place, 14 days; 0-3: 200 m, 21.5 days;
    # 1-3: 134 m, 14.5 days; 2-3: 200 m, 7.5 days.
    np.testing.assert_array_equal(result.observed, [[0, 1, 0], [2, 0, 0], [0, 1, 2], [0, 0, 0]])
    np.testing.assert_array_equal(result.observed, brute_table(x, y, t, [100, 200], [7, 14]))


def test_expected_and_p_values_follow_the_permutations() -> None:
    x, y, t = lattice_events(2, 120)
    perms, seed = 30, 7
    result = knox_test(x, y, t, space_bands=SPACE, time_bands=TIME, permutations=perms,
                       seed=seed)
    # The documented procedure, by brute force: event i takes the time t[perm[i]].
    rng = np.random.default_rng(seed)
    observed = brute_table(x, y, t, SPACE, TIME)
    tables = np.array([brute_table(x, y, t[rng.permutation(len(t))], SPACE, TIME)
                       for _ in range(perms)])
    np.testing.assert_allclose(result.expected, tables.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(result.p_value,
                               ((tables >= observed).sum(axis=0) + 1) / (perms + 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = observed / tables.mean(axis=0)
    np.testing.assert_allclose(result.ratio, ratio, rtol=1e-12)
    np.testing.assert_array_equal(
        result.significant, (result.p_value <= 0.05) & (observed > result.expected))


def test_planted_near_repeats_are_found() -> None:
    rng = np.random.default_rng(3)
    n = 400
    x = rng.uniform(0, 5_000, n)
    y = rng.uniform(0, 5_000, n)
    t = rng.uniform(0, 365, n)
    # 80 follow-ups within 60 m and 5 days of a random earlier event.
    src = rng.integers(0, n, 80)
    angle = rng.uniform(0, 2 * np.pi, 80)
    radius = rng.uniform(1, 60, 80)
    x = np.concatenate([x, x[src] + radius * np.cos(angle)])
    y = np.concatenate([y, y[src] + radius * np.sin(angle)])
    t = np.concatenate([t, t[src] + rng.uniform(0, 5, 80)])
    result = knox_test(x, y, t, space_bands=SPACE, time_bands=TIME, permutations=199, seed=1)
    assert result.ratio[1, 0] > 5
    assert result.significant[1, 0]
    assert result.p_value[1, 0] == pytest.approx(1 / 200)
    assert result.near_repeat_extent is not None
    assert result.near_repeat_extent[0] == 100 and result.near_repeat_extent[1] == 7
    assert result.near_repeat_cells()[0].space_band == "(0, 100] m"
    assert "Near repeat: elevated risk up to 100 m and 7 days" in result.summary()
    # Far apart in space or time there is nothing to find.
    assert not result.significant[3:5, 2:4].any()


def test_poisson_process_rejects_at_the_nominal_rate() -> None:
    # A homogeneous space-time Poisson process has no interaction: over many seeds, each band
    # cell should be significant at about the nominal 5% (a little less, as counts are
    # discrete and the p-value is conservative).
    rejected, tested = 0, 0
    for seed in range(40):
        rng = np.random.default_rng(1_000 + seed)
        n = rng.poisson(400)
        x = rng.uniform(0, 2_000, n)
        y = rng.uniform(0, 2_000, n)
        t = rng.uniform(0, 120, n)
        result = knox_test(x, y, t, space_bands=SPACE, time_bands=TIME, permutations=99,
                           seed=seed)
        # Continuous coordinates: the same-location row is empty, and never significant.
        assert result.observed[0].sum() == 0
        p = result.p_value[1:]
        rejected += int((p <= 0.05).sum())
        tested += p.size
    rate = rejected / tested
    assert 0.025 <= rate <= 0.075, rate


def test_seed_reproducibility() -> None:
    x, y, t = lattice_events(4, 150)
    kwargs = {"space_bands": SPACE, "time_bands": TIME, "permutations": 50}
    a = knox_test(x, y, t, seed=11, **kwargs)
    b = knox_test(x, y, t, seed=11, **kwargs)
    c = knox_test(x, y, t, seed=12, **kwargs)
    for name in ("observed", "expected", "ratio", "p_value", "significant"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_array_equal(a.observed, c.observed)
    assert not np.array_equal(a.expected, c.expected)
    assert a.seed == 11 and a.permutations == 50


def test_datetime_times_are_compared_exactly_in_seconds() -> None:
    # Whole-hour times: as float days (k / 24) a 7-day difference may round to 7 +- 1e-15; as
    # datetime64 it is exactly 604800 s and must land in [0, 7] days like the brute force says.
    x, y, t = lattice_events(5, 150)
    seconds = np.round(t * 86_400).astype(np.int64)
    stamps = np.datetime64("2017-01-01T00:00:00") + seconds.astype("timedelta64[s]")
    result = knox_test(x, y, stamps, space_bands=SPACE, time_bands=TIME, permutations=5)
    want = brute_table(x, y, seconds.astype(float), SPACE, [e * 86_400 for e in TIME])
    np.testing.assert_array_equal(result.observed, want)
    # Whole days give the same table either way.
    days = np.floor(t)
    midnight = np.datetime64("2017-01-01") + days.astype("timedelta64[D]")
    kwargs = {"space_bands": SPACE, "time_bands": TIME, "permutations": 20, "seed": 3}
    a = knox_test(x, y, days, **kwargs)
    b = knox_test(x, y, midnight, **kwargs)
    np.testing.assert_array_equal(a.observed, b.observed)
    np.testing.assert_array_equal(a.expected, b.expected)


def test_result_is_read_only() -> None:
    x, y, t = lattice_events(6, 30)
    result = knox_test(x, y, t, space_bands=SPACE, time_bands=TIME, permutations=5)
    assert result.observed.shape == (6, 5)
    with pytest.raises(ValueError):
        result.observed[0, 0] = 1
    with pytest.raises(AttributeError):
        result.alpha = 0.1  # type: ignore[misc]


def test_two_events_and_no_pattern_summary() -> None:
    result = knox_test([0.0, 50.0], [0.0, 0.0], [0.0, 3.0], space_bands=[100],
                       time_bands=[7], permutations=9, seed=0)
    assert result.n_pairs == 1
    np.testing.assert_array_equal(result.observed, [[0, 0], [1, 0], [0, 0]])
    # Swapping two times changes nothing: no evidence either way.
    np.testing.assert_array_equal(result.p_value[1], [1.0, 1.0])
    np.testing.assert_array_equal(result.ratio, [[np.nan] * 2, [1.0, np.nan], [np.nan] * 2])
    assert result.near_repeat_extent is None
    assert "No significant near-repeat pattern" in result.summary()


def test_usage_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    x, y, t = lattice_events(7, 20)
    ok = {"space_bands": SPACE, "time_bands": TIME, "permutations": 9}
    for n in (0, 1):
        with pytest.raises(UsageError, match="at least 2"):
            knox_test(x[:n], y[:n], t[:n], **ok)
    bad = [
        {"space_bands": [200, 100]}, {"space_bands": [100, 100]}, {"space_bands": [0, 100]},
        {"space_bands": []}, {"time_bands": [14, 7]}, {"time_bands": [-1, 7]},
        {"time_bands": [7, np.inf]}, {"permutations": 0}, {"permutations": 9.5},
        {"alpha": 0.0}, {"alpha": 1.5}, {"metric": "chebyshev"},
    ]
    for params in bad:
        with pytest.raises(UsageError):
            knox_test(x, y, t, **{**ok, **params})
    with pytest.raises(UsageError, match="strictly increasing"):
        knox_test(x, y, t, **{**ok, "space_bands": [300, 200]})
    with pytest.raises(UsageError, match="equal length"):
        knox_test(x, y[:5], t, **ok)
    with pytest.raises(UsageError, match="unlocated"):
        knox_test(np.r_[x[:-1], np.nan], y, t, **ok)
    with pytest.raises(UsageError, match="NaT"):
        knox_test(x[:2], y[:2], np.array(["2017-01-01", "NaT"], dtype="datetime64[s]"), **ok)
    monkeypatch.setattr(near_repeat, "MAX_CLOSE_PAIRS", 10)
    with pytest.raises(UsageError, match="pairs of events lie within 400 m"):
        knox_test(x, y, t, **ok)


@pytest.mark.slow
def test_real_chicago_2017_burglary_near_repeats() -> None:
    if not CHICAGO_2017.exists():
        pytest.skip(f"{CHICAGO_2017} not found")
    import pandas as pd
    from pyproj import Transformer

    df = pd.read_csv(CHICAGO_2017, usecols=["Date", "Primary Type", "Latitude", "Longitude"])
    df = df[df["Primary Type"] == "BURGLARY"].dropna(subset=["Latitude", "Longitude"])
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:32616", always_xy=True).transform(
        df["Longitude"].to_numpy(float), df["Latitude"].to_numpy(float))
    t = pd.to_datetime(df["Date"], format="%m/%d/%Y %I:%M:%S %p").to_numpy("datetime64[s]")
    result = knox_test(x, y, t, space_bands=[100, 200, 300, 400, 500],
                       time_bands=[7, 14, 21, 28, 35], permutations=199, seed=0)
    assert result.n_events > 12_000
    # Burglary repeats and near repeats are among the best replicated findings in
    # criminology: the same block, and the nearest 100 m, within the first week.
    assert result.significant[0, 0] and result.ratio[0, 0] > 3
    assert result.significant[1, 0] and result.ratio[1, 0] > 1.2
    assert result.near_repeat_extent is not None
