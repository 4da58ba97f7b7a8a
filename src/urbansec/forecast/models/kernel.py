"""Kernel forecasts: a (time-decayed) kernel density, and Bowers, Johnson & Pease's prospective
hot-spotting.

``KDEForecast`` smooths the trailing window's events in space and hands the window's daily rate
out to the cells in proportion to the smoothed density integrated over each cell: expected
counts, comparable with ``HistoricalAverage`` (same total, different places).

``ProspectiveHotspot`` is the space-time weighting of Bowers, Johnson & Pease (2004),
"Prospective hot-spotting: the future of crime mapping?", Brit. J. Criminol. 44(5) 641-658:
recent, near events raise a cell's risk, each weighted by the inverse of one plus its distance
in cells and one plus its age in weeks. Its score is a weight, not an expected count.

The window rules (training events before ``start``, window ``[start - window, start)``, short
histories, empty windows, ``cells`` in any order) are those of ``baselines.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import h3
import numpy as np

from urbansec.analysis.kde import kernel_density
from urbansec.domain.grid import Grid, HexGrid, SquareGrid
from urbansec.errors import UsageError
from urbansec.forecast.base import RiskSurface
from urbansec.forecast.models.baselines import WindowModel, positive_number

__all__ = ["KDEForecast", "ProspectiveHotspot"]

# Sub-cells per bandwidth when integrating a density over cells (midpoint rule). At a sixth of
# the bandwidth, each cell's share of one event's kernel is within 0.006 of the exact integral
# for the quartic kernel (its edge is what the midpoint rule misses; worst case over event
# positions, 150-400 m bandwidths on 250 m cells) and 0.001 for the Gaussian, checked in the
# tests against scipy quadrature. A 250 m Chicago grid with a 200 m bandwidth is then ~1.3 M
# sub-cells, about 50 ms per prediction for a year of burglaries.
_SUBCELLS_PER_BANDWIDTH = 6.0
# The most sub-cells in one raster (memory ~8 bytes each, a few arrays); a huge study area with
# a tiny bandwidth gets a coarser raster rather than gigabytes.
_MAX_RASTER = 4_000_000
# Hexagons are located point by point through H3 (a few microseconds each), once per instance.
_MAX_HEX_RASTER = 1_000_000


@dataclass(frozen=True)
class _Raster:
    """A fine square raster over the study cells and the cell each of its sub-cells lies in.

    ``x0``, ``y0``: lower-left corner (metres); ``pitch``: side of a sub-cell (metres);
    ``pos``: (n_rows * n_cols,) int64, row-major from the south-west, the position in the
    caller's ``cells`` of the cell holding each sub-cell's centre, -1 outside the study.
    """

    x0: float
    y0: float
    pitch: float
    n_cols: int
    n_rows: int
    pos: np.ndarray


def _square_raster(grid: SquareGrid, keys: np.ndarray, bandwidth: float) -> _Raster:
    """Each square cell cut into k x k sub-cells, k chosen so a sub-cell is at most a sixth
    of the bandwidth (fewer when the raster would exceed _MAX_RASTER)."""
    cols, rows = grid.col_row(keys)
    c0, r0 = int(cols.min()), int(rows.min())
    nc, nr = int(cols.max()) - c0 + 1, int(rows.max()) - r0 + 1
    k = max(1, math.ceil(_SUBCELLS_PER_BANDWIDTH * grid.size / bandwidth))
    k = max(1, min(k, math.floor(math.sqrt(_MAX_RASTER / (nc * nr)))))
    lookup = np.full((nr, nc), -1, dtype=np.int64)
    lookup[rows - r0, cols - c0] = np.arange(keys.size)
    pos = np.repeat(np.repeat(lookup, k, axis=0), k, axis=1).ravel()
    return _Raster(x0=c0 * grid.size, y0=r0 * grid.size, pitch=grid.size / k, n_cols=nc * k,
                   n_rows=nr * k, pos=pos)


def _hex_raster(grid: Grid, keys: np.ndarray, bandwidth: float) -> _Raster:
    """A square raster over the hexagons, each sub-cell assigned to the hexagon holding its
    centre (H3 lookup): the pitch is a sixth of the bandwidth or of the hexagons' size."""
    cx, cy = grid.centroids(keys)
    size = math.sqrt(float(np.median(grid.cell_area_km2(keys))) * 1e6)
    pitch = min(bandwidth, size) / _SUBCELLS_PER_BANDWIDTH
    x_lo, x_hi = float(cx.min()) - size, float(cx.max()) + size
    y_lo, y_hi = float(cy.min()) - size, float(cy.max()) + size
    pitch = max(pitch, math.sqrt((x_hi - x_lo) * (y_hi - y_lo) / _MAX_HEX_RASTER))
    n_cols = max(1, math.ceil((x_hi - x_lo) / pitch))
    n_rows = max(1, math.ceil((y_hi - y_lo) / pitch))
    xs = x_lo + (np.arange(n_cols) + 0.5) * pitch
    ys = y_lo + (np.arange(n_rows) + 0.5) * pitch
    gx, gy = np.meshgrid(xs, ys)
    located = grid.locate(gx.ravel(), gy.ravel())
    order = np.argsort(keys, kind="stable")
    pos = grid.index_of(keys[order], located)
    pos = np.where(pos >= 0, order[np.maximum(pos, 0)], -1)
    return _Raster(x0=x_lo, y0=y_lo, pitch=pitch, n_cols=n_cols, n_rows=n_rows, pos=pos)


class KDEForecast(WindowModel):
    """Spatial kernel density of a trailing window, optionally decayed in time.

    Expected events in cell ``c`` over ``[start, end)``:

        risk_c = N / S * D * M_c / sum_c' M_c'

    with ``N`` the window's events inside the study cells, ``S`` the window's span in days,
    ``D`` the period's length in days and ``M_c`` the density integrated over cell ``c``
    (midpoint rule on sub-cells at most a sixth of the bandwidth wide) of the events of the window
    weighted ``exp(-age / decay_days)`` (age in days at ``start``; all weights 1 without decay).
    So the total is exactly the window's rate over the period (as ``HistoricalAverage``) and
    the kernel only decides where it goes; mass smoothed beyond the study cells is handed back
    to them by the normalisation. Square grids integrate on a sub-grid aligned with the cells;
    hexagons on a square raster whose sub-cells go to the hexagon holding their centre.

    Args:
        bandwidth: metres (> 0): radius of the quartic kernel, standard deviation of the
            Gaussian one (``urbansec.analysis.kde.kernel_density``).
        window_days: trailing window, days (> 0).
        decay_days: e-folding time of the event weights, days (> 0), or None for none.
        kernel: ``"quartic"`` or ``"gaussian"``.
    """

    name = "kde"
    min_events = 1

    def __init__(self, bandwidth: float = 200.0, window_days: float = 365.0,
                 decay_days: float | None = None, kernel: str = "quartic") -> None:
        self.bandwidth = bandwidth
        self.window_days = window_days
        self.decay_days = decay_days
        self.kernel = kernel

    def _validate(self) -> None:
        positive_number(self.name, "bandwidth", self.bandwidth)
        positive_number(self.name, "window_days", self.window_days)
        if self.decay_days is not None:
            positive_number(self.name, "decay_days", self.decay_days)
        if self.kernel not in ("quartic", "gaussian"):
            raise UsageError(f"{self.name}: unknown kernel {self.kernel!r}; use 'quartic' or "
                             "'gaussian'")

    def _raster(self, grid: Grid, keys: np.ndarray) -> _Raster:
        # Depends on the grid, the cells and the bandwidth only, so it survives refits.
        cached = getattr(self, "_raster_cache", None)
        bandwidth = float(self.bandwidth)
        if (cached is not None and cached[0] == grid and cached[1] == bandwidth
                and np.array_equal(cached[2], keys)):
            return cached[3]
        if isinstance(grid, SquareGrid):
            raster = _square_raster(grid, keys, bandwidth)
        else:
            raster = _hex_raster(grid, keys, bandwidth)
        self._raster_cache = (grid, bandwidth, keys.copy(), raster)
        return raster

    def predict(self, grid: Grid, start: Any, end: Any, cells: np.ndarray | None = None
                ) -> RiskSurface:
        """Expected events per cell in ``[start, end)`` (see the class docstring).

        Args:
            grid: square or H3 grid of ``cells`` (same CRS as the training events).
            start, end: the forecast period (UTC; ``start`` after every training event).
            cells: (m,) int64 cell keys, any order; default the training events' bounding box.

        Returns:
            ``risk`` (m,) expected events, ``expected=True``; ``details``: ``window_events``,
            ``window_days``, ``raster_pitch_m`` (side of the integration sub-cells).
        """
        start64, end64, days = self._period(grid, start, end)
        keys, sorted_keys, order = self._study(grid, cells)
        window, span = self._window(start64, float(self.window_days))
        counts = self._window_counts(grid, sorted_keys, order, window)
        total = float(counts.sum()) * days / span
        details: dict[str, Any] = {"window_events": int(counts.sum()), "window_days": span}
        if keys.size == 0 or total == 0.0:
            return RiskSurface(grid=grid, keys=keys, risk=np.zeros(keys.size), start=start64,
                               end=end64, model=self.name, expected=True, details=details)
        weights = None
        if self.decay_days is not None:
            ages = self._ages_days(start64, window)
            # relative to the youngest event: the scale cancels in the normalisation, and this
            # keeps the weights from underflowing with a short decay over a long window
            weights = np.exp(-(ages - ages.min()) / float(self.decay_days))
        raster = self._raster(grid, keys)
        density = kernel_density(
            self.x_[window], self.y_[window], x0=raster.x0, y0=raster.y0,
            cell_size=raster.pitch, n_cols=raster.n_cols, n_rows=raster.n_rows,
            bandwidth=float(self.bandwidth), kernel=self.kernel,  # type: ignore[arg-type]
            weights=weights)
        inside = raster.pos >= 0
        mass = np.bincount(raster.pos[inside], weights=density.ravel()[inside],
                           minlength=keys.size)
        details["raster_pitch_m"] = raster.pitch
        if not mass.sum() > 0:
            # every kernel missed every sub-cell centre (only possible on a raster coarsened
            # by _MAX_RASTER): fall back to the window's counts rather than to nothing
            mass = counts
        risk = mass * (total / float(mass.sum()))
        return RiskSurface(grid=grid, keys=keys, risk=risk, start=start64, end=end64,
                           model=self.name, expected=True, details=details)


class ProspectiveHotspot(WindowModel):
    """Prospective hot-spotting (Bowers, Johnson & Pease 2004), grid-based as published.

    Score of cell ``c`` for a period starting at ``start``:

        risk_c = sum_i  1 / (1 + d_ic)  *  1 / (1 + w_i)

    over the events ``i`` with age ``a_i = start - t_i`` < ``time_window_days`` and
    ``d_ic * cell`` <= ``bandwidth``, where

    - ``w_i = floor(a_i / time_decay_days)``: the whole temporal bands (weeks, as published)
      since the event, so an event 6 days old weighs 1 and one 8 days old 1/2;
    - ``d_ic``: the distance between the event's cell and cell ``c`` in cells: on square grids
      the Euclidean distance between the two cell centres divided by the cell size (0 for the
      event's own cell, 1 for an edge neighbour, sqrt 2 for a corner one, ...); on H3 grids
      the number of hexagon steps between them (``h3.grid_distance``), ``cell`` being the
      distance between neighbouring centres, ``sqrt(2 A / sqrt 3)`` for median cell area A.

    The paper used 50 m cells, a 400 m bandwidth and two months of events weighted by weeks;
    the defaults keep its bandwidth and window in metres and days, whatever the cell size.
    The score is a sum of weights, not an expected count (``expected=False``); the period's
    end does not change it. Deterministic.

    Args:
        bandwidth: metres (> 0): the farthest cell centre an event reaches.
        time_window_days: days (> 0): events at least this old are ignored.
        time_decay_days: days (> 0): width of one temporal band.
    """

    name = "prospective"
    min_events = 1

    def __init__(self, bandwidth: float = 400.0, time_window_days: float = 56.0,
                 time_decay_days: float = 7.0) -> None:
        self.bandwidth = bandwidth
        self.time_window_days = time_window_days
        self.time_decay_days = time_decay_days

    def _validate(self) -> None:
        positive_number(self.name, "bandwidth", self.bandwidth)
        positive_number(self.name, "time_window_days", self.time_window_days)
        positive_number(self.name, "time_decay_days", self.time_decay_days)

    def predict(self, grid: Grid, start: Any, end: Any, cells: np.ndarray | None = None
                ) -> RiskSurface:
        """Bowers et al.'s score per cell for the period starting at ``start``.

        Args:
            grid: square or H3 grid of ``cells`` (same CRS as the training events).
            start, end: the forecast period (UTC; ``start`` after every training event).
            cells: (m,) int64 cell keys, any order; default the training events' bounding box.

        Returns:
            ``risk`` (m,) >= 0 (unitless weights), ``expected=False``; ``details``:
            ``window_events`` (events within the time window).
        """
        start64, end64, _ = self._period(grid, start, end)
        keys, sorted_keys, order = self._study(grid, cells)
        # the window is only for ages; a short history needs no rate correction here
        window, _ = self._window(start64, float(self.time_window_days))
        ages = self._ages_days(start64, window)
        # weeks-ago bands; the tiny slack keeps an event exactly k bands old in band k despite
        # float rounding of seconds / 86400
        bands = np.floor(ages / float(self.time_decay_days) + 1e-9)
        time_weight = 1.0 / (1.0 + bands)
        event_keys = self._event_keys(grid)[window]
        located = event_keys >= 0
        # events sharing a cell share every spatial weight: sum their time weights per cell
        cells_hit, inverse = np.unique(event_keys[located], return_inverse=True)
        cell_weight = np.bincount(inverse, weights=time_weight[located],
                                  minlength=cells_hit.size)
        if isinstance(grid, SquareGrid):
            target, source, distance = _square_reach(grid, cells_hit, float(self.bandwidth))
        else:
            target, source, distance = self._hex_reach(grid, cells_hit, sorted_keys)
        pos = self._positions(grid, sorted_keys, order, target)
        inside = pos >= 0
        contribution = cell_weight[source[inside]] / (1.0 + distance[inside])
        risk = np.bincount(pos[inside], weights=contribution, minlength=keys.size)
        return RiskSurface(grid=grid, keys=keys, risk=risk, start=start64, end=end64,
                           model=self.name, expected=False,
                           details={"window_events": int(window.stop - window.start)})

    def _hex_reach(self, grid: Grid, cells_hit: np.ndarray, sorted_keys: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cells within reach of each hit hexagon, flat: target keys, index of the hit cell,
        distance in hexagon steps. Disks are cached per cell (they never change)."""
        if not isinstance(grid, HexGrid):
            raise UsageError(f"{self.name} supports square and H3 grids, not {grid.label}")
        sample = sorted_keys if sorted_keys.size else cells_hit[:1]
        # H3 areas vary by a few percent across a city: a thousand cells give the median
        area = grid.cell_area_km2(sample[:: max(1, sample.size // 1000)])
        spacing = math.sqrt(2.0 * float(np.median(area)) * 1e6 / math.sqrt(3.0))
        steps = math.floor(float(self.bandwidth) / spacing + 1e-9)
        cache = getattr(self, "_disk_cache", None)
        if cache is None or cache[0] != (grid, steps):
            cache = ((grid, steps), {})
            self._disk_cache = cache
        disks: dict[int, tuple[np.ndarray, np.ndarray]] = cache[1]
        target: list[np.ndarray] = []
        source: list[np.ndarray] = []
        distance: list[np.ndarray] = []
        for i, key in enumerate(cells_hit.tolist()):
            if key not in disks:
                disks[key] = _hex_disk(key, steps)
            near, dist = disks[key]
            target.append(near)
            distance.append(dist)
            source.append(np.full(near.size, i, dtype=np.int64))
        if not target:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), np.empty(0)
        return np.concatenate(target), np.concatenate(source), np.concatenate(distance)


def _square_reach(grid: SquareGrid, cells_hit: np.ndarray, bandwidth: float
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cells within ``bandwidth`` of each hit square cell (centre to centre), flat: target
    keys, index of the hit cell, distance in cells."""
    reach = bandwidth / grid.size
    m = math.floor(reach + 1e-9)
    off = np.arange(-m, m + 1)
    dc, dr = np.meshgrid(off, off)
    dc, dr = dc.ravel(), dr.ravel()
    stencil = np.hypot(dc, dr)
    # slack: a bandwidth of exactly two cells reaches the cell two away
    keep = stencil <= reach + 1e-9
    dc, dr, stencil = dc[keep], dr[keep], stencil[keep]
    cols, rows = grid.col_row(cells_hit)
    target = SquareGrid.key(cols[:, None] + dc[None, :], rows[:, None] + dr[None, :]).ravel()
    source = np.repeat(np.arange(cells_hit.size), stencil.size)
    return target, source, np.tile(stencil, cells_hit.size)


def _hex_disk(key: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Hexagons within ``steps`` of ``key`` and their distance in steps."""
    seen: set[int] = set()
    near: list[int] = []
    dist: list[int] = []
    for k in range(steps + 1):
        ring = [c for c in h3.api.basic_int.grid_disk(key, k)
                if c not in seen]
        seen.update(ring)
        near.extend(ring)
        dist.extend([k] * len(ring))
    return (np.array(near, dtype=np.uint64).astype(np.int64),
            np.array(dist, dtype=np.float64))
