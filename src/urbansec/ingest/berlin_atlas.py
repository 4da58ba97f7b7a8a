"""Read the Berlin crime atlas ("Kriminalitätsatlas Berlin") yearly counts per district region.

The file (``berlin_crimes_by_district.csv``) has one row per year and LOR district region
(Bezirksregion), with the yearly number of recorded offences in 16 offence-group columns::

    "Year","District","Code","Location","Robbery","Street_robbery",...,"Drugs","Local"
    2012,"Mitte",10111,"Tiergarten Süd",70,46,...

``District`` is the borough (Bezirk), ``Code`` the LOR district-region key (published without
its leading zero, e.g. 10111 for 010111; codes are normalised like boundary codes, see
:func:`urbansec.ingest.areas.normalize_area_code`), ``Location`` the region name.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import re
import zlib
from datetime import date
from pathlib import Path

from urbansec.errors import InputFormatError
from urbansec.ingest.areas import normalize_area_code
from urbansec.ingest.records import AreaCountRecord, RejectedRow

__all__ = ["OFFENCE_COLUMNS", "read_berlin_atlas"]

#: The offence-group columns, in file order; each becomes one ``source_category``.
OFFENCE_COLUMNS: tuple[str, ...] = (
    "Robbery",
    "Street_robbery",
    "Injury",
    "Agg_assault",
    "Threat",
    "Theft",
    "Car",
    "From_car",
    "Bike",
    "Burglary",
    "Fire",
    "Arson",
    "Damage",
    "Graffiti",
    "Drugs",
    "Local",
)
_KEY_COLUMNS: tuple[str, ...] = ("Year", "District", "Code", "Location")
_REQUIRED = _KEY_COLUMNS + OFFENCE_COLUMNS
_REQUIRED_LOWER = frozenset(column.lower() for column in _REQUIRED)

# The atlas starts in 2012; the bounds only catch typos and keep date() from overflowing.
_MIN_YEAR, _MAX_YEAR = 1900, 2100
_UNSIGNED_INT = re.compile(r"[0-9]+")
_SIGNED_INT = re.compile(r"[+-]?[0-9]+")
_GZIP_MAGIC = b"\x1f\x8b"


def read_berlin_atlas(path: Path) -> tuple[list[AreaCountRecord], list[RejectedRow]]:
    """Read the Berlin crime atlas CSV (plain or gzip-compressed, UTF-8 with or without BOM).

    Returns one ``AreaCountRecord`` per data row and offence-group column: ``count`` is the
    number of offences recorded in that region in that calendar year, ``period_start`` is
    1 January and ``period_end`` the following 1 January (exclusive), ``source_category`` the
    column name as listed in :data:`OFFENCE_COLUMNS`, ``area_code`` the normalised ``Code``,
    ``area_name`` the ``Location`` (None if blank) and ``attributes`` ``{"borough": District}``.
    ``line_number`` is the physical line in the file, the header being line 1.

    Header names are matched ignoring case and surrounding blanks; extra columns are ignored.
    A data row is rejected as a whole (``RejectedRow`` with the reason and the raw line text)
    when its column count differs from the header's, its year is not an integer in
    1900..2100, its code is blank, any count is not a non-negative integer, or it repeats the
    year and code of an earlier row. Blank lines are skipped. The other rows still come through.

    Raises:
        InputFormatError: the file is missing, unreadable, not UTF-8 text, empty, its header
            lacks required columns (all missing ones are named) or repeats a column.
    """
    path = Path(path)
    text = _read_text(path)
    # newline="" keeps \r\n, \r and \n line ends as they are, so csv sees the physical lines
    # (and counts them in line_num) and raw_line can be given back verbatim.
    lines = io.StringIO(text, newline="").readlines()
    reader = csv.reader(lines)

    header: list[str] | None = None
    for row in reader:
        if any(cell.strip() for cell in row):
            header = [cell.strip() for cell in row]
            break
    if header is None:
        raise InputFormatError(f"{path}: the file is empty (no header line)")
    header_line = reader.line_num
    positions = _column_positions(header, path)

    records: list[AreaCountRecord] = []
    rejected: list[RejectedRow] = []
    seen: dict[tuple[int, str], int] = {}
    last_line = header_line
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:  # e.g. a NUL byte: reject the line, keep reading
            first_line, last_line = last_line + 1, reader.line_num
            raw_line = "".join(lines[first_line - 1 : last_line]).rstrip("\r\n")
            rejected.append(RejectedRow(first_line, f"unreadable CSV ({exc})", raw_line))
            continue
        first_line, last_line = last_line + 1, reader.line_num
        raw_line = "".join(lines[first_line - 1 : last_line]).rstrip("\r\n")
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            rejected.append(
                RejectedRow(
                    first_line,
                    f"expected {len(header)} columns as in the header, found {len(row)}",
                    raw_line,
                )
            )
            continue

        def cell(column: str, row: list[str] = row) -> str:
            return row[positions[column]].strip()

        problems: list[str] = []
        year_text = cell("Year")
        year = int(year_text) if _SIGNED_INT.fullmatch(year_text) else None
        if year is None:
            problems.append(f"Year {year_text!r} is not an integer")
        elif not _MIN_YEAR <= year <= _MAX_YEAR:
            problems.append(f"Year {year} is outside {_MIN_YEAR}..{_MAX_YEAR}")
        code = normalize_area_code(cell("Code"))
        if not code:
            problems.append("Code is blank")
        counts: dict[str, int] = {}
        for column in OFFENCE_COLUMNS:
            value = cell(column)
            if _UNSIGNED_INT.fullmatch(value):
                counts[column] = int(value)
            elif _SIGNED_INT.fullmatch(value):
                problems.append(f"{column} count {value!r} is negative")
            else:
                problems.append(f"{column} count {value!r} is not a non-negative integer")
        if not problems and year is not None:
            earlier = seen.setdefault((year, code), first_line)
            if earlier != first_line:
                problems.append(f"Year {year} and Code {code} already given on line {earlier}")
        if problems or year is None:
            rejected.append(RejectedRow(first_line, "; ".join(problems), raw_line))
            continue

        area_name = cell("Location") or None
        attributes = {"borough": cell("District") or None}
        start, end = date(year, 1, 1), date(year + 1, 1, 1)
        records.extend(
            AreaCountRecord(
                line_number=first_line,
                area_code=code,
                area_name=area_name,
                period_start=start,
                period_end=end,
                source_category=column,
                count=counts[column],
                attributes=dict(attributes),
            )
            for column in OFFENCE_COLUMNS
        )
    return records, rejected


def _read_text(path: Path) -> str:
    """Whole file as text; gzip recognised by its magic bytes, not only by the .gz suffix."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise InputFormatError(f"{path}: file not found") from exc
    except OSError as exc:
        raise InputFormatError(f"{path}: cannot read the file ({exc.strerror})") from exc
    if data.startswith(_GZIP_MAGIC):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise InputFormatError(f"{path}: corrupt gzip data ({exc})") from exc
    try:
        # utf-8-sig drops a BOM if present; Excel exports often carry one.
        return codecs.decode(data, "utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputFormatError(f"{path}: not UTF-8 text (bad byte on line {line})") from exc


def _column_positions(header: list[str], path: Path) -> dict[str, int]:
    """Index of every required column, matched case-insensitively."""
    by_lower: dict[str, int] = {}
    for index, name in enumerate(header):
        if name.lower() in by_lower and name.lower() in _REQUIRED_LOWER:
            raise InputFormatError(f"{path}: column {name!r} appears twice in the header")
        by_lower.setdefault(name.lower(), index)
    missing = [column for column in _REQUIRED if column.lower() not in by_lower]
    if missing:
        raise InputFormatError(
            f"{path}: not a Berlin crime atlas file, the header lacks the column(s) "
            f"{', '.join(missing)} (found: {', '.join(header)})",
            details={"missing_columns": missing},
        )
    return {column: by_lower[column.lower()] for column in _REQUIRED}
