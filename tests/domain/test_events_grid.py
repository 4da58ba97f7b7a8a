"""Events and Grid: projection, local time with DST, cells, keys and polygons."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from urbansec.domain.events import Events, to_local_time, utm_crs_for
from urbansec.domain.grid import MAX_CELLS, HexGrid, SquareGrid, make_grid, project_geometry
from urbansec.errors import UsageError

LOOP_LON = np.array([-87.6298, -87.6244, -87.6350, np.nan])
LOOP_LAT = np.array([41.8781, 41.8827, 41.8700, np.nan])
TIMES = np.array(["2017-03-12T07:30:00", "2017-03-12T08:30:00", "2017-11-05T06:30:00",
                  "2017-11-05T07:30:00"], dtype="datetime64[s]")


def test_utm_zone_of_chicago_and_of_the_south() -> None:
    assert utm_crs_for(-87.63, 41.88) == "EPSG:32616"
    assert utm_crs_for(13.4, 52.5) == "EPSG:32633"
    assert utm_crs_for(151.2, -33.9) == "EPSG:32756"


def test_events_project_to_metres_and_back() -> None:
    events = Events.from_lonlat(LOOP_LON, LOOP_LAT, TIMES, timezone="America/Chicago")
    assert events.crs == "EPSG:32616"
    assert events.located.tolist() == [True, True, True, False]
    # 0.0054 degrees of longitude at 41.88 N is about 448 m
    dx = events.x[1] - events.x[0]
    assert 440 < dx < 455
    fresh = Events(x=events.x, y=events.y, t=events.t, category=events.category,
                   crs=events.crs)
    lon, lat = fresh.to_lonlat()
    np.testing.assert_allclose(lat[:3], LOOP_LAT[:3], atol=1e-9)
    np.testing.assert_allclose(lon[:3], LOOP_LON[:3], atol=1e-9)
    assert np.isnan(lon[3])


def test_local_time_follows_dst_in_chicago() -> None:
    local = to_local_time(TIMES, "America/Chicago")
    # 07:30 UTC on 12 March 2017 is 01:30 CST; an hour later clocks had jumped: 03:30 CDT
    assert str(local[0]) == "2017-03-12T01:30:00"
    assert str(local[1]) == "2017-03-12T03:30:00"
    # 06:30 UTC on 5 November 2017 is 01:30 CDT; an hour later it is 01:30 again, CST
    assert str(local[2]) == "2017-11-05T01:30:00"
    assert str(local[3]) == "2017-11-05T01:30:00"


def test_subset_keeps_arrays_aligned() -> None:
    events = Events.from_lonlat(LOOP_LON, LOOP_LAT, TIMES, ["0501", "0401", None, "0501"],
                                ids=np.arange(4))
    located = events.only_located()
    assert len(located) == 3
    assert located.ids.tolist() == [0, 1, 2]
    assert located.category.tolist() == ["0501", "0401", None]


def test_square_grid_locates_counts_and_names_cells() -> None:
    grid = SquareGrid(size=100.0, crs="EPSG:32616")
    x = np.array([50.0, 150.0, 149.9, -0.1, np.nan])
    y = np.array([50.0, 50.0, 99.9, 10.0, 1.0])
    keys = grid.locate(x, y)
    assert keys[-1] == -1
    cols, rows = SquareGrid.col_row(keys[:4])
    assert cols.tolist() == [0, 1, 1, -1]
    assert rows.tolist() == [0, 0, 0, 0]
    study = grid.study_cells(x, y)
    assert study.size == 3  # columns -1..1 of row 0: the box of the points
    assert grid.counts(study, x, y).tolist() == [1.0, 1.0, 2.0]
    assert grid.cell_ids(study) == ["100m_-1_0", "100m_0_0", "100m_1_0"]
    assert grid.cell_area_km2(study).tolist() == [0.01] * 3


def test_square_cells_are_aligned_whatever_the_extent() -> None:
    grid = SquareGrid(size=250.0, crs="EPSG:32616")
    a = grid.study_cells(np.array([1000.0, 3000.0]), np.array([1000.0, 1000.0]))
    b = grid.study_cells(np.array([1100.0, 1200.0]), np.array([1000.0, 1000.0]))
    assert set(b.tolist()) <= set(a.tolist())


def test_study_area_polygon_limits_cells_and_keeps_empty_ones() -> None:
    grid = SquareGrid(size=100.0, crs="EPSG:32616")
    area = shapely.Polygon([(0, 0), (300, 0), (0, 300)])
    keys = grid.study_cells(np.array([10.0]), np.array([10.0]), area)
    # 6 cells meet the triangle's interior; 4 more only touch it (edge or corner): not in
    boxes = [shapely.box(c * 100, r * 100, c * 100 + 100, r * 100 + 100)
             for c, r in zip(*SquareGrid.col_row(keys), strict=True)]
    assert all(box.intersects(area) for box in boxes)
    assert keys.size == 6
    counts = grid.counts(keys, np.array([10.0]), np.array([10.0]))
    assert counts.sum() == 1 and (counts == 0).sum() == keys.size - 1


def test_polygons_are_wgs84_squares_around_the_centre() -> None:
    events = Events.from_lonlat(LOOP_LON[:3], LOOP_LAT[:3], TIMES[:3])
    grid = make_grid(events.crs, cell=250)
    keys = grid.study_cells(events.x, events.y)
    polygons = grid.polygons(keys)
    x, _ = grid.centroids(keys)
    for polygon in polygons[:5]:
        assert polygon.is_valid
        lon, lat = polygon.centroid.x, polygon.centroid.y
        assert -87.7 < lon < -87.6 and 41.8 < lat < 41.9
    back = project_geometry(polygons[0], events.crs)
    assert back.area == pytest.approx(250 * 250, rel=1e-3)
    assert back.centroid.x == pytest.approx(x[0], abs=0.5)


def test_too_many_cells_is_a_clear_error() -> None:
    grid = SquareGrid(size=1.0, crs="EPSG:32616")
    with pytest.raises(UsageError, match="more than"):
        grid.study_cells(np.array([0.0, 5000.0]), np.array([0.0, 5000.0]))
    assert MAX_CELLS == 10_000_000
    with pytest.raises(UsageError):
        SquareGrid(size=0, crs="EPSG:32616")


def test_hex_grid_cells_neighbours_and_polygons() -> None:
    events = Events.from_lonlat(LOOP_LON[:3], LOOP_LAT[:3], TIMES[:3])
    grid = HexGrid(resolution=9, crs=events.crs)
    keys = grid.study_cells(events.x, events.y)
    counts = grid.counts(keys, events.x, events.y)
    assert counts.sum() == 3
    ids = grid.cell_ids(keys)
    assert all(len(i) == 15 for i in ids)
    i, j = grid.neighbour_pairs(keys)
    assert i.size > 0 and (i != j).all()
    # a hexagon has at most six neighbours, and the relation is symmetric
    assert np.bincount(i).max() <= 6
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == set(
        zip(j.tolist(), i.tolist(), strict=True))
    area = grid.cell_area_km2(keys[:1])[0]
    assert 0.08 < area < 0.12  # resolution 9: ~0.1 km²
    polygon = grid.polygons(keys[:1])[0]
    assert len(polygon.exterior.coords) == 7
