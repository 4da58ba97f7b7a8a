"""One grid object for every hotspot, forecast and evaluation: square cells or H3 hexagons.

A grid maps projected points to cells, names its cells with ids that are stable across runs
(so this month's hotspots and last month's line up cell by cell), lists the cells of a study
area (empty ones included: a cell with no incident is an observation, not a gap), and turns
cells back into WGS84 polygons for GeoJSON and maps.

Cells are handled as int64 *keys*: for square grids ``(row + 2**30) * 2**31 + (col + 2**30)``
with ``col = floor(x / size)`` and ``row = floor(y / size)`` in the projected CRS (so cells
are aligned to multiples of the size, whatever the data's extent); for H3 the H3 index itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import h3
import numpy as np
import shapely
from shapely.geometry import Polygon, mapping
from shapely.geometry.base import BaseGeometry

from urbansec.domain.events import WGS84, transformer
from urbansec.errors import UsageError

MAX_CELLS = 10_000_000
_OFFSET = np.int64(2**30)
_SPAN = np.int64(2**31)


class Grid(ABC):
    """Cells of one kind over a projected CRS (metres)."""

    crs: str

    @property
    @abstractmethod
    def label(self) -> str:
        """How the grid is described to a person, e.g. ``250 m squares``."""

    @abstractmethod
    def locate(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The key of the cell holding each point; -1 for a point without coordinates."""

    @abstractmethod
    def study_cells(self, x: np.ndarray, y: np.ndarray,
                    area: BaseGeometry | None = None) -> np.ndarray:
        """Sorted keys of the study area: cells meeting ``area`` (projected), or else every
        cell of the located points' bounding box; cells holding points are always in."""

    @abstractmethod
    def cell_ids(self, keys: np.ndarray) -> list[str]:
        """Stable, human-readable cell ids."""

    @abstractmethod
    def centroids(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cell centres in the projected CRS (metres)."""

    @abstractmethod
    def cell_area_km2(self, keys: np.ndarray) -> np.ndarray:
        """Area of each cell in km²."""

    @abstractmethod
    def polygons(self, keys: np.ndarray) -> list[Polygon]:
        """Cell outlines in WGS84 (lon, lat)."""

    def index_of(self, keys: np.ndarray, points: np.ndarray) -> np.ndarray:
        """Position of each point key within the sorted ``keys``; -1 where not in the study."""
        if keys.size == 0:
            return np.full(points.shape, -1, dtype=np.int64)
        pos = np.searchsorted(keys, points)
        pos = np.clip(pos, 0, keys.size - 1)
        return np.where(keys[pos] == points, pos, -1).astype(np.int64)

    def counts(self, keys: np.ndarray, x: np.ndarray, y: np.ndarray,
               weights: np.ndarray | None = None) -> np.ndarray:
        """Events per study cell (float64, aligned with ``keys``)."""
        pos = self.index_of(keys, self.locate(x, y))
        inside = pos >= 0
        return np.bincount(pos[inside], weights=None if weights is None else weights[inside],
                           minlength=keys.size).astype(float)


@dataclass(frozen=True)
class SquareGrid(Grid):
    """Square cells of ``size`` metres aligned to multiples of ``size`` in ``crs``."""

    size: float
    crs: str

    def __post_init__(self) -> None:
        if not self.size > 0:
            raise UsageError(f"cell size must be a positive number of metres, not {self.size}")

    @property
    def label(self) -> str:
        return f"{self.size:g} m squares"

    def _col_row(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (np.floor(np.asarray(x) / self.size).astype(np.int64),
                np.floor(np.asarray(y) / self.size).astype(np.int64))

    @staticmethod
    def key(col: np.ndarray, row: np.ndarray) -> np.ndarray:
        return (np.asarray(row, dtype=np.int64) + _OFFSET) * _SPAN + (
            np.asarray(col, dtype=np.int64) + _OFFSET)

    @staticmethod
    def col_row(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keys = np.asarray(keys, dtype=np.int64)
        return keys % _SPAN - _OFFSET, keys // _SPAN - _OFFSET

    def locate(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        ok = np.isfinite(x) & np.isfinite(y)
        keys = np.full(x.shape, -1, dtype=np.int64)
        col, row = self._col_row(x[ok], y[ok])
        keys[ok] = self.key(col, row)
        return keys

    def study_cells(self, x: np.ndarray, y: np.ndarray,
                    area: BaseGeometry | None = None) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        ok = np.isfinite(x) & np.isfinite(y)
        if area is not None:
            bounds = area.bounds
        elif ok.any():
            bounds = (x[ok].min(), y[ok].min(), x[ok].max(), y[ok].max())
        else:
            return np.empty(0, dtype=np.int64)
        (c0, c1), (r0, r1) = self._col_row(np.array(bounds[0::2]), np.array(bounds[1::2]))
        n = int(c1 - c0 + 1) * int(r1 - r0 + 1)
        if n > MAX_CELLS:
            raise UsageError(
                f"{self.size:g} m cells would give {n:,} cells over this study area (more than "
                f"{MAX_CELLS:,}); choose a larger --cell or a smaller area")
        cols, rows = np.meshgrid(np.arange(c0, c1 + 1), np.arange(r0, r1 + 1))
        cols, rows = cols.ravel(), rows.ravel()
        if area is not None:
            boxes = shapely.box(cols * self.size, rows * self.size, (cols + 1) * self.size,
                                (rows + 1) * self.size)
            shapely.prepare(area)
            # a cell that only touches the area's edge is outside it
            keep = shapely.intersects(area, boxes) & ~shapely.touches(area, boxes)
            cols, rows = cols[keep], rows[keep]
        keys = self.key(cols, rows)
        if ok.any():
            keys = np.union1d(keys, self.locate(x[ok], y[ok]))
        return np.unique(keys)

    def cell_ids(self, keys: np.ndarray) -> list[str]:
        cols, rows = self.col_row(keys)
        return [f"{self.size:g}m_{c}_{r}" for c, r in zip(cols.tolist(), rows.tolist(),
                                                          strict=True)]

    def centroids(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cols, rows = self.col_row(keys)
        return (cols + 0.5) * self.size, (rows + 0.5) * self.size

    def cell_area_km2(self, keys: np.ndarray) -> np.ndarray:
        return np.full(np.asarray(keys).shape, self.size * self.size / 1e6)

    def polygons(self, keys: np.ndarray) -> list[Polygon]:
        cols, rows = self.col_row(keys)
        x0, y0 = cols * self.size, rows * self.size
        x1, y1 = x0 + self.size, y0 + self.size
        xs = np.stack([x0, x1, x1, x0, x0], axis=1).astype(float)
        ys = np.stack([y0, y0, y1, y1, y0], axis=1).astype(float)
        lon, lat = transformer(self.crs, WGS84).transform(xs.ravel(), ys.ravel())
        ring = np.stack([np.asarray(lon), np.asarray(lat)], axis=1).reshape(-1, 5, 2)
        return list(shapely.polygons(ring))


@dataclass(frozen=True)
class HexGrid(Grid):
    """H3 hexagons at ``resolution`` (7: ~5 km², 8: ~0.74 km², 9: ~0.1 km², 10: ~0.015 km²)."""

    resolution: int
    crs: str

    def __post_init__(self) -> None:
        if not 0 <= self.resolution <= 15:
            raise UsageError(f"H3 resolution must be 0..15, not {self.resolution}")

    @property
    def label(self) -> str:
        return f"H3 resolution {self.resolution} hexagons"

    def locate(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        ok = np.isfinite(x) & np.isfinite(y)
        keys = np.full(x.shape, -1, dtype=np.int64)
        if ok.any():
            lon, lat = transformer(self.crs, WGS84).transform(x[ok], y[ok])
            to_cell = h3.api.basic_int.latlng_to_cell
            res = self.resolution
            keys[ok] = np.fromiter((to_cell(la, lo, res) for lo, la in
                                    zip(np.asarray(lon).tolist(), np.asarray(lat).tolist(),
                                        strict=True)), dtype=np.uint64, count=int(ok.sum())
                                   ).astype(np.int64)
        return keys

    def study_cells(self, x: np.ndarray, y: np.ndarray,
                    area: BaseGeometry | None = None) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        ok = np.isfinite(x) & np.isfinite(y)
        if area is None:
            if not ok.any():
                return np.empty(0, dtype=np.int64)
            area = shapely.box(x[ok].min(), y[ok].min(), x[ok].max(), y[ok].max())
        lonlat = reproject(area, self.crs, WGS84)
        approx = lonlat.area / max(h3.average_hexagon_area(self.resolution, "km^2"), 1e-12)
        if approx * 111.0**2 * 0.5 > MAX_CELLS:  # degrees² -> km² at mid latitudes, generous
            raise UsageError(f"H3 resolution {self.resolution} would give more than "
                             f"{MAX_CELLS:,} cells; choose a coarser --hex")
        shape = h3.geo_to_h3shape(mapping(lonlat))
        cells = h3.h3shape_to_cells_experimental(shape, self.resolution, "overlap")
        keys = np.array([h3.str_to_int(c) for c in cells], dtype=np.uint64).astype(np.int64)
        if ok.any():
            keys = np.union1d(keys, self.locate(x[ok], y[ok]))
        return np.unique(keys)

    def cell_ids(self, keys: np.ndarray) -> list[str]:
        return [h3.int_to_str(int(k)) for k in np.asarray(keys).astype(np.uint64).tolist()]

    def _lonlat_centres(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        centres = [h3.api.basic_int.cell_to_latlng(int(k))
                   for k in np.asarray(keys).astype(np.uint64).tolist()]
        lat = np.array([c[0] for c in centres], dtype=float)
        lon = np.array([c[1] for c in centres], dtype=float)
        return lon, lat

    def centroids(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lon, lat = self._lonlat_centres(keys)
        x, y = transformer(WGS84, self.crs).transform(lon, lat)
        return np.asarray(x), np.asarray(y)

    def cell_area_km2(self, keys: np.ndarray) -> np.ndarray:
        return np.array([h3.api.basic_int.cell_area(int(k), "km^2")
                         for k in np.asarray(keys).astype(np.uint64).tolist()], dtype=float)

    def polygons(self, keys: np.ndarray) -> list[Polygon]:
        out = []
        for k in np.asarray(keys).astype(np.uint64).tolist():
            boundary = h3.api.basic_int.cell_to_boundary(int(k))
            out.append(Polygon([(lon, lat) for lat, lon in boundary]))
        return out

    def neighbour_pairs(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Index pairs (i, j) of study cells sharing an edge (hexagons have no corners-only
        neighbours, so queen and rook contiguity are the same here)."""
        keys = np.asarray(keys, dtype=np.int64)
        ring = h3.api.basic_int.grid_ring
        src: list[int] = []
        dst: list[int] = []
        for i, k in enumerate(keys.astype(np.uint64).tolist()):
            for n in ring(int(k), 1):
                src.append(i)
                dst.append(n)
        if not src:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        j = self.index_of(keys, np.array(dst, dtype=np.uint64).astype(np.int64))
        i = np.array(src, dtype=np.int64)
        keep = j >= 0
        return i[keep], j[keep]


def make_grid(crs: str, *, cell: float | None = None, hex_resolution: int | None = None
              ) -> Grid:
    """A square grid of ``cell`` metres, or H3 hexagons when ``hex_resolution`` is given."""
    if hex_resolution is not None:
        return HexGrid(resolution=int(hex_resolution), crs=crs)
    return SquareGrid(size=float(cell if cell is not None else 250.0), crs=crs)


def project_geometry(geometry: BaseGeometry, crs: str) -> BaseGeometry:
    """A WGS84 geometry in the projected CRS of the grid."""
    return reproject(geometry, WGS84, crs)


def reproject(geometry: BaseGeometry, source: str, target: str) -> BaseGeometry:
    convert = transformer(source, target)
    return shapely.transform(geometry, lambda x, y: convert.transform(x, y), interleaved=False)


def union_of(geometries: Sequence[BaseGeometry]) -> BaseGeometry | None:
    return shapely.union_all(list(geometries)) if geometries else None
