"""Tests for urbansec.ingest.berlin_atlas: Berlin crime atlas CSV -> AreaCountRecord."""

from __future__ import annotations

import gzip
from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from urbansec.errors import InputFormatError
from urbansec.ingest.berlin_atlas import OFFENCE_COLUMNS, read_berlin_atlas

ROOT = Path(__file__).resolve().parents[2]
ATLAS = ROOT.parent / "shared" / "data" / "berlin-crime-atlas" / "berlin_crimes_by_district.csv"

HEADER = (
    '"Year","District","Code","Location","Robbery","Street_robbery","Injury","Agg_assault",'
    '"Threat","Theft","Car","From_car","Bike","Burglary","Fire","Arson","Damage","Graffiti",'
    '"Drugs","Local"'
)
# Two real rows from the file (2012), and the same values for 2013 under another code.
ROW_TIERGARTEN = (
    '2012,"Mitte",10111,"Tiergarten Süd",70,46,586,194,118,2263,18,328,120,68,16,4,273,26,171,1032'
)
ROW_REGIERUNG = (
    '2012,"Mitte",10112,"Regierungsviertel",65,29,474,123,142,3203,10,307,170,37,10,4,380,124,98,'
    "870"
)
ROW_KREUZBERG = (
    '2013,"Friedrichshain-Kreuzberg",020101,"Südliche Friedrichstadt",1,2,3,4,5,6,7,8,9,10,11,12,'
    "13,14,15,16"
)


@pytest.fixture(scope="module")
def atlas() -> tuple[list, list]:
    if not ATLAS.is_file():
        pytest.skip(f"shared data missing: {ATLAS}")
    return read_berlin_atlas(ATLAS)


def test_real_file_counts(atlas: tuple[list, list]) -> None:
    records, rejected = atlas
    assert rejected == []
    assert len(records) == 1_200 * 16
    assert len({r.area_code for r in records}) == 150
    assert sorted({r.period_start.year for r in records}) == list(range(2012, 2020))
    assert Counter(r.source_category for r in records) == {c: 1_200 for c in OFFENCE_COLUMNS}
    assert all(r.period_end == date(r.period_start.year + 1, 1, 1) for r in records)
    assert {r.line_number for r in records} == set(range(2, 1_202))
    assert all(r.count >= 0 for r in records)


def test_real_file_known_values(atlas: tuple[list, list]) -> None:
    records, _ = atlas
    by_key = {(r.period_start.year, r.area_code, r.source_category): r for r in records}
    robbery = by_key[(2012, "10111", "Robbery")]
    assert robbery.count == 70
    assert robbery.area_name == "Tiergarten Süd"
    assert robbery.attributes == {"borough": "Mitte"}
    assert robbery.period_start == date(2012, 1, 1)
    assert robbery.period_end == date(2013, 1, 1)
    assert robbery.line_number == 2
    # Line 452 of the file: 2015,"Mitte",10111,"Tiergarten Süd",82,...,949
    assert by_key[(2015, "10111", "Theft")].count == 2763
    assert by_key[(2015, "10111", "Local")].count == 949
    assert by_key[(2015, "10111", "Local")].line_number == 452
    assert by_key[(2019, "129900", "Local")].attributes == {"borough": "Reinickendorf"}


def _write(tmp_path: Path, lines: list[str], name: str = "atlas.csv", bom: bool = False) -> Path:
    path = tmp_path / name
    data = ("\r\n".join(lines) + "\r\n").encode("utf-8")
    if bom:
        data = b"\xef\xbb\xbf" + data
    if name.endswith(".gz"):
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def test_bad_rows_are_rejected_and_others_survive(tmp_path: Path) -> None:
    text_count = ROW_REGIERUNG.replace(",65,29,", ",sixty,29,")
    negative = ROW_REGIERUNG.replace(",10112,", ",10113,").replace(",98,", ",-98,")
    short = '2012,"Mitte",10114,"Alexanderplatz",1,2,3'
    bad_year = ROW_REGIERUNG.replace("2012,", "20x2,", 1).replace(",10112,", ",10115,")
    duplicate = ROW_TIERGARTEN.replace(",70,", ",71,")
    lines = [
        HEADER,
        ROW_TIERGARTEN,  # 2
        text_count,  # 3
        negative,  # 4
        "",  # 5, blank: skipped
        short,  # 6
        bad_year,  # 7
        ROW_KREUZBERG,  # 8
        duplicate,  # 9
    ]
    records, rejected = read_berlin_atlas(_write(tmp_path, lines))

    assert [r.line_number for r in rejected] == [3, 4, 6, 7, 9]
    reasons = {r.line_number: r.reason for r in rejected}
    assert "Robbery" in reasons[3] and "'sixty'" in reasons[3]
    assert "Drugs" in reasons[4] and "'-98'" in reasons[4] and "negative" in reasons[4]
    assert "20 columns" in reasons[6] and "found 7" in reasons[6]
    assert "Year" in reasons[7] and "'20x2'" in reasons[7]
    assert "line 2" in reasons[9]
    raw = {r.line_number: r.raw_line for r in rejected}
    assert raw[3] == text_count and raw[6] == short and raw[9] == duplicate

    assert Counter(r.line_number for r in records) == {2: 16, 8: 16}
    kreuzberg = {r.source_category: r for r in records if r.line_number == 8}
    assert kreuzberg["Robbery"].area_code == "20101"  # leading zero dropped, as in the atlas
    assert kreuzberg["Local"].count == 16
    assert kreuzberg["Bike"].period_start == date(2013, 1, 1)


def test_gzip_and_bom_are_accepted(tmp_path: Path) -> None:
    path = _write(tmp_path, [HEADER, ROW_TIERGARTEN, ROW_REGIERUNG], "atlas.csv.gz", bom=True)
    records, rejected = read_berlin_atlas(path)
    assert rejected == []
    assert len(records) == 32
    assert records[0].period_start == date(2012, 1, 1)
    assert {r.area_code for r in records} == {"10111", "10112"}
    assert [r.line_number for r in records[::16]] == [2, 3]


def test_header_missing_columns(tmp_path: Path) -> None:
    header = HEADER.replace('"Code",', "").replace(',"Graffiti"', "").replace(',"Local"', "")
    path = _write(tmp_path, [header, ROW_TIERGARTEN])
    with pytest.raises(InputFormatError) as info:
        read_berlin_atlas(path)
    message = info.value.message
    for column in ("Code", "Graffiti", "Local"):
        assert column in message.split("(found")[0]
    assert "Robbery" not in message.split("(found")[0]
    assert info.value.details["missing_columns"] == ["Code", "Graffiti", "Local"]


def test_empty_and_missing_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(InputFormatError, match="empty"):
        read_berlin_atlas(empty)
    with pytest.raises(InputFormatError, match="not found"):
        read_berlin_atlas(tmp_path / "nope.csv")
