"""Tests for urbansec.ingest.areas: boundary files -> AreaRecord in WGS84."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import shapely
from shapely.geometry import MultiPolygon, Point, Polygon, box

from urbansec.errors import InputFormatError, UsageError
from urbansec.ingest.areas import normalize_area_code, read_areas

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
BOUNDARIES = DATA / "chicago" / "boundaries"
DISTRICTS_KMZ = BOUNDARIES / "police-districts.kmz"
BEATS_KMZ = BOUNDARIES / "police-beats.kmz"

# Chicago with a little margin (lon/lat degrees).
CHICAGO_BBOX = box(-87.95, 41.6, -87.5, 42.05)
# 1st district station, 1718 S State St, from chicago/police-stations.csv.
DISTRICT_1_STATION = Point(-87.62735617, 41.85837259)

needs_districts = pytest.mark.skipif(
    not DISTRICTS_KMZ.is_file(), reason=f"shared data missing: {DISTRICTS_KMZ}"
)
needs_beats = pytest.mark.skipif(
    not BEATS_KMZ.is_file(), reason=f"shared data missing: {BEATS_KMZ}"
)


@pytest.fixture(scope="module")
def districts() -> dict[str, object]:
    if not DISTRICTS_KMZ.is_file():
        pytest.skip(f"shared data missing: {DISTRICTS_KMZ}")
    return {record.code: record for record in read_areas(DISTRICTS_KMZ)}


# --- real Chicago files (zipped shapefiles in NAD83 / Illinois East ftUS despite .kmz) --------


@needs_districts
def test_chicago_districts_kmz_is_a_zipped_shapefile() -> None:
    # Guards the caveat the reader exists for: detection by content, not by the .kmz suffix.
    with zipfile.ZipFile(DISTRICTS_KMZ) as archive:
        names = [n.lower() for n in archive.namelist()]
    assert any(n.endswith(".shp") for n in names)
    assert not any(n.endswith(".kml") for n in names)


@needs_districts
def test_chicago_districts_codes_and_names(districts: dict) -> None:
    # 25 shapes in the file; district 31 (unincorporated/airport parts) is 3 of them, merged.
    assert len(districts) == 23
    expected = {str(n) for n in [*range(1, 13), *range(14, 21), 22, 24, 25, 31]}
    assert set(districts) == expected
    assert districts["1"].name == "1ST"
    assert districts["18"].name == "18TH"
    assert districts["1"].attributes == {"DIST_LABEL": "1ST", "DIST_NUM": "1"}
    assert districts["31"].attributes["merged_feature_count"] == 3
    assert "merged_feature_count" not in districts["18"].attributes


@needs_districts
def test_chicago_districts_geometry_is_valid_wgs84(districts: dict) -> None:
    for code, record in districts.items():
        geometry = record.geometry
        assert isinstance(geometry, Polygon | MultiPolygon), code
        assert geometry.is_valid, code
        assert not geometry.has_z, code
        assert CHICAGO_BBOX.contains(geometry), (code, geometry.bounds)
    assert isinstance(districts["31"].geometry, MultiPolygon)


@needs_districts
def test_chicago_district_1_contains_its_station(districts: dict) -> None:
    assert districts["1"].geometry.contains(DISTRICT_1_STATION)
    others = [code for code, r in districts.items() if r.geometry.contains(DISTRICT_1_STATION)]
    assert others == ["1"]


@needs_districts
def test_chicago_districts_tile_without_overlap(districts: dict) -> None:
    # Reprojection errors (wrong units, swapped axes) would break this long before the bbox.
    geometries = [r.geometry for r in districts.values()]
    total = sum(g.area for g in geometries)
    union = shapely.union_all(geometries).area
    assert union == pytest.approx(total, rel=1e-6)


@needs_districts
def test_explicit_fields_are_case_insensitive() -> None:
    records = read_areas(DISTRICTS_KMZ, code_field="dist_label", name_field="Dist_Num")
    by_code = {r.code: r for r in records}
    assert by_code["1ST"].name == "1"
    assert len(by_code) == 23


@needs_districts
def test_unknown_code_field_lists_available_fields() -> None:
    with pytest.raises(InputFormatError) as info:
        read_areas(DISTRICTS_KMZ, code_field="BEAT_NUM")
    message = info.value.message
    assert "BEAT_NUM" in message
    assert "DIST_LABEL" in message and "DIST_NUM" in message


@needs_districts
def test_blank_code_field_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        read_areas(DISTRICTS_KMZ, code_field="  ")


@needs_beats
def test_chicago_beats_kmz() -> None:
    beats = {record.code: record for record in read_areas(BEATS_KMZ)}
    # 277 shapes; beat 3100 is 3 of them, merged.
    assert len(beats) == 275
    assert beats["1713"].attributes["DISTRICT"] == "17"
    assert beats["3100"].attributes["merged_feature_count"] == 3
    assert all(r.geometry.is_valid and CHICAGO_BBOX.contains(r.geometry) for r in beats.values())
    # Beats 0111..0134 are in district 1; the station sits in one of them.
    containing = [code for code, r in beats.items() if r.geometry.contains(DISTRICT_1_STATION)]
    assert len(containing) == 1 and containing[0].startswith("1") and len(containing[0]) == 3


# --- KML written here ------------------------------------------------------------------------

KML = """<?xml version="1.0" encoding="UTF-8"?>
<kml xmlns="http://www.opengis.net/kml/2.2">
  <Document>
    <Schema name="areas" id="areas"><SimpleField name="AREA_CODE" type="string"/></Schema>
    <Folder>
      <Placemark>
        <name>North Side</name>
        <ExtendedData>
          <SchemaData schemaUrl="#areas"><SimpleData name="AREA_CODE">007</SimpleData></SchemaData>
        </ExtendedData>
        <Polygon>
          <outerBoundaryIs><LinearRing><coordinates>
            13.0,52.0,0 13.2,52.0,0 13.2,52.2,0 13.0,52.2,0 13.0,52.0,0
          </coordinates></LinearRing></outerBoundaryIs>
          <innerBoundaryIs><LinearRing><coordinates>
            13.05,52.05 13.1,52.05 13.1,52.1 13.05,52.1 13.05,52.05
          </coordinates></LinearRing></innerBoundaryIs>
        </Polygon>
      </Placemark>
      <Placemark>
        <name>Islands</name>
        <ExtendedData>
          <Data name="AREA_CODE"><value>12</value></Data>
          <Data name="population"><value>1500</value></Data>
        </ExtendedData>
        <MultiGeometry>
          <Point><coordinates>13.5,52.5</coordinates></Point>
          <Polygon><outerBoundaryIs><LinearRing><coordinates>
            13.5,52.5 13.6,52.5 13.6,52.6 13.5,52.6 13.5,52.5
          </coordinates></LinearRing></outerBoundaryIs></Polygon>
          <Polygon><outerBoundaryIs><LinearRing><coordinates>
            13.7,52.5 13.8,52.5 13.8,52.6 13.7,52.6 13.7,52.5
          </coordinates></LinearRing></outerBoundaryIs></Polygon>
        </MultiGeometry>
      </Placemark>
      <Placemark>
        <name>A point only</name>
        <Point><coordinates>13.4,52.5</coordinates></Point>
      </Placemark>
    </Folder>
  </Document>
</kml>
"""


def _check_kml_areas(records: list) -> None:
    by_code = {r.code: r for r in records}
    assert set(by_code) == {"7", "12"}  # "007" normalised; the Point placemark skipped
    north, islands = by_code["7"], by_code["12"]
    assert north.name == "North Side"
    assert north.attributes["AREA_CODE"] == "007"
    assert isinstance(north.geometry, Polygon)
    assert len(north.geometry.interiors) == 1
    assert north.geometry.area == pytest.approx(0.2 * 0.2 - 0.05 * 0.05)
    assert not north.geometry.contains(Point(13.07, 52.07))  # in the hole
    assert islands.name == "Islands"
    assert islands.attributes["population"] == "1500"
    assert isinstance(islands.geometry, MultiPolygon)
    assert len(islands.geometry.geoms) == 2
    assert islands.geometry.bounds == pytest.approx((13.5, 52.5, 13.8, 52.6))


def test_kml_placemarks_with_multigeometry_and_extended_data(tmp_path: Path) -> None:
    path = tmp_path / "areas.kml"
    path.write_text(KML, encoding="utf-8")
    _check_kml_areas(read_areas(path))


def test_kmz_holding_kml(tmp_path: Path) -> None:
    path = tmp_path / "areas.kmz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("doc.kml", KML)
        archive.writestr("files/readme.txt", "not a kml")
    _check_kml_areas(read_areas(path))


def test_kml_name_is_the_code_when_nothing_else_is(tmp_path: Path) -> None:
    kml = """<kml><Placemark><name> Kreuzberg </name><Polygon><outerBoundaryIs><LinearRing>
      <coordinates>13.4,52.49 13.43,52.49 13.43,52.5 13.4,52.49</coordinates>
    </LinearRing></outerBoundaryIs></Polygon></Placemark></kml>"""
    path = tmp_path / "namespace-less.kml"
    path.write_text(kml, encoding="utf-8")
    [record] = read_areas(path)
    assert record.code == "Kreuzberg"
    assert record.name == "Kreuzberg"


def test_self_intersecting_polygon_is_made_valid(tmp_path: Path) -> None:
    bowtie = "0,0 1,1 1,0 0,1 0,0"
    kml = f"""<kml><Placemark><name>Bow tie</name><Polygon><outerBoundaryIs><LinearRing>
      <coordinates>{bowtie}</coordinates></LinearRing></outerBoundaryIs></Polygon></Placemark>
    </kml>"""
    path = tmp_path / "bowtie.kml"
    path.write_text(kml, encoding="utf-8")
    [record] = read_areas(path)
    assert not Polygon([(0, 0), (1, 1), (1, 0), (0, 1)]).is_valid
    assert record.geometry.is_valid
    assert isinstance(record.geometry, MultiPolygon)
    assert record.geometry.area == pytest.approx(0.5)


# --- GeoJSON ---------------------------------------------------------------------------------


def _web_mercator(lon: float, lat: float) -> tuple[float, float]:
    from pyproj import Transformer

    return Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True).transform(lon, lat)


def test_geojson_with_crs_member_is_reprojected(tmp_path: Path) -> None:
    x0, y0 = _web_mercator(-87.64, 41.86)
    x1, y1 = _web_mercator(-87.62, 41.88)
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    document = {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::3857"}},
        "features": [
            {
                "type": "Feature",
                "id": "ignored-because-properties-have-code",
                "properties": {"zone_code": "0042", "zone_name": "Loop", "open": True, "n": 3.5},
                "geometry": {"type": "Polygon", "coordinates": [ring]},
            },
            {
                "type": "Feature",
                "properties": {"zone_code": "43", "zone_name": "Line"},
                "geometry": {"type": "LineString", "coordinates": [[x0, y0], [x1, y1]]},
            },
        ],
    }
    path = tmp_path / "zones.geojson"
    path.write_text(json.dumps(document), encoding="utf-8")
    [record] = read_areas(path)
    assert record.code == "42"
    assert record.name == "Loop"
    assert record.attributes["open"] is True and record.attributes["n"] == 3.5
    assert record.geometry.bounds == pytest.approx((-87.64, 41.86, -87.62, 41.88), abs=1e-9)


def test_geojson_without_crs_is_wgs84_and_uses_feature_id(tmp_path: Path) -> None:
    document = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "id": 5,
                "properties": {"label": "Five"},
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [[[2.3, 48.8], [2.4, 48.8], [2.4, 48.9], [2.3, 48.8]]],
                },
            }
        ],
    }
    path = tmp_path / "zones.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    [record] = read_areas(path)
    assert (record.code, record.name) == ("5", "Five")
    assert record.geometry.bounds == pytest.approx((2.3, 48.8, 2.4, 48.9))


def test_geojson_projected_coordinates_without_crs_are_refused(tmp_path: Path) -> None:
    x0, y0 = _web_mercator(-87.64, 41.86)
    document = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"code": "1"},
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [[[x0, y0], [x0 + 900, y0], [x0, y0 + 900], [x0, y0]]],
                },
            }
        ],
    }
    path = tmp_path / "projected.geojson"
    path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(InputFormatError, match="longitude/latitude"):
        read_areas(path)


# --- errors ----------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputFormatError, match="not found"):
        read_areas(tmp_path / "nope.kmz")


def test_kmz_that_is_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "broken.kmz"
    path.write_text(KML, encoding="utf-8")
    with pytest.raises(InputFormatError, match="zip archive"):
        read_areas(path)


def test_zip_without_kml_or_shapefile(tmp_path: Path) -> None:
    path = tmp_path / "stuff.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "hello")
        archive.writestr("data.csv", "a,b\n1,2\n")
    with pytest.raises(InputFormatError) as info:
        read_areas(path)
    message = info.value.message
    assert ".kml" in message and ".shp" in message
    assert "notes.txt" in message and "data.csv" in message


def test_unrecognised_content(tmp_path: Path) -> None:
    path = tmp_path / "areas.csv"
    path.write_text("code,wkt\n1,POLYGON((0 0,1 0,1 1,0 0))\n", encoding="utf-8")
    with pytest.raises(InputFormatError, match="not a KML"):
        read_areas(path)


def test_kml_without_polygons(tmp_path: Path) -> None:
    path = tmp_path / "points.kml"
    path.write_text(
        "<kml><Placemark><name>p</name><Point><coordinates>1,2</coordinates></Point>"
        "</Placemark></kml>",
        encoding="utf-8",
    )
    with pytest.raises(InputFormatError, match="no Placemark holds a Polygon"):
        read_areas(path)


def test_malformed_xml(tmp_path: Path) -> None:
    path = tmp_path / "bad.kml"
    path.write_text("<kml><Placemark></kml>", encoding="utf-8")
    with pytest.raises(InputFormatError, match="XML"):
        read_areas(path)


# --- code normalisation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("001", "1"),
        (" 18 ", "18"),
        ("000", "0"),
        ("0", "0"),
        (17.0, "17"),
        (42, "42"),
        ("1ST", "1ST"),
        ("E01000001", "E01000001"),
        ("²", "²"),
        (None, ""),
    ],
)
def test_normalize_area_code(raw: object, expected: str) -> None:
    assert normalize_area_code(raw) == expected
