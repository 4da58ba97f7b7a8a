"""Tests for the incident presets: Chicago, data.police.uk, generic mappings, GeoJSON input.

Rows are the real lines of the bundled Chicago sample (fixtures ``chicago_header`` and
``chicago_lines``) or crafted in the exact published format of the source.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
from pathlib import Path

import pytest

from urbansec.errors import InputFormatError, UsageError
from urbansec.ingest.generic import GenericMapping, GenericPreset
from urbansec.ingest.presets import ChicagoPreset, UkPolicePreset, preset_for
from urbansec.ingest.records import INCIDENT_COLUMNS, RejectedRow
from urbansec.ingest.sources import SourceRow, TabularFile

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_INCIDENTS = ROOT / "src" / "urbansec" / "samples" / "chicago" / (
    "crimes_2017_districts_01_18.csv.gz")

# Positions in an incident tuple, by name (INCIDENT_COLUMNS names the first one source_key).
F = {name: i for i, name in enumerate(INCIDENT_COLUMNS)}
KEY = 0


def parse(line: str) -> list[str]:
    return next(csv.reader(io.StringIO(line)))


def fields(row: tuple) -> dict:
    assert isinstance(row, tuple), row
    assert len(row) == len(INCIDENT_COLUMNS)
    return dict(zip(INCIDENT_COLUMNS, row, strict=True))


@pytest.fixture
def header(chicago_header: str) -> list[str]:
    return parse(chicago_header)


@pytest.fixture
def rows(chicago_lines: list[str]) -> list[list[str]]:
    return [parse(line) for line in chicago_lines]


@pytest.fixture
def chicago(header: list[str]) -> ChicagoPreset:
    preset = ChicagoPreset()
    preset.bind(header, "sample.csv")
    return preset


def sample_row(wanted_id: str) -> tuple[int, list[str]]:
    """(line number, values) of the sample row with this ID, read independently."""
    with gzip.open(SAMPLE_INCIDENTS, "rt", encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        for values in reader:
            if values[0] == wanted_id:
                return reader.line_num, values
    raise AssertionError(f"ID {wanted_id} not in the sample")


def with_value(header: list[str], values: list[str], **changes: str) -> list[str]:
    """A copy of a row with some columns changed (keyword = column name, spaces as _)."""
    changed = list(values)
    for column, value in changes.items():
        changed[header.index(column.replace("_", " "))] = value
    return changed


# --------------------------------------------------------------------------------------------
# Chicago: good rows
# --------------------------------------------------------------------------------------------


def test_chicago_first_sample_row_converts_to_the_expected_tuple(
    chicago: ChicagoPreset, rows: list[list[str]], chicago_lines: list[str]
) -> None:
    # 10814234,JA113466,01/01/2017 01:35:00 AM,015XX N KINGSBURY ST,0870,THEFT,POCKET-PICKING,
    # BAR OR TAVERN,false,false,1822,018,32,8,06,1169525,1910220,02/10/2018 03:50:01 PM,
    # 41.909152038,-87.652675042
    assert chicago_lines[0].startswith("10814234,JA113466,01/01/2017 01:35:00 AM,")
    got = fields(chicago.convert(SourceRow(2, rows[0])))
    assert got == {
        "source_key": "10814234",
        "category": "0502",  # THEFT -> ICCS Theft
        "source_category": "THEFT",
        "source_subcategory": "POCKET-PICKING",
        "source_code": "0870",
        "occurred_at": "2017-01-01 07:35:00.000000",  # CST, UTC-6
        "time_precision": "second",
        "reported_at": None,
        "updated_at": "2018-02-10 21:50:01.000000",  # 03:50:01 PM CST
        "lon": -87.652675042,
        "lat": 41.909152038,
        "location_description": "BAR OR TAVERN",
        "address": "015XX N KINGSBURY ST",
        "area_codes": '{"beat":"1822","district":"18","ward":"32","community_area":"8"}',
        "arrest": False,
        "domestic": False,
        "attributes": '{"Case Number":"JA113466","FBI Code":"06","X Coordinate":"1169525",'
                      '"Y Coordinate":"1910220"}',
        "row_hash": hashlib.md5("\x1f".join(rows[0]).encode(), usedforsecurity=False).hexdigest(),
        "line_number": 2,
    }
    assert json.loads(got["area_codes"]) == {"beat": "1822", "district": "18", "ward": "32",
                                             "community_area": "8"}


def test_chicago_summer_row_uses_cdt(header: list[str]) -> None:
    line, values = sample_row("11005261")  # 07/04/2017 11:30:00 AM, 009XX N MICHIGAN AVE
    preset = ChicagoPreset()
    preset.bind(header, "sample.csv")
    got = fields(preset.convert(SourceRow(line, values)))
    assert got["occurred_at"] == "2017-07-04 16:30:00.000000"  # CDT, UTC-5
    assert got["updated_at"] == "2018-02-10 21:50:01.000000"  # February: CST
    assert (got["lon"], got["lat"]) == (-87.624131266, 41.899410159)
    assert json.loads(got["area_codes"]) == {"beat": "1833", "district": "18", "ward": "42",
                                             "community_area": "8"}
    assert got["line_number"] == line


def test_chicago_unlocated_real_row_is_kept_with_arrest(header: list[str]) -> None:
    line, values = sample_row("11289505")  # no coordinates at all, Arrest true
    preset = ChicagoPreset()
    preset.bind(header, "sample.csv")
    got = fields(preset.convert(SourceRow(line, values)))
    assert got["lon"] is None and got["lat"] is None
    assert got["arrest"] is True and got["domestic"] is False
    assert got["category"] is not None and got["source_code"] == "1155"
    # empty X/Y Coordinate are left out of the attributes, the rest stays
    assert json.loads(got["attributes"]) == {"Case Number": "JB228662", "FBI Code": "11"}
    assert preset.stats.unlocated == 1
    assert preset.stats.implausible_location == 0


def test_chicago_all_first_200_rows_convert(chicago: ChicagoPreset, header: list[str],
                                            rows: list[list[str]]) -> None:
    converted = [chicago.convert(SourceRow(n, v)) for n, v in enumerate(rows, start=2)]
    assert all(isinstance(c, tuple) for c in converted)
    assert [c[KEY] for c in converted] == [v[0] for v in rows]
    unlocated = sum(1 for v in rows if not v[header.index("Latitude")])
    assert chicago.stats.unlocated == unlocated == 6
    assert not chicago.stats.unmapped_categories


# --------------------------------------------------------------------------------------------
# Chicago: bad rows, each with its reason and line number
# --------------------------------------------------------------------------------------------

BAD_ROWS = [
    # (changes, words that must be in the reason)
    ({"Date": ""}, ["missing time"]),
    ({"Date": "1/1/2017 1:35:00 AM"}, ["unparseable time", "1/1/2017 1:35:00 AM"]),
    ({"Date": "01/01/2017 13:35:00 AM"}, ["unparseable time"]),
    ({"Date": "01/01/2017 01:35:00 XM"}, ["unparseable time"]),
    ({"Date": "yesterday evening"}, ["unparseable time", "yesterday evening"]),
    ({"Date": "02/30/2017 01:35:00 AM"}, ["impossible time", "02/30/2017"]),
    ({"Updated On": "13/10/2018 03:50:01 PM"}, ["impossible time"]),
    ({"ID": ""}, ["missing ID"]),
    ({"ID": "   "}, ["missing ID"]),
    ({"Longitude": ""}, ["only one of Latitude/Longitude"]),
    ({"Latitude": ""}, ["only one of Latitude/Longitude"]),
    ({"Latitude": "41.9O9"}, ["unparseable Latitude", "41.9O9"]),
    ({"Longitude": "W87.6"}, ["unparseable Longitude"]),
    ({"Latitude": "95.5"}, ["Latitude", "out of range"]),
    ({"Longitude": "-187.6"}, ["Longitude", "out of range"]),
    ({"Latitude": "nan"}, ["Latitude", "out of range"]),
    ({"Longitude": "inf"}, ["Longitude", "out of range"]),
    ({"Arrest": "maybe"}, ["Arrest", "maybe", "expected true or false"]),
    ({"Domestic": "2"}, ["Domestic", "expected true or false"]),
    ({"Block": "015XX N K\ufffdNIGSBURY ST"}, ["not valid UTF-8"]),
]


@pytest.mark.parametrize(("changes", "words"), BAD_ROWS,
                         ids=[f"{next(iter(c))}={next(iter(c.values()))!r}" for c, _ in BAD_ROWS])
def test_chicago_bad_row_is_rejected_with_reason(
    chicago: ChicagoPreset, header: list[str], rows: list[list[str]], changes: dict,
    words: list[str],
) -> None:
    values = list(rows[0])
    for column, value in changes.items():
        values[header.index(column)] = value
    result = chicago.convert(SourceRow(417, values, None, 417))
    assert isinstance(result, RejectedRow), result
    assert result.line_number == 417
    for word in words:
        assert word in result.reason
    # a good row after a bad one still converts: nothing sticky
    assert isinstance(chicago.convert(SourceRow(418, rows[1])), tuple)


@pytest.mark.parametrize("width", [19, 21, 1])
def test_chicago_wrong_column_count(chicago: ChicagoPreset, rows: list[list[str]],
                                    width: int) -> None:
    values = (rows[0] + ["extra"])[:width] if width != 1 else ["just one value"]
    result = chicago.convert(SourceRow(9, values, None, 9))
    assert isinstance(result, RejectedRow)
    assert result.line_number == 9
    assert result.reason == f"wrong column count: expected 20, found {width}"


def test_chicago_rejection_keeps_geojson_raw_text(chicago: ChicagoPreset,
                                                  rows: list[list[str]]) -> None:
    raw = '{"type":"Feature","properties":{}}'
    result = chicago.convert(SourceRow(3, rows[0][:5], raw, 3))
    assert isinstance(result, RejectedRow)
    assert result.raw_line == raw


def test_chicago_location_outside_the_city_is_kept_unlocated(
    chicago: ChicagoPreset, header: list[str], rows: list[list[str]]
) -> None:
    # a failed geocode seen in the real export: Missouri, not Chicago
    values = with_value(header, rows[0], Latitude="36.619446395", Longitude="-91.686565684")
    got = fields(chicago.convert(SourceRow(5, values)))
    assert got["lon"] is None and got["lat"] is None
    assert got["source_key"] == "10814234" and got["category"] == "0502"
    assert chicago.stats.implausible_location == 1
    assert chicago.stats.unlocated == 1
    assert chicago.stats.as_dict()["implausible_location"] == 1
    # a row inside the city does not move the counters
    fields(chicago.convert(SourceRow(6, rows[1])))
    assert (chicago.stats.implausible_location, chicago.stats.unlocated) == (1, 1)


def test_chicago_no_coordinates_is_kept_unlocated(
    chicago: ChicagoPreset, header: list[str], rows: list[list[str]]
) -> None:
    values = with_value(header, rows[0], Latitude="", Longitude="", X_Coordinate="",
                        Y_Coordinate="")
    got = fields(chicago.convert(SourceRow(5, values)))
    assert (got["lon"], got["lat"]) == (None, None)
    assert chicago.stats.unlocated == 1
    assert chicago.stats.implausible_location == 0


def test_chicago_flags_accept_the_usual_spellings(
    chicago: ChicagoPreset, header: list[str], rows: list[list[str]]
) -> None:
    for text, expected in [("true", True), ("FALSE", False), ("Y", True), ("0", False),
                           ("", None)]:
        values = with_value(header, rows[0], Arrest=text, Domestic=text)
        got = fields(chicago.convert(SourceRow(2, values)))
        assert (got["arrest"], got["domestic"]) == (expected, expected), text


# --------------------------------------------------------------------------------------------
# Chicago: the header check
# --------------------------------------------------------------------------------------------


def test_bind_names_every_missing_column(header: list[str], rows: list[list[str]]) -> None:
    preset = ChicagoPreset()
    broken = [c for c in header if c not in ("IUCR", "Primary Type", "Latitude")]
    with pytest.raises(InputFormatError) as caught:
        preset.bind(broken, "extract.csv")
    message = caught.value.message
    assert "extract.csv" in message and "'chicago'" in message
    for column in ("IUCR", "Primary Type", "Latitude"):
        assert column in message.split("(found:")[0]
    assert caught.value.details["missing_columns"] == ["IUCR", "Primary Type", "Latitude"]
    assert caught.value.exit_code == 1
    # the same preset object, re-bound to the right header, works
    preset.bind(header, "sample.csv")
    got = fields(preset.convert(SourceRow(2, rows[0])))
    assert got["source_code"] == "0870" and got["lat"] == 41.909152038


def test_bind_accepts_loosely_spelled_column_names(header: list[str],
                                                   rows: list[list[str]]) -> None:
    preset = ChicagoPreset()
    preset.bind([c.lower().replace(" ", "_") for c in header], "api.csv")
    got = fields(preset.convert(SourceRow(2, rows[0])))
    assert got["source_category"] == "THEFT" and got["lon"] == -87.652675042


def test_empty_header_message() -> None:
    with pytest.raises(InputFormatError, match="no header"):
        ChicagoPreset().bind([], "empty.csv")


def test_preset_for_unknown_name_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown preset 'nypd'") as caught:
        preset_for("nypd")
    assert "chicago" in caught.value.message and "uk-police" in caught.value.message
    with pytest.raises(UsageError, match="mapping"):
        preset_for("generic")


# --------------------------------------------------------------------------------------------
# data.police.uk
# --------------------------------------------------------------------------------------------

UK_HEADER = ("Crime ID,Month,Reported by,Falls within,Longitude,Latitude,Location,LSOA code,"
             "LSOA name,Crime type,Last outcome category,Context")
UK_BURGLARY_ID = "4c0b5f3cbd2c8d0a23bbd8ff54b12ae0bbe4e4c7ea24ffd6e2a8e0fcf6cf3b17"
UK_ROWS = [
    f"{UK_BURGLARY_ID},2023-07,Metropolitan Police Service,Metropolitan Police Service,"
    "-0.141099,51.515472,On or near Oxford Street,E01004734,Westminster 018A,Burglary,"
    "Investigation complete; no suspect identified,",
    ",2023-07,Metropolitan Police Service,Metropolitan Police Service,-0.139863,51.514980,"
    "On or near Oxford Street,E01004734,Westminster 018A,Anti-social behaviour,,",
    ",2023-07,Metropolitan Police Service,Metropolitan Police Service,-0.139863,51.514980,"
    "On or near Oxford Street,E01004734,Westminster 018A,Anti-social behaviour,,",
    ",2023-07,Metropolitan Police Service,Metropolitan Police Service,-0.134427,51.515106,"
    "On or near Wardour Street,E01004763,Westminster 013E,Anti-social behaviour,,",
    "8d1e7bd2bb0d1fbd35ac1a9e5ae2a5d0c9b3e7f5a1d6f4b2e8c9a0b1c2d3e4f5,2023-01,"
    "Metropolitan Police Service,Metropolitan Police Service,,,No Location,,,"
    "Violence and sexual offences,Under investigation,",
]


def uk_convert(preset: UkPolicePreset, lines: list[str]) -> list:
    preset.bind(parse(UK_HEADER), "2023-07-metropolitan-street.csv")
    return [preset.convert(SourceRow(n, parse(line), None, n))
            for n, line in enumerate(lines, start=2)]


def test_uk_police_month_resolution_and_fields() -> None:
    preset = UkPolicePreset()
    burglary, asb, _, _, unlocated = (fields(r) for r in uk_convert(preset, UK_ROWS))
    assert burglary["source_key"] == UK_BURGLARY_ID
    assert burglary["category"] == "0501"
    assert burglary["source_category"] == "Burglary"
    assert burglary["time_precision"] == "month"
    # local midnight of 1 July 2023 is 23:00 UTC the day before (BST, UTC+1)
    assert burglary["occurred_at"] == "2023-06-30 23:00:00.000000"
    assert (burglary["lon"], burglary["lat"]) == (-0.141099, 51.515472)
    assert burglary["location_description"] == "On or near Oxford Street"
    assert json.loads(burglary["area_codes"]) == {"lsoa": "E01004734",
                                                  "force": "Metropolitan Police Service"}
    assert json.loads(burglary["attributes"]) == {
        "Reported by": "Metropolitan Police Service",
        "Falls within": "Metropolitan Police Service",
        "LSOA name": "Westminster 018A",
        "Last outcome category": "Investigation complete; no suspect identified",
    }
    assert asb["category"] == "X01"
    assert asb["source_category"] == "Anti-social behaviour"
    # January is GMT: midnight local is midnight UTC
    assert unlocated["occurred_at"] == "2023-01-01 00:00:00.000000"
    assert (unlocated["lon"], unlocated["lat"]) == (None, None)
    assert unlocated["location_description"] == "No Location"
    assert unlocated["category"] == "02"  # a section: the UK does not split violence further
    assert preset.stats.unlocated == 1


def test_uk_police_derived_ids_are_stable_and_count_identical_rows() -> None:
    first = [fields(r)["source_key"] for r in uk_convert(UkPolicePreset(), UK_ROWS)]
    again = [fields(r)["source_key"] for r in uk_convert(UkPolicePreset(), UK_ROWS)]
    assert first == again  # a re-import finds the same ids
    _, asb1, asb2, other, _ = first
    prefix = asb1.rsplit(":", 1)[0]
    assert prefix.startswith("derived:") and len(prefix) == len("derived:") + 20
    assert asb1 == f"{prefix}:1"
    assert asb2 == f"{prefix}:2"  # the identical second report counts too
    assert other.endswith(":1") and other.rsplit(":", 1)[0] != prefix
    assert len(set(first)) == 5


def test_uk_police_derived_ids_restart_per_bind() -> None:
    # each file is bound afresh: the ordinal counts identical rows within one file only
    preset = UkPolicePreset()
    one = [fields(r)["source_key"] for r in uk_convert(preset, UK_ROWS[1:3])]
    two = [fields(r)["source_key"] for r in uk_convert(preset, UK_ROWS[1:3])]
    assert one == two


@pytest.mark.parametrize("month", ["2023-13", "07/2023", "", "2023-7-01"])
def test_uk_police_bad_month_is_rejected(month: str) -> None:
    line = UK_ROWS[0].replace(",2023-07,", f",{month},")
    (result,) = uk_convert(UkPolicePreset(), [line])
    assert isinstance(result, RejectedRow)
    assert result.line_number == 2
    assert "unparseable Month" in result.reason


def test_uk_police_rejects_a_chicago_header(header: list[str]) -> None:
    with pytest.raises(InputFormatError) as caught:
        UkPolicePreset().bind(header, "chicago.csv")
    missing = caught.value.details["missing_columns"]
    assert missing == ["Crime ID", "Month", "Reported by", "Falls within", "Location",
                       "LSOA code", "LSOA name", "Crime type", "Last outcome category", "Context"]


# --------------------------------------------------------------------------------------------
# generic preset with a mapping file
# --------------------------------------------------------------------------------------------

CHICAGO_TOML = """
[source]
key = "chicago-generic"
name = "Chicago, read through a generic mapping"
timezone = "America/Chicago"

[columns]
id = "ID"
time = "Date"
time_format = "%m/%d/%Y %I:%M:%S %p"
category = "Primary Type"
code = "IUCR"
x = "X Coordinate"
y = "Y Coordinate"
crs = "EPSG:3435"
areas = { district = "District", beat = "Beat" }

[categories]
scheme = "chicago"
"""


def write_mapping(tmp_path: Path, text: str, name: str = "mapping.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_generic_toml_projected_xy_matches_the_sources_lat_lon(
    tmp_path: Path, header: list[str], rows: list[list[str]], chicago: ChicagoPreset
) -> None:
    mapping = GenericMapping.from_file(write_mapping(tmp_path, CHICAGO_TOML))
    preset = GenericPreset(mapping)
    preset.bind(header, "sample.csv")
    lat_i, lon_i = header.index("Latitude"), header.index("Longitude")
    located = 0
    for number, values in enumerate(rows, start=2):
        got = fields(preset.convert(SourceRow(number, values)))
        reference = fields(chicago.convert(SourceRow(number, values)))
        assert got["source_key"] == values[0]
        assert got["occurred_at"] == reference["occurred_at"]
        assert got["category"] == reference["category"] is not None
        assert got["source_code"] == values[header.index("IUCR")]
        assert got["time_precision"] == "second"
        if values[lat_i]:
            located += 1
            assert abs(got["lon"] - float(values[lon_i])) < 1e-4
            assert abs(got["lat"] - float(values[lat_i])) < 1e-4
        else:
            assert got["lon"] is None and got["lat"] is None
        assert json.loads(got["area_codes"]) == {
            "district": values[header.index("District")].lstrip("0"),
            "beat": values[header.index("Beat")].lstrip("0")}
    assert located == 194
    assert preset.stats.unlocated == 6
    assert preset.source.key == "chicago-generic"
    assert preset.source.timezone == "America/Chicago"


def test_generic_yaml_with_lat_lon_and_own_category_map(
    tmp_path: Path, header: list[str], rows: list[list[str]]
) -> None:
    path = write_mapping(tmp_path, """
source: {key: chicago-yaml, timezone: America/Chicago}
columns:
  time: Date
  time_format: "%m/%d/%Y %I:%M:%S %p"
  category: Primary Type
  lat: Latitude
  lon: Longitude
categories:
  map: {THEFT: "0502", "DECEPTIVE PRACTICE": "0701"}
""", "mapping.yaml")
    preset = GenericPreset(GenericMapping.from_file(path))
    preset.bind(header, "sample.csv")
    got = [fields(preset.convert(SourceRow(n, v))) for n, v in enumerate(rows[:4], start=2)]
    assert [g["category"] for g in got] == ["0502", "0701", "0502", "0701"]
    assert got[0]["lat"] == 41.909152038
    battery = with_value(header, rows[0], Primary_Type="BATTERY")
    assert fields(preset.convert(SourceRow(9, battery)))["category"] is None
    assert preset.stats.unmapped_categories == {"BATTERY": 1}


def test_generic_rows_without_id_column_get_derived_ids(
    tmp_path: Path, header: list[str], rows: list[list[str]]
) -> None:
    text = CHICAGO_TOML.replace('id = "ID"\n', "")
    preset = GenericPreset(GenericMapping.from_file(write_mapping(tmp_path, text)))
    preset.bind(header, "sample.csv")
    keys = [fields(preset.convert(SourceRow(n, v)))["source_key"]
            for n, v in enumerate([rows[0], rows[1], rows[0]], start=2)]
    assert all(k.startswith("derived:") for k in keys)
    assert keys[0].endswith(":1") and keys[2].endswith(":2")
    assert keys[0].rsplit(":", 1)[0] == keys[2].rsplit(":", 1)[0] != keys[1].rsplit(":", 1)[0]
    # a fresh preset over the same rows derives the same ids
    again = GenericPreset(GenericMapping.from_file(write_mapping(tmp_path, text)))
    again.bind(header, "sample.csv")
    assert [fields(again.convert(SourceRow(n, v)))["source_key"]
            for n, v in enumerate([rows[0], rows[1], rows[0]], start=2)] == keys


def test_generic_mapped_column_missing_from_file(tmp_path: Path, header: list[str]) -> None:
    preset = GenericPreset(GenericMapping.from_file(write_mapping(tmp_path, CHICAGO_TOML)))
    with pytest.raises(InputFormatError, match="X Coordinate"):
        preset.bind([c for c in header if c != "X Coordinate"], "no-x.csv")


def test_generic_bad_time_is_rejected(tmp_path: Path, header: list[str],
                                      rows: list[list[str]]) -> None:
    preset = GenericPreset(GenericMapping.from_file(write_mapping(tmp_path, CHICAGO_TOML)))
    preset.bind(header, "sample.csv")
    values = with_value(header, rows[0], Date="2017-01-01T01:35:00")
    result = preset.convert(SourceRow(12, values))
    assert isinstance(result, RejectedRow) and result.line_number == 12
    assert "unparseable time" in result.reason and "%m/%d/%Y" in result.reason


@pytest.mark.parametrize(
    ("old", "new", "words"),
    [
        ('time = "Date"\n', "", "needs 'time'"),
        ('crs = "EPSG:3435"', 'crs = "EPSG:999999"', "unknown CRS"),
        ('crs = "EPSG:3435"', 'crs = "Illinois feet, roughly"', "unknown CRS"),
        ('crs = "EPSG:3435"\n', "", "need the CRS"),
        ('timezone = "America/Chicago"', 'timezone = "America/Chikago"', "unknown time zone"),
        ('scheme = "chicago"', 'map = { THEFT = "0599" }', "unknown canonical codes: 0599"),
        ('y = "Y Coordinate"\n', "", "both x and y"),
        ('code = "IUCR"', 'iucr = "IUCR"', "unknown column setting"),
    ],
)
def test_generic_mapping_errors_are_usage_errors(tmp_path: Path, old: str, new: str,
                                                 words: str) -> None:
    assert old in CHICAGO_TOML
    path = write_mapping(tmp_path, CHICAGO_TOML.replace(old, new))
    with pytest.raises(UsageError, match=words.replace("(", r"\(")) as caught:
        GenericPreset(GenericMapping.from_file(path))
    assert caught.value.exit_code == 2


def test_generic_mapping_file_not_toml(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not valid TOML/YAML"):
        GenericMapping.from_file(write_mapping(tmp_path, "[columns\ntime = 1"))
    with pytest.raises(UsageError, match="cannot read"):
        GenericMapping.from_file(tmp_path / "absent.toml")


def test_generic_unknown_category_scheme_is_a_usage_error(tmp_path: Path) -> None:
    path = write_mapping(tmp_path, CHICAGO_TOML.replace('scheme = "chicago"',
                                                        'scheme = "nypd"'))
    with pytest.raises(UsageError):
        GenericPreset(GenericMapping.from_file(path))


# --------------------------------------------------------------------------------------------
# GeoJSON through TabularFile
# --------------------------------------------------------------------------------------------


def feature(header: list[str], values: list[str], geometry: object = "from-row",
            **override: object) -> dict:
    properties: dict[str, object] = dict(zip(header, values, strict=True))
    properties.update({k.replace("_", " "): v for k, v in override.items()})
    if geometry == "from-row":
        lon, lat = values[header.index("Longitude")], values[header.index("Latitude")]
        geometry = {"type": "Point", "coordinates": [float(lon), float(lat)]} if lon else None
    return {"type": "Feature", "properties": properties, "geometry": geometry}


def read_geojson(tmp_path: Path, features: list[dict]) -> tuple[ChicagoPreset, list]:
    path = tmp_path / "crimes.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}),
                    encoding="utf-8")
    table = TabularFile(path)
    source_rows = list(table.rows())
    preset = ChicagoPreset()
    preset.bind(table.header, path.name)
    return preset, [preset.convert(r) for r in source_rows]


def test_geojson_with_chicago_properties_and_point_geometry(
    tmp_path: Path, header: list[str], rows: list[list[str]]
) -> None:
    features = [feature(header, v) for v in rows[:20]]
    preset, converted = read_geojson(tmp_path, features)
    csv_preset = ChicagoPreset()
    csv_preset.bind(header, "sample.csv")
    for number, (values, got) in enumerate(zip(rows[:20], converted, strict=True), start=1):
        g, c = fields(got), fields(csv_preset.convert(SourceRow(number, values)))
        assert g["line_number"] == number  # the feature's position
        for name in ("source_key", "category", "occurred_at", "updated_at", "lon", "lat",
                     "area_codes", "arrest", "domestic", "source_code"):
            assert g[name] == c[name], name
    assert preset.stats.unlocated == sum(1 for v in rows[:20] if not v[-1])


def test_geojson_geometry_only_gives_the_location(
    tmp_path: Path, header: list[str], rows: list[list[str]]
) -> None:
    # properties without Latitude/Longitude: the point geometry is the location
    features = [feature(header, rows[0])]
    del features[0]["properties"]["Latitude"], features[0]["properties"]["Longitude"]
    _, (got,) = read_geojson(tmp_path, features)
    assert (fields(got)["lon"], fields(got)["lat"]) == (-87.652675042, 41.909152038)


def test_geojson_socrata_style_properties(tmp_path: Path) -> None:
    """The portal's own GeoJSON: snake_case names, ISO times, JSON booleans and numbers."""
    properties = {
        "id": 10814234, "case_number": "JA113466", "date": "2017-01-01T01:35:00.000",
        "block": "015XX N KINGSBURY ST", "iucr": "0870", "primary_type": "THEFT",
        "description": "POCKET-PICKING", "location_description": "BAR OR TAVERN",
        "arrest": False, "domestic": False, "beat": "1822", "district": "018", "ward": 32,
        "community_area": "8", "fbi_code": "06", "updated_on": "2018-02-10T15:50:01.000",
        "latitude": "41.909152038", "longitude": "-87.652675042",
    }
    geometry = {"type": "Point", "coordinates": [-87.652675042, 41.909152038]}
    _, (got,) = read_geojson(tmp_path, [{"type": "Feature", "properties": properties,
                                          "geometry": geometry}])
    g = fields(got)
    assert g["source_key"] == "10814234"
    assert g["occurred_at"] == "2017-01-01 07:35:00.000000"
    assert g["updated_at"] == "2018-02-10 21:50:01.000000"
    assert (g["arrest"], g["domestic"]) == (False, False)
    assert json.loads(g["area_codes"]) == {"beat": "1822", "district": "18", "ward": "32",
                                           "community_area": "8"}
    assert (g["lon"], g["lat"]) == (-87.652675042, 41.909152038)


def test_geojson_malformed_features_are_rejected(tmp_path: Path, header: list[str],
                                                 rows: list[list[str]]) -> None:
    polygon = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}
    no_lat_lon = [c for c in header if c not in ("Latitude", "Longitude")]
    features = [feature(header, rows[0]),
                {"type": "NotAFeature"},
                feature(header, rows[1], geometry=polygon)]
    for f in features[::2]:
        f["properties"] = {c: f["properties"][c] for c in no_lat_lon}
    _, converted = read_geojson(tmp_path, features)
    assert isinstance(converted[0], tuple)
    assert isinstance(converted[1], RejectedRow)
    assert converted[1].line_number == 2
    assert "wrong column count" in converted[1].reason
    assert converted[1].raw_line == '{"type":"NotAFeature"}'
    assert isinstance(converted[2], RejectedRow)
    assert converted[2].line_number == 3
    assert "unparseable Latitude 'not a point'" in converted[2].reason


@pytest.mark.parametrize("properties", [
    {"Latitude": None, "Longitude": None},  # point geometry, no coordinates in properties
    {"Latitude": "41.88", "Longitude": "-87.63"},  # properties disagree with the geometry
], ids=["null-properties", "stale-properties"])
def test_geojson_point_geometry_is_the_location(
    tmp_path: Path, header: list[str], rows: list[list[str]], properties: dict
) -> None:
    features = [feature(header, rows[0], **properties)]
    assert features[0]["geometry"]["coordinates"] == [-87.652675042, 41.909152038]
    _, (got,) = read_geojson(tmp_path, features)
    assert (fields(got)["lon"], fields(got)["lat"]) == (-87.652675042, 41.909152038)
