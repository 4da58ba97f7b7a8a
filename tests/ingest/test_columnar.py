"""Tests for urbansec.ingest.columnar: the vectorised Chicago reader must equal the row path.

The row path (TabularFile rows -> ChicagoPreset.convert, raw lines fetched afterwards, as the
import service does) is the specification; every test compares against it rather than against
hand-written expectations, plus a few absolute checks (DST handling, JSON escaping) so that a
bug shared by both paths would not go unnoticed where the brief pins the answer down.
"""

from __future__ import annotations

import csv
import gzip
import io
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from urbansec.errors import InputFormatError
from urbansec.ingest.columnar import (
    DEFAULT_BLOCK_ROWS,
    INCIDENT_SCHEMA,
    ColumnarChunk,
    columnar_supported,
    read_chicago_columnar,
)
from urbansec.ingest.presets import ChicagoPreset
from urbansec.ingest.records import INCIDENT_COLUMNS
from urbansec.ingest.sources import TabularFile

ROOT = Path(__file__).resolve().parents[2]
CHICAGO = ROOT.parent / "shared" / "data" / "chicago"
SAMPLE = ROOT / "src" / "urbansec" / "samples" / "chicago" / "crimes_2017_districts_01_18.csv.gz"

HEADER = (
    "ID,Case Number,Date,Block,IUCR,Primary Type,Description,Location Description,Arrest,"
    "Domestic,Beat,District,Ward,Community Area,FBI Code,X Coordinate,Y Coordinate,Updated On,"
    "Latitude,Longitude"
)
# Real rows of crimes_2017.csv.gz (the last one has a quoted field with commas).
REAL_ROWS = [
    "11227508,JB146365,01/01/2017 12:01:00 AM,027XX S WHIPPLE ST,1754,OFFENSE INVOLVING "
    "CHILDREN,AGG SEX ASSLT OF CHILD FAM MBR,RESIDENCE,false,false,1033,010,12,30,02,,,"
    "02/11/2018 03:57:41 PM,,",
    "10805378,JA104278,01/01/2017 02:00:00 AM,046XX S VINCENNES AVE,0281,CRIM SEXUAL ASSAULT,"
    "NON-AGGRAVATED,RESIDENCE,false,false,0221,002,3,38,02,1180398,1874151,"
    "02/10/2018 03:50:01 PM,41.80993288,-87.613843427",
    "10867779,JA174410,01/01/2017 09:00:00 AM,047XX S UNION AVE,1122,DECEPTIVE PRACTICE,"
    'COUNTERFEIT CHECK,"SCHOOL, PUBLIC, BUILDING",false,false,0935,009,11,61,10,1172434,'
    "1873254,02/10/2018 03:50:01 PM,41.807650669,-87.643080489",
]
COLUMNS = HEADER.split(",")


def crafted(template: str = REAL_ROWS[1], **changes: str) -> bytes:
    """A copy of a real row with some fields replaced (keys: column names, spaces as _)."""
    values = next(csv.reader([template]))
    for key, value in changes.items():
        values[COLUMNS.index(key.replace("_", " "))] = value
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(values)  # quotes fields with CR/LF too
    return out.getvalue().removesuffix("\r\n").encode("utf-8")


# (line bytes, what the row path should say: None = accepted, else the start of the reason)
CRAFTED: list[tuple[bytes, str | None]] = [
    *((row.encode(), None) for row in REAL_ROWS),
    (crafted().rsplit(b",", 1)[0], "wrong column count: expected 20, found 19"),
    (crafted() + b",extra", "wrong column count: expected 20, found 21"),
    (crafted(Date="13/45/2017 10:00:00 PM"), "impossible time '13/45/2017 10:00:00 PM'"),
    (crafted(Date="garbage"), "unparseable time 'garbage'"),
    (crafted(Date=""), "missing time"),
    (crafted(Date="01/01/2017 00:30:00 AM"), "unparseable time"),
    (crafted(Date="02/29/2017 10:00:00 AM"), "impossible time"),
    (crafted(Date="01/01/2017 10:00:00 AM "), "unparseable time"),  # 23 characters
    (crafted(Date="2017-01-01T00:01:00.000"), None),  # ISO, as in JSON exports: accepted
    (crafted(Date="07/04/1899 10:00:00 AM"), None),  # outside the vectorised years
    (crafted(Updated_On="12/31/2017 25:00:00 PM"), "unparseable time"),
    (crafted(ID="   "), "missing ID"),
    (crafted(Longitude=""), "only one of Latitude/Longitude given"),
    (crafted(Latitude="abc"), "unparseable Latitude 'abc'"),
    (crafted(Latitude="123"), "Latitude '123' out of range [-90, 90]"),
    (crafted(Latitude="nan"), "Latitude 'nan' out of range [-90, 90]"),
    (crafted(Longitude="-200.5"), "Longitude '-200.5' out of range [-180, 180]"),
    (crafted(Latitude=" 41.8e0 ", Longitude="-87.6"), None),
    (crafted(Arrest="maybe"), "Arrest is 'maybe', expected true or false"),
    (crafted(Arrest=" TRUE ", Domestic="N"), None),
    (crafted(Latitude="abc", Domestic="maybe"), "unparseable Latitude"),  # first problem wins
    # outside Chicago: kept without coordinates, counted as implausible (and unlocated) ...
    (crafted(Latitude="36.6", Longitude="-91.7"), None),
    # ... also when the row is rejected later for another reason
    (crafted(Latitude="36.6", Longitude="-91.7", Domestic="perhaps"), "Domestic is 'perhaps'"),
    (crafted(Block=""), None),
    (crafted().replace(b"046XX S", b"046XX \xff\xfe S"), "not valid UTF-8 text"),
    (crafted(Description="THEFT \ufffd"), "not valid UTF-8 text"),  # the character itself
    (crafted(Location_Description="CAFÉ, \"LE BAR\""), None),
    (crafted(Description='SAID "HI", LEFT'), None),
    (crafted(Case_Number='JB"1\\2\t3'), None),  # JSON escaping in attributes
    (crafted(District="001", Ward="", Beat=" 0221 "), None),  # area code normalisation
    (crafted(Primary_Type="NEW CRIME TYPE"), None),  # unmapped: counted
    (crafted(Primary_Type="NEW CRIME TYPE", IUCR="9999"), None),
    (crafted(REAL_ROWS[0], Primary_Type="NEW CRIME TYPE", IUCR="0281"), None),
    (crafted(Primary_Type=""), None),
    # str.strip() whitespace that Arrow's own whitespace trimming does not know
    (crafted(ID="\x1c10805999\x1f", Block="\u3000046XX S STATE ST\u2003", IUCR="0281\x85"),
     None),
    (crafted(Case_Number="JA\x1c1"), None),  # a control character, escaped in JSON
    (crafted(Date="11/05/2017 01:30:00 AM"), None),  # ambiguous autumn hour: CDT
    (crafted(Date="03/12/2017 02:30:00 AM"), None),  # spring gap: CST
    (crafted(Date="03/12/2017 03:30:00 AM"), None),
    (b"", None),  # blank lines are skipped, not counted
    (b"   ", None),
    (b",,,,,,,,,,,,,,,,,,,", "missing ID"),
]


@dataclass
class Outcome:
    rows: list[tuple[Any, ...]]
    rejected: list[tuple[int, str, str]]
    rows_read: int
    stats: dict[str, Any]


def row_path(path: Path) -> Outcome:
    """What the import service's row path produces for ``path``."""
    preset = ChicagoPreset()
    table = TabularFile(path)
    rows = table.rows()
    first = next(rows, None)
    preset.bind(table.header, path.name)
    accepted, rejected, spans, read = [], [], {}, 0
    for row in [first, *rows] if first is not None else []:
        read += 1
        result = preset.convert(row)
        if type(result) is tuple:
            accepted.append(result)
        else:
            rejected.append(result)
            spans[row.line_number] = row.last_line
    raw = table.raw_lines(spans)
    return Outcome(accepted, [(r.line_number, r.reason, raw.get(r.line_number, r.raw_line))
                              for r in rejected], read, _stats(preset))


def columnar(path: Path,
             block_rows: int = DEFAULT_BLOCK_ROWS) -> tuple[Outcome, list[ColumnarChunk]]:
    preset = ChicagoPreset()
    chunks = list(read_chicago_columnar(path, preset, block_rows=block_rows))
    rows = [row for chunk in chunks for row in chunk.rows()]
    rejected = [(r.line_number, r.reason, r.raw_line) for chunk in chunks for r in chunk.rejected]
    return Outcome(rows, rejected, sum(c.rows_read for c in chunks), _stats(preset)), chunks


def _stats(preset: ChicagoPreset) -> dict[str, Any]:
    stats = preset.stats
    # as_dict() orders unmapped categories by count, ties in first-seen order: compare that too
    return {**stats.as_dict(), "unmapped_order": list(stats.as_dict()["unmapped_categories"])}


def write(path: Path, lines: list[bytes], newline: bytes = b"\r\n") -> Path:
    data = newline.join([HEADER.encode(), *lines]) + newline
    if path.name.lower().endswith(".gz"):
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def assert_same(path: Path,
                block_rows: int = DEFAULT_BLOCK_ROWS) -> tuple[Outcome, list[ColumnarChunk]]:
    expected = row_path(path)
    got, chunks = columnar(path, block_rows)
    assert got.rejected == expected.rejected
    assert len(got.rows) == len(expected.rows)
    for mine, theirs in zip(got.rows, expected.rows, strict=True):
        assert mine == theirs
        assert [type(v) for v in mine] == [type(v) for v in theirs]
    assert got.rows_read == expected.rows_read
    assert got.stats == expected.stats
    for chunk in chunks:
        assert chunk.columns.column_names == list(INCIDENT_COLUMNS)
        assert chunk.rows_read == chunk.columns.num_rows + len(chunk.rejected)
    return got, chunks


# --------------------------------------------------------------------------------------------
# 1. Real data
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("year", [2015, 2016, 2017])
def test_real_year_equals_row_path(year: int) -> None:
    path = CHICAGO / f"crimes_{year}.csv.gz"
    if not path.is_file():
        pytest.skip(f"{path} not found: the shared data sets live in ../shared/data")
    got, chunks = assert_same(path)
    assert got.rows_read > 250_000
    # bounded blocks of DEFAULT_BLOCK_ROWS lines, not one table
    assert len(chunks) == -(-(got.rows_read) // DEFAULT_BLOCK_ROWS)
    assert max(chunk.rows_read for chunk in chunks) == DEFAULT_BLOCK_ROWS


def test_bundled_sample_equals_row_path() -> None:
    got, chunks = assert_same(SAMPLE, block_rows=7000)
    assert got.rows_read == 30438
    assert len(chunks) == 5


# --------------------------------------------------------------------------------------------
# 2. Crafted rows
# --------------------------------------------------------------------------------------------


@pytest.fixture
def crafted_lines() -> list[bytes]:
    return [line for line, _ in CRAFTED]


@pytest.mark.parametrize("name", ["crafted.csv", "crafted.csv.gz"])
@pytest.mark.parametrize("block_rows", [1, 3, 7, 65536])
def test_crafted_rows_equal_row_path(tmp_path: Path, crafted_lines: list[bytes], name: str,
                                     block_rows: int) -> None:
    path = write(tmp_path / name, crafted_lines)
    assert columnar_supported(path)
    got, _ = assert_same(path, block_rows)
    # the row path agrees with what each crafted line was written to test
    expected_rejects = [(number, reason) for number, (_, reason)
                        in enumerate(CRAFTED, start=2) if reason is not None]
    assert len(got.rejected) == len(expected_rejects)
    for (line, reason, raw), (number, start) in zip(got.rejected, expected_rejects,
                                                    strict=True):
        assert line == number
        assert reason.startswith(start), (reason, start)
        assert raw == CRAFTED[number - 2][0].decode("utf-8", errors="replace")
    assert got.rows_read == len(CRAFTED) - 2  # two blank lines skipped
    assert got.stats["implausible_location"] == 2
    assert got.stats["unmapped_categories"] == {"NEW CRIME TYPE": 3}


def test_crafted_values_are_right(tmp_path: Path, crafted_lines: list[bytes]) -> None:
    """Absolute checks where the brief fixes the answer (DST rule, escaping, normalising)."""
    got, _ = columnar(write(tmp_path / "c.csv", crafted_lines))
    by_line = {row[-1]: row for row in got.rows}
    column = {name: i for i, name in enumerate(INCIDENT_COLUMNS)}

    def line_of(marker: bytes) -> tuple[Any, ...]:
        return by_line[next(n for n, (line, _) in enumerate(CRAFTED, start=2) if line == marker)]

    ambiguous = line_of(crafted(Date="11/05/2017 01:30:00 AM"))
    assert ambiguous[column["occurred_at"]] == "2017-11-05 06:30:00.000000"  # CDT, UTC-5
    gap = line_of(crafted(Date="03/12/2017 02:30:00 AM"))
    assert gap[column["occurred_at"]] == "2017-03-12 08:30:00.000000"  # CST, UTC-6
    after = line_of(crafted(Date="03/12/2017 03:30:00 AM"))
    assert after[column["occurred_at"]] == "2017-03-12 08:30:00.000000"  # CDT
    real = line_of(REAL_ROWS[1].encode())
    assert real[column["lat"]] == 41.80993288 and real[column["lon"]] == -87.613843427
    assert real[column["area_codes"]] == (
        '{"beat":"221","district":"2","ward":"3","community_area":"38"}')
    codes = line_of(crafted(District="001", Ward="", Beat=" 0221 "))
    assert codes[column["area_codes"]] == '{"beat":"221","district":"1","community_area":"38"}'
    escaped = line_of(crafted(Case_Number='JB"1\\2\t3'))
    assert escaped[column["attributes"]].startswith('{"Case Number":"JB\\"1\\\\2\\t3",')
    outside = line_of(crafted(Latitude="36.6", Longitude="-91.7"))
    assert outside[column["lon"]] is None and outside[column["lat"]] is None
    flags = line_of(crafted(Arrest=" TRUE ", Domestic="N"))
    assert flags[column["arrest"]] is True and flags[column["domestic"]] is False


def test_lf_line_endings_and_no_final_newline(tmp_path: Path,
                                               crafted_lines: list[bytes]) -> None:
    path = tmp_path / "lf.csv"
    path.write_bytes(b"\n".join([HEADER.encode(), *crafted_lines[:-3]]))
    assert_same(path, block_rows=4)


def test_quoted_newline_falls_back_to_row_path(tmp_path: Path,
                                              crafted_lines: list[bytes]) -> None:
    """A field with a newline breaks row = line; the rest of the file goes the row path."""
    multi_line = crafted(Description="TWO\r\nLINES")
    lines = [*crafted_lines[:10], multi_line, *crafted_lines[10:]]
    path = write(tmp_path / "multi.csv", lines)
    got, chunks = assert_same(path, block_rows=4)
    # the row spans lines 13-14, so the missing-ID row (15th crafted line) is on line 18
    missing_id = CRAFTED.index((crafted(ID="   "), "missing ID"))
    assert (missing_id + 2 + 2, "missing ID") in [(line, why) for line, why, _ in got.rejected]
    assert sum(c.rows_read for c in chunks) == len(lines) - 2


def test_stray_quote_and_bare_cr_fall_back(tmp_path: Path, crafted_lines: list[bytes]) -> None:
    stray = crafted().replace(b"NON-AGGRAVATED", b'12" PIPE')  # quote inside an unquoted field
    path = write(tmp_path / "stray.csv", [*crafted_lines[:5], stray, *crafted_lines[5:]])
    assert_same(path, block_rows=3)
    bare = crafted().replace(b"NON-AGGRAVATED", b"NON\rAGGRAVATED")
    path = write(tmp_path / "cr.csv", [*crafted_lines[:5], bare, *crafted_lines[5:]])
    assert_same(path, block_rows=3)


def test_utf8_bom_and_bom_inside_data(tmp_path: Path, crafted_lines: list[bytes]) -> None:
    path = tmp_path / "bom.csv"
    data = b"\r\n".join([HEADER.encode(), *crafted_lines]) + b"\r\n"
    path.write_bytes(b"\xef\xbb\xbf" + data)
    assert_same(path)
    # a BOM character starting a data line is data (only the file's first BOM is dropped)
    lines = [crafted_lines[0], b"\xef\xbb\xbf" + crafted_lines[1], *crafted_lines[2:]]
    for block_rows in (1, 65536):
        got, _ = assert_same(write(tmp_path / "inner.csv", lines), block_rows)
        assert got.rows[1][0] == "\ufeff10805378"


def test_truncated_gzip_fails_like_row_path(tmp_path: Path, crafted_lines: list[bytes]) -> None:
    path = write(tmp_path / "whole.csv.gz", crafted_lines * 50)
    broken = tmp_path / "broken.csv.gz"
    broken.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
    with pytest.raises(InputFormatError) as expected:
        row_path(broken)
    seen: list[tuple[Any, ...]] = []
    with pytest.raises(InputFormatError) as got:
        for chunk in read_chicago_columnar(broken, ChicagoPreset(), block_rows=8):
            seen.extend(chunk.rows())
    assert str(got.value) == str(expected.value)
    assert seen  # the blocks before the damage were converted


def test_wrong_header_raises_like_row_path(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_bytes(b"ID,Date,Something\r\n1,2,3\r\n")
    with pytest.raises(InputFormatError) as expected:
        row_path(path)
    with pytest.raises(InputFormatError) as got:
        list(read_chicago_columnar(path, ChicagoPreset()))
    assert str(got.value) == str(expected.value)
    assert "missing required column(s) IUCR, Primary Type" in str(got.value)


def test_empty_and_header_only_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(InputFormatError, match="the file is empty"):
        list(read_chicago_columnar(empty, ChicagoPreset()))
    header_only = write(tmp_path / "header.csv", [])
    preset = ChicagoPreset()
    assert list(read_chicago_columnar(header_only, preset)) == []
    assert preset.header == COLUMNS


def test_whitespace_set_is_str_strip() -> None:
    from urbansec.ingest.columnar import _WHITESPACE

    every = "".join(ch for ch in map(chr, range(sys.maxunicode + 1)) if ch.isspace())
    assert every == _WHITESPACE


def test_columnar_supported(tmp_path: Path, crafted_lines: list[bytes]) -> None:
    assert columnar_supported(write(tmp_path / "a.csv", crafted_lines))
    assert columnar_supported(write(tmp_path / "a.CSV.GZ", crafted_lines))
    assert not columnar_supported(tmp_path / "missing.csv")
    (tmp_path / "a.json").write_text("{}")
    assert not columnar_supported(tmp_path / "a.json")
    odd = tmp_path / "odd.csv"
    odd.write_bytes(b'"ID\r\nX",Date\r\n1,2\r\n')  # a header with a quoted line break
    assert not columnar_supported(odd)
    not_gzip = tmp_path / "b.csv.gz"
    not_gzip.write_bytes(b"ID,Date\r\n")
    assert not columnar_supported(not_gzip)


def test_header_the_json_template_cannot_take_matches_row_path(
        tmp_path: Path, crafted_lines: list[bytes]) -> None:
    """A '%' in an attributes column name: whatever the row path does, the reader does too."""
    path = tmp_path / "percent.csv"
    path.write_bytes(b"\r\n".join([HEADER.replace("FBI Code", "FBI % Code").encode(),
                                   *crafted_lines[:6]]) + b"\r\n")

    def outcome(function: Any) -> Any:
        try:
            return function()
        except Exception as exc:  # comparing failure kinds on purpose
            return type(exc)

    expected = outcome(lambda: row_path(path).rows)
    got = outcome(lambda: columnar(path)[0].rows)
    assert got == expected


def test_abandoned_reader_stops_cleanly(tmp_path: Path, crafted_lines: list[bytes]) -> None:
    path = write(tmp_path / "many.csv.gz", crafted_lines * 20)
    reader = read_chicago_columnar(path, ChicagoPreset(), block_rows=5)
    first = next(reader)
    reader.close()  # stops the read-ahead thread and closes the file
    assert first.rows_read > 0


# --------------------------------------------------------------------------------------------
# 3. COPY text
# --------------------------------------------------------------------------------------------


def parse_copy_csv(data: bytes) -> list[list[str | None]]:
    """Read COPY CSV back: an unquoted empty field is NULL, a quoted one an empty string."""
    rows: list[list[str | None]] = []
    for line in data.decode("utf-8").splitlines():
        values = next(csv.reader([line]))
        # csv loses the quoted/unquoted distinction; recover it from the field text
        fields = _raw_fields(line)
        assert len(fields) == len(values)
        rows.append([None if raw == "" else value for raw, value in zip(fields, values,
                                                                         strict=True)])
    return rows


def _raw_fields(line: str) -> list[str]:
    fields, current, quoted = [], [], False
    for ch in line:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            fields.append("".join(current))
            current = []
        else:
            current.append(ch)
    fields.append("".join(current))
    return fields


@pytest.mark.parametrize("source", ["crafted", "sample"])
def test_copy_csv_round_trips(tmp_path: Path, crafted_lines: list[bytes], source: str) -> None:
    path = write(tmp_path / "c.csv", crafted_lines) if source == "crafted" else SAMPLE
    _, chunks = columnar(path, block_rows=5000)
    checked = Counter()
    for chunk in chunks:
        parsed = parse_copy_csv(chunk.to_copy_csv())
        expected = chunk.rows()
        assert len(parsed) == len(expected)
        for text_row, row in zip(parsed, expected, strict=True):
            assert len(text_row) == len(INCIDENT_COLUMNS) - 1
            for text, value in zip(text_row, row[:-1], strict=True):
                if value is None:
                    assert text is None
                    checked["null"] += 1
                elif isinstance(value, bool):
                    assert text == ("true" if value else "false")
                elif isinstance(value, float):
                    assert text is not None and float(text) == value
                    checked["float"] += 1
                else:
                    assert text == value
                    checked["empty" if value == "" else "text"] += 1
    assert checked["null"] and checked["float"] and checked["text"]


def test_copy_csv_keeps_empty_strings_apart_from_null() -> None:
    row: list[Any] = [None] * len(INCIDENT_COLUMNS)
    row[0], row[1], row[9], row[14], row[18] = "", 'a "b", c', 0.1 + 0.2, True, 1
    table = pa.Table.from_pylist([dict(zip(INCIDENT_COLUMNS, row, strict=True))],
                                 schema=INCIDENT_SCHEMA)
    data = ColumnarChunk(table, [], 1).to_copy_csv()
    assert data.startswith(b'"","a ""b"", c",,')
    [parsed] = parse_copy_csv(data)
    assert parsed[0] == "" and parsed[1] == 'a "b", c' and parsed[2] is None
    assert float(parsed[9] or "nan") == 0.1 + 0.2 and parsed[14] == "true"
