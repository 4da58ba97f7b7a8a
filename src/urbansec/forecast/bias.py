"""Whom does a forecast send patrols to? Flags per area against events, and flags over time.

Input: the cells a forecast flagged in each fold of a backtest (``flagged_masks``, (folds,
cells) bool), the events each cell had over the backtest's test periods, and optionally the
area (police district, ward, ...) each cell belongs to. A *flag* is one (cell, fold) pair:
a cell flagged in 30 folds carries 30 flags.

How to read it:

- **Per area** (``areas``): ``flag_share`` is the area's share of all flags, ``event_share``
  its share of the events, ``cell_share`` its share of the study cells.
  ``flag_to_event = flag_share / event_share``: 1 means the area is flagged in proportion to
  what happened there; 2 means twice as often as its events alone would justify (the forecast
  concentrates on it beyond the evidence of the test periods), 0.5 half as often. A good
  hot-spot forecast is *meant* to have ``flag_to_cell`` far from 1 (it picks the busy places,
  not an even share of the map); the question for a council is ``flag_to_event``. Areas with no
  event but some flags have an infinite ratio; areas with neither have NaN. Cells with no area
  code are grouped under the code ``None``.
- **Over time**: ``flag_count[i]`` is the number of folds cell ``i`` was flagged in.
  ``core_cells`` are the ``k`` cells flagged most often, ``k`` being the mean number of cells
  flagged per fold; ``core_fold_share`` is how often, on average, a core cell was flagged
  ("the same 1% of cells were flagged in 87% of folds"): 1.0 = the forecast flags the very same
  cells every time, whatever happens; close to ``k / n_cells`` = it rotates like random flags.
  ``jaccard[f]`` is the overlap |A ∩ B| / |A ∪ B| of the flagged sets of folds ``f`` and
  ``f + 1`` (1 = identical, 0 = disjoint); ``jaccard_random`` the expected overlap of two random
  sets of the same share (``c / (2 - c)``). ``gini`` is the Gini coefficient of the flag counts
  over all study cells (0 = every cell flagged equally often, towards 1 = all flags on a few
  cells); ``gini_min`` is the lowest Gini the same number of flags could have (spread as evenly
  as possible), so ``gini`` near ``gini_min`` means maximal rotation and near 1 a fixed set.

Everything is counted in cells (not km²), like the coverage levels of square grids.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from urbansec.errors import UsageError

__all__ = ["BiasReport", "flag_bias", "gini"]


@dataclass(frozen=True, eq=False)  # arrays inside: compare fields, not objects
class BiasReport:
    """The bias check of one model's flags; see the module docstring for how to read it.

    Per-area arrays are (a,), aligned with ``areas`` (empty when no area codes were given);
    ``flag_count`` and ``events_per_cell`` are (cells,); ``flags_per_fold`` (folds,);
    ``jaccard`` (folds - 1,).
    """

    areas: np.ndarray
    n_cells_in_area: np.ndarray
    cell_share: np.ndarray
    event_share: np.ndarray
    flag_share: np.ndarray
    flag_to_event: np.ndarray
    flag_to_cell: np.ndarray
    n_folds: int
    n_cells: int
    events_per_cell: np.ndarray
    flags_per_fold: np.ndarray
    flag_count: np.ndarray
    ever_flagged_share: float
    core_cells: np.ndarray
    core_fold_share: float
    jaccard: np.ndarray
    mean_jaccard: float
    jaccard_random: float
    gini: float
    gini_min: float

    def area_rows(self) -> list[dict[str, object]]:
        """One plain dict per area, riskiest over-flagging first (highest flag_to_event)."""
        order = np.argsort(-np.nan_to_num(self.flag_to_event, nan=-1.0), kind="stable")
        return [{"area": self.areas[i], "cells": int(self.n_cells_in_area[i]),
                 "cell_share": float(self.cell_share[i]),
                 "event_share": float(self.event_share[i]),
                 "flag_share": float(self.flag_share[i]),
                 "flag_to_event": float(self.flag_to_event[i]),
                 "flag_to_cell": float(self.flag_to_cell[i])} for i in order]

    def summary(self) -> dict[str, float | int]:
        """The concentration-over-time figures as plain numbers (for JSON)."""
        return {"folds": self.n_folds, "cells": self.n_cells,
                "mean_flagged_per_fold": float(self.flags_per_fold.mean())
                if self.n_folds else 0.0,
                "ever_flagged_share": self.ever_flagged_share,
                "core_cells": int(self.core_cells.size),
                "core_fold_share": self.core_fold_share,
                "mean_jaccard": self.mean_jaccard, "jaccard_random": self.jaccard_random,
                "gini": self.gini, "gini_min": self.gini_min}

    def describe(self) -> str:
        """Plain-language sentences for a report."""
        if self.n_folds == 0 or self.core_cells.size == 0:
            return "No cells were flagged: nothing to check."
        k = self.core_cells.size
        lines = [
            f"The {k} cells flagged most often ({100 * k / self.n_cells:.1f}% of the "
            f"{self.n_cells} cells) were flagged in {100 * self.core_fold_share:.0f}% of the "
            f"{self.n_folds} folds on average; {100 * self.ever_flagged_share:.1f}% of cells "
            f"were flagged at least once.",
        ]
        if self.jaccard.size:
            lines.append(f"Consecutive folds' flagged cells overlap by {self.mean_jaccard:.2f} "
                         f"(Jaccard; random flags: {self.jaccard_random:.3f}).")
        lines.append(f"Gini of flags over cells {self.gini:.2f} (most even possible "
                     f"{self.gini_min:.2f}).")
        finite = np.isfinite(self.flag_to_event)
        if self.areas.size and finite.any():
            worst = int(np.nanargmax(np.where(finite, self.flag_to_event, np.nan)))
            lines.append(
                f"Area {self.areas[worst]} holds {100 * self.flag_share[worst]:.1f}% of flags "
                f"for {100 * self.event_share[worst]:.1f}% of events (ratio "
                f"{self.flag_to_event[worst]:.2f}), the highest of {self.areas.size} areas.")
        return " ".join(lines)


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative values: 0 when all equal; NaN when all zero or empty.

    ``G = sum_i (2 i - n - 1) x_(i) / (n sum x)`` with ``x_(i)`` sorted ascending, ``i`` from
    1 (the population form: one value of n non-zero gives ``1 - 1/n``).
    """
    x = np.sort(np.asarray(values, dtype=float))
    n = x.size
    total = float(x.sum())
    if n == 0 or not total > 0:
        return float("nan")
    i = np.arange(1, n + 1)
    return float(np.sum((2 * i - n - 1) * x) / (n * total))


def _group(area_of_cell: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct area codes (sorted; None last when present) and each cell's group index."""
    codes = np.asarray(area_of_cell, dtype=object)
    missing = np.array([c is None or (isinstance(c, float) and np.isnan(c)) for c in codes],
                       dtype=bool)
    present = codes[~missing]
    try:
        distinct, inverse = np.unique(present, return_inverse=True)
    except TypeError:
        # codes of mixed types (e.g. int and str) cannot be ordered: compare them as text
        distinct, inverse = np.unique(present.astype(str), return_inverse=True)
    groups = np.empty(codes.size, dtype=np.int64)
    groups[~missing] = inverse.ravel()
    labels = distinct.astype(object)
    if missing.any():
        groups[missing] = labels.size
        labels = np.append(labels, np.array([None], dtype=object))
    return labels, groups


def flag_bias(flagged_masks: np.ndarray, events_per_cell: np.ndarray,
              area_of_cell: np.ndarray | None = None) -> BiasReport:
    """Bias check of a forecast's flags over a backtest.

    Args:
        flagged_masks: (folds, cells) bool, True where a fold's forecast flagged the cell.
        events_per_cell: (cells,) events in each cell over the test periods (>= 0).
        area_of_cell: (cells,) area code of each cell (e.g. its police district; None for a
            cell in no area), or None to skip the per-area part.

    Returns:
        A ``BiasReport``. Zero folds give an empty report (NaN shares), not an error.
    """
    flags = np.asarray(flagged_masks)
    if flags.ndim != 2:
        raise UsageError(f"flagged masks must be a (folds, cells) array, not shape {flags.shape}")
    flags = flags.astype(bool)
    n_folds, n_cells = flags.shape
    events = np.asarray(events_per_cell, dtype=float)
    if events.shape != (n_cells,):
        raise UsageError(f"events per cell {events.shape} must have one entry per cell "
                         f"({n_cells})")
    if events.size and (not np.all(np.isfinite(events)) or events.min() < 0):
        raise UsageError("events per cell must be finite and >= 0")

    flag_count = flags.sum(axis=0).astype(np.int64)
    flags_per_fold = flags.sum(axis=1).astype(np.int64)
    total_flags = int(flag_count.sum())
    total_events = float(events.sum())

    if area_of_cell is not None:
        if len(area_of_cell) != n_cells:
            raise UsageError(f"area codes ({len(area_of_cell)}) must have one entry per cell "
                             f"({n_cells})")
        labels, groups = _group(np.asarray(area_of_cell, dtype=object))
        n_areas = labels.size
        cells_in = np.bincount(groups, minlength=n_areas).astype(np.int64)
        events_in = np.bincount(groups, weights=events, minlength=n_areas)
        flags_in = np.bincount(groups, weights=flag_count.astype(float), minlength=n_areas)
        with np.errstate(divide="ignore", invalid="ignore"):
            cell_share = cells_in / n_cells if n_cells else np.full(n_areas, np.nan)
            event_share = (events_in / total_events if total_events > 0
                           else np.full(n_areas, np.nan))
            flag_share = (flags_in / total_flags if total_flags > 0
                          else np.full(n_areas, np.nan))
            # x / 0 is +inf for x > 0 and NaN for 0 / 0: exactly the reading documented above
            flag_to_event = flag_share / event_share
            flag_to_cell = flag_share / cell_share
    else:
        labels = np.empty(0, dtype=object)
        cells_in = np.empty(0, dtype=np.int64)
        cell_share = event_share = flag_share = flag_to_event = flag_to_cell = np.empty(0)

    # the k most often flagged cells, k = the typical size of one fold's flagged set; ties at
    # the boundary go to the lower cell position (stable), which does not change the mean
    k = round(total_flags / n_folds) if n_folds else 0
    core = np.sort(np.argsort(-flag_count, kind="stable")[:k])
    core_fold_share = (float(flag_count[core].mean()) / n_folds if k and n_folds
                       else float("nan"))

    if n_folds >= 2:
        inter = np.logical_and(flags[1:], flags[:-1]).sum(axis=1)
        union = np.logical_or(flags[1:], flags[:-1]).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            jaccard = np.where(union > 0, inter / np.maximum(union, 1), np.nan)
        mean_jaccard = float(np.nanmean(jaccard)) if np.isfinite(jaccard).any() else float("nan")
    else:
        jaccard = np.empty(0)
        mean_jaccard = float("nan")
    share = total_flags / (n_folds * n_cells) if n_folds and n_cells else float("nan")
    jaccard_random = share / (2.0 - share) if np.isfinite(share) else float("nan")

    if n_cells and total_flags:
        even = np.full(n_cells, total_flags // n_cells, dtype=float)
        even[: total_flags % n_cells] += 1.0
        gini_min = gini(even)
    else:
        gini_min = float("nan")

    return BiasReport(
        areas=labels, n_cells_in_area=cells_in, cell_share=np.asarray(cell_share, dtype=float),
        event_share=np.asarray(event_share, dtype=float),
        flag_share=np.asarray(flag_share, dtype=float),
        flag_to_event=np.asarray(flag_to_event, dtype=float),
        flag_to_cell=np.asarray(flag_to_cell, dtype=float),
        n_folds=int(n_folds), n_cells=int(n_cells), events_per_cell=events,
        flags_per_fold=flags_per_fold, flag_count=flag_count,
        ever_flagged_share=float((flag_count > 0).mean()) if n_cells else float("nan"),
        core_cells=core, core_fold_share=core_fold_share, jaccard=jaccard,
        mean_jaccard=mean_jaccard, jaccard_random=jaccard_random,
        gini=gini(flag_count), gini_min=gini_min)
