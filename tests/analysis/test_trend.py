"""Mann-Kendall trend test: against scipy's Kendall tau and a textbook case worked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from urbansec.analysis import trend
from urbansec.analysis.trend import mann_kendall
from urbansec.errors import UsageError


def test_matches_scipy_kendalltau_with_many_ties() -> None:
    # Small integer counts: lots of tied values, so the tie correction of Var(S) matters.
    rng = np.random.default_rng(20240601)
    series = rng.poisson(1.5, size=(40, 25)).astype(float)
    series[:, 12:] += rng.integers(0, 2, size=(40, 1))  # some series with a step up
    result = mann_kendall(series, continuity=False)
    time = np.arange(series.shape[1])
    for row, values in enumerate(series):
        ref = stats.kendalltau(time, values, method="asymptotic")
        assert result.p[row] == pytest.approx(ref.pvalue, rel=1e-10, abs=1e-15)
        assert result.tau[row] == pytest.approx(ref.statistic, rel=1e-10, abs=1e-15)
        assert np.sign(result.z[row]) == np.sign(ref.statistic)
        assert result.z[row] * math.sqrt(result.var_s[row]) == pytest.approx(result.s[row])
    assert np.any(result.p < 0.05)  # the step-up rows give real trends, not only noise


def test_continuous_values_match_scipy_without_ties() -> None:
    rng = np.random.default_rng(7)
    series = rng.normal(size=(10, 60)) + np.linspace(0, 1, 60)
    result = mann_kendall(series, continuity=False)
    for row, values in enumerate(series):
        ref = stats.kendalltau(np.arange(60), values, method="asymptotic")
        assert result.p[row] == pytest.approx(ref.pvalue, rel=1e-10)
        assert result.tau[row] == pytest.approx(ref.statistic, rel=1e-12)


def test_textbook_case_with_ties_by_hand() -> None:
    # x = 1, 2, 2, 3, 2, 4 (n = 6). Signs of x_j - x_i for i < j:
    #   i=1: + + + + +  (5)     i=2: 0 + 0 +  (2)     i=3: + 0 +  (2)
    #   i=4: - +        (0)     i=5: +        (1)     S = 10
    # Ties: the value 2 three times, t(t-1)(2t+5) = 3*2*11 = 66.
    # Var(S) = (6*5*17 - 66) / 18 = 444 / 18 = 74/3.
    # z with continuity = (10 - 1) / sqrt(74/3); tau-b = 10 / sqrt(15 * (15 - 3)).
    result = mann_kendall([1, 2, 2, 3, 2, 4])
    assert result.s[0] == 10
    assert result.var_s[0] == pytest.approx(74 / 3)
    z = 9 / math.sqrt(74 / 3)
    assert result.z[0] == pytest.approx(z)
    assert result.z[0] == pytest.approx(1.812121, abs=1e-6)
    assert result.p[0] == pytest.approx(2 * stats.norm.sf(z))
    assert result.p[0] == pytest.approx(0.06996, abs=1e-4)
    assert result.tau[0] == pytest.approx(10 / math.sqrt(180))

    falling = mann_kendall([4, 2, 3, 2, 2, 1])
    assert falling.s[0] == -10
    assert falling.z[0] == pytest.approx(-z)
    assert falling.p[0] == pytest.approx(result.p[0])


def test_monotone_and_constant_series() -> None:
    result = mann_kendall(np.array([[1.0, 2, 3, 4, 5], [5, 5, 5, 5, 5], [5, 4, 3, 2, 1]]))
    assert list(result.s) == [10, 0, -10]
    assert result.tau[0] == 1.0 and result.tau[2] == -1.0
    # Var(S) = 5*4*15/18; z = (10 - 1) / sqrt(Var(S)).
    assert result.z[0] == pytest.approx(9 / math.sqrt(5 * 4 * 15 / 18))
    # A constant series carries no trend: finite z = 0, p = 1, tau = 0 (scipy would give NaN).
    assert result.var_s[1] == 0
    assert (result.z[1], result.p[1], result.tau[1]) == (0.0, 1.0, 0.0)


def test_blocks_give_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    series = rng.integers(0, 4, size=(257, 15)).astype(float)
    whole = mann_kendall(series)
    monkeypatch.setattr(trend, "_BLOCK_ROWS", 16)
    blocked = mann_kendall(series)
    for name in ("s", "var_s", "z", "p", "tau"):
        np.testing.assert_array_equal(getattr(whole, name), getattr(blocked, name))
    assert len(whole) == 257


def test_empty_and_bad_input() -> None:
    empty = mann_kendall(np.zeros((0, 12)))
    assert empty.z.shape == (0,) and len(empty) == 0
    with pytest.raises(UsageError, match="at least 2 time points"):
        mann_kendall([[1.0]])
    with pytest.raises(UsageError, match="NaN"):
        mann_kendall([[1.0, np.nan, 3.0]])
    with pytest.raises(UsageError, match="dimensions"):
        mann_kendall(np.zeros((2, 3, 4)))
