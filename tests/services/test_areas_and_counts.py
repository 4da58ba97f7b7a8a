"""Areas (police districts and beats) and counts published per area, on both databases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import shapely
from shapely.geometry import Point, shape
from sqlalchemy import Engine, func, select, text

from urbansec.errors import InputFormatError, NotFoundError, RejectedRowsError
from urbansec.services.imports import (
    import_area_counts,
    import_areas,
    import_incidents,
    rejected_rows,
)
from urbansec.services.incidents import IncidentFilter, count_incidents, iter_incidents
from urbansec.store.tables import Area, AreaCount

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "src" / "urbansec" / "samples" / "chicago"
BERLIN = ROOT.parent / "shared" / "data" / "berlin-crime-atlas" / "berlin_crimes_by_district.csv"
STATION_1 = (-87.62735617, 41.85837259)  # 1st district station, from police-stations.csv


def test_districts_import_and_reimport(db: Engine) -> None:
    first = import_areas(db, SAMPLES / "police-districts.kmz", "district").files[0]
    again = import_areas(db, SAMPLES / "police-districts.kmz", "district").files[0]
    assert (first.inserted, again.inserted, again.unchanged) == (23, 0, 23)
    with db.connect() as connection:
        stored = dict(connection.execute(
            select(Area.code, Area.geometry).where(Area.kind == "district")).all())
    district_1 = shape(json.loads(stored["1"]))
    assert district_1.is_valid and district_1.contains(Point(STATION_1))
    assert not shape(json.loads(stored["18"])).contains(Point(STATION_1))
    if db.dialect.name == "postgresql":
        with db.connect() as connection:
            found = connection.execute(text(
                "SELECT code FROM areas WHERE kind = 'district' AND "
                "ST_Contains(geom, ST_SetSRID(ST_MakePoint(:x, :y), 4326))"),
                {"x": STATION_1[0], "y": STATION_1[1]}).scalars().all()
        assert found == ["1"]


def test_area_filter_by_source_codes_and_by_polygon_agree(db: Engine) -> None:
    import_incidents(db, [SAMPLES / "crimes_2017_districts_01_18.csv.gz"], "chicago")
    import_areas(db, SAMPLES / "police-districts.kmz", "district")
    import_areas(db, SAMPLES / "police-beats.kmz", "beat")
    by_codes = count_incidents(db, IncidentFilter.parse(area="district:18"))
    assert by_codes["area_match"] == "source codes"
    # incidents carry no "police_district" code, so that kind must use the polygon
    with db.begin() as connection:
        connection.execute(text(
            "INSERT INTO areas (kind, code, name, geometry, min_lon, min_lat, max_lon, max_lat, "
            "attributes) SELECT 'police_district', code, name, geometry, min_lon, min_lat, "
            "max_lon, max_lat, attributes FROM areas WHERE kind = 'district'"))
    by_polygon = count_incidents(db, IncidentFilter.parse(area="police_district:18"))
    assert by_polygon["area_match"] == "polygon"
    # The police put a few incidents in a district other than the one their (shifted)
    # point falls in; the two answers must still agree closely, and exactly on located ones.
    assert by_codes["located"] > 10_000
    assert abs(by_polygon["total"] - by_codes["located"]) / by_codes["located"] < 0.02
    with db.connect() as connection:
        polygon = shape(json.loads(connection.execute(select(Area.geometry).where(
            Area.kind == "district", Area.code == "18")).scalar_one()))
    points = [(r["lon"], r["lat"]) for r in iter_incidents(db, IncidentFilter.parse(),
                                                           located_only=True)]
    xs, ys = zip(*points, strict=True)
    assert by_polygon["total"] == int(shapely.contains_xy(polygon, xs, ys).sum())
    exported = list(iter_incidents(db, IncidentFilter.parse(area="police_district:18")))
    assert len(exported) == by_polygon["total"]


def test_unknown_area_is_a_clear_error(db: Engine) -> None:
    with pytest.raises(NotFoundError, match="import boundaries"):
        count_incidents(db, IncidentFilter.parse(area="ward:42"))


def test_area_file_errors_write_nothing(db: Engine, tmp_path: Path) -> None:
    bogus = tmp_path / "districts.kmz"
    bogus.write_bytes(b"not a zip at all")
    with pytest.raises(InputFormatError):
        import_areas(db, bogus, "district")
    with db.connect() as connection:
        assert connection.execute(select(func.count()).select_from(Area)).scalar_one() == 0


def test_berlin_atlas_counts(db: Engine) -> None:
    if not BERLIN.exists():
        pytest.skip(f"{BERLIN} not found")
    first = import_area_counts(db, BERLIN, "berlin-atlas").files[0]
    again = import_area_counts(db, BERLIN, "berlin-atlas").files[0]
    assert (first.inserted, first.rejected) == (19_200, 0)
    assert (again.inserted, again.unchanged) == (0, 19_200)
    with db.connect() as connection:
        robbery = connection.execute(select(AreaCount.count, AreaCount.category).where(
            AreaCount.area_code == "10111", AreaCount.source_category == "Robbery",
            func.extract("year", AreaCount.period_start) == 2012)).one()
        unmapped = connection.execute(select(func.count()).where(
            AreaCount.category.is_(None))).scalar_one()
    assert robbery.count == 70 and robbery.category == "0401"
    assert unmapped == 0


def test_berlin_bad_rows_rejected_or_strict(db: Engine, tmp_path: Path) -> None:
    if not BERLIN.exists():
        pytest.skip(f"{BERLIN} not found")
    lines = BERLIN.read_text(encoding="utf-8").splitlines()
    cells = lines[3].split(",")
    cells[6] = "-4"  # a negative count
    dirty = tmp_path / "atlas.csv"
    dirty.write_text("\n".join([*lines[:3], ",".join(cells), *lines[4:10]]) + "\n",
                     encoding="utf-8")
    result = import_area_counts(db, dirty, "berlin-atlas").files[0]
    assert result.rejected == 1
    assert result.inserted == 8 * 16
    stored = rejected_rows(db, result.batch_id)
    assert stored[0]["line_number"] == 4 and stored[0]["raw_line"] == ",".join(cells)
    with pytest.raises(RejectedRowsError):
        import_area_counts(db, dirty, "berlin-atlas", strict=True)
