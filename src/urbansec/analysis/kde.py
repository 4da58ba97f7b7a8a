"""Kernel density estimation of point events on a square grid.

The density is evaluated *exactly* at the centre of every cell (no binning of the events), in
events per square kilometre, so that summing ``density * cell_area_km2`` over a grid that covers
the events gives back (almost exactly) the number of events.

Grid convention (shared with the rest of ``urbansec.analysis``): the grid's lower-left corner is
``(x0, y0)``; cell ``(r, c)`` has its centre at ``(x0 + (c + 0.5) * cell_size,
y0 + (r + 0.5) * cell_size)``. Row 0 is therefore the *southern* edge (plot with
``origin="lower"``). All coordinates, ``cell_size`` and ``bandwidth`` are metres in a projected
CRS.

Kernels (``d`` = distance in metres from an event to a cell centre, ``h`` = bandwidth):

- ``"quartic"`` (biweight, as in ArcGIS Kernel Density and CrimeStat):
  ``K(d) = 3 / (pi h^2) * (1 - d^2/h^2)^2`` for ``d < h``, 0 beyond. ``h`` is the search radius.
- ``"gaussian"``: isotropic normal with standard deviation ``h`` in both x and y,
  ``K(d) = 1 / (2 pi h^2) * exp(-d^2 / (2 h^2))``. It is truncated to the square
  ``|dx| <= 6h and |dy| <= 6h`` (:data:`GAUSSIAN_TRUNCATE`): each dropped term is below
  ``exp(-18) = 1.5e-8`` times the kernel's peak and the mass dropped per event is below
  ``4e-9`` of it, so the truncation is invisible next to any real-data uncertainty.

How it is fast: the Gaussian is separable, ``exp(-(dx^2 + dy^2) / 2h^2) =
exp(-dx^2 / 2h^2) * exp(-dy^2 / 2h^2)``, so the events of one block of the grid contribute
``Gy.T @ Gx`` with small dense factor matrices (a few BLAS products per block, exact up to
rounding). The quartic kernel is not separable but has a small support: each event adds a fixed
stencil of cells around it, accumulated with ``numpy.bincount``. The cost is about
O(events x cells within reach of one event), hardly the size of the grid: 2017 Chicago
(265k events, 100 m cells, 300 m bandwidth) takes about 0.2 s with either kernel.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from urbansec.errors import UsageError

__all__ = ["GAUSSIAN_TRUNCATE", "MAX_CELLS", "default_bandwidth", "kernel_density"]

Kernel = Literal["quartic", "gaussian"]

#: Gaussian contributions further than this many bandwidths in x or in y are dropped.
GAUSSIAN_TRUNCATE = 6.0
#: Largest grid (n_rows * n_cols) accepted; beyond it the output alone is hundreds of MB.
MAX_CELLS = 10_000_000

# Upper bound on the number of float64 temporaries built at once (about 32 MB each), so memory
# stays flat whatever the number of events.
_CHUNK_ELEMENTS = 4_000_000
# Do not cut the grid into more than about this many blocks: each block costs a Python-level
# iteration, and small blocks would make that overhead dominate on very large grids.
_MAX_BLOCKS = 2_000
# m * n * k of one matrix product in the Gaussian path, kept below OpenBLAS's threshold for
# going multithreaded (262144); see _gaussian_sums.
_GEMM_SIZE = 200_000


def kernel_density(
    x: ArrayLike,
    y: ArrayLike,
    *,
    x0: float,
    y0: float,
    cell_size: float,
    n_cols: int,
    n_rows: int,
    bandwidth: float,
    kernel: Kernel = "quartic",
    weights: ArrayLike | None = None,
) -> NDArray[np.float64]:
    """Kernel density of events at the centres of a square grid, in events per km².

    Args:
        x, y: event coordinates, shape (n,), metres. Events outside the grid still contribute
            to the cells within their kernel's reach.
        x0, y0: lower-left corner of the grid, metres.
        cell_size: side of a cell, metres (> 0).
        n_cols, n_rows: grid size (>= 1 each, at most :data:`MAX_CELLS` cells in all).
        bandwidth: metres (> 0): the search radius of the quartic kernel, the standard
            deviation of the Gaussian one. :func:`default_bandwidth` gives a data-driven value.
        kernel: ``"quartic"`` (default) or ``"gaussian"``.
        weights: optional shape (n,), finite and >= 0: how many events each point stands for
            (e.g. counts or a severity score). The density then sums to ``weights.sum()``.

    Returns:
        Array of shape (n_rows, n_cols), float64, events (or weight units) per km²; row 0 is
        the row at ``y0`` (south). With no events, all zeros.

    Raises:
        UsageError: non-finite coordinates or weights, negative weights, arrays of different
            lengths, non-positive ``cell_size``/``bandwidth``/grid size, a grid larger than
            :data:`MAX_CELLS`, or an unknown kernel.
    """
    xs, ys = _coordinates(x, y)
    w = _weights(weights, xs.size)
    cell, h = _positive("cell_size", cell_size), _positive("bandwidth", bandwidth)
    if not (math.isfinite(x0) and math.isfinite(y0)):
        raise UsageError(f"the grid origin must be finite, got x0={x0!r}, y0={y0!r}")
    n_rows, n_cols = _grid_shape(n_rows, n_cols)
    if kernel not in ("quartic", "gaussian"):
        raise UsageError(f"unknown kernel {kernel!r}: use 'quartic' or 'gaussian'")

    if xs.size == 0:
        return np.zeros((n_rows, n_cols))
    # Work in cell units with cell centres at integers: u is the column coordinate, v the row
    # coordinate. This keeps every later number small, so rounding does not depend on where the
    # city sits in its UTM zone.
    u = (xs - x0) / cell - 0.5
    v = (ys - y0) / cell - 0.5
    hc = h / cell
    if kernel == "gaussian":
        sums = _gaussian_sums(u, v, w, hc, n_rows, n_cols)
        norm = 1.0 / (2.0 * math.pi * h * h)
    else:
        sums = _quartic_sums(u, v, w, hc, n_rows, n_cols)
        norm = 3.0 / (math.pi * h * h)
    # Kernels are per m²; a km² holds 1e6 of them.
    return sums * (norm * 1e6)


def default_bandwidth(x: ArrayLike, y: ArrayLike) -> float:
    """Data-driven bandwidth in metres: the ArcGIS Pro Kernel Density default search radius.

    ``h = 0.9 * min(SD, sqrt(1 / ln 2) * Dm) * n ** -0.2`` where ``SD`` is the standard distance
    ``sqrt(mean((x - mean x)^2) + mean((y - mean y)^2))``, ``Dm`` the median distance of the
    events to their mean centre and ``n`` the number of events: Silverman's rule of thumb made
    robust to outliers by the median term. When more than half of the events sit exactly on the
    mean centre (``Dm = 0``) the rule would give 0, so ``SD`` alone is used then.

    Args:
        x, y: event coordinates, shape (n,), metres.

    Returns:
        Bandwidth in metres (> 0); use it as the quartic search radius. For the Gaussian kernel,
        whose bandwidth is a standard deviation, about half of it gives a similar smoothness.

    Raises:
        UsageError: fewer than two distinct locations (no spread to derive a bandwidth from), or
            bad coordinates.
    """
    xs, ys = _coordinates(x, y)
    n = xs.size
    if n < 2:
        raise UsageError(f"a default bandwidth needs at least 2 events, got {n}: "
                         "pass an explicit bandwidth in metres")
    dx = xs - xs.mean()
    dy = ys - ys.mean()
    sd = math.sqrt(float(np.mean(dx * dx) + np.mean(dy * dy)))
    dm = float(np.median(np.hypot(dx, dy)))
    spread = min(sd, math.sqrt(1.0 / math.log(2.0)) * dm) if dm > 0 else sd
    if not spread > 0:
        raise UsageError("all events share one location, so no bandwidth can be derived from "
                         "their spread: pass an explicit bandwidth in metres")
    return 0.9 * spread * n ** -0.2


# --- validation --------------------------------------------------------------------------------


def _coordinates(x: ArrayLike, y: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    if xs.ndim != 1 or ys.ndim != 1 or xs.shape != ys.shape:
        raise UsageError(f"x and y must be 1-D arrays of equal length, got shapes {xs.shape} "
                         f"and {ys.shape}")
    if not (np.isfinite(xs).all() and np.isfinite(ys).all()):
        raise UsageError("event coordinates contain NaN or infinity: drop unlocated events "
                         "before estimating a density")
    return xs, ys


def _weights(weights: ArrayLike | None, n: int) -> NDArray[np.float64] | None:
    if weights is None:
        return None
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise UsageError(f"weights must have one value per event ({n}), got shape {w.shape}")
    if not np.isfinite(w).all() or (w < 0).any():
        raise UsageError("weights must be finite and non-negative")
    return w


def _positive(name: str, value: float) -> float:
    val = float(value)
    if not (math.isfinite(val) and val > 0):
        raise UsageError(f"{name} must be a positive number of metres, got {value!r}")
    return val


def _grid_shape(n_rows: int, n_cols: int) -> tuple[int, int]:
    for name, value in (("n_rows", n_rows), ("n_cols", n_cols)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise UsageError(f"{name} must be a positive integer, got {value!r}")
    rows, cols = int(n_rows), int(n_cols)
    if rows * cols > MAX_CELLS:
        raise UsageError(f"a {rows} x {cols} grid has {rows * cols:,} cells, more than the "
                         f"{MAX_CELLS:,} allowed: use larger cells or a smaller area")
    return rows, cols


# --- Gaussian: separable, blockwise BLAS ---------------------------------------------------------


def _gaussian_sums(u: NDArray[np.float64], v: NDArray[np.float64],
                   w: NDArray[np.float64] | None, s: float,
                   n_rows: int, n_cols: int) -> NDArray[np.float64]:
    """Sum over events of exp(-((c-u)^2 + (r-v)^2) / 2s^2) at every cell (r, c), truncated.

    ``u``, ``v``, ``s`` in cell units. Events are grouped by the block of B x B cells their
    nearest cell falls in; every event of a block reaches at most ``half`` cells beyond it, so
    the block's events together touch one window of (B + 2 half)^2 cells, and their summed
    contribution to it is the matrix product ``Gy.T @ Gx`` of the per-axis kernel factors.
    """
    reach = GAUSSIAN_TRUNCATE * s
    half = math.ceil(reach + 0.5)
    uc = np.rint(u).astype(np.int64)
    vc = np.rint(v).astype(np.int64)
    # Events whose truncated kernel misses the grid entirely contribute nothing.
    keep = (uc >= -half) & (uc <= n_cols - 1 + half) & (vc >= -half) & (vc <= n_rows - 1 + half)
    out = np.zeros((n_rows, n_cols))
    if not keep.any():
        return out
    u, v, uc, vc = u[keep], v[keep], uc[keep], vc[keep]
    if w is not None:
        w = w[keep]

    # Small blocks waste least work (each event costs (block + 2 half)^2 products, against the
    # (2 half)^2 it needs); the floor keeps the number of Python-level iterations bounded.
    block = max(8, math.ceil(math.sqrt(n_rows * n_cols / _MAX_BLOCKS)))
    br = np.floor_divide(vc, block)
    bc = np.floor_divide(uc, block)
    br_min, bc_min = int(br.min()), int(bc.min())
    n_bc = int(bc.max()) - bc_min + 1
    key = (br - br_min) * n_bc + (bc - bc_min)
    order = np.argsort(key, kind="stable")
    key_sorted = key[order]
    cuts = np.flatnonzero(np.diff(key_sorted)) + 1
    starts = np.concatenate(([0], cuts))
    ends = np.concatenate((cuts, [key_sorted.size]))

    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        k = int(key_sorted[start])
        row_block, col_block = k // n_bc + br_min, k % n_bc + bc_min
        # The window every event of this block can reach, clipped to the grid.
        r_lo = max(row_block * block - half, 0)
        r_hi = min((row_block + 1) * block + half, n_rows)
        c_lo = max(col_block * block - half, 0)
        c_hi = min((col_block + 1) * block + half, n_cols)
        rows = np.arange(r_lo, r_hi, dtype=np.float64)
        cols = np.arange(c_lo, c_hi, dtype=np.float64)
        step = max(1, _CHUNK_ELEMENTS // max(rows.size, cols.size))
        # Products of at most this many events each: small enough that BLAS runs them on one
        # thread. Multithreaded BLAS hands such small products between threads at a cost far
        # above the arithmetic, and on a loaded machine it was 20x slower (measured).
        gemm = max(16, _GEMM_SIZE // (rows.size * cols.size))
        window = out[r_lo:r_hi, c_lo:c_hi]
        for lo in range(start, end, step):
            idx = order[lo:min(lo + step, end)]
            gx = _axis_factor(cols, u[idx], s, reach)
            gy = _axis_factor(rows, v[idx], s, reach)
            if w is not None:
                gx *= w[idx, None]
            for k0 in range(0, idx.size, gemm):
                window += gy[k0:k0 + gemm].T @ gx[k0:k0 + gemm]
    return out


def _axis_factor(centres: NDArray[np.float64], pos: NDArray[np.float64], s: float,
                 reach: float) -> NDArray[np.float64]:
    """exp(-(centre - pos)^2 / 2s^2), shape (events, centres), zero beyond ``reach``."""
    d = centres[None, :] - pos[:, None]
    g = np.exp(-0.5 * (d / s) ** 2)
    g[np.abs(d) > reach] = 0.0
    return g


# --- quartic: fixed stencil + bincount -------------------------------------------------------


def _quartic_sums(u: NDArray[np.float64], v: NDArray[np.float64],
                  w: NDArray[np.float64] | None, hc: float,
                  n_rows: int, n_cols: int) -> NDArray[np.float64]:
    """Sum over events of (1 - d^2/h^2)^2 for d < h at every cell; ``u``, ``v``, ``hc`` in cells.

    Every event is snapped to its nearest cell centre only to choose *which* cells to visit:
    the offsets (dr, dc) that some point of that cell could reach within ``hc``. The kernel
    itself uses the exact distance from the event.
    """
    m = math.ceil(hc + 0.5)
    off = np.arange(-m, m + 1)
    dr, dc = np.meshgrid(off, off, indexing="ij")
    # Nearest possible distance from a point in the centre cell (within +-0.5 per axis).
    near_r = np.maximum(np.abs(dr) - 0.5, 0.0)
    near_c = np.maximum(np.abs(dc) - 0.5, 0.0)
    inside = near_r**2 + near_c**2 < hc * hc
    dr, dc = dr[inside], dc[inside]

    uc = np.rint(u).astype(np.int64)
    vc = np.rint(v).astype(np.int64)
    keep = (uc >= -m) & (uc <= n_cols - 1 + m) & (vc >= -m) & (vc <= n_rows - 1 + m)
    out = np.zeros(n_rows * n_cols)
    if not keep.any():
        return out.reshape(n_rows, n_cols)
    u, v, uc, vc = u[keep], v[keep], uc[keep], vc[keep]
    if w is not None:
        w = w[keep]

    inv_h2 = 1.0 / (hc * hc)
    step = max(1, _CHUNK_ELEMENTS // dr.size)
    for lo in range(0, u.size, step):
        sl = slice(lo, lo + step)
        rr = vc[sl, None] + dr[None, :]
        cc = uc[sl, None] + dc[None, :]
        q = ((cc - u[sl, None]) ** 2 + (rr - v[sl, None]) ** 2) * inv_h2
        ok = (q < 1.0) & (rr >= 0) & (rr < n_rows) & (cc >= 0) & (cc < n_cols)
        val = (1.0 - q) ** 2
        if w is not None:
            val *= w[sl, None]
        out += np.bincount((rr * n_cols + cc)[ok], weights=val[ok], minlength=out.size)
    return out.reshape(n_rows, n_cols)
