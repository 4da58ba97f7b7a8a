"""Exact period comparison: scipy binomtest equality, exposure, small-count honesty, zeros."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from urbansec.analysis.change import (
    binomtest_two_sided,
    compare_periods,
    compare_totals,
)
from urbansec.errors import UsageError


def scipy_pvalues(c: np.ndarray, b: np.ndarray, ec: np.ndarray, eb: np.ndarray) -> np.ndarray:
    return np.array([
        stats.binomtest(int(k), int(k + m), p=float(e1 / (e1 + e2))).pvalue if k + m else 1.0
        for k, m, e1, e2 in zip(c, b, ec, eb, strict=True)
    ])


def test_pvalues_equal_scipy_binomtest_loop() -> None:
    rng = np.random.default_rng(2024)
    n_units = 600
    means = rng.gamma(0.8, 25.0, n_units)
    c = rng.poisson(means)
    b = rng.poisson(means * rng.uniform(0.5, 2.0, n_units))
    c[:20], b[:20] = 0, rng.integers(0, 5, 20)  # zeros on either side, some both
    b[20:40] = 0
    c[40:60] = b[40:60]  # ties
    ec = rng.choice([1.0, 28.0, 31.0, 90.0, 365.0], n_units)
    eb = rng.choice([1.0, 28.0, 31.0, 90.0, 365.0], n_units)
    r = compare_periods(c, b, current_exposure=ec, baseline_exposure=eb)
    np.testing.assert_allclose(r.p_value, scipy_pvalues(c, b, ec, eb), rtol=1e-12, atol=0)


def test_binomtest_two_sided_direct_including_large_and_symmetric_cases() -> None:
    rng = np.random.default_rng(5)
    n = np.r_[rng.integers(1, 50, 200), rng.integers(1000, 20000, 50), [1, 2, 10, 10, 7]]
    k = np.array([rng.integers(0, m + 1) for m in n])
    p = np.r_[rng.uniform(0.02, 0.98, 250), [0.5, 0.5, 0.5, 0.3, 1 / 3]]
    k[-3:] = [5, 3, 0]
    expected = [stats.binomtest(int(a), int(m), float(q)).pvalue for a, m, q in zip(k, n, p,
                                                                                   strict=True)]
    np.testing.assert_allclose(binomtest_two_sided(k, n, p), expected, rtol=1e-12, atol=0)


def test_ratio_ci_is_mapped_clopper_pearson() -> None:
    c, b = np.array([3, 14, 140, 0, 9]), np.array([7, 10, 100, 4, 9])
    ec, eb = 28.0, 90.0
    r = compare_periods(c, b, current_exposure=ec, baseline_exposure=eb, confidence=0.9)
    for i in range(c.size):
        ci = stats.binomtest(int(c[i]), int(c[i] + b[i])).proportion_ci(0.9, method="exact")
        low = ci.low / (1 - ci.low) * eb / ec
        assert r.ci_low[i] == pytest.approx(low, rel=1e-8, abs=1e-12)
        assert r.ci_high[i] == pytest.approx(ci.high / (1 - ci.high) * eb / ec, rel=1e-8)
        assert r.ci_low[i] <= r.ratio[i] <= r.ci_high[i]


def test_forty_percent_rise_small_counts_not_significant_large_counts_significant() -> None:
    r = compare_periods([14, 140], [10, 100])
    np.testing.assert_allclose(r.percent_change, [40.0, 40.0])
    assert list(r.direction) == ["up", "up"]
    assert list(r.significant) == [False, True]
    assert r.p_value[0] == pytest.approx(stats.binomtest(14, 24).pvalue)
    assert r.p_value[0] > 0.5 and r.p_value[1] < 0.02
    assert r.ci_low[0] < 1 < r.ci_high[0] and r.ci_low[1] > 1
    total = compare_totals([7, 7], [4, 6])
    assert total.current == 14 and total.baseline == 10 and not total.significant
    assert total.p_value == pytest.approx(r.p_value[0])


def test_exposure_same_period_last_year_vs_previous_shorter_period() -> None:
    # Last 28 days against the 90 days before: same daily rate, no change.
    r = compare_periods([28, 45], [90, 90], current_exposure=28, baseline_exposure=90)
    assert r.ratio[0] == pytest.approx(1.0) and r.p_value[0] == pytest.approx(1.0)
    assert r.expected[0] == pytest.approx(28.0) and r.direction[0] == "none"
    # 45 in 28 days against 90 in 90 days is 1.6x the daily rate.
    assert r.ratio[1] == pytest.approx((45 / 28) / (90 / 90))
    assert r.p_value[1] == pytest.approx(stats.binomtest(45, 135, 28 / 118).pvalue)
    assert r.significant[1]
    # The same counts without exposure look like a fall: exposure matters.
    naive = compare_periods([45], [90])
    assert naive.direction[0] == "down" and naive.significant[0]
    # Same month last year: equal exposures give the plain count ratio.
    same = compare_periods([62], [50], current_exposure=31, baseline_exposure=31)
    assert same.ratio[0] == pytest.approx(1.24) and same.percent_change[0] == pytest.approx(24)


def test_equal_rates_through_rounding_read_as_no_change() -> None:
    r = compare_periods([1, 5, 7], [3, 15, 21], current_exposure=0.1, baseline_exposure=0.1 * 3)
    assert (r.ratio > 1.0).all()  # 1 + 1 ulp: 0.1 * 3 is not 0.3 in floating point
    assert list(r.direction) == ["none", "none", "none"]
    np.testing.assert_allclose(r.p_value, 1.0)


def test_per_unit_exposures() -> None:
    r = compare_periods([10, 10], [10, 10], current_exposure=[1.0, 2.0], baseline_exposure=1.0)
    np.testing.assert_allclose(r.ratio, [1.0, 0.5])
    assert r.p_value[1] == pytest.approx(stats.binomtest(10, 20, 2 / 3).pvalue)


def test_zero_handling() -> None:
    r = compare_periods([0, 5, 0, 3], [0, 0, 5, 3])
    assert np.isnan(r.ratio[0]) and np.isnan(r.percent_change[0])
    assert r.status[0] == "both_zero" and r.direction[0] == "none"
    assert r.p_value[0] == 1.0 and not r.significant[0]
    assert np.isnan(r.ci_low[0]) and np.isnan(r.ci_high[0])
    assert r.ratio[1] == np.inf and r.percent_change[1] == np.inf
    assert r.status[1] == "baseline_zero" and r.direction[1] == "up"
    assert r.ci_high[1] == np.inf and 0 < r.ci_low[1] < np.inf
    assert r.ratio[2] == 0 and r.percent_change[2] == -100 and r.direction[2] == "down"
    assert r.ci_low[2] == 0 and r.status[2] == "ok"
    assert r.direction[3] == "none" and r.p_value[3] == 1.0
    assert r.p_value[1] == pytest.approx(2 * 0.5**5)
    assert r.n_tested == 3


def test_corrections() -> None:
    rng = np.random.default_rng(11)
    c = rng.poisson(30, 200)
    b = rng.poisson(30, 200)
    c[:10] = rng.poisson(70, 10)
    c[10:20], b[10:20] = 0, 0  # untested units do not count towards the family
    none = compare_periods(c, b)
    bonf = compare_periods(c, b, correction="bonferroni")
    fdr = compare_periods(c, b, correction="fdr")
    tested = (c + b) > 0
    m = int(tested.sum())
    assert m == 190
    np.testing.assert_allclose(bonf.p_adjusted[tested], np.minimum(none.p_value[tested] * m, 1))
    np.testing.assert_allclose(fdr.p_adjusted[tested],
                               stats.false_discovery_control(none.p_value[tested]))
    np.testing.assert_array_equal(none.p_adjusted, none.p_value)
    assert (bonf.p_adjusted[~tested] == 1).all()
    # Stricter corrections can only remove findings.
    assert not np.any(bonf.significant & ~fdr.significant)
    assert not np.any(fdr.significant & ~none.significant)
    assert bonf.significant[:10].sum() >= 5 and none.significant.sum() > bonf.significant.sum()
    np.testing.assert_array_equal(bonf.significant, bonf.p_adjusted <= 0.05)


def test_empty_input_gives_empty_result() -> None:
    r = compare_periods([], [], correction="fdr")
    assert r.current.size == 0 and r.p_value.size == 0 and r.n_tested == 0
    t = compare_totals([], [])
    assert t.status == "both_zero" and t.p_value == 1.0


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (([1, 2], [1]), {}, "units"),
        (([-1], [1]), {}, "whole numbers"),
        (([1.5], [1]), {}, "whole numbers"),
        (([np.nan], [1]), {}, "missing"),
        ((["a"], [1]), {}, "numbers"),
        (([1], [1]), {"current_exposure": 0}, "positive"),
        (([1, 2], [1, 2]), {"baseline_exposure": [1, 2, 3]}, "one per unit"),
        (([1], [1]), {"correction": "holm"}, "unknown correction"),
        (([1], [1]), {"alpha": 5}, "alpha"),
        (([1], [1]), {"confidence": 1.0}, "confidence"),
        (([[1]], [[1]]), {}, "1-d"),
    ],
)
def test_usage_errors(args: tuple, kwargs: dict, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        compare_periods(*args, **kwargs)


def test_total_exposure_must_be_scalar() -> None:
    with pytest.raises(UsageError, match="one number"):
        compare_totals([1, 2], [3, 4], current_exposure=np.array([1.0, 2.0]))  # type: ignore[arg-type]
