"""Emerging hot spot analysis: space-time Gi* plus Mann-Kendall, classified as ArcGIS Pro does.

Input is a space-time cube of counts, ``counts[cell, slice]`` (oldest slice first), and binary
spatial weights between cells. Three steps:

1. **Gi\\* per bin.** Every bin (cell, slice) gets a Getis-Ord Gi\\* z-score (binary weights, the
   cell itself included) computed over its *space-time neighbourhood*: the cell and its spatial
   neighbours, in its own slice and the ``time_window - 1`` slices before it (ArcGIS's
   "Neighborhood Time Step"; the default 1 is the bin's own slice only). The sum over that
   neighbourhood is compared with a *global window* (ArcGIS's "Define Global Window"):
   ``"cube"`` (default) uses the mean and variance of every analysed bin of the cube,
   ``"neighborhood"`` the bins of the slices in the bin's time window, ``"slice"`` the bins of
   its own slice. ``time_window=1, global_window="slice"`` is the classic per-slice Gi\\* (esda
   ``G_Local(star=True, transform="B")``, urbansec ``hotspots.gi_star`` on 2-D values).
   The p-value is two-sided from the normal distribution.
2. **Hot and cold bins.** A bin is a *hot bin* when its z > 0 and it is significant, a *cold
   bin* when z < 0 and significant. Significant means ``p <= alpha`` (default 0.05), or, with
   ``fdr=True`` (default, as ArcGIS applies an FDR correction), passing the Benjamini-Hochberg
   false discovery rate procedure at level ``alpha`` over all analysed bins of the cube.
3. **Trend.** The Mann-Kendall test (:func:`urbansec.analysis.trend.mann_kendall`, continuity
   corrected) on each cell's series of Gi\\* z-scores. The trend is significant when
   ``p <= trend_alpha`` (default 0.05); its direction is the sign of the trend z.

Only cells with at least one non-zero count are analysed (ArcGIS analyses "locations with at
least one point for at least one time-step interval"): all-zero cells (a lake, a rail yard, the
corners of a bounding box) are left out of the means, variances, neighbour sums and the FDR
family, get NaN z, p and trend, and the category ``"no_pattern"``. An analysed cell with no
analysed neighbour is an *island*: its z is reported but, as in
:func:`urbansec.analysis.hotspots.gi_star`, its bins are never hot or cold (its "neighbourhood"
is itself alone), so it is ``"no_pattern"`` too, and its p-values stay out of the FDR family.

Categories
----------
Let ``T`` be the number of slices, ``H`` and ``C`` the numbers of hot and cold bins of a cell,
"the final slice" the most recent one (the last column), and ``need = ceil(0.9 * T)`` (the "90
percent of the time-step intervals"; ``persistent_share`` changes 0.9). Rules are applied in
this order; the first that matches wins:

Final slice is a hot bin:

- ``intensifying_hot``: ``H >= need``, trend significant and increasing.
- ``diminishing_hot``: ``H >= need``, trend significant and decreasing.
- ``persistent_hot``: ``H >= need``, no significant trend.
- ``oscillating_hot``: ``H < need`` and at least one earlier cold bin (``C > 0``).
- ``new_hot``: the final slice is the only hot bin (``H == 1``) and no cold bin ever.
- ``consecutive_hot``: ``H < need``, no cold bin, and all hot bins form one uninterrupted run
  of at least two slices ending at the final slice.
- ``sporadic_hot``: ``H < need``, no cold bin, and hot bins also before the final run
  (on-again, off-again).

Final slice is a cold bin: the same with hot and cold swapped and the trend direction reversed
(``intensifying_cold`` = significantly *decreasing* z, i.e. ever colder; ``diminishing_cold`` =
significantly increasing z).

Final slice not significant:

- ``historical_hot``: ``H >= need``. ``historical_cold``: ``C >= need``.

Anything else, every all-zero cell and every island: ``no_pattern``.

Decisions where ArcGIS's wording leaves room (documented in docs/emerging-hotspots.md):
"Persistent" requires the final slice to be hot (otherwise the cell is historical); a final
significant bin of the opposite sign outranks "historical" (a cell hot for 90% of the time but
cold at the end is ``oscillating_cold``); and a cold history outranks "new" and "consecutive"
(a cell that was a significant cold spot and is now hot is ``oscillating_hot``, as in R's sfdep).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray
from scipy.special import ndtr

from urbansec.analysis.hotspots import benjamini_hochberg
from urbansec.analysis.trend import MannKendallResult, mann_kendall
from urbansec.analysis.weights import as_binary_weights
from urbansec.errors import UsageError

__all__ = [
    "CATEGORIES",
    "EmergingHotspots",
    "GlobalWindow",
    "classify_emerging",
    "emerging_hotspots",
    "space_time_gi_star",
]

GlobalWindow = Literal["cube", "neighborhood", "slice"]
_GLOBAL_WINDOWS: tuple[str, ...] = ("cube", "neighborhood", "slice")

_PATTERNS: tuple[str, ...] = (
    "new",
    "consecutive",
    "intensifying",
    "persistent",
    "diminishing",
    "sporadic",
    "oscillating",
    "historical",
)
#: Category names by integer code: 0 is "no_pattern", 1-8 the hot patterns, 9-16 the cold ones.
CATEGORIES: tuple[str, ...] = (
    "no_pattern",
    *(f"{name}_hot" for name in _PATTERNS),
    *(f"{name}_cold" for name in _PATTERNS),
)
_CODE = {name: code for code, name in enumerate(CATEGORIES)}


@dataclass(frozen=True, eq=False)
class EmergingHotspots:
    """Result of an emerging hot spot analysis of ``n_cells`` cells over ``n_slices`` slices.

    Attributes:
        category: ``(n_cells,)`` str, one of :data:`CATEGORIES` per cell.
        code: ``(n_cells,)`` int8, the index of ``category`` in :data:`CATEGORIES`.
        z: ``(n_cells, n_slices)`` float64 Gi* z-score of each bin; NaN for unanalysed cells.
        p: ``(n_cells, n_slices)`` float64 two-sided p-value of ``z`` (before any FDR).
        bins: ``(n_cells, n_slices)`` int8: +1 hot bin, -1 cold bin, 0 not significant.
        trend_z: ``(n_cells,)`` Mann-Kendall z of each cell's Gi* z series; NaN if unanalysed.
        trend_p: ``(n_cells,)`` two-sided p-value of ``trend_z``.
        trend_tau: ``(n_cells,)`` Kendall's tau-b of the z series against time.
        analysed: ``(n_cells,)`` bool, the cell has at least one non-zero count.
        island: ``(n_cells,)`` bool, analysed but without any analysed neighbour.
        cube_trend: Mann-Kendall test of the total count per slice (arrays of shape ``(1,)``):
            is the whole study area getting busier? ``None`` from :func:`classify_emerging`.
    """

    category: NDArray[np.str_]
    code: NDArray[np.int8]
    z: NDArray[np.float64]
    p: NDArray[np.float64]
    bins: NDArray[np.int8]
    trend_z: NDArray[np.float64]
    trend_p: NDArray[np.float64]
    trend_tau: NDArray[np.float64]
    analysed: NDArray[np.bool_]
    island: NDArray[np.bool_]
    cube_trend: MannKendallResult | None = None

    def tally(self) -> dict[str, int]:
        """Number of cells in each category, every category listed (zeros included)."""
        tally = np.bincount(self.code.astype(np.intp), minlength=len(CATEGORIES))
        return {name: int(tally[i]) for i, name in enumerate(CATEGORIES)}


def emerging_hotspots(
    counts: ArrayLike,
    weights: sp.sparray | sp.spmatrix | ArrayLike,
    *,
    alpha: float = 0.05,
    trend_alpha: float = 0.05,
    fdr: bool = True,
    time_window: int = 1,
    global_window: GlobalWindow = "cube",
    persistent_share: float = 0.9,
) -> EmergingHotspots:
    """Classify every cell of a space-time cube as a new, intensifying, ... hot or cold spot.

    See the module docstring for the exact rules.

    Args:
        counts: ``(n_cells, n_slices)`` non-negative counts (events per cell per time slice),
            oldest slice first; slices must be equally long.
        weights: ``(n_cells, n_cells)`` spatial weights (scipy sparse or dense ndarray), e.g.
            from :mod:`urbansec.analysis.weights`. Any non-zero entry makes two cells neighbours
            (binary weights, as ArcGIS); the diagonal is ignored, as a cell is always in its own
            neighbourhood (Gi*).
        alpha: significance level of a hot or cold bin, in (0, 1).
        trend_alpha: significance level of the Mann-Kendall trend, in (0, 1).
        fdr: apply the Benjamini-Hochberg false discovery rate procedure to the bins' p-values
            (all analysed bins of the cube are one family), as ArcGIS does.
        time_window: number of slices in a bin's neighbourhood, its own included (>= 1).
        global_window: which bins give the mean and variance a neighbourhood is compared with:
            ``"cube"``, ``"neighborhood"`` or ``"slice"`` (see module docstring).
        persistent_share: share of slices that must be hot (cold) for the persistent,
            intensifying, diminishing and historical patterns, in (0.5, 1].

    Returns:
        An :class:`EmergingHotspots` with per-cell categories, the z/p cube, the per-cell trend
        and the trend of the cube's total counts. With no cells, every array is empty.

    Raises:
        UsageError: wrong shapes, negative or non-finite counts, weights that do not match the
            cells, fewer than two slices, or a parameter out of range.
    """
    x = np.asarray(counts, dtype=np.float64)
    if x.ndim != 2:
        raise UsageError(
            f"counts must be a (cells, time slices) array; got an array with {x.ndim} dimensions."
        )
    n_cells, n_slices = x.shape
    _check_parameters(n_slices, alpha, trend_alpha, persistent_share)
    _check_window(n_slices, time_window, global_window)
    if not np.isfinite(x).all() or (x < 0).any():
        raise UsageError("counts must be finite and non-negative (events per cell and slice).")
    adjacency = as_binary_weights(weights, n_cells)

    analysed = (x != 0).any(axis=1)
    z = np.full((n_cells, n_slices), np.nan)
    p = np.full((n_cells, n_slices), np.nan)
    island = np.zeros(n_cells, dtype=bool)
    if analysed.any():
        keep = np.flatnonzero(analysed)
        sub = adjacency[keep][:, keep]
        z_a, p_a = _gi_star_cube(x[keep], sub, time_window, global_window)
        z[keep] = z_a
        p[keep] = p_a
        island[keep] = np.diff(sub.indptr) == 0

    result = classify_emerging(
        z,
        p,
        alpha=alpha,
        trend_alpha=trend_alpha,
        fdr=fdr,
        persistent_share=persistent_share,
        islands=island,
    )
    cube_trend = mann_kendall(x.sum(axis=0)[np.newaxis, :])
    return replace(result, cube_trend=cube_trend)


def space_time_gi_star(
    values: ArrayLike,
    weights: sp.sparray | sp.spmatrix | ArrayLike,
    *,
    time_window: int = 1,
    global_window: GlobalWindow = "cube",
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Gi* z-score and two-sided p-value of every bin of a space-time cube.

    Every cell takes part (no all-zero filtering; :func:`emerging_hotspots` does that).

    Args:
        values: ``(n_cells, n_slices)`` finite values, oldest slice first.
        weights: ``(n_cells, n_cells)`` spatial weights; non-zero entries are neighbours, the
            diagonal is ignored.
        time_window: slices in each bin's neighbourhood, its own included (>= 1).
        global_window: ``"cube"``, ``"neighborhood"`` or ``"slice"`` (see module docstring).

    Returns:
        ``(z, p)``, both ``(n_cells, n_slices)`` float64. Where the reference bins have zero
        variance, or the neighbourhood is the whole reference set, z is 0 and p is 1.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 2:
        raise UsageError(
            f"values must be a (cells, time slices) array; got an array with {x.ndim} dimensions."
        )
    if not np.isfinite(x).all():
        raise UsageError("values contain NaN or infinite numbers.")
    _check_window(x.shape[1], time_window, global_window)
    adjacency = as_binary_weights(weights, x.shape[0])
    if x.size == 0:
        return np.zeros(x.shape), np.ones(x.shape)
    return _gi_star_cube(x, adjacency, int(time_window), global_window)


def classify_emerging(
    z: ArrayLike,
    p: ArrayLike,
    *,
    alpha: float = 0.05,
    trend_alpha: float = 0.05,
    fdr: bool = True,
    persistent_share: float = 0.9,
    islands: ArrayLike | None = None,
) -> EmergingHotspots:
    """Classify cells from their Gi* z-scores and p-values (steps 2 and 3 of the analysis).

    Useful when the z cube comes from elsewhere (another Gi* variant, permutation p-values).

    Args:
        z: ``(n_cells, n_slices)`` Gi* z-scores, oldest slice first. Rows that are entirely NaN
            are unanalysed cells (category ``"no_pattern"``); partly-NaN rows are an error.
        p: ``(n_cells, n_slices)`` p-values of ``z`` (two-sided), NaN where ``z`` is NaN.
        alpha, trend_alpha, fdr, persistent_share: as in :func:`emerging_hotspots`.
        islands: optional ``(n_cells,)`` bool, cells without neighbours: never hot or cold, and
            left out of the FDR family.

    Returns:
        An :class:`EmergingHotspots` with ``cube_trend=None``.
    """
    zz = np.asarray(z, dtype=np.float64)
    pp = np.asarray(p, dtype=np.float64)
    if zz.ndim != 2 or zz.shape != pp.shape:
        raise UsageError(
            f"z and p must be (cells, time slices) arrays of the same shape; got {zz.shape} "
            f"and {pp.shape}."
        )
    n_cells, n_slices = zz.shape
    _check_parameters(n_slices, alpha, trend_alpha, persistent_share)
    analysed = ~np.isnan(zz).all(axis=1)
    if not (np.isfinite(zz[analysed]).all() and np.isfinite(pp[analysed]).all()):
        raise UsageError(
            "z and p must be finite, except whole cells (rows) of NaN left out of the analysis."
        )
    if ((pp[analysed] < 0) | (pp[analysed] > 1)).any():
        raise UsageError("p-values must lie between 0 and 1.")

    if islands is None:
        island = np.zeros(n_cells, dtype=bool)
    else:
        island = np.asarray(islands, dtype=bool)
        if island.shape != (n_cells,):
            raise UsageError(f"islands must be one flag per cell ({n_cells}); got {island.shape}.")
        island = island & analysed

    za = zz[analysed]
    pa = pp[analysed]
    testable = ~island[analysed]
    significant = np.zeros(za.shape, dtype=bool)
    significant[testable] = _significant(pa[testable], alpha, fdr)
    bins_a = np.where(significant, np.sign(za), 0).astype(np.int8)

    trend = mann_kendall(za) if za.shape[0] else None
    trend_z = np.full(n_cells, np.nan)
    trend_p = np.full(n_cells, np.nan)
    trend_tau = np.full(n_cells, np.nan)
    code = np.zeros(n_cells, dtype=np.int8)
    bins = np.zeros((n_cells, n_slices), dtype=np.int8)
    if trend is not None:
        trend_z[analysed] = trend.z
        trend_p[analysed] = trend.p
        trend_tau[analysed] = trend.tau
        bins[analysed] = bins_a
        code[analysed] = _classify_bins(bins_a, trend.z, trend.p, trend_alpha, persistent_share)

    category = np.asarray(CATEGORIES)[code.astype(np.intp)]
    return EmergingHotspots(
        category=category,
        code=code,
        z=zz,
        p=pp,
        bins=bins,
        trend_z=trend_z,
        trend_p=trend_p,
        trend_tau=trend_tau,
        analysed=analysed,
        island=island,
    )


# --------------------------------------------------------------------------------------------
# internals


def _check_parameters(
    n_slices: int, alpha: float, trend_alpha: float, persistent_share: float
) -> None:
    if n_slices < 2:
        raise UsageError(
            f"Emerging hot spot analysis needs at least 2 time slices; got {n_slices} "
            "(ArcGIS recommends at least 10 for a meaningful trend)."
        )
    for name, value in (("alpha", alpha), ("trend_alpha", trend_alpha)):
        if not (isinstance(value, int | float) and 0 < value < 1):
            raise UsageError(f"{name} must be a probability between 0 and 1; got {value!r}.")
    if not (isinstance(persistent_share, int | float) and 0.5 < persistent_share <= 1):
        raise UsageError(
            "persistent_share must be above 0.5 and at most 1 (ArcGIS uses 0.9); "
            f"got {persistent_share!r}."
        )


def _check_window(n_slices: int, time_window: int, global_window: str) -> None:
    if isinstance(time_window, bool) or not (
        isinstance(time_window, int | np.integer) and 1 <= time_window <= max(n_slices, 1)
    ):
        raise UsageError(
            f"time_window must be a whole number of slices from 1 to {n_slices}; "
            f"got {time_window!r}."
        )
    if global_window not in _GLOBAL_WINDOWS:
        raise UsageError(
            f"global_window must be one of {', '.join(_GLOBAL_WINDOWS)}; got {global_window!r}."
        )


def _gi_star_cube(
    x: NDArray[np.float64],
    adjacency: sp.csr_array,
    time_window: int,
    global_window: str,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Space-time Gi* of ``x`` (``(n, T)``) with binary ``adjacency`` (``(n, n)``, no diagonal).

    Gi* (Getis & Ord 1992; Ord & Getis 1995) with binary weights and the bin itself included:
    ``z = (L - mean * W) / (s * sqrt((N * W - W**2) / (N - 1)))``, where ``L`` is the sum over
    the neighbourhood, ``W`` its number of bins, and ``mean``, ``s`` (population standard
    deviation) and ``N`` describe the reference bins of the global window.
    """
    n, t_count = x.shape
    # Spatial neighbourhood sums (self included) for every slice in one sparse product.
    spatial = adjacency @ x + x
    size = np.asarray(adjacency.sum(axis=1)).ravel() + 1.0
    # Temporal window: add the previous time_window - 1 slices through a running sum.
    run = np.zeros((n, t_count + 1))
    np.cumsum(spatial, axis=1, out=run[:, 1:])
    t = np.arange(t_count)
    first = np.maximum(0, t - time_window + 1)
    local = run[:, t + 1] - run[:, first]
    n_slices_in = (t - first + 1).astype(np.float64)
    w = size[:, np.newaxis] * n_slices_in[np.newaxis, :]

    # Reference bins per slice: a contiguous range of slices [lo, hi].
    if global_window == "cube":
        lo = np.zeros(t_count, dtype=np.intp)
        hi = np.full(t_count, t_count - 1, dtype=np.intp)
    elif global_window == "neighborhood":
        lo, hi = first, t
    else:
        lo, hi = t, t
    col_sum = np.concatenate(([0.0], np.cumsum(x.sum(axis=0))))
    # Centre by the overall mean before squaring so the variance keeps its precision.
    shift = x.mean()
    col_sq = np.concatenate(([0.0], np.cumsum(((x - shift) ** 2).sum(axis=0))))
    n_ref = n * (hi - lo + 1).astype(np.float64)
    mean = (col_sum[hi + 1] - col_sum[lo]) / n_ref
    var = (col_sq[hi + 1] - col_sq[lo]) / n_ref - (mean - shift) ** 2
    sd = np.sqrt(np.maximum(var, 0.0))

    with np.errstate(divide="ignore", invalid="ignore"):
        spread = (n_ref[np.newaxis, :] * w - w * w) / (n_ref[np.newaxis, :] - 1.0)
        denominator = sd[np.newaxis, :] * np.sqrt(spread)
        z = (local - mean[np.newaxis, :] * w) / denominator
    # No variance in the reference bins, or a neighbourhood as big as the reference set: the
    # statistic is undefined, which we report as "no evidence" rather than NaN.
    z[~(denominator > 0) | ~np.isfinite(z)] = 0.0
    p = 2.0 * ndtr(-np.abs(z))
    return z, p


def _significant(p: NDArray[np.float64], alpha: float, fdr: bool) -> NDArray[np.bool_]:
    """Significant bins of ``p`` (any shape): ``p <= alpha``, or BH discoveries over all of it."""
    if not fdr or p.size == 0:
        return p <= alpha
    return benjamini_hochberg(p.ravel(), alpha).reshape(p.shape)


def _classify_bins(
    bins: NDArray[np.int8],
    trend_z: NDArray[np.float64],
    trend_p: NDArray[np.float64],
    trend_alpha: float,
    persistent_share: float,
) -> NDArray[np.int8]:
    """Category codes from the hot/cold bin states of each cell and its trend, vectorised."""
    n_slices = bins.shape[1]
    # Integer threshold; the tiny epsilon keeps 0.9 * 10 from becoming 10 through rounding.
    need = math.ceil(persistent_share * n_slices - 1e-9)
    trend_up = (trend_p <= trend_alpha) & (trend_z > 0)
    trend_down = (trend_p <= trend_alpha) & (trend_z < 0)

    code = np.zeros(bins.shape[0], dtype=np.int8)
    final_any = np.zeros(bins.shape[0], dtype=bool)
    for sign, suffix, stronger, weaker in (
        (1, "hot", trend_up, trend_down),
        (-1, "cold", trend_down, trend_up),
    ):
        mine = bins == sign
        other = bins == -sign
        count = mine.sum(axis=1)
        final = mine[:, -1]
        final_any |= final
        mostly = count >= need
        other_ever = other.any(axis=1)
        # Length of the run of this sign ending at the final slice.
        broken = ~mine[:, ::-1]
        final_run = np.where(broken.any(axis=1), broken.argmax(axis=1), n_slices)
        rules = (
            (final & mostly & stronger, "intensifying"),
            (final & mostly & weaker, "diminishing"),
            (final & mostly, "persistent"),
            (final & other_ever, "oscillating"),
            (final & (count == 1), "new"),
            (final & (count >= 2) & (final_run == count), "consecutive"),
            (final, "sporadic"),
        )
        chosen = np.select(
            [cond for cond, _ in rules], [_CODE[f"{name}_{suffix}"] for _, name in rules], default=0
        )
        code = np.where(code == 0, chosen, code).astype(np.int8)
    for sign, suffix in ((1, "hot"), (-1, "cold")):
        historical = ~final_any & ((bins == sign).sum(axis=1) >= need)
        code[historical] = _CODE[f"historical_{suffix}"]
    return code
