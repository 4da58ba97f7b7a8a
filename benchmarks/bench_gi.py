"""Benchmark: Gi* and Local Moran's I on a 250 m grid over Chicago, urbansec vs PySAL esda.

Grid: every 250 m cell of the bounding box of the events (empty cells included), counts per
cell, queen contiguity from ``urbansec.analysis.weights``. esda gets the same weights as a
libpysal ``W`` (conversion not timed) and its defaults (``G_Local`` runs with ``n_jobs=-1``,
i.e. all CPUs; urbansec uses one). urbansec timings are the best of 3 runs, esda's of 1.

Run alone: ``.venv/bin/python benchmarks/bench_gi.py`` prints the rows for 2017.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

import libpysal
import numpy as np
from esda.getisord import G_Local
from esda.moran import Moran_Local
from scipy import sparse

from _events import best_of
from urbansec.analysis.hotspots import gi_star, local_moran
from urbansec.analysis.weights import square_contiguity

CELL_M = 250.0
PERMUTATIONS = 999
# Above this, esda is timed on fewer permutations and extrapolated (affine in permutations).
ESDA_BUDGET_S = 180.0


def grid_counts(x: np.ndarray, y: np.ndarray, size: float = CELL_M
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts per cell of the bbox grid (row-major), with each cell's row and col."""
    col = np.floor((x - x.min()) / size).astype(np.int64)
    row = np.floor((y - y.min()) / size).astype(np.int64)
    nrows, ncols = int(row.max()) + 1, int(col.max()) + 1
    counts = np.bincount(row * ncols + col, minlength=nrows * ncols).astype(np.float64)
    rows, cols = np.divmod(np.arange(nrows * ncols), ncols)
    return counts, rows, cols




def _once(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _esda_timed(make: Callable[[int], Any]) -> tuple[float, Any, str]:
    """Time ``make(PERMUTATIONS)``; if a probe says it would exceed the budget, extrapolate."""
    t_small, _ = _once(lambda: make(99))
    t_smaller, _ = _once(lambda: make(49))
    per_perm = max(t_small - t_smaller, 0.0) / 50
    estimate = t_small + per_perm * (PERMUTATIONS - 99)
    if estimate <= ESDA_BUDGET_S:
        seconds, out = _once(lambda: make(PERMUTATIONS))
        return seconds, out, ""
    return estimate, None, (f"esda timed at 49 and 99 permutations and extrapolated "
                            f"linearly to {PERMUTATIONS}")


def _classes_from(z: np.ndarray, p_two: np.ndarray) -> np.ndarray:
    """ArcGIS Gi_Bin from two-sided p-values, as gi_star decides them (islands aside)."""
    level = (p_two <= 0.10).astype(int) + (p_two <= 0.05) + (p_two <= 0.01)
    return np.where(z >= 0, 1, -1) * level


def run(events: dict, label: str) -> list[dict]:
    """Time Gi* (analytical and 999 permutations) and Local Moran's I against esda."""
    counts, rows, cols = grid_counts(np.asarray(events["x"]), np.asarray(events["y"]))
    n_events = int(np.asarray(events["x"]).size)
    n_cells = int(counts.size)
    empty_share = float(np.mean(counts == 0))
    nrows, ncols = int(rows.max()) + 1, int(cols.max()) + 1
    grid_note = f"{label}: {nrows}x{ncols} cells of 250 m, {empty_share:.0%} empty"

    out: list[dict] = []

    def row(measure: str, ours: float, ref: float | None, note: str) -> None:
        out.append({"measure": measure, "events": n_events, "cells": n_cells,
                    "urbansec_s": round(ours, 4),
                    "reference_s": None if ref is None else round(ref, 3),
                    "ratio": None if ref is None or ours <= 0 else round(ref / ours, 1),
                    "note": note})

    t_w, w = best_of(lambda: square_contiguity(rows, cols, "queen"))
    t_lat, lat = _once(lambda: libpysal.weights.lat2W(nrows, ncols, rook=False))
    same = (sparse.csr_array(lat.sparse) != w).nnz == 0
    row("queen weights", t_w, t_lat,
        f"{grid_note}; vs libpysal lat2W, identical={same}")

    lw = libpysal.weights.WSP(sparse.csr_matrix(w)).to_W(silence_warnings=True)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # esda's DeprecationWarning about 'alternative'

        t_ours, ours = best_of(lambda: gi_star(counts, w))
        t_ref, ref = _once(lambda: G_Local(counts, lw, star=True, transform="B",
                                           permutations=0))
        zdiff = float(np.max(np.abs(ours.z - ref.Zs)))
        row("Gi* analytical z", t_ours, t_ref, f"max |z diff| {zdiff:.1e}")

        t_ours, ours = best_of(lambda: gi_star(counts, w, permutations=PERMUTATIONS, seed=0))
        t_ref, ref, how = _esda_timed(lambda p: G_Local(
            counts, lw, star=True, transform="B", permutations=p, seed=0))
        zdiff = float(np.max(np.abs(ours.z - ref.Zs))) if ref is not None else float("nan")
        note = f"max |z diff| {zdiff:.1e}"
        if ref is not None:
            esda_ties = gi_star(counts, w, permutations=PERMUTATIONS, seed=0, ties="esda")
            ref_cls = _classes_from(ref.Zs, np.minimum(2 * np.asarray(ref.p_sim, float), 1))
            agree = float(np.mean(esda_ties.classes == ref_cls))
            note += (f"; classes from esda's p_sim agree with ours (ties='esda', other "
                     f"random draws) on {agree:.1%} of cells; 99% cold spots: "
                     f"{int(np.sum(esda_ties.classes == -3))} with esda's tie rule, "
                     f"{int(np.sum(ours.classes == -3))} with ties='conservative'")
        row(f"Gi* {PERMUTATIONS} permutations", t_ours, t_ref,
            note + ("; " + how if how else "") + "; esda n_jobs=-1")

        t_ours, ours = best_of(lambda: local_moran(counts, w, permutations=PERMUTATIONS,
                                                    seed=0))
        t_ref, ref, how = _esda_timed(lambda p: Moran_Local(counts, lw, permutations=p,
                                                            seed=0))
        note = ""
        if ref is not None:
            idiff = float(np.max(np.abs(ours.I - ref.Is)))
            q_same = float(np.mean(ours.quadrant == ref.q))
            ref_sig = np.minimum(2 * np.asarray(ref.p_sim, float), 1) <= 0.05
            sig_same = float(np.mean(ref_sig == ours.significant))
            note = (f"max |I diff| {idiff:.1e}; quadrants identical on {q_same:.1%}; "
                    f"significance agrees on {sig_same:.1%}")
        row(f"Local Moran {PERMUTATIONS} permutations", t_ours, t_ref,
            note + ("; " + how if how else "") + "; esda n_jobs=1 (its default)")
    return out


if __name__ == "__main__":
    from _events import load_chicago_events

    for r in run(load_chicago_events([2017]), "2017"):
        print(r)
