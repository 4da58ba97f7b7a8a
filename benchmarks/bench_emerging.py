"""Benchmark: emerging hot spot analysis of Chicago crimes on a 250 m grid by week.

Builds the space-time cube the way an analyst would for ArcGIS Pro's Emerging Hot Spot
Analysis: 250 m square cells over the bounding box of the events, weekly slices, queen
contiguity, then times :func:`urbansec.analysis.emerging.emerging_hotspots` (Gi* on every bin,
FDR, Mann-Kendall on every cell's z series, classification) on the whole cube. Goal: 2015-2017
by week (~157 slices) in under 30 s. There is no reference implementation to compare with here
(ArcGIS is not available; sfdep's R loop takes minutes on cubes far smaller), so the reference
columns stay empty.

Weeks are counted back from the end of the last event's day, so the final slice (the one the
categories hinge on) is a full week; the incomplete oldest week is dropped and said so in the
note.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from urbansec.analysis.emerging import emerging_hotspots
from urbansec.analysis.weights import square_contiguity

CELL_M = 250.0
WEEK = np.timedelta64(7 * 86400, "s")


def build_cube(
    x: np.ndarray, y: np.ndarray, t: np.ndarray, cell: float = CELL_M
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Weekly counts per square cell over the events' bounding box.

    Returns ``(counts, rows, cols, dropped)``: counts ``(n_rows * n_cols, n_weeks)`` float64,
    cells row by row from the south-west corner; ``rows``/``cols`` the grid position of each
    cell; ``dropped`` the number of events before the first full week.
    """
    col = np.floor((x - x.min()) / cell).astype(np.int64)
    row = np.floor((y - y.min()) / cell).astype(np.int64)
    n_cols, n_rows = int(col.max()) + 1, int(row.max()) + 1
    end = t.max().astype("datetime64[D]").astype("datetime64[s]") + np.timedelta64(86400, "s")
    n_weeks = int((end - t.min()) // WEEK)
    start = end - n_weeks * WEEK
    inside = t >= start
    week = ((t[inside] - start) // WEEK).astype(np.int64)
    cell_id = row[inside] * n_cols + col[inside]
    counts = np.bincount(cell_id * n_weeks + week, minlength=n_rows * n_cols * n_weeks)
    rows, cols = np.divmod(np.arange(n_rows * n_cols), n_cols)
    dropped = int((~inside).sum())
    return counts.reshape(n_rows * n_cols, n_weeks).astype(np.float64), rows, cols, dropped


def _row(
    measure: str, n: int, cells: int, slices: int, seconds: float, note: str
) -> dict[str, Any]:
    return {
        "measure": measure,
        "events": n,
        "cells": cells,
        "slices": slices,
        "urbansec_s": round(seconds, 3),
        "reference_s": None,
        "ratio": None,
        "note": note,
    }


def run(events: dict, label: str) -> list[dict]:
    x = np.asarray(events["x"], dtype=np.float64)
    y = np.asarray(events["y"], dtype=np.float64)
    t = np.asarray(events["t"], dtype="datetime64[s]")
    n = int(t.size)

    t0 = time.perf_counter()
    counts, grid_rows, grid_cols, dropped = build_cube(x, y, t)
    cube_s = time.perf_counter() - t0
    cells, slices = counts.shape

    t0 = time.perf_counter()
    weights: sp.csr_array = square_contiguity(grid_rows, grid_cols, kind="queen")
    weights_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    result = emerging_hotspots(counts, weights)
    ehsa_s = time.perf_counter() - t0

    tally = {k: v for k, v in sorted(result.tally().items(), key=lambda kv: -kv[1]) if v}
    analysed = int(result.analysed.sum())
    assert result.cube_trend is not None
    trend = f"cube trend z={result.cube_trend.z[0]:+.2f} p={result.cube_trend.p[0]:.3g}"
    goal = "goal < 30 s for 2015-2017"
    return [
        _row(
            f"{label}: weekly 250 m cube (binning)",
            n,
            cells,
            slices,
            cube_s,
            f"{dropped} events before the first full week dropped",
        ),
        _row(f"{label}: queen weights", n, cells, slices, weights_s, f"{weights.nnz} links"),
        _row(
            f"{label}: emerging hot spots (Gi* + FDR + Mann-Kendall)",
            n,
            cells,
            slices,
            ehsa_s,
            f"{goal}; {analysed} cells analysed; {trend}; "
            + ", ".join(f"{k} {v}" for k, v in tally.items()),
        ),
    ]


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _events import load_chicago_events

    years = [int(a) for a in sys.argv[1:]] or [2017]
    label = f"Chicago {years[0]}" + (f"-{years[-1]}" if len(years) > 1 else "")
    for r in run(load_chicago_events(years), label):
        print(r)
