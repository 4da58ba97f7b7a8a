"""How good is a risk surface? Hit rate, PAI, PEI and PEI* at coverage levels, and ranking scores.

One forecast is scored against what happened: ``observed[i]`` events in study cell ``i`` during
the forecast period ``[start, end)``. The forecast flags its riskiest cells, ranked by
``RiskSurface.ranking(seed)`` (ties broken at random, seeded, so a flat surface never pretends
to know which of its equal cells is riskier). For a coverage level ``c`` (default 1, 2, 5 and
10%), with ``N`` the events in all study cells, ``A`` the study area:

- **flagged cells**: the top ``k`` cells of the ranking.

  - by cells (square grids, or any grid whose cells all have the same area):
    ``k = max(1, round(c * n_cells))``, exactly the cells ``RiskSurface.flagged(c)`` returns;
  - by area (H3 hexagons, irregular cells): the ranking prefix whose cumulative area share is
    closest to ``c`` (at least one cell; on a tie the smaller prefix). The metrics then use the
    area actually flagged, ``a``, not ``c``.

- **hit rate** = ``n / N``: the share of the period's events that fell in the flagged cells
  (``n`` of them).
- **PAI** (Chainey, Tompson and Uhlig 2008) = ``(n / N) / (a / A)``: hit rate per unit of area
  share. 1 is what flagging cells at random gives on average; higher is better.
- **PEI** (Hunt 2016) = ``PAI / PAI_max``, ``PAI_max`` being the largest PAI any choice of the
  same flagged area could have had given what happened: with equal cells ``PAI_max = (n* / N) /
  (a / A)`` with ``n*`` the events in the ``k`` busiest cells of the period, so
  ``PEI = n / n*``, in [0, 1], 1 for a perfect forecast. By area, the best set is approximated
  by the prefix (same coverage rule) of the cells ranked by observed density (events / km²); the
  approximation can put PEI slightly above 1.
- **PEI*** (Hunt's variant) = ``PAI / PAI*``, ``PAI*`` being the PAI of the *smallest* set of
  cells that captures the same number of events ``n`` as the forecast: the busiest cells of the
  period, taken until they hold ``n`` events, over area ``a*``. The hit rates are equal, so
  ``PEI* = a* / a``: how much of the flagged area was really needed to catch what it caught
  (1 = none wasted). When the forecast caught nothing ``a* = 0`` and PEI* is 0. By area, the
  busiest cells are taken by density (a greedy approximation of the smallest area).

Ranking scores over all cells, not one coverage level:

- **auc**: the area under the hit-rate curve plotted against the flagged area share, from 0 to
  1 in both directions (points ``(a_i / A, n_i / N)`` after each ranked cell, joined by straight
  lines, i.e. events spread evenly inside a cell). Random ranking gives 0.5 in expectation,
  exactly; higher is better; the best possible value is below 1 and depends on how concentrated
  the events were.
- **spearman**: Spearman's rank correlation between risk and observed counts over all cells
  (ties averaged, as ``scipy.stats.spearmanr``); NaN when either is constant.

A period with no event in the study cells cannot be scored: every metric is NaN and the scores
say ``empty``; nothing raises (a quiet day is a fact, not an error).

Everything is vectorised over the coverage levels: one ranking, two cumulative sums, then
indexing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from urbansec.errors import UsageError
from urbansec.forecast.base import RiskSurface

__all__ = [
    "COVERAGE_METRICS",
    "DEFAULT_COVERAGES",
    "RANKING_METRICS",
    "Scores",
    "evaluate",
    "flag_count",
    "hit_rate",
    "hit_rate_curve",
    "pai",
    "pei",
    "pei_star",
    "ranking_of",
]

#: Coverage levels as shares of the study area (1, 2, 5 and 10% of its cells).
DEFAULT_COVERAGES: tuple[float, ...] = (0.01, 0.02, 0.05, 0.10)
#: Metrics reported per coverage level.
COVERAGE_METRICS: tuple[str, ...] = ("hit_rate", "pai", "pei", "pei_star")
#: Metrics over the whole ranking (no coverage level).
RANKING_METRICS: tuple[str, ...] = ("auc", "spearman")

FlagBy = Literal["auto", "cells", "area"]

# Relative tolerance when deciding that all cells have the same area (H3 cells differ by far
# more than this; square cells not at all).
_EQUAL_AREA_RTOL = 1e-9


@dataclass(frozen=True, eq=False)  # arrays inside: compare fields, not objects
class Scores:
    """The scores of one forecast against one period; per-coverage arrays are (m,).

    Attributes:
        coverages: the requested coverage shares, in (0, 1].
        n_flagged: int64 number of cells flagged at each coverage.
        area_share: share of the study area actually flagged (``k / n_cells`` by cells).
        captured: events in the flagged cells (``n``).
        n_events: events in all study cells during the period (``N``).
        hit_rate, pai, pei, pei_star: see the module docstring; NaN when ``empty``.
        auc, spearman: ranking scores over all cells; NaN when ``empty``.
        by: "cells" or "area", how the flagged set was sized.
        curve: hit rate at the requested ``curve_points`` area shares (linear between ranked
            cells), or None when no points were asked for.
    """

    coverages: np.ndarray
    n_flagged: np.ndarray
    area_share: np.ndarray
    captured: np.ndarray
    n_events: float
    hit_rate: np.ndarray
    pai: np.ndarray
    pei: np.ndarray
    pei_star: np.ndarray
    auc: float
    spearman: float
    by: str
    curve: np.ndarray | None = None

    @property
    def empty(self) -> bool:
        """True when no event happened in the study cells: nothing could be scored."""
        return not self.n_events > 0

    def metric(self, name: str) -> np.ndarray | float:
        """A metric by name: (m,) for a coverage metric, a float for a ranking metric."""
        if name not in COVERAGE_METRICS + RANKING_METRICS:
            raise UsageError(f"unknown metric {name!r}; known: "
                             f"{', '.join(COVERAGE_METRICS + RANKING_METRICS)}")
        return getattr(self, name)


def ranking_of(risk: RiskSurface | np.ndarray, seed: int = 0) -> np.ndarray:
    """Cell positions from riskiest to least risky, ties broken at random (seeded).

    For a ``RiskSurface`` this is its own ``ranking(seed)``; for a bare (n,) array the same
    rule, so an array and a surface with the same risk rank identically.
    """
    if isinstance(risk, RiskSurface):
        return risk.ranking(seed)
    values = np.asarray(risk, dtype=float)
    tiebreak = np.random.default_rng(seed).random(values.size)
    return np.lexsort((tiebreak, -values))


def _coverages(coverages: float | Sequence[float] | np.ndarray) -> np.ndarray:
    levels = np.atleast_1d(np.asarray(coverages, dtype=float))
    if levels.ndim != 1 or levels.size == 0:
        raise UsageError("give at least one coverage level, e.g. 0.01 for 1% of the cells")
    bad = ~((levels > 0) & (levels <= 1))
    if bad.any():
        raise UsageError(f"coverage levels must be shares in (0, 1] (0.05 = 5% of the cells), "
                         f"not {levels[bad].tolist()}")
    return levels


def _mode(areas: np.ndarray | None, by: FlagBy) -> str:
    if by not in ("auto", "cells", "area"):
        raise UsageError(f"flag cells by 'cells', 'area' or 'auto', not {by!r}")
    if by != "auto":
        return by
    if areas is None or areas.size == 0:
        return "cells"
    spread = float(areas.max() - areas.min())
    return "cells" if spread <= _EQUAL_AREA_RTOL * float(areas.max()) else "area"


def _prefix_sizes(cum_share: np.ndarray, levels: np.ndarray, mode: str) -> np.ndarray:
    """Number of ranked cells flagged at each level: (m,) int64, each in [1, n]."""
    n = cum_share.size
    if mode == "cells":
        # np.round rounds half to even like Python's round(), as RiskSurface.flagged does
        return np.clip(np.round(levels * n), 1, n).astype(np.int64)
    # the prefix whose cumulative share is closest to the level: the candidates are the last
    # prefix at or below it and the first one above it
    above = np.searchsorted(cum_share, levels, side="left")  # first index with share >= level
    hi = np.clip(above, 0, n - 1)
    lo = np.clip(above - 1, 0, n - 1)
    pick_lo = np.abs(cum_share[lo] - levels) <= np.abs(cum_share[hi] - levels)
    return np.where(pick_lo, lo, hi).astype(np.int64) + 1


def flag_count(n_cells: int, coverage: float | Sequence[float] | np.ndarray,
               areas: np.ndarray | None = None, order: np.ndarray | None = None,
               by: FlagBy = "auto") -> np.ndarray:
    """How many ranked cells are flagged at each coverage level: (m,) int64.

    ``areas`` (n,) km² and ``order`` (the ranking) matter only when flagging by area.
    """
    levels = _coverages(coverage)
    if n_cells == 0:
        return np.zeros(levels.size, dtype=np.int64)
    area = None if areas is None else np.asarray(areas, dtype=float)
    mode = _mode(area, by)
    if mode == "cells" or area is None:
        share = np.arange(1, n_cells + 1) / n_cells
    else:
        ranked = area if order is None else area[order]
        cum = np.cumsum(ranked)
        share = cum / cum[-1]
    return _prefix_sizes(share, levels, mode)


def _check_inputs(risk: RiskSurface | np.ndarray, observed: np.ndarray,
                  areas: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    values = risk.risk if isinstance(risk, RiskSurface) else np.asarray(risk, dtype=float)
    obs = np.asarray(observed, dtype=float)
    if values.ndim != 1 or obs.shape != values.shape:
        raise UsageError(f"observed counts {obs.shape} must be aligned with the forecast's "
                         f"cells {values.shape}")
    if obs.size and (not np.all(np.isfinite(obs)) or obs.min() < 0):
        raise UsageError("observed counts must be finite and >= 0")
    if values.size and not np.all(np.isfinite(values)):
        raise UsageError("risk must be finite in every cell")
    area = None
    if areas is not None:
        area = np.asarray(areas, dtype=float)
        if area.shape != values.shape:
            raise UsageError(f"cell areas {area.shape} must be aligned with the forecast's "
                             f"cells {values.shape}")
        if area.size and (not np.all(np.isfinite(area)) or area.min() <= 0):
            raise UsageError("cell areas must be finite and > 0")
    return values, obs, area


def _descending_ranks(values: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Average ranks (1 = largest, ties share the mean of their positions) of ``values`` given
    an ``order`` that sorts them from largest to smallest: O(n), no second sort."""
    ranked = values[order]
    n = ranked.size
    starts_group = np.concatenate([[True], ranked[1:] != ranked[:-1]])
    starts = np.flatnonzero(starts_group)
    ends = np.append(starts[1:], n)
    ranks = np.empty(n)
    ranks[order] = ((starts + ends + 1) / 2.0)[np.cumsum(starts_group) - 1]
    return ranks


def _spearman(rv: np.ndarray, ro: np.ndarray) -> float:
    """Pearson correlation of two rank vectors (Spearman's rho with averaged ties)."""
    if rv.size < 2:
        return float("nan")
    rv = rv - rv.mean()
    ro = ro - ro.mean()
    # plain sums, not np.dot: a BLAS call on a busy shared machine costs milliseconds here
    denom = float(np.sqrt(np.sum(rv * rv) * np.sum(ro * ro)))
    # a constant forecast or a period with the same count everywhere has no rank order
    return float(np.sum(rv * ro) / denom) if denom > 0 else float("nan")


def evaluate(risk: RiskSurface | np.ndarray, observed: np.ndarray, *,
             areas: np.ndarray | None = None,
             coverages: float | Sequence[float] | np.ndarray = DEFAULT_COVERAGES,
             seed: int = 0, by: FlagBy = "auto",
             curve_points: np.ndarray | None = None,
             order: np.ndarray | None = None) -> Scores:
    """Score one forecast against the events of its period.

    Args:
        risk: a ``RiskSurface`` or its (n,) risk array (larger = riskier).
        observed: (n,) events per cell in the forecast period, aligned with the surface's keys
            (e.g. ``grid.counts(surface.keys, x, y)`` of the period's events).
        areas: (n,) cell areas in km² (``grid.cell_area_km2(keys)``); None = equal cells.
        coverages: coverage level(s) as shares of the study area, each in (0, 1].
        seed: tie-breaking seed of the ranking (``RiskSurface.ranking(seed)``).
        by: size the flagged set by "cells", by "area", or "auto" (by area only when the
            cells' areas differ).
        curve_points: optional area shares in [0, 1] at which to report the hit-rate curve.
        order: the ranking if already computed (``ranking_of(risk, seed)``), to save a sort.

    Returns:
        ``Scores``; with no event in the period every metric is NaN (``scores.empty``).
    """
    levels = _coverages(coverages)
    values, obs, area = _check_inputs(risk, observed, areas)
    mode = _mode(area, by)
    n = values.size
    m = levels.size
    nan_m = np.full(m, np.nan)
    points = None if curve_points is None else np.asarray(curve_points, dtype=float)
    if n == 0:
        return Scores(levels, np.zeros(m, dtype=np.int64), nan_m, np.zeros(m), 0.0, nan_m,
                      nan_m.copy(), nan_m.copy(), nan_m.copy(), float("nan"), float("nan"),
                      mode, None if points is None else np.full(points.shape, np.nan))

    if order is None:
        order = ranking_of(risk, seed)
    elif order.shape != values.shape:
        raise UsageError(f"the ranking {order.shape} must list every cell {values.shape}")
    cell_area = np.ones(n) if area is None or mode == "cells" else area
    cum_area = np.cumsum(cell_area[order])
    total_area = cum_area[-1]
    share = cum_area / total_area
    cum_events = np.cumsum(obs[order])
    total = float(cum_events[-1])
    k = _prefix_sizes(share, levels, mode)
    captured = cum_events[k - 1]
    flagged_share = share[k - 1]
    if not total > 0:
        return Scores(levels, k, flagged_share, captured, 0.0, nan_m, nan_m.copy(),
                      nan_m.copy(), nan_m.copy(), float("nan"), float("nan"), mode,
                      None if points is None else np.full(points.shape, np.nan))

    hit = captured / total
    pai_values = hit / flagged_share

    # the hindsight-best ranking: busiest cells first (by density when cells differ in area);
    # ties among equally busy cells do not change any cumulative sum used below
    best = np.argsort(-(obs / cell_area), kind="stable")
    best_share = np.cumsum(cell_area[best]) / total_area
    best_events = np.cumsum(obs[best])
    k_best = k if mode == "cells" else _prefix_sizes(best_share, levels, mode)
    pai_max = (best_events[k_best - 1] / total) / best_share[k_best - 1]
    pei_values = pai_values / pai_max

    # smallest busiest-first prefix holding as many events as the forecast caught; the
    # tolerance absorbs summation-order rounding of non-integer (weighted) counts
    need = np.searchsorted(best_events, captured - 1e-9 * total, side="left")
    area_needed = np.where(captured > 0, best_share[np.clip(need, 0, n - 1)], 0.0)
    pei_star_values = area_needed / flagged_share

    # both rankings are already sorted: ranks for Spearman without sorting again (unless a
    # caller's own order does not sort the risk, e.g. a surface ranking by something else)
    if np.any(np.diff(values[order]) > 0):
        risk_ranks = _descending_ranks(values, np.argsort(-values, kind="stable"))
    else:
        risk_ranks = _descending_ranks(values, order)
    obs_order = best if mode == "cells" else np.argsort(-obs, kind="stable")
    rho = _spearman(risk_ranks, _descending_ranks(obs, obs_order))

    x = np.concatenate([[0.0], share])
    y = np.concatenate([[0.0], cum_events / total])
    auc = float(np.sum(np.diff(x) * (y[1:] + y[:-1])) / 2.0)
    curve = None if points is None else np.interp(points, x, y)
    return Scores(levels, k, flagged_share, captured, total, hit, pai_values, pei_values,
                  pei_star_values, auc, rho, mode, curve)


def hit_rate_curve(risk: RiskSurface | np.ndarray, observed: np.ndarray, *,
                   areas: np.ndarray | None = None, seed: int = 0,
                   by: FlagBy = "auto") -> tuple[np.ndarray, np.ndarray]:
    """The whole hit-rate curve: (n + 1,) flagged area shares and (n + 1,) hit rates, from
    (0, 0) through each ranked cell to (1, 1); hit rates NaN when the period had no event."""
    values, obs, area = _check_inputs(risk, observed, areas)
    mode = _mode(area, by)
    n = values.size
    if n == 0:
        return np.zeros(1), np.full(1, np.nan)
    order = ranking_of(risk, seed)
    cell_area = np.ones(n) if area is None or mode == "cells" else area
    cum_area = np.cumsum(cell_area[order])
    cum_events = np.cumsum(obs[order])
    x = np.concatenate([[0.0], cum_area / cum_area[-1]])
    total = float(cum_events[-1])
    y = (np.concatenate([[0.0], cum_events / total]) if total > 0
         else np.full(n + 1, np.nan))
    return x, y


def _one(values: np.ndarray, coverage: float | Sequence[float] | np.ndarray
         ) -> float | np.ndarray:
    return float(values[0]) if np.ndim(coverage) == 0 else values


def hit_rate(risk: RiskSurface | np.ndarray, observed: np.ndarray,
             coverage: float | Sequence[float] | np.ndarray = DEFAULT_COVERAGES, *,
             areas: np.ndarray | None = None, seed: int = 0,
             by: FlagBy = "auto") -> float | np.ndarray:
    """Share of the period's events in the flagged cells (a float for one coverage level,
    else (m,)); NaN when the period had no event."""
    scores = evaluate(risk, observed, areas=areas, coverages=coverage, seed=seed, by=by)
    return _one(scores.hit_rate, coverage)


def pai(risk: RiskSurface | np.ndarray, observed: np.ndarray,
        coverage: float | Sequence[float] | np.ndarray = DEFAULT_COVERAGES, *,
        areas: np.ndarray | None = None, seed: int = 0, by: FlagBy = "auto"
        ) -> float | np.ndarray:
    """Predictive accuracy index (Chainey et al. 2008): hit rate / flagged area share."""
    scores = evaluate(risk, observed, areas=areas, coverages=coverage, seed=seed, by=by)
    return _one(scores.pai, coverage)


def pei(risk: RiskSurface | np.ndarray, observed: np.ndarray,
        coverage: float | Sequence[float] | np.ndarray = DEFAULT_COVERAGES, *,
        areas: np.ndarray | None = None, seed: int = 0, by: FlagBy = "auto"
        ) -> float | np.ndarray:
    """Predictive efficiency index (Hunt 2016): PAI / the best PAI of the same flagged area."""
    scores = evaluate(risk, observed, areas=areas, coverages=coverage, seed=seed, by=by)
    return _one(scores.pei, coverage)


def pei_star(risk: RiskSurface | np.ndarray, observed: np.ndarray,
             coverage: float | Sequence[float] | np.ndarray = DEFAULT_COVERAGES, *,
             areas: np.ndarray | None = None, seed: int = 0, by: FlagBy = "auto"
             ) -> float | np.ndarray:
    """Hunt's PEI*: PAI / PAI of the smallest area catching as many events (= a* / a)."""
    scores = evaluate(risk, observed, areas=areas, coverages=coverage, seed=seed, by=by)
    return _one(scores.pei_star, coverage)
