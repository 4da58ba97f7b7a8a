"""Mann-Kendall trend test, vectorised over many time series.

The Mann-Kendall test asks whether a series tends to go up (or down) over time, without assuming
the change is linear or the values normal. It is the trend test of ArcGIS Pro's space-time tools:
Create Space Time Cube runs it on the counts of each location, and Emerging Hot Spot Analysis runs
it on the Gi* z-score series of each location ("is the intensity of hot-spot clustering
increasing or decreasing?"); see :mod:`urbansec.analysis.emerging`.

For one series ``x_1 .. x_n`` (oldest first):

- ``S = sum over i < j of sign(x_j - x_i)``: concordant minus discordant pairs with time.
- ``Var(S) = [n(n-1)(2n+5) - sum_g t_g(t_g-1)(2t_g+5)] / 18``, where ``t_g`` is the size of each
  group of tied values (tie correction; count data have many ties).
- ``z = (S - sign(S)) / sqrt(Var(S))`` with the continuity correction (the classic test, as in
  Hipel & McLeod 1994), or ``S / sqrt(Var(S))`` without it, which is exactly what
  ``scipy.stats.kendalltau(range(n), x, method="asymptotic")`` uses.
- two-sided ``p = 2 * (1 - Phi(|z|))``.
- Kendall's tau-b against time, ``S / sqrt(n0 (n0 - n1))`` with ``n0 = n(n-1)/2`` and
  ``n1 = sum_g t_g(t_g-1)/2`` (time itself has no ties), the same value scipy reports.

A constant series has no ordering information: ``S = 0``, ``Var(S) = 0``, and we report
``z = 0``, ``p = 1`` and ``tau = 0`` (scipy gives NaN) so results stay finite and serialisable.
NaN values are not allowed: a gap in a series has no defined order with its neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import ndtr

from urbansec.errors import UsageError

__all__ = ["MannKendallResult", "mann_kendall"]

# Rows handled per block when forming pairwise differences: bounds temporary memory to roughly
# _BLOCK_ROWS * n_times * 8 bytes whatever the number of series.
_BLOCK_ROWS = 8192


@dataclass(frozen=True, eq=False)
class MannKendallResult:
    """Mann-Kendall test of each series against time.

    Every field is a float64 array of shape ``(n_series,)``.

    Attributes:
        s: the S statistic (concordant minus discordant pairs); positive means increasing.
        var_s: variance of S under "no trend", with the tie correction.
        z: standardised S (continuity-corrected unless ``continuity=False`` was asked).
        p: two-sided p-value of ``z`` under the normal approximation.
        tau: Kendall's tau-b between time and the values, in [-1, 1].
    """

    s: NDArray[np.float64]
    var_s: NDArray[np.float64]
    z: NDArray[np.float64]
    p: NDArray[np.float64]
    tau: NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.s.shape[0])


def mann_kendall(series: ArrayLike, *, continuity: bool = True) -> MannKendallResult:
    """Mann-Kendall trend test of every row of ``series`` against time.

    Args:
        series: array of shape ``(n_series, n_times)`` (or ``(n_times,)`` for one series), the
            values of each series in time order, oldest first, equally spaced. Any unit.
        continuity: subtract one from ``|S|`` before standardising (the classic Mann-Kendall
            z). ``False`` gives the plain ``S / sqrt(Var(S))`` of ``scipy.stats.kendalltau``.

    Returns:
        A :class:`MannKendallResult` of arrays of shape ``(n_series,)``; empty arrays when there
        are no series.

    Raises:
        UsageError: fewer than two time points, values that are NaN or infinite, or more than
            two dimensions.
    """
    x = np.asarray(series, dtype=np.float64)
    if x.ndim == 1:
        x = x[np.newaxis, :]
    if x.ndim != 2:
        raise UsageError(
            f"Mann-Kendall needs a (series, times) array; got an array with {x.ndim} dimensions."
        )
    n_series, n = x.shape
    if n < 2:
        raise UsageError(f"Mann-Kendall needs at least 2 time points per series; got {n}.")
    if n_series == 0:
        empty = np.zeros(0, dtype=np.float64)
        return MannKendallResult(s=empty, var_s=empty, z=empty, p=empty, tau=empty)
    if not np.isfinite(x).all():
        raise UsageError(
            "Mann-Kendall series contain NaN or infinite values; fill or drop them first."
        )

    s = np.empty(n_series, dtype=np.float64)
    tie_var = np.empty(n_series, dtype=np.float64)
    tie_pairs = np.empty(n_series, dtype=np.float64)
    for start in range(0, n_series, _BLOCK_ROWS):
        block = x[start : start + _BLOCK_ROWS]
        s[start : start + block.shape[0]] = _s_statistic(block)
        tv, tp = _tie_terms(block)
        tie_var[start : start + block.shape[0]] = tv
        tie_pairs[start : start + block.shape[0]] = tp

    var_s = (n * (n - 1.0) * (2.0 * n + 5.0) - tie_var) / 18.0
    numerator = s - np.sign(s) if continuity else s
    # A constant series has Var(S) = 0 and S = 0: no evidence of a trend, so z = 0 and p = 1.
    positive = var_s > 0
    z = np.zeros(n_series, dtype=np.float64)
    np.divide(
        numerator, np.sqrt(var_s, where=positive, out=np.ones_like(var_s)), out=z, where=positive
    )
    p = 2.0 * ndtr(-np.abs(z))

    n0 = n * (n - 1.0) / 2.0
    tau_den = np.sqrt(n0 * (n0 - tie_pairs))
    tau = np.zeros(n_series, dtype=np.float64)
    np.divide(s, tau_den, out=tau, where=tau_den > 0)
    # Rounding can push |tau| a hair past 1 for perfectly monotone series.
    np.clip(tau, -1.0, 1.0, out=tau)
    return MannKendallResult(s=s, var_s=var_s, z=z, p=p, tau=tau)


def _s_statistic(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """S for each row of ``x`` (shape ``(rows, n)``), by comparing every lag at once.

    One pass per lag k compares ``x[:, k:]`` with ``x[:, :-k]``: n - 1 vectorised passes instead
    of a Python loop over rows or pairs. Counting is done on booleans, which is faster than
    summing ``np.sign`` floats.
    """
    n = x.shape[1]
    s = np.zeros(x.shape[0], dtype=np.int64)
    for k in range(1, n):
        later = x[:, k:]
        earlier = x[:, :-k]
        s += np.count_nonzero(later > earlier, axis=1)
        s -= np.count_nonzero(later < earlier, axis=1)
    return s.astype(np.float64)


def _tie_terms(x: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per row, ``sum t(t-1)(2t+5)`` and ``sum t(t-1)/2`` over groups of tied values.

    Rows are sorted, then the run lengths of equal values are found on the flattened array with
    a break forced at each row start, so all rows are handled in one vectorised pass.
    """
    rows, n = x.shape
    srt = np.sort(x, axis=1)
    starts = np.ones((rows, n), dtype=bool)
    starts[:, 1:] = srt[:, 1:] != srt[:, :-1]
    flat_starts = np.flatnonzero(starts.ravel())
    lengths = np.diff(np.append(flat_starts, rows * n)).astype(np.float64)
    row_of_run = flat_starts // n
    tie_var = np.bincount(
        row_of_run, weights=lengths * (lengths - 1) * (2 * lengths + 5), minlength=rows
    )
    tie_pairs = np.bincount(row_of_run, weights=lengths * (lengths - 1) / 2, minlength=rows)
    return tie_var, tie_pairs
