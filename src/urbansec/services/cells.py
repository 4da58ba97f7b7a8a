"""Cell-level results (hotspots, emerging hotspots) and how they are written out.

A ``CellResult`` is the study area's cells in one grid with one column per property; the
GeoJSON, CSV and PNG writers are shared so that every analysis writes cells the same way.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry

from urbansec.analysis import weights as spatial_weights
from urbansec.domain.grid import Grid, HexGrid, SquareGrid
from urbansec.errors import UsageError

WEIGHTS_HELP = "queen, rook or distance:METRES"


@dataclass
class CellResult:
    """Cells of a study area with their computed properties (arrays aligned with ``keys``)."""

    grid: Grid
    keys: np.ndarray
    properties: dict[str, np.ndarray]
    summary: dict[str, Any]
    title: str
    map_kind: str  # sequential | gi | lisa | emerging
    map_field: str
    boundaries: Sequence[BaseGeometry] = field(default_factory=tuple)

    def records(self) -> list[dict[str, Any]]:
        ids = self.grid.cell_ids(self.keys)
        columns = {name: _plain(values) for name, values in self.properties.items()}
        return [{"cell_id": cell_id, **{name: col[i] for name, col in columns.items()}}
                for i, cell_id in enumerate(ids)]


def _plain(values: np.ndarray) -> list[Any]:
    array = np.asarray(values)
    if array.dtype.kind == "f":
        return [None if not np.isfinite(v) else round(float(v), 10) for v in array.tolist()]
    return array.tolist()


def build_weights(grid: Grid, keys: np.ndarray, spec: str) -> tuple[sparse.csr_array, str]:
    """Binary spatial weights among the study cells from ``queen|rook|distance:METRES``."""
    spec = (spec or "queen").strip().lower()
    if spec in ("queen", "rook"):
        if isinstance(grid, SquareGrid):
            cols, rows = SquareGrid.col_row(keys)
            return spatial_weights.square_contiguity(rows, cols, kind=spec), spec
        if isinstance(grid, HexGrid):
            i, j = grid.neighbour_pairs(keys)
            return spatial_weights.from_pairs(keys.size, i, j), "contiguity (H3 edge)"
    if spec.startswith("distance:"):
        try:
            threshold = float(spec.split(":", 1)[1])
        except ValueError:
            raise UsageError(f"--weights {spec!r}: use {WEIGHTS_HELP}") from None
        if threshold <= 0:
            raise UsageError(f"--weights {spec!r}: the distance must be positive metres")
        x, y = grid.centroids(keys)
        return spatial_weights.distance_band(x, y, threshold), f"distance band {threshold:g} m"
    raise UsageError(f"--weights {spec!r}: use {WEIGHTS_HELP}")


def write_geojson(result: CellResult, path: Path) -> Path:
    """Every study cell as a WGS84 polygon with its properties (RFC 7946 FeatureCollection)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    polygons = result.grid.polygons(result.keys)
    tmp = path.with_name(path.name + ".partial")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write('{"type":"FeatureCollection","urbansec":')
        handle.write(json.dumps(_jsonable(result.summary), ensure_ascii=False))
        handle.write(',"features":[\n')
        for i, (record, polygon) in enumerate(zip(result.records(), polygons, strict=True)):
            geometry = mapping(polygon)
            geometry["coordinates"] = [[[round(x, 7), round(y, 7)] for x, y in ring]
                                       for ring in geometry["coordinates"]]
            feature = {"type": "Feature", "id": record["cell_id"], "geometry": geometry,
                       "properties": record}
            handle.write(("," if i else "") + json.dumps(feature, ensure_ascii=False) + "\n")
        handle.write("]}\n")
    tmp.replace(path)
    return path


def write_csv(result: CellResult, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    x, y = result.grid.centroids(result.keys)
    from urbansec.domain.events import WGS84, transformer

    lon, lat = transformer(result.grid.crs, WGS84).transform(x, y)
    records = result.records()
    fields = ["cell_id", "lon", "lat", *result.properties]
    tmp = path.with_name(path.name + ".partial")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for record, lo, la in zip(records, np.asarray(lon).tolist(), np.asarray(lat).tolist(),
                                  strict=True):
            writer.writerow({**record, "lon": round(lo, 7), "lat": round(la, 7)})
    tmp.replace(path)
    return path


def write_png(result: CellResult, path: Path) -> Path:
    from urbansec.render import png

    polygons = result.grid.polygons(result.keys)
    values = result.properties[result.map_field]
    kwargs: dict[str, Any] = {}
    if result.map_kind == "sequential":
        kwargs["values"] = np.asarray(values, dtype=float)
    else:
        kwargs["classes"] = list(np.asarray(values).tolist())
    return png.render_cell_map(
        path, cells=polygons, boundaries=list(result.boundaries), title=result.title,
        subtitle=result.summary.get("subtitle", ""), legend_title=result.map_field,
        kind=result.map_kind, **kwargs)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
