"""``static/js/grid.js``: the page's own projection of the view's compact cells.

The API sends a view's cells as a UTM grid and ``[col, row, value, class]`` rows; the page
projects the corners with its own inverse transverse Mercator. Run with Node (the module has
no DOM dependency outside ``cellLayer``), the corners are checked against pyproj in zones
north and south, near and far from the central meridian, and a real view of the bundled
Chicago sample against the API's own GeoJSON of the same cells (``format=geojson``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pyproj import Transformer
from sqlalchemy import Engine

from urbansec.services import dashboard
from urbansec.services.access import Principal
from urbansec.services.aggregates import Privacy

GRID_JS = Path(__file__).resolve().parents[2] / "src" / "urbansec" / "web" / "static" / \
    "js" / "grid.js"
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="Node.js is not installed")

RUNNER = """
import * as grid from %s;
// with -e, the first argument after the script is argv[1]
const input = JSON.parse(process.argv[1]);
const out = input.points.map(([e, n, z, s]) => grid.utmToLonLat(e, n, z, s));
const cells = grid.expandCells(input.cells).map((c) => ({ id: c.id, properties: c.properties,
                                                          corners: c.corners }));
console.log(JSON.stringify({ out, cells }));
"""


def _run(points: list[tuple[float, float, int, bool]], cells: dict[str, Any] | None = None
         ) -> dict[str, Any]:
    assert NODE is not None
    script = RUNNER % json.dumps(GRID_JS.as_uri())
    payload = json.dumps({"points": points, "cells": cells})
    result = subprocess.run([NODE, "--input-type=module", "-e", script, payload],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_inverse_transverse_mercator_equals_pyproj() -> None:
    points = [(447_000.0, 4_640_000.0, 16, False),  # Chicago
              (166_021.0, 0.0, 31, False),  # the zone's edge at the equator
              (833_978.0, 8_000_000.0, 10, False),
              (700_000.0, 4_000_000.0, 33, False),
              (300_000.0, 6_900_000.0, 35, False),  # Finland
              (500_000.0, 7_000_000.0, 19, True),  # Chile
              (250_000.0, 5_000_000.0, 59, True)]  # New Zealand
    got = _run(points)["out"]
    for (easting, northing, zone, south), (lon, lat) in zip(points, got, strict=True):
        crs = f"EPSG:{(32700 if south else 32600) + zone}"
        ref_lon, ref_lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(
            easting, northing)
        # 1e-9 degrees is about 0.1 mm
        assert lon == pytest.approx(ref_lon, abs=1e-9) and lat == pytest.approx(ref_lat,
                                                                                abs=1e-9)


def test_expanded_cells_are_the_apis_geojson_squares(sample_db: Engine) -> None:
    analyst = Privacy.for_principal(Principal("user", 1, 1, "analyst"), 5, 250.0)
    view = dashboard.view(sample_db, dashboard.ViewRequest(category="05", cell=100.0),
                          analyst)
    features = dashboard.cell_features(view["cells"])["features"]
    assert len(features) > 100
    cells = _run([], view["cells"])["cells"]
    assert [c["id"] for c in cells] == [f["id"] for f in features]
    for cell, feature in zip(cells, features, strict=True):
        assert cell["properties"] == feature["properties"]
        ring = feature["geometry"]["coordinates"][0][:4]  # SW, SE, NE, NW as the page's
        for (lat, lon), (ref_lon, ref_lat) in zip(cell["corners"], ring, strict=True):
            # the API rounds to 6 decimals
            assert lon == pytest.approx(ref_lon, abs=6e-7)
            assert lat == pytest.approx(ref_lat, abs=6e-7)
