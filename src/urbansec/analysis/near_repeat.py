"""Knox test for repeat and near-repeat victimisation, as in Ratcliffe's Near Repeat Calculator.

Every pair of events is classified by how far apart the two events are in space (metres) and in
time (days). The *observed* number of pairs in each (space band, time band) cell is compared
with what is *expected* if when an event happened had nothing to do with where: the event times
are shuffled among the events (locations fixed) ``permutations`` times, Monte Carlo style, and
the expected count is the mean count over the shuffles. The Knox ratio is observed / expected;
a ratio above 1 with a small p-value means more pairs close in space *and* time than chance
gives: a (near) repeat pattern.

Bands (``space_bands`` and ``time_bands`` are the bands' upper edges, strictly increasing):

- space: ``same location`` (distance exactly 0, e.g. the same address or, in Chicago's
  published data, the same block), then ``(0, e1]``, ``(e1, e2]``, ... metres, and ``> e_last``.
  With ``space_bands=[100, 200]``: 0, (0, 100], (100, 200], > 200.
- time: ``[0, e1]``, ``(e1, e2]``, ... days and ``> e_last``. With ``time_bands=[7, 14]``:
  [0, 7], (7, 14], > 14.

Every band includes its upper edge. For whole-day times this is exactly the Near Repeat
Calculator's "0 to 7 days, 8 to 14 days, ..." and, for whole-metre distances, its "1 to 100,
101 to 200, ..." metres. Fractional values are not rounded: a pair 7.25 days apart falls in
(7, 14]; pass whole days (e.g. ``numpy.floor`` of them) to reproduce the calculator's
date-only arithmetic. Prefer ``datetime64`` times to fractional float days: they are compared
in whole seconds, exactly, whereas float days such as 3 + 5/24 and 10 + 5/24 may differ by
7 +- 1e-15 and land on either side of a 7-day edge.

How it is fast: the pairs closer than the largest space band are enumerated once with a k-d
tree; each permutation only recomputes those pairs' time differences (a gather through the
permuted times) and counts them with one ``numpy.bincount``. Pairs beyond the largest space band
are never enumerated: shuffling times among events leaves the multiset of *all* pairwise time
differences unchanged, so the number of all pairs per time band is computed once (by binary
search on the sorted times) and the "beyond" row is that minus the pairs within.

p-values are one-sided (more pairs than chance): ``(k + 1) / (permutations + 1)`` where ``k`` is
the number of permutations whose count is at least the observed one, so under the null
hypothesis ``P(p <= alpha) <= alpha`` for every cell. With many cells some will be "significant"
by chance (about ``alpha`` of them); read patterns, not single cells.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage
from scipy.spatial import cKDTree

from urbansec.errors import UsageError

__all__ = ["MAX_CLOSE_PAIRS", "KnoxCell", "KnoxResult", "knox_test"]

Metric = Literal["euclidean", "manhattan"]

#: Most pairs closer than the largest space band that the test enumerates (about 25 bytes each
#: in memory); beyond it, a smaller largest band or fewer events is needed.
MAX_CLOSE_PAIRS = 25_000_000

# Per-permutation temporaries cover at most this many pairs at a time (about 8 MB each).
_PAIR_CHUNK = 1_000_000


@dataclass(frozen=True)
class KnoxCell:
    """One (space band, time band) cell of a Knox table, for summaries."""

    space_band: str
    time_band: str
    observed: int
    expected: float
    ratio: float
    p_value: float


@dataclass(frozen=True, eq=False)
class KnoxResult:
    """Knox table: one row per space band, one column per time band.

    Rows: ``same location``, the ``len(space_edges)`` bands up to the largest edge, and
    ``> largest edge``; columns: the ``len(time_edges)`` bands and ``> largest edge``. So every
    array has shape ``(len(space_edges) + 2, len(time_edges) + 1)``.

    Attributes:
        space_edges: upper edges of the space bands, metres.
        time_edges: upper edges of the time bands, days.
        space_labels, time_labels: row and column labels, e.g. ``"(0, 100] m"``,
            ``"[0, 7] days"``.
        observed: int64, pairs of events in each cell.
        expected: float64, mean count over the permutations.
        ratio: float64, Knox ratio observed / expected (inf where only the observed data
            have pairs in the cell, NaN where neither has).
        p_value: float64, one-sided Monte Carlo p-value ``(k + 1) / (permutations + 1)``.
        significant: bool, ``p_value <= alpha`` and observed > expected.
        n_events, n_pairs: events tested and pairs of them (``n * (n - 1) / 2``).
        permutations, seed, alpha, metric: how the test was run.
    """

    space_edges: tuple[float, ...]
    time_edges: tuple[float, ...]
    space_labels: tuple[str, ...]
    time_labels: tuple[str, ...]
    observed: NDArray[np.int64] = field(repr=False)
    expected: NDArray[np.float64] = field(repr=False)
    ratio: NDArray[np.float64] = field(repr=False)
    p_value: NDArray[np.float64] = field(repr=False)
    significant: NDArray[np.bool_] = field(repr=False)
    n_events: int
    n_pairs: int
    permutations: int
    seed: int | None
    alpha: float
    metric: str

    def cells(self, which: Literal["repeat", "near_repeat", "all"] = "all") -> list[KnoxCell]:
        """Significant cells with more pairs than expected, in row-major order.

        ``"repeat"``: same location, within the time bands (repeat victimisation);
        ``"near_repeat"``: the bounded space bands (not same location, not beyond) within the
        time bands; ``"all"``: every significant elevated cell, the open-ended bands included.
        """
        n_rows, n_cols = self.observed.shape
        if which == "repeat":
            rows, cols = range(1), range(n_cols - 1)
        elif which == "near_repeat":
            rows, cols = range(1, n_rows - 1), range(n_cols - 1)
        elif which == "all":
            rows, cols = range(n_rows), range(n_cols)
        else:
            raise UsageError(f"unknown cell selection {which!r}: use 'repeat', 'near_repeat' "
                             "or 'all'")
        return [KnoxCell(self.space_labels[r], self.time_labels[c], int(self.observed[r, c]),
                         float(self.expected[r, c]), float(self.ratio[r, c]),
                         float(self.p_value[r, c]))
                for r in rows for c in cols if self.significant[r, c]]

    def near_repeat_cells(self) -> list[KnoxCell]:
        """The near-repeat pattern: significant elevated cells connected to the closest one.

        Starting from the nearest bounded space band and the first time band (the pairs
        closest in space and time after "same location"), the significant cells reachable
        through significant neighbours (sharing an edge) within the bounded bands. Isolated
        significant cells elsewhere are left out: with many cells, about ``alpha`` of them are
        significant by chance alone. Empty when the closest cell itself is not significant.
        """
        n_rows, n_cols = self.observed.shape
        block = np.asarray(self.significant[1:n_rows - 1, :n_cols - 1])
        labels, _ = ndimage.label(block)
        if labels[0, 0] == 0:
            return []
        return [KnoxCell(self.space_labels[r + 1], self.time_labels[c],
                         int(self.observed[r + 1, c]), float(self.expected[r + 1, c]),
                         float(self.ratio[r + 1, c]), float(self.p_value[r + 1, c]))
                for r, c in zip(*np.nonzero(labels == labels[0, 0]), strict=True)]

    @property
    def near_repeat_extent(self) -> tuple[float, float] | None:
        """(metres, days): the farthest space and time edges of :meth:`near_repeat_cells`, or
        None when there is no near-repeat pattern. The pattern need not fill the whole
        rectangle; look at the cells for its shape."""
        cells = self.near_repeat_cells()
        if not cells:
            return None
        rows = [self.space_labels.index(c.space_band) - 1 for c in cells]
        cols = [self.time_labels.index(c.time_band) for c in cells]
        return self.space_edges[max(rows)], self.time_edges[max(cols)]

    def summary(self) -> str:
        """Plain-language summary in the spirit of the Near Repeat Calculator's report."""
        lines = [f"Knox test: {self.n_events:,} events, {self.n_pairs:,} pairs, "
                 f"{self.permutations} permutations, significance p <= {self.alpha:g}."]
        repeat = self.cells("repeat")
        if repeat:
            lines.append("Repeat victimisation (same location): elevated risk "
                         + "; ".join(_describe(c) for c in repeat) + ".")
        else:
            lines.append("No significant repeat victimisation at the same location.")
        pattern = self.near_repeat_cells()
        extent = self.near_repeat_extent
        if extent is None:
            lines.append("No significant near-repeat pattern next to the first space and time "
                         "band.")
        else:
            lines.append(f"Near repeat: elevated risk up to {extent[0]:g} m and {extent[1]:g} "
                         "days after an event: "
                         + "; ".join(f"{c.space_band} x {_describe(c)}" for c in pattern) + ".")
        others = len(self.cells("all")) - len(repeat) - len(pattern)
        if others:
            lines.append(f"{others} other cell(s) are significant on their own; about "
                         f"{self.alpha:g} of all {self.observed.size} cells are expected to be "
                         "by chance.")
        return "\n".join(lines)


def _describe(cell: KnoxCell) -> str:
    return (f"{cell.time_band} (Knox ratio {cell.ratio:.2f}, {100 * (cell.ratio - 1):+.0f}%, "
            f"p = {cell.p_value:.3g})")


def knox_test(
    x: ArrayLike,
    y: ArrayLike,
    t_days: ArrayLike,
    *,
    space_bands: ArrayLike,
    time_bands: ArrayLike,
    permutations: int = 999,
    seed: int | None = None,
    metric: Metric = "euclidean",
    alpha: float = 0.05,
) -> KnoxResult:
    """Knox space-time interaction test with Monte Carlo permutation of event times.

    Args:
        x, y: event coordinates, shape (n,), metres in a projected CRS.
        t_days: event times, shape (n,): days (float) from any origin, or a ``datetime64``
            array (compared in whole seconds, exactly; sub-second parts are dropped).
        space_bands: upper edges of the space bands, metres, strictly increasing, > 0,
            e.g. ``[100, 200, 300, 400]``.
        time_bands: upper edges of the time bands, days, strictly increasing, > 0,
            e.g. ``[7, 14, 21, 28]``.
        permutations: Monte Carlo shuffles (>= 1; 999 gives p-values down to 0.001, and at
            least 19 are needed for any p-value to reach 0.05).
        seed: seed of ``numpy.random.default_rng``; the same seed gives the same result.
        metric: ``"euclidean"`` (straight line) or ``"manhattan"`` (|dx| + |dy|, closer to
            street distance on a grid plan), as in the Near Repeat Calculator.
        alpha: significance level for ``significant`` and the summary.

    Returns:
        :class:`KnoxResult`.

    Raises:
        UsageError: fewer than 2 events, arrays of different lengths, non-finite values, bands
            that are empty, not positive or not strictly increasing, a bad ``permutations``,
            ``alpha`` or ``metric``, or more than :data:`MAX_CLOSE_PAIRS` pairs within the
            largest space band.
    """
    xs, ys, ts, units_per_day = _inputs(x, y, t_days)
    n = xs.size
    if n < 2:
        raise UsageError(f"the Knox test compares pairs of events and needs at least 2, got {n}")
    s_edges = _edges("space_bands", space_bands, "metres")
    t_edges = _edges("time_bands", time_bands, "days")
    if isinstance(permutations, bool) or not isinstance(permutations, int | np.integer) \
            or permutations < 1:
        raise UsageError(f"permutations must be a positive integer, got {permutations!r}")
    permutations = int(permutations)
    if not (0 < alpha < 1):
        raise UsageError(f"alpha must be between 0 and 1, got {alpha!r}")
    if metric not in ("euclidean", "manhattan"):
        raise UsageError(f"unknown metric {metric!r}: use 'euclidean' or 'manhattan'")

    i, j, space_band = _close_pairs(xs, ys, s_edges, metric)
    n_cols = t_edges.size + 1
    n_inner = s_edges.size + 1  # same location + the bounded bands: the rows we enumerate
    base = space_band.astype(np.intp) * n_cols
    # Compare time differences in the times' own unit (seconds for datetime64, so that the
    # arithmetic is exact); the edges follow.
    unit_edges = t_edges * units_per_day
    time_totals = _all_pairs_per_time_band(ts, unit_edges)
    counter = _PairCounter(i, j, base, unit_edges, n_inner * n_cols)

    def table(times: NDArray[np.float64]) -> NDArray[np.int64]:
        inner = counter.count(times).reshape(n_inner, n_cols)
        return np.vstack([inner, time_totals - inner.sum(axis=0)])

    observed = table(ts)
    rng = np.random.default_rng(seed)
    total = np.zeros(observed.shape, dtype=np.float64)
    at_least = np.zeros(observed.shape, dtype=np.int64)
    for _ in range(permutations):
        counts = table(ts[rng.permutation(n)])
        total += counts
        at_least += counts >= observed
    expected = total / permutations
    # No permutation ever put a pair in the cell: inf if some observed pair is there, else NaN.
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = observed / expected
    p_value = (at_least + 1) / (permutations + 1)
    significant = (p_value <= alpha) & (observed > expected)
    for arr in (observed, expected, ratio, p_value, significant):
        arr.setflags(write=False)

    return KnoxResult(
        space_edges=tuple(float(e) for e in s_edges),
        time_edges=tuple(float(e) for e in t_edges),
        space_labels=_space_labels(s_edges),
        time_labels=_time_labels(t_edges),
        observed=observed, expected=expected, ratio=ratio, p_value=p_value,
        significant=significant,
        n_events=n, n_pairs=n * (n - 1) // 2, permutations=permutations,
        seed=None if seed is None else int(seed), alpha=float(alpha), metric=metric,
    )


# --- validation and labels -------------------------------------------------------------------


def _inputs(x: ArrayLike, y: ArrayLike, t: ArrayLike
            ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], float]:
    """Validated coordinates, times as float64 and the number of time units per day.

    datetime64 times become whole seconds since the first event: integers below 2**53 are
    exact in float64 and so are their differences, so a pair exactly 7 days apart is exactly
    604800 s apart and falls in [0, 7] days. Fractional days could round either way.
    """
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    t_arr = np.asarray(t)
    if np.issubdtype(t_arr.dtype, np.datetime64):
        if t_arr.size and np.isnat(t_arr).any():
            raise UsageError("event times contain NaT: drop events without a time first")
        seconds = t_arr.astype("datetime64[s]").astype(np.int64)
        # Relative to the first event so that the float days keep sub-second precision.
        ts = (seconds - (seconds.min() if seconds.size else 0)).astype(np.float64)
        units_per_day = 86_400.0
    else:
        ts = t_arr.astype(np.float64)
        units_per_day = 1.0
    if not (xs.ndim == ys.ndim == ts.ndim == 1 and xs.shape == ys.shape == ts.shape):
        raise UsageError(f"x, y and t_days must be 1-D arrays of equal length, got shapes "
                         f"{xs.shape}, {ys.shape} and {ts.shape}")
    if not (np.isfinite(xs).all() and np.isfinite(ys).all()):
        raise UsageError("event coordinates contain NaN or infinity: drop unlocated events "
                         "before the Knox test")
    if not np.isfinite(ts).all():
        raise UsageError("event times contain NaN or infinity: drop events without a time")
    return xs, ys, ts, units_per_day


def _edges(name: str, values: ArrayLike, unit: str) -> NDArray[np.float64]:
    edges = np.asarray(values, dtype=np.float64)
    if edges.ndim != 1 or edges.size == 0:
        raise UsageError(f"{name} must be a non-empty list of band upper edges in {unit}")
    if not np.isfinite(edges).all() or edges[0] <= 0 or (np.diff(edges) <= 0).any():
        raise UsageError(f"{name} must be positive and strictly increasing ({unit}), got "
                         f"{edges.tolist()}")
    return edges


def _space_labels(edges: NDArray[np.float64]) -> tuple[str, ...]:
    lows = [0.0, *edges[:-1].tolist()]
    return ("same location",
            *(f"({lo:g}, {hi:g}] m" for lo, hi in zip(lows, edges.tolist(), strict=True)),
            f"> {edges[-1]:g} m")


def _time_labels(edges: NDArray[np.float64]) -> tuple[str, ...]:
    lows = edges[:-1].tolist()
    return (f"[0, {edges[0]:g}] days",
            *(f"({lo:g}, {hi:g}] days" for lo, hi in zip(lows, edges[1:].tolist(), strict=True)),
            f"> {edges[-1]:g} days")


# --- counting --------------------------------------------------------------------------------


def _close_pairs(xs: NDArray[np.float64], ys: NDArray[np.float64], edges: NDArray[np.float64],
                 metric: str) -> tuple[NDArray[np.int32], NDArray[np.int32], NDArray[np.int32]]:
    """Pairs i < j with distance <= edges[-1] and their space band (0 = same location)."""
    n = xs.size
    reach = float(edges[-1])
    p = 2.0 if metric == "euclidean" else 1.0
    tree = cKDTree(np.column_stack([xs, ys]))
    # The tree's own distance arithmetic may differ from ours in the last bits; query a hair
    # wider and keep exactly the pairs *our* distance puts within reach, so that the bands and
    # the "beyond" remainder agree with a brute-force count.
    radius = reach * (1.0 + 1e-9)
    # Counting is cheap and bounds memory before anything is materialised.
    close = (int(tree.count_neighbors(tree, radius, p=p)) - n) // 2
    if close > MAX_CLOSE_PAIRS:
        raise UsageError(f"{close:,} pairs of events lie within {reach:g} m, more than the "
                         f"{MAX_CLOSE_PAIRS:,} the Knox test enumerates: use a smaller largest "
                         "space band, a shorter period or a narrower category")
    pairs = tree.query_pairs(radius, p=p, output_type="ndarray")
    i = pairs[:, 0].astype(np.int32)
    j = pairs[:, 1].astype(np.int32)
    del pairs
    dx = xs[i] - xs[j]
    dy = ys[i] - ys[j]
    dist = np.hypot(dx, dy) if metric == "euclidean" else np.abs(dx) + np.abs(dy)
    keep = dist <= reach
    i, j, dist = i[keep], j[keep], dist[keep]
    # Band k (1-based) holds edges[k-2] < d <= edges[k-1]; searchsorted(side="left") returns
    # the number of edges strictly below d.
    band = (np.searchsorted(edges, dist, side="left") + 1).astype(np.int32)
    band[dist == 0] = 0
    return i, j, band


def _all_pairs_per_time_band(ts: NDArray[np.float64],
                             edges: NDArray[np.float64]) -> NDArray[np.int64]:
    """Number of all pairs i < j per time band, shape (len(edges) + 1,).

    For each event (in time order) a vectorised binary search finds how many later events lie
    within each edge. The test is written ``t[j] - t[i] <= e`` exactly as the per-pair
    difference is computed, so that rounding can never put a pair in different bands here and
    in :class:`_PairCounter`; floating subtraction is monotonic, so the search is valid.
    """
    s = np.sort(ts)
    n = s.size
    first = np.arange(1, n + 1)
    within = np.empty(edges.size, dtype=np.int64)
    for k, e in enumerate(edges.tolist()):
        lo = first.copy()               # first candidate j
        hi = np.full(n, n)              # first j known to be beyond e (or n)
        while True:
            open_ = lo < hi
            if not open_.any():
                break
            mid = (lo + hi) // 2
            inside = open_ & (s[np.minimum(mid, n - 1)] - s <= e)
            lo = np.where(inside, mid + 1, lo)
            hi = np.where(open_ & ~inside, mid, hi)
        within[k] = int((lo - first).sum())
    total = n * (n - 1) // 2
    return np.diff(np.concatenate(([0], within, [total]))).astype(np.int64)


class _PairCounter:
    """Counts the enumerated pairs per (space band, time band) for one assignment of times."""

    def __init__(self, i: NDArray[np.int32], j: NDArray[np.int32], base: NDArray[np.intp],
                 edges: NDArray[np.float64], n_bins: int) -> None:
        self.i, self.j, self.base = i, j, base
        self.edges = edges.tolist()
        self.n_bins = n_bins
        size = min(i.size, _PAIR_CHUNK)
        # Buffers reused across permutations: allocation would otherwise cost as much as the
        # arithmetic.
        self._dt = np.empty(size)
        self._other = np.empty(size)
        self._bin = np.empty(size, dtype=np.intp)
        self._gt = np.empty(size, dtype=bool)

    def count(self, times: NDArray[np.float64]) -> NDArray[np.int64]:
        out = np.zeros(self.n_bins, dtype=np.int64)
        for lo in range(0, self.i.size, _PAIR_CHUNK):
            hi = min(lo + _PAIR_CHUNK, self.i.size)
            m = hi - lo
            dt, other, bins, gt = self._dt[:m], self._other[:m], self._bin[:m], self._gt[:m]
            np.take(times, self.i[lo:hi], out=dt)
            np.take(times, self.j[lo:hi], out=other)
            np.subtract(dt, other, out=dt)
            np.abs(dt, out=dt)
            np.copyto(bins, self.base[lo:hi])
            # Time band = number of edges strictly below dt, so each band keeps its upper edge.
            for e in self.edges:
                np.greater(dt, e, out=gt)
                np.add(bins, gt, out=bins)
            out += np.bincount(bins, minlength=self.n_bins)
        return out
