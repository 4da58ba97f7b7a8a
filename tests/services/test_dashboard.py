"""The dashboard's event cube against independent computations, on SQLite and PostgreSQL.

Every figure of the analyst view is compared with the store's own answer for the same
filter (``count_incidents``), with a direct grid binning of ``load_events``, with the Gi*
of the hotspots service, and with ``time_patterns``; the public's view is checked for
k-suppression; the cache is checked to follow new imports.
"""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine

from urbansec.domain.events import to_local_time
from urbansec.domain.grid import SquareGrid
from urbansec.errors import NotFoundError, UsageError
from urbansec.services import dashboard
from urbansec.services.access import ANONYMOUS, Principal
from urbansec.services.aggregates import Privacy
from urbansec.services.dashboard_cube import (
    cache_for,
    data_version,
    get_cube,
    in_window,
    parse_time_window,
)
from urbansec.services.events import load_events
from urbansec.services.hotspots import GridOptions, hotspots
from urbansec.services.imports import import_incidents
from urbansec.services.incidents import IncidentFilter, count_incidents
from urbansec.services.patterns import time_patterns

K = 5
PUBLIC_CELL = 250.0
ANALYST = Privacy.for_principal(Principal("user", 1, 1, "analyst"), K, PUBLIC_CELL)
PUBLIC = Privacy.for_principal(ANONYMOUS, K, PUBLIC_CELL)

FILTERS = [
    {},
    {"category": "05"},
    {"category": "0502"},
    {"category": "0502,0201"},
    {"start": "2017-03-01", "end": "2017-05-31"},
    {"area": "district:18"},
    {"area": "beat:1822", "category": "05"},
    {"category": "02", "start": "2017-07-01", "end": "2017-07-31", "area": "district:1"},
]


def _view(engine: Engine, privacy: Privacy = ANALYST, **query: Any) -> dict[str, Any]:
    return dashboard.view(engine, dashboard.ViewRequest(**query), privacy)


def _features(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The view's cells as GeoJSON features (what ``format=geojson`` answers)."""
    return dashboard.cell_features(result["cells"])["features"]


def _cell_counts(result: dict[str, Any]) -> dict[str, Any]:
    return {f["id"]: f["properties"]["value"] for f in _features(result)}


@pytest.mark.parametrize("query", FILTERS)
def test_totals_equal_the_store_count(sample_db: Engine, query: dict[str, str]) -> None:
    result = _view(sample_db, **query)
    expected = count_incidents(sample_db, IncidentFilter.parse(**query))
    assert result["total"] == expected["total"] > 0
    assert result["located"] == expected["located"]
    assert {(c["code"], c["count"]) for c in result["categories"]} == {
        (c["code"], c["count"]) for c in expected["by_category"]}
    counts = [c["count"] for c in result["categories"]]
    assert counts == sorted(counts, reverse=True)


@pytest.mark.parametrize("window", ["night", "day", "23:30-02:15", "08:00-09:00"])
def test_time_of_day_matches_local_times(sample_db: Engine, window: str) -> None:
    flt = IncidentFilter.parse(category="05")
    events = load_events(sample_db, flt)
    local = to_local_time(events.t, events.timezone).astype(np.int64)
    minute = (local % 86_400) // 60
    start, end = {"night": (22 * 60, 6 * 60), "day": (6 * 60, 22 * 60)}.get(
        window, parse_time_window(window))
    if start < end:
        inside = (minute >= start) & (minute < end)
    else:
        inside = (minute >= start) | (minute < end)
    expected = int(inside.sum())
    result = _view(sample_db, category="05", time=window)
    assert result["total"] == expected > 0
    night_and_day = _view(sample_db, category="05", time="night")["total"] + \
        _view(sample_db, category="05", time="day")["total"]
    assert night_and_day == len(events)


def test_time_windows_parse() -> None:
    assert parse_time_window("all") is None
    assert parse_time_window("night") == (1320, 360)
    assert parse_time_window("7:05-24:00") == (425, 1440)
    minutes = np.array([0, 359, 360, 1319, 1320, 1439])
    assert in_window(minutes, (1320, 360)).tolist() == [True, True, False, False, True, True]
    for bad in ("25:00-01:00", "10:00-10:00", "noon", "10-12", "10:0-11:00"):
        with pytest.raises(UsageError):
            parse_time_window(bad)


@pytest.mark.parametrize("query", [{}, {"category": "0502", "area": "district:1"}])
def test_cells_equal_direct_binning(sample_db: Engine, query: dict[str, str]) -> None:
    for cell in (250.0, 100.0):
        result = _view(sample_db, cell=cell, **query)
        events = load_events(sample_db, IncidentFilter.parse(**query)).only_located()
        grid = SquareGrid(size=cell, crs=events.crs)
        keys, counts = np.unique(grid.locate(events.x, events.y), return_counts=True)
        expected = dict(zip(grid.cell_ids(keys), counts.tolist(), strict=True))
        assert _cell_counts(result) == expected
        assert result["cells"]["cell_m"] == cell
        legend = result["cells"]["legend"]
        assert legend[0]["min"] == min(expected.values())
        assert legend[-1]["max"] == max(expected.values())
        for feature in _features(result)[:50]:
            ring = feature["geometry"]["coordinates"][0]
            assert len(ring) == 5 and ring[0] == ring[-1]
            assert all(round(v, 6) == v for point in ring for v in point)


@pytest.mark.parametrize("query", [{}, {"category": "05", "area": "district:18"}])
def test_gi_classes_match_the_hotspots_service(sample_db: Engine, query: dict[str, str]
                                               ) -> None:
    result = _view(sample_db, layer="gi", **query)
    reference = hotspots(sample_db, IncidentFilter.parse(**query), method="gi",
                         permutations=0, options=GridOptions(cell=250.0))
    names = dashboard.GI_CLASSES
    expected = {r["cell_id"]: (names[r["class"]], r["z"], r["count"])
                for r in reference.records()}
    shown = {f["id"]: f["properties"] for f in _features(result)}
    assert result["cells"]["study_cells"] == len(expected)
    assert set(shown) <= set(expected)
    for cell_id, (klass, z, count) in expected.items():
        if cell_id in shown:
            assert shown[cell_id]["class"] == klass
            assert shown[cell_id]["value"] == pytest.approx(z, abs=1e-3)
        else:  # left out only when nothing is there to see
            assert klass == "ns" and count == 0
    assert any(p["class"].startswith("hot") for p in shown.values())


def test_hour_weekday_and_months_equal_time_patterns(sample_db: Engine) -> None:
    query = {"category": "0502", "start": "2017-02-01", "end": "2017-11-30"}
    result = _view(sample_db, **query)
    patterns = time_patterns(sample_db, IncidentFilter.parse(**query))
    assert result["hour_weekday"]["counts"] == patterns["hour_weekday"]["counts"]
    assert result["hour_weekday"]["timezone"] == "America/Chicago"
    assert result["monthly"]["months"] == patterns["monthly"]["months"]
    assert result["monthly"]["counts"] == patterns["monthly"]["counts"]
    # only 2017 is stored: a year earlier is unknown, not zero
    assert result["monthly"]["last_year"] is None
    assert result["period"] == {"from": "2017-02-01", "to": "2017-12-01",
                                "last": "2017-11-30", "timezone": "America/Chicago"}


def test_public_view_is_suppressed(sample_db: Engine) -> None:
    for query in ({"category": "0101"}, {"category": "05", "area": "beat:1822"},
                  {"time": "03:00-04:00", "category": "0502"}):
        for layer in ("count", "gi", "kde"):
            result = _view(sample_db, PUBLIC, layer=layer, cell=100.0, **query)
            assert result["suppressed"] is True and result["k"] == K
            assert result["cells"]["cell_m"] == PUBLIC_CELL  # never finer for the public
            values = [value for _, _, value, _ in result["cells"]["cells"]]
            if layer == "count":
                assert all(v is None or v >= K for v in values)
                assert any(v is None for v in values)
            if layer == "gi":
                assert all(v is None for v in values)  # classes only, no z
            tables = [v for row in result["hour_weekday"]["counts"] for v in row]
            tables += result["monthly"]["counts"] + [c["count"] for c in result["categories"]]
            assert all(v is None or v == 0 or v >= K for v in tables)
            assert result["total"] is None or result["total"] >= K
    analyst = _view(sample_db, category="0204")
    public = _view(sample_db, PUBLIC, category="0204")
    assert 0 < analyst["total"] < K and public["total"] is None


def test_public_kde_hides_sparse_surfaces(sample_db: Engine) -> None:
    analyst = _view(sample_db, layer="kde", category="0903")
    public = _view(sample_db, PUBLIC, layer="kde", category="0903")
    assert analyst["cells"]["cells"] and not public["cells"]["cells"]
    dense = _view(sample_db, PUBLIC, layer="kde", category="05")
    assert dense["cells"]["cells"]
    assert dense["cells"]["units"] == "incidents per km²"


def test_taxonomy_counts_are_the_store_counts(sample_db: Engine) -> None:
    result = dashboard.taxonomy(sample_db, ANALYST)
    codes = {c["code"]: c for c in result["categories"]}
    for code, row in codes.items():
        assert row["count"] == count_incidents(sample_db, IncidentFilter.parse(
            category=code))["total"], code
        if row["parent"] is not None:
            assert row["parent"] in codes and row["level"] == 2
    assert "0502" in codes and codes["0502"]["name"] == "Theft"
    public = dashboard.taxonomy(sample_db, PUBLIC)
    assert all(c["count"] is None or c["count"] >= K for c in public["categories"])


def test_area_outlines_are_simplified(sample_db: Engine) -> None:
    from shapely.geometry import shape

    from urbansec.services.events import load_boundaries

    result = dashboard.area_outlines(sample_db, "district")
    boundaries = {b.code: b for b in load_boundaries(sample_db, "district")}
    assert len(result["features"]) == len(boundaries)
    vertices_before = vertices_after = 0
    for feature in result["features"]:
        props = feature["properties"]
        assert props["kind"] == "district" and props["code"] in boundaries
        original = boundaries[props["code"]].geometry
        simple = shape(feature["geometry"])
        assert simple.symmetric_difference(original).area < 0.01 * original.area
        vertices_before += len(original.exterior.coords) if original.geom_type == "Polygon" \
            else sum(len(p.exterior.coords) for p in original.geoms)
        vertices_after += len(simple.exterior.coords) if simple.geom_type == "Polygon" \
            else sum(len(p.exterior.coords) for p in simple.geoms)
    assert vertices_after < vertices_before
    with pytest.raises(NotFoundError):
        dashboard.area_outlines(sample_db, "nonesuch")


def test_config_describes_the_data(sample_db: Engine) -> None:
    from urbansec.config import Settings

    config = dashboard.dashboard_config(sample_db, Settings(tile_url="http://127.0.0.1/t/{z}"))
    assert config["timezone"] == "America/Chicago"
    assert config["period"] == {"first": "2017-01-01", "last": "2017-12-31"}
    west, south, east, north = config["bounds"]
    assert -87.8 < west < east < -87.5 and 41.7 < south < north < 42.0
    kinds = {k["kind"]: k["count"] for k in config["area_kinds"]}
    assert kinds["district"] == 23 and kinds["beat"] > 200
    assert config["default_area_kind"] == "district"
    assert config["tile_url"] == "http://127.0.0.1/t/{z}"
    assert config["languages"] == ["en", "el", "fi", "it"]
    assert config["contact_retention_days"] == Settings().contact_retention_days
    # beats and districts were imported; wards are only carried by the incidents
    boundaries = {k["kind"]: k["boundaries"] for k in config["area_kinds"]}
    assert boundaries["district"] is boundaries["beat"] is True
    assert boundaries["ward"] is False


def test_cells_are_a_grid_of_utm_squares(sample_db: Engine) -> None:
    """The compact cells: the grid once, one [col, row, value, class] row per cell, and the
    same squares as GeoJSON through ``cell_features`` (corners projected by pyproj)."""
    from pyproj import Transformer

    result = _view(sample_db, category="05")
    cells = result["cells"]
    assert cells["type"] == "grid" and cells["columns"] == ["col", "row", "value", "class"]
    grid = cells["grid"]
    assert grid == {"crs": "EPSG:32616", "size": 250.0, "utm_zone": 16, "south": False}
    assert sum(row[2] for row in cells["cells"]) == result["located"]
    features = _features(result)
    assert len(features) == len(cells["cells"])
    to_lonlat = Transformer.from_crs("EPSG:32616", "EPSG:4326", always_xy=True)
    for (col, row, value, klass), feature in zip(cells["cells"][:20], features, strict=False):
        assert feature["id"] == f"250m_{col}_{row}"
        assert feature["properties"] == {"value": value, "class": klass}
        lon, lat = to_lonlat.transform(col * 250.0, row * 250.0)
        assert feature["geometry"]["coordinates"][0][0] == [round(lon, 6), round(lat, 6)]
    assert dashboard.utm_zone("EPSG:32733") == (33, True)
    for crs in ("EPSG:4326", "EPSG:32661", "EPSG:3857"):
        with pytest.raises(ValueError):
            dashboard.utm_zone(crs)


def test_view_json_is_cached_per_data_version_and_privacy(sample_db: Engine) -> None:
    import json

    request = dashboard.ViewRequest(category="05", layer="gi")
    first = dashboard.view_json(sample_db, request, ANALYST)
    assert dashboard.view_json(sample_db, request, ANALYST) is first  # from memory
    public = dashboard.view_json(sample_db, request, PUBLIC)
    assert public != first and json.loads(public)["suppressed"] is True
    geojson = json.loads(dashboard.view_json(sample_db, request, ANALYST, geojson=True))
    body = json.loads(first)
    assert geojson["cells"]["type"] == "FeatureCollection"
    assert len(geojson["cells"]["features"]) == len(body["cells"]["cells"])
    # the body is the view's, elapsed time aside
    direct = _view(sample_db, category="05", layer="gi")
    for name in ("total", "located", "cells", "hour_weekday", "monthly", "categories"):
        assert body[name] == json.loads(json.dumps(direct[name])), name


def test_bad_filters_are_usage_errors(sample_db: Engine) -> None:
    with pytest.raises(UsageError):
        _view(sample_db, layer="lisa")
    with pytest.raises(UsageError):
        _view(sample_db, start="2017-02-30")
    with pytest.raises(UsageError):
        _view(sample_db, start="2017-05-01", end="2017-04-01")
    with pytest.raises(UsageError):
        _view(sample_db, cell=10.0)
    with pytest.raises(NotFoundError):
        _view(sample_db, area="precinct:1")  # neither carried nor imported
    # wards are carried by the incidents: an absent code matches nothing, as in the store
    assert _view(sample_db, area="ward:99999")["total"] == 0 == count_incidents(
        sample_db, IncidentFilter.parse(area="ward:99999"))["total"]
    assert _view(sample_db, area="district:99")["total"] == 0


# --------------------------------------------------------------------------------------------
# The cache follows the data


def _write_extra(path: Path, header: str, lines: list[str], year: int, id_offset: int) -> Path:
    """The given real rows moved to ``year`` with new ids: a small extra export."""
    reader = csv.reader(io.StringIO("\n".join([header, *lines])))
    columns = next(reader)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in reader:
        record = dict(zip(columns, row, strict=True))
        record["ID"] = str(int(record["ID"]) + id_offset)
        record["Case Number"] = "X" + record["Case Number"]
        record["Date"] = record["Date"][:6] + str(year) + record["Date"][10:]
        writer.writerow([record[c] for c in columns])
    with gzip.open(path, "wt", encoding="utf-8", newline="") as handle:
        handle.write(out.getvalue())
    return path


def test_cache_follows_imports(db: Engine, tmp_path: Path, chicago_header: str,
                               chicago_lines: list[str]) -> None:
    first = _write_extra(tmp_path / "2017.csv.gz", chicago_header, chicago_lines, 2017, 0)
    import_incidents(db, [first], "chicago")
    before = _view(db, start="2017-01-01", end="2017-12-31")
    cube = get_cube(db)
    assert before["total"] == count_incidents(db, IncidentFilter())["total"]
    assert get_cube(db) is cube  # nothing changed: the same cube
    assert before["monthly"]["last_year"] is None

    # the same rows a year earlier, as a new export: totals and last year change
    extra = _write_extra(tmp_path / "2016.csv.gz", chicago_header, chicago_lines, 2016,
                         10**9)
    version = data_version(db)
    import_incidents(db, [extra], "chicago")
    assert data_version(db) != version
    after = _view(db, start="2017-01-01", end="2017-12-31")
    assert get_cube(db) is not cube
    everything = _view(db)
    assert everything["total"] == count_incidents(db, IncidentFilter())["total"] == \
        2 * before["total"]
    assert after["total"] == before["total"]
    # the 2016 copy is the 2017 rows shifted by one year: last year lines up month by month
    # (a shifted date can change its weekday, never its month). The first month is the
    # evening of 31 December (from is a UTC day): a year before that the data had not begun.
    months, counts = after["monthly"]["months"], before["monthly"]["counts"]
    assert months[0] == "2016-12" and months[1] == "2017-01"
    assert after["monthly"]["last_year"][0] is None
    assert after["monthly"]["last_year"][1:] == counts[1:]
    assert sum(counts) == before["total"]

    # re-importing the same file changes nothing and keeps the cube
    cube = get_cube(db)
    import_incidents(db, [extra], "chicago")
    assert _view(db)["total"] == everything["total"]


def test_a_deletion_outside_urbansec_is_counted_in_the_background(
        db: Engine, tmp_path: Path, chicago_header: str, chicago_lines: list[str]) -> None:
    """Requests check the ids only; the count (which sees a deletion the ids do not) runs
    in a background thread every few seconds and has the cube rebuilt."""
    from sqlalchemy import delete, func, select

    from urbansec.services.incidents import INCIDENTS

    path = _write_extra(tmp_path / "a.csv.gz", chicago_header, chicago_lines[:40], 2017, 0)
    import_incidents(db, [path], "chicago")
    cache = cache_for(db)
    cube = get_cube(db)
    assert len(cube) == 40
    with db.begin() as connection:  # not the newest row: the newest id stays the same
        oldest = connection.execute(select(func.min(INCIDENTS.c.id))).scalar_one()
        connection.execute(delete(INCIDENTS).where(INCIDENTS.c.id == oldest))
    assert get_cube(db) is cube  # the ids are unchanged and the count is not due yet
    cache._counted = 0.0  # the count is due now
    assert get_cube(db) is cube  # this request does not wait for it
    assert cache._counting is not None
    cache._counting.join(timeout=60)
    if cache._warming is not None:
        cache._warming.join(timeout=60)
    rebuilt = get_cube(db)
    assert rebuilt is not cube and len(rebuilt) == 39


def test_invalidate_rebuilds_in_the_background(db: Engine, tmp_path: Path,
                                               chicago_header: str,
                                               chicago_lines: list[str]) -> None:
    from urbansec.services.dashboard_cube import invalidate

    path = _write_extra(tmp_path / "a.csv.gz", chicago_header, chicago_lines[:50], 2017, 0)
    invalidate(db)  # no cube was ever built for this engine: nothing to do
    assert cache_for(db)._warming is None
    assert len(get_cube(db)) == 0
    import_incidents(db, [path], "chicago")
    invalidate(db)
    thread = cache_for(db)._warming
    assert thread is not None
    thread.join(timeout=60)
    assert not thread.is_alive()
    cube = cache_for(db).peek()
    assert cube is not None and len(cube) == 50
    assert get_cube(db) is cube


def test_check_work_refuses_studies_too_large(sample_db: Engine) -> None:
    """The refusal the dashboard's forecast and backtest use before starting a model fit
    (``services.aggregates.check_work``), estimated from the incidents' box."""
    from urbansec.services.aggregates import check_work

    everything = IncidentFilter()
    check_work(sample_db, everything, 250.0, None, 0)  # the two districts at 250 m: fine
    with pytest.raises(UsageError, match="cells: at most 100"):
        check_work(sample_db, everything, 250.0, None, 0, max_cells=100)
    with pytest.raises(UsageError, match="permutations"):
        check_work(sample_db, everything, 50.0, None, 10_000)
    # nothing matches: nothing to refuse
    check_work(sample_db, IncidentFilter.parse(area="ward:99999"), 50.0, None, 10_000,
               max_cells=1)
