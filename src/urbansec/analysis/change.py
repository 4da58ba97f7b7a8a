"""Did it really go up? Exact comparison of event counts between two periods, per area or cell.

For one unit with ``c`` events in the current period (exposure ``e_c``, e.g. days or
person-days) and ``b`` in the baseline (exposure ``e_b``), the counts are modelled as Poisson
with rates ``lambda_c`` and ``lambda_b``. Conditional on ``n = c + b``, ``c`` is
Binomial(n, pi) with ``pi = lambda_c e_c / (lambda_c e_c + lambda_b e_b)``; under equal rates
``pi0 = e_c / (e_c + e_b)``. That gives an exact test that needs no large-sample
approximation, which matters because most beats and cells have small counts: "burglary rose
40%" from 10 to 14 is well within chance, from 100 to 140 it is not.

- p-value: two-sided, ``scipy.stats.binomtest`` semantics (the "minlike" rule: sum of the
  probabilities of all outcomes no more likely than the one observed, with scipy's relative
  tolerance 1e-7), vectorised over units; identical to calling binomtest in a loop.
- Rate ratio CI: the Clopper-Pearson interval ``[pL, pU]`` of ``pi`` mapped through
  ``R = pi / (1 - pi) * e_b / e_c``. It is the inversion of the central (equal-tailed) test,
  so at the edge it can disagree with the minlike p-value; report both, decide on the p-value.
- Units with no events in either period (n = 0) are not tested: p-value 1, never
  significant, excluded from the family size of the multiple-testing correction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

from urbansec.analysis.rates import whole_counts
from urbansec.errors import UsageError

Correction = Literal["none", "fdr", "bonferroni"]
_CORRECTIONS: tuple[str, ...] = ("none", "fdr", "bonferroni")
# scipy.stats.binomtest treats probabilities within this relative distance as equally likely.
_RERR = 1.0 + 1e-7

STATUS_OK = "ok"
STATUS_BASELINE_ZERO = "baseline_zero"  # ratio and percent change are +inf
STATUS_BOTH_ZERO = "both_zero"  # ratio and percent change are NaN, not tested


@dataclass(frozen=True)
class PeriodComparison:
    """Per-unit comparison of a current period against a baseline; every array is (n,).

    Attributes:
        current, baseline: int64 event counts.
        current_exposure, baseline_exposure: float64 exposures (same unit for both, e.g. days).
        difference: current - baseline (raw counts, not exposure-adjusted).
        expected: baseline scaled to the current exposure, baseline * e_c / e_b.
        ratio: rate ratio (current / e_c) / (baseline / e_b); +inf when baseline is 0 and
            current > 0, NaN when both are 0 (see ``status``).
        percent_change: 100 * (ratio - 1), exposure-adjusted; +inf / NaN like ``ratio``.
        p_value: exact two-sided conditional binomial p-value (1 where both are 0).
        p_adjusted: p-value after ``correction`` (equal to ``p_value`` for "none").
        ci_low, ci_high: exact confidence interval of the rate ratio at ``confidence``
            (ci_high = +inf when baseline is 0; NaN when both are 0).
        direction: object array of "up", "down" or "none" (observed, significant or not).
        significant: bool, ``p_adjusted <= alpha``.
        status: object array of "ok", "baseline_zero" or "both_zero".
    """

    current: np.ndarray
    baseline: np.ndarray
    current_exposure: np.ndarray
    baseline_exposure: np.ndarray
    difference: np.ndarray
    expected: np.ndarray
    ratio: np.ndarray
    percent_change: np.ndarray
    p_value: np.ndarray
    p_adjusted: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    direction: np.ndarray
    significant: np.ndarray
    status: np.ndarray
    alpha: float
    confidence: float
    correction: str

    @property
    def n_tested(self) -> int:
        """Units with at least one event in either period (the family size for corrections)."""
        return int((self.current + self.baseline > 0).sum())


@dataclass(frozen=True)
class TotalChange:
    """The same comparison for one total (e.g. the whole city): scalars, see PeriodComparison."""

    current: int
    baseline: int
    current_exposure: float
    baseline_exposure: float
    difference: int
    expected: float
    ratio: float
    percent_change: float
    p_value: float
    ci_low: float
    ci_high: float
    direction: str
    significant: bool
    status: str
    alpha: float
    confidence: float


def _counts(values: object, what: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim > 1:
        raise UsageError(f"{what} counts must be one number per unit (a 1-d array)")
    arr = np.atleast_1d(arr)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    return whole_counts(arr, f"{what} counts")


def _exposure(value: float | np.ndarray, n: int, what: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim > 1 or (arr.ndim == 1 and arr.size not in (1, n)):
        raise UsageError(f"{what} exposure must be one number or one per unit ({n})")
    if np.any(~np.isfinite(arr)) or np.any(arr <= 0):
        raise UsageError(f"{what} exposure must be a positive number (e.g. days in the period)")
    return np.broadcast_to(arr, (n,)).astype(np.float64)


def _check_probability(value: float, what: str) -> None:
    if not 0.0 < value < 1.0:
        raise UsageError(f"{what} must be between 0 and 1, got {value}")


def _binary_search(
    k: np.ndarray, n: np.ndarray, p: np.ndarray, sign: np.ndarray, target: np.ndarray,
    lo: np.ndarray, hi: np.ndarray,
) -> np.ndarray:
    """Vectorised ``scipy.stats._binomtest._binary_search_for_binom_tst``.

    Searches a(x) = sign * pmf(x) for ``target`` on [lo, hi] per element, following scipy's
    exact branch rules so the p-values come out identical; one pmf call per step for all
    units, about log2(max n) steps.
    """
    lo = lo.astype(np.float64)
    hi = hi.astype(np.float64)
    result = np.full(k.shape, np.nan)
    active = lo < hi
    while np.any(active):
        mid = lo[active] + np.floor((hi[active] - lo[active]) / 2)
        midval = sign[active] * stats.binom.pmf(mid, n[active], p[active])
        tgt = target[active]
        lo_a, hi_a, res_a = lo[active], hi[active], result[active]
        below, above = midval < tgt, midval > tgt
        lo_a[below] = mid[below] + 1
        hi_a[above] = mid[above] - 1
        hit = ~below & ~above
        res_a[hit] = mid[hit]
        lo[active], hi[active], result[active] = lo_a, hi_a, res_a
        active = np.isnan(result) & (lo < hi)
    pending = np.isnan(result)
    if np.any(pending):
        a_lo = sign[pending] * stats.binom.pmf(lo[pending], n[pending], p[pending])
        result[pending] = np.where(a_lo <= target[pending], lo[pending], lo[pending] - 1)
    return result


def binomtest_two_sided(k: np.ndarray, n: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Two-sided exact binomial p-values, elementwise, equal to ``scipy.stats.binomtest``.

    Args:
        k, n: integer arrays of successes and trials (broadcastable, 0 <= k <= n).
        p: probability of success under the null, in [0, 1].

    Returns:
        float64 p-values; 1.0 where n == 0 (scipy refuses n = 0; no data is no evidence).
    """
    k, n, p = np.broadcast_arrays(
        np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64),
        np.asarray(p, dtype=np.float64),
    )
    out = np.ones(k.shape, dtype=np.float64)
    pn = p * n
    low = (n > 0) & (k < pn)
    high = (n > 0) & (k > pn)

    if np.any(low):
        kk, nn, pp = k[low], n[low], p[low]
        d = stats.binom.pmf(kk, nn, pp)
        # Search the upper side of the mode for the last term still >= d (scipy negates pmf).
        ix = _binary_search(kk, nn, pp, -np.ones_like(kk), -d * _RERR, np.ceil(pp * nn), nn)
        y = nn - ix + (d * _RERR == stats.binom.pmf(ix, nn, pp))
        out[low] = stats.binom.cdf(kk, nn, pp) + stats.binom.sf(nn - y, nn, pp)
    if np.any(high):
        kk, nn, pp = k[high], n[high], p[high]
        d = stats.binom.pmf(kk, nn, pp)
        ix = _binary_search(kk, nn, pp, np.ones_like(kk), d * _RERR, np.zeros_like(kk),
                            np.floor(pp * nn))
        y = ix + 1
        out[high] = stats.binom.cdf(y - 1, nn, pp) + stats.binom.sf(kk - 1, nn, pp)
    return np.minimum(out, 1.0)


def _adjust(p: np.ndarray, tested: np.ndarray, correction: str) -> np.ndarray:
    adjusted = p.copy()
    m = int(tested.sum())
    if correction == "none" or m == 0:
        return adjusted
    if correction == "bonferroni":
        adjusted[tested] = np.minimum(p[tested] * m, 1.0)
    else:  # Benjamini-Hochberg false discovery rate
        adjusted[tested] = stats.false_discovery_control(p[tested], method="bh")
    return adjusted


def compare_periods(
    current: Sequence[int] | np.ndarray,
    baseline: Sequence[int] | np.ndarray,
    *,
    current_exposure: float | np.ndarray = 1.0,
    baseline_exposure: float | np.ndarray = 1.0,
    alpha: float = 0.05,
    correction: Correction = "none",
    confidence: float = 0.95,
) -> PeriodComparison:
    """Compare per-unit counts of a current period with a baseline, exactly.

    Args:
        current, baseline: (n,) non-negative whole counts per area or cell, same order.
        current_exposure, baseline_exposure: positive exposure of each period (scalar or
            (n,)), in any unit as long as both use it: days for "this month against the same
            month last year" (31 vs 31) or "the last 28 days against the 90 before" (28 vs 90);
            person-days when populations differ.
        alpha: significance level for ``significant``, applied to the corrected p-values.
        correction: "none"; "bonferroni" (family-wise); "fdr" (Benjamini-Hochberg). The family
            is the units with at least one event in either period.
        confidence: level of the rate-ratio interval (independent of ``alpha``).

    Raises:
        UsageError: shapes differ, negative or fractional counts, non-positive exposure,
            alpha/confidence outside (0, 1), unknown correction.
    """
    c = _counts(current, "current")
    b = _counts(baseline, "baseline")
    if c.shape != b.shape:
        raise UsageError(f"current has {c.size} units but baseline has {b.size}; "
                         "give one count per unit in the same order")
    if correction not in _CORRECTIONS:
        raise UsageError(f"unknown correction {correction!r}; use one of {_CORRECTIONS}")
    _check_probability(alpha, "alpha")
    _check_probability(confidence, "confidence")
    ec = _exposure(current_exposure, c.size, "current")
    eb = _exposure(baseline_exposure, c.size, "baseline")

    n = c + b
    tested = n > 0
    p0 = ec / (ec + eb)
    p_value = binomtest_two_sided(c, n, p0)
    p_adjusted = _adjust(p_value, tested, correction)

    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (c / ec) / (b / eb)  # x/0 -> inf, 0/0 -> nan: the documented conventions
        # Clopper-Pearson for pi = c / n, then R = pi / (1 - pi) * e_b / e_c.
        tail = (1.0 - confidence) / 2.0
        pi_low = np.where(c > 0, stats.beta.ppf(tail, c, b + 1), 0.0)
        pi_high = np.where(b > 0, stats.beta.ppf(1.0 - tail, c + 1, b), 1.0)
        scale = eb / ec
        ci_low = np.where(tested, pi_low / (1.0 - pi_low) * scale, np.nan)
        ci_high = np.where(b > 0, pi_high / (1.0 - pi_high) * scale, np.inf)
    ci_high = np.where(tested, ci_high, np.nan)

    # Equal rates computed through different exposures (0.1 days vs 0.3) can land a rounding
    # error away from 1; that must read as "none", not as a rise.
    level = np.isclose(c * eb, b * ec, rtol=1e-12, atol=0.0)
    direction = np.full(c.shape, "none", dtype=object)
    direction[(ratio > 1) & ~level] = "up"
    direction[(ratio < 1) & ~level] = "down"
    status = np.full(c.shape, STATUS_OK, dtype=object)
    status[(b == 0) & (c > 0)] = STATUS_BASELINE_ZERO
    status[~tested] = STATUS_BOTH_ZERO

    return PeriodComparison(
        current=c,
        baseline=b,
        current_exposure=ec,
        baseline_exposure=eb,
        difference=c - b,
        expected=b * ec / eb,
        ratio=ratio,
        percent_change=100.0 * (ratio - 1.0),
        p_value=p_value,
        p_adjusted=p_adjusted,
        ci_low=ci_low,
        ci_high=ci_high,
        direction=direction,
        significant=tested & (p_adjusted <= alpha),
        status=status,
        alpha=alpha,
        confidence=confidence,
        correction=correction,
    )


def compare_totals(
    current: int | Sequence[int] | np.ndarray,
    baseline: int | Sequence[int] | np.ndarray,
    *,
    current_exposure: float = 1.0,
    baseline_exposure: float = 1.0,
    alpha: float = 0.05,
    confidence: float = 0.95,
) -> TotalChange:
    """Compare the whole-area total: counts (scalar or per-unit arrays, summed) in two periods.

    One test, so no multiple-testing correction. Same conventions as ``compare_periods``.
    """
    c = _counts(current, "current")
    b = _counts(baseline, "baseline")
    for what, value in (("current", current_exposure), ("baseline", baseline_exposure)):
        if np.ndim(value) != 0:
            raise UsageError(f"{what} exposure of a total must be one number")
    one = compare_periods(
        [int(c.sum())], [int(b.sum())],
        current_exposure=current_exposure, baseline_exposure=baseline_exposure,
        alpha=alpha, confidence=confidence,
    )
    return TotalChange(
        current=int(one.current[0]),
        baseline=int(one.baseline[0]),
        current_exposure=float(one.current_exposure[0]),
        baseline_exposure=float(one.baseline_exposure[0]),
        difference=int(one.difference[0]),
        expected=float(one.expected[0]),
        ratio=float(one.ratio[0]),
        percent_change=float(one.percent_change[0]),
        p_value=float(one.p_value[0]),
        ci_low=float(one.ci_low[0]),
        ci_high=float(one.ci_high[0]),
        direction=str(one.direction[0]),
        significant=bool(one.significant[0]),
        status=str(one.status[0]),
        alpha=alpha,
        confidence=confidence,
    )
