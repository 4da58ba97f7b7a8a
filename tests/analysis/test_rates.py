"""Area rates with exact Poisson (Garwood) intervals, missing denominators, location quotients."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from urbansec.analysis.rates import area_rates, location_quotient, poisson_interval
from urbansec.errors import UsageError


def test_garwood_interval_against_chi2_hand_values_and_published_table() -> None:
    k = np.array([0, 1, 5, 10, 100])
    low, high = poisson_interval(k)
    hand_low = [0.0, *(stats.chi2.ppf(0.025, 2 * k[1:]) / 2)]
    hand_high = stats.chi2.ppf(0.975, 2 * k + 2) / 2
    np.testing.assert_allclose(low, hand_low, rtol=1e-12)
    np.testing.assert_allclose(high, hand_high, rtol=1e-12)
    # Published 95% limits (e.g. Ulm 1990 / standard tables): 0 -> 3.689, 10 -> 4.795-18.390.
    assert high[0] == pytest.approx(3.6889, abs=1e-4)
    assert (low[3], high[3]) == (pytest.approx(4.7954, abs=1e-4), pytest.approx(18.3904, abs=1e-4))
    assert (low[1], high[1]) == (pytest.approx(0.0253, abs=1e-4), pytest.approx(5.5716, abs=1e-4))


def test_garwood_limits_are_the_poisson_tail_roots() -> None:
    k = np.array([1, 3, 17, 250])
    low, high = poisson_interval(k, confidence=0.9)
    # Definition: P(X >= k | low) = 5% and P(X <= k | high) = 5%.
    np.testing.assert_allclose(stats.poisson.sf(k - 1, low), 0.05, rtol=1e-9)
    np.testing.assert_allclose(stats.poisson.cdf(k, high), 0.05, rtol=1e-9)


def test_area_rates_per_thousand_with_missing_denominators() -> None:
    r = area_rates([10, 0, 5, 3, 7], [2000, 1000, None, 0, np.nan], per=1000)
    np.testing.assert_array_equal(r.has_denominator, [True, True, False, False, False])
    assert r.rate[0] == 5.0 and r.rate[1] == 0.0
    assert np.isnan(r.rate[2:]).all() and np.isnan(r.ci_low[2:]).all()
    assert np.isnan(r.ci_high[2:]).all()
    assert r.ci_low[0] == pytest.approx(stats.chi2.ppf(0.025, 20) / 2 / 2000 * 1000)
    assert r.ci_high[0] == pytest.approx(stats.chi2.ppf(0.975, 22) / 2 / 2000 * 1000)
    assert r.ci_low[1] == 0 and r.ci_high[1] == pytest.approx(3.6889, abs=1e-4)
    assert r.n_without_denominator == 3
    assert np.isnan(r.denominators[2]) and r.denominators[3] == 0


def test_area_rates_per_km2_and_confidence() -> None:
    r = area_rates(np.array([50]), np.array([2.5]), per=1.0, confidence=0.99)
    assert r.rate[0] == 20.0
    assert r.ci_low[0] == pytest.approx(stats.chi2.ppf(0.005, 100) / 2 / 2.5)
    assert r.ci_high[0] == pytest.approx(stats.chi2.ppf(0.995, 102) / 2 / 2.5)


def test_area_rates_empty() -> None:
    r = area_rates([], [])
    assert r.rate.size == 0 and r.n_without_denominator == 0


@pytest.mark.parametrize(
    ("counts", "dens", "kwargs", "match"),
    [
        ([1, 2], [10], {}, "one per area"),
        ([-1], [10], {}, "whole numbers"),
        ([1.2], [10], {}, "whole numbers"),
        ([1], [-10], {}, "negative"),
        ([1], ["many"], {}, "numbers"),
        ([1], [10], {"per": 0}, "per"),
        ([1], [10], {"confidence": 0}, "confidence"),
    ],
)
def test_area_rates_usage_errors(counts: list, dens: list, kwargs: dict, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        area_rates(counts, dens, **kwargs)


def test_location_quotient_one_category_and_whole_table() -> None:
    # Area A: 10 burglaries of 40 crimes (25%); city: 100 of 1000 (10%) -> LQ 2.5.
    lq = location_quotient([10, 0, 5], [40, 0, 100], 100, 1000)
    assert lq[0] == pytest.approx(2.5) and np.isnan(lq[1]) and lq[2] == pytest.approx(0.5)
    table = np.array([[10, 30], [0, 0], [5, 95], [85, 775]])
    out = location_quotient(table, table.sum(1, keepdims=True), table.sum(0), table.sum())
    assert out.shape == (4, 2)
    np.testing.assert_allclose(out[0], [2.5, 0.75 / 0.9])
    assert np.isnan(out[1]).all()
    # Shares weighted by area totals average back to the city: sum_a T_a LQ_ai = T_total.
    totals = table.sum(1)
    np.testing.assert_allclose(np.nansum(out * totals[:, None], axis=0), table.sum())


def test_location_quotient_errors_and_zero_city_category() -> None:
    assert np.isnan(location_quotient([0], [10], 0, 100)[0])
    with pytest.raises(UsageError, match=">= 0"):
        location_quotient([-1], [10], 5, 100)
    with pytest.raises(UsageError, match="shapes"):
        location_quotient([1, 2], [10, 20, 30], 5, 100)
