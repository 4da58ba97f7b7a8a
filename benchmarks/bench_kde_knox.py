"""Benchmark: kernel density on a grid (vs scipy.stats.gaussian_kde) and the Knox test.

``run(events, label)`` returns one row per measure for the driver (``benchmarks/analysis.py``);
``python benchmarks/bench_kde_knox.py`` prints the rows for Chicago 2017.

- KDE, Gaussian kernel, 100 m cells over the events' bounding box, bandwidth 300 m (standard
  deviation), against ``scipy.stats.gaussian_kde`` evaluated at the same cell centres. scipy
  sums every event at every cell (~265k x ~140k kernel evaluations for 2017), which would take
  tens of minutes, so when a pilot says the full grid needs more than ~3 minutes it is timed on
  a random subset of cell centres and scaled linearly by the cell count (its cost is exactly
  proportional to the number of points evaluated); the note says so. scipy's kernel follows the
  data's covariance (``bw_method`` is a scalar factor of it), so its factor is chosen to give the
  same kernel area (determinant) as a 300 m isotropic kernel; the cost does not depend on the
  kernel's shape.
- KDE, quartic kernel, same grid, 300 m search radius (no reference).
- Knox test on the BURGLARY events: space bands 100..500 m, time bands 7..35 days,
  999 permutations (no reference; the Near Repeat Calculator is a Windows program).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.stats import gaussian_kde

from urbansec.analysis.kde import kernel_density
from urbansec.analysis.near_repeat import knox_test

CELL = 100.0
BANDWIDTH = 300.0
SCIPY_BUDGET_S = 180.0  # beyond this, scipy runs on a subset of cells
SCIPY_SUBSET_S = 20.0  # aim of the subset run
SPACE_BANDS = [100, 200, 300, 400, 500]
TIME_BANDS = [7, 14, 21, 28, 35]


def _best_of(repeats: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    best, out = math.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def _grid(x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    x0 = math.floor(float(x.min()) / CELL) * CELL
    y0 = math.floor(float(y.min()) / CELL) * CELL
    n_cols = math.floor((float(x.max()) - x0) / CELL) + 1
    n_rows = math.floor((float(y.max()) - y0) / CELL) + 1
    return {"x0": x0, "y0": y0, "cell_size": CELL, "n_cols": n_cols, "n_rows": n_rows}


def _scipy_seconds(x: np.ndarray, y: np.ndarray, grid: dict[str, Any],
                   rng: np.random.Generator) -> tuple[float, str]:
    """Seconds scipy.stats.gaussian_kde needs for every cell centre (measured or scaled)."""
    data = np.vstack([x, y])
    # Scalar factor of the data covariance giving a kernel of the same area as sigma = 300 m.
    factor = BANDWIDTH / float(np.linalg.det(np.cov(data))) ** 0.25
    kde = gaussian_kde(data, bw_method=factor)
    n_rows, n_cols = grid["n_rows"], grid["n_cols"]
    cells = n_rows * n_cols
    cx = grid["x0"] + (np.arange(n_cols) + 0.5) * CELL
    cy = grid["y0"] + (np.arange(n_rows) + 0.5) * CELL

    def on(flat: np.ndarray) -> float:
        r, c = np.divmod(flat, n_cols)
        start = time.perf_counter()
        kde(np.vstack([cx[c], cy[r]]))
        return time.perf_counter() - start

    pilot_n = min(cells, 200)
    pilot = on(rng.choice(cells, pilot_n, replace=False))
    if pilot * cells / pilot_n <= SCIPY_BUDGET_S:
        return on(np.arange(cells)), "scipy on every cell"
    subset = int(min(cells, max(pilot_n, pilot_n * SCIPY_SUBSET_S / pilot)))
    seconds = on(rng.choice(cells, subset, replace=False))
    return seconds * cells / subset, (f"scipy timed on {subset:,} random cells of {cells:,}, "
                                      "scaled linearly")


def run(events: dict, label: str) -> list[dict]:
    """Rows: Gaussian KDE vs scipy, quartic KDE, Knox test on burglaries."""
    x = np.asarray(events["x"], dtype=float)
    y = np.asarray(events["y"], dtype=float)
    rng = np.random.default_rng(0)
    grid = _grid(x, y)
    cells = grid["n_rows"] * grid["n_cols"]
    rows: list[dict] = []

    ours, density = _best_of(3, lambda: kernel_density(x, y, bandwidth=BANDWIDTH,
                                                       kernel="gaussian", **grid))
    mass = float(density.sum()) * (CELL / 1000) ** 2
    ref, how = _scipy_seconds(x, y, grid, rng)
    rows.append({"measure": f"KDE gaussian {CELL:g} m cells, sigma {BANDWIDTH:g} m ({label})",
                 "events": x.size, "cells": cells, "urbansec_s": round(ours, 3),
                 "reference_s": round(ref, 1), "ratio": round(ref / ours, 1),
                 "note": f"vs scipy.stats.gaussian_kde; {how}; grid holds {mass:,.0f} events"})

    ours, density = _best_of(3, lambda: kernel_density(x, y, bandwidth=BANDWIDTH,
                                                       kernel="quartic", **grid))
    mass = float(density.sum()) * (CELL / 1000) ** 2
    rows.append({"measure": f"KDE quartic {CELL:g} m cells, radius {BANDWIDTH:g} m ({label})",
                 "events": x.size, "cells": cells, "urbansec_s": round(ours, 3),
                 "reference_s": None, "ratio": None,
                 "note": f"exact at cell centres; grid holds {mass:,.0f} events"})

    burglary = np.asarray(events["primary_type"]) == "BURGLARY"
    start = time.perf_counter()
    result = knox_test(x[burglary], y[burglary], np.asarray(events["t"])[burglary],
                       space_bands=SPACE_BANDS, time_bands=TIME_BANDS, permutations=999,
                       seed=0)
    ours = time.perf_counter() - start
    extent = result.near_repeat_extent
    found = ("no near-repeat pattern" if extent is None
             else f"near repeats up to {extent[0]:g} m / {extent[1]:g} days, "
                  f"ratio {result.ratio[1, 0]:.2f} at (0, 100] m x [0, 7] days")
    rows.append({"measure": f"Knox burglary, 999 permutations ({label})",
                 "events": int(burglary.sum()), "cells": int(result.observed.size),
                 "urbansec_s": round(ours, 3), "reference_s": None, "ratio": None,
                 "note": f"{result.n_pairs:,} pairs; {found}"})
    return rows


if __name__ == "__main__":
    from _events import load_chicago_events

    for row in run(load_chicago_events([2017]), "2017"):
        print(row)
