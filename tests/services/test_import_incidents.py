"""Importing incidents: nothing lost, nothing half-done, nothing duplicated, on both databases."""

from __future__ import annotations

import csv
import gzip
import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from urbansec.errors import InputFormatError, RejectedRowsError, UsageError
from urbansec.services.imports import import_incidents, list_imports, rejected_rows
from urbansec.store.tables import ImportBatch, Incident, RejectedRowRecord

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "src" / "urbansec" / "samples" / "chicago" / "crimes_2017_districts_01_18.csv.gz"


def count(engine: Engine, table: type) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(table)).scalar_one()


def write(path: Path, header: str, lines: list[str]) -> Path:
    path.write_text(header + "\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return path


def fields(line: str) -> list[str]:
    return next(csv.reader([line]))


def line_of(values: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(values)
    return buffer.getvalue()


def test_sample_imports_completely(db: Engine) -> None:
    with gzip.open(SAMPLE, "rt", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    located = sum(1 for r in rows if r["Latitude"] and r["Longitude"])

    report = import_incidents(db, [SAMPLE], "chicago")

    result = report.files[0]
    assert result.rows_read == len(rows) == 30438
    assert result.inserted == len(rows)
    assert result.rejected == 0
    assert result.unlocated == len(rows) - located
    assert result.located_share == round(located / len(rows), 4)
    assert count(db, Incident) == len(rows)
    with db.connect() as connection:
        stored_located = connection.execute(
            select(func.count()).where(Incident.lon.is_not(None))).scalar_one()
        unmapped = connection.execute(
            select(func.count()).where(Incident.category.is_(None))).scalar_one()
    assert stored_located == located
    assert unmapped == 0
    batch = list_imports(db)[0]
    assert batch["status"] == "succeeded"
    assert batch["rows_inserted"] == len(rows)
    assert len(batch["sha256"]) == 64


def test_times_are_utc_instants_with_dst(db: Engine, tmp_path: Path, chicago_header: str,
                                         chicago_lines: list[str]) -> None:
    header = fields(chicago_header)
    date = header.index("Date")
    template = fields(chicago_lines[0])
    cases = {
        "winter": ("01/15/2017 11:30:00 PM", datetime(2017, 1, 16, 5, 30, tzinfo=UTC)),
        "summer": ("07/04/2017 09:15:00 PM", datetime(2017, 7, 5, 2, 15, tzinfo=UTC)),
        "gap": ("03/12/2017 02:30:00 AM", datetime(2017, 3, 12, 8, 30, tzinfo=UTC)),
        "ambiguous": ("11/05/2017 01:30:00 AM", datetime(2017, 11, 5, 6, 30, tzinfo=UTC)),
        "noon": ("11/05/2017 12:00:00 PM", datetime(2017, 11, 5, 18, 0, tzinfo=UTC)),
    }
    lines = []
    for key, (local, _) in cases.items():
        values = list(template)
        values[0] = f"9000{len(lines)}"
        values[date] = local
        lines.append(line_of(values))
        cases[key] = (values[0], cases[key][1])  # type: ignore[assignment]
    import_incidents(db, [write(tmp_path / "dst.csv", chicago_header, lines)], "chicago")
    with db.connect() as connection:
        stored = dict(connection.execute(select(Incident.source_key, Incident.occurred_at)).all())
    for key, (source_key, expected) in cases.items():
        value = stored[source_key]
        if value.tzinfo is None:  # raw SQLite read without the ORM type: stored as UTC
            value = value.replace(tzinfo=UTC)
        assert value == expected, key


def test_bad_rows_are_rejected_with_line_and_reason_and_the_rest_imported(
    db: Engine, tmp_path: Path, chicago_header: str, chicago_lines: list[str]
) -> None:
    header = fields(chicago_header)
    good = chicago_lines[:10]
    bad_time = fields(chicago_lines[10])
    bad_time[header.index("Date")] = "13/45/2017 10:00:00 PM"
    no_time = fields(chicago_lines[11])
    no_time[header.index("Date")] = ""
    bad_lat = fields(chicago_lines[12])
    bad_lat[header.index("Latitude")] = "north"
    far_lat = fields(chicago_lines[13])
    far_lat[header.index("Latitude")] = "141.9"
    unlocated = fields(chicago_lines[14])
    unlocated[header.index("Latitude")] = unlocated[header.index("Longitude")] = ""
    lines = [
        *good[:5],
        line_of(bad_time),                      # line 7
        chicago_lines[15] + ",extra",           # line 8: wrong column count
        line_of(no_time),                       # line 9
        *good[5:],                              # lines 10-14
        line_of(bad_lat),                       # line 15
        line_of(far_lat),                       # line 16
        line_of(unlocated),                     # line 17: kept, without location
    ]
    path = write(tmp_path / "dirty.csv", chicago_header, lines)

    report = import_incidents(db, [path], "chicago")

    result = report.files[0]
    assert result.rows_read == 16
    assert result.rejected == 5
    assert result.inserted == 11
    lat = header.index("Latitude")
    assert result.unlocated == 1 + sum(1 for line in good if not fields(line)[lat])
    assert count(db, Incident) == 11
    stored = rejected_rows(db, result.batch_id)
    assert [r["line_number"] for r in stored] == [7, 8, 9, 15, 16]
    reasons = [r["reason"] for r in stored]
    assert "time" in reasons[0] and "13/45/2017" in reasons[0]
    assert reasons[1] == "wrong column count: expected 20, found 21"
    assert reasons[2] == "missing time"
    assert "Latitude" in reasons[3] and "north" in reasons[3]
    assert "out of range" in reasons[4]
    # the raw text is exactly what the file holds at that line
    text_lines = path.read_text(encoding="utf-8").split("\n")
    for r in stored:
        assert r["raw_line"] == text_lines[r["line_number"] - 1]


def test_strict_mode_rejects_the_whole_import_and_records_why(
    db: Engine, tmp_path: Path, chicago_header: str, chicago_lines: list[str]
) -> None:
    broken = fields(chicago_lines[3])
    broken[fields(chicago_header).index("Arrest")] = "maybe"
    path = write(tmp_path / "strict.csv", chicago_header,
                 [*chicago_lines[:3], line_of(broken), *chicago_lines[4:50]])

    with pytest.raises(RejectedRowsError, match="line 5"):
        import_incidents(db, [path], "chicago", strict=True)

    assert count(db, Incident) == 0
    batches = list_imports(db)
    assert [b["status"] for b in batches] == ["failed"]
    assert "rejected" in batches[0]["message"]
    stored = rejected_rows(db, batches[0]["id"])
    assert [(r["line_number"], r["reason"]) for r in stored] == [
        (5, "Arrest is 'maybe', expected true or false")]


def test_wrong_preset_fails_at_once_naming_missing_columns(db: Engine, tmp_path: Path) -> None:
    uk = tmp_path / "2023-07-metropolitan-street.csv"
    uk.write_text(
        "Crime ID,Month,Reported by,Falls within,Longitude,Latitude,Location,LSOA code,"
        "LSOA name,Crime type,Last outcome category,Context\n"
        ",2023-07,Metropolitan Police Service,Metropolitan Police Service,-0.141,51.515,"
        "On or near Oxford Street,E01004734,Westminster 018A,Anti-social behaviour,,\n",
        encoding="utf-8",
    )
    with pytest.raises(InputFormatError) as raised:
        import_incidents(db, [uk], "chicago")
    for column in ("ID", "Date", "IUCR", "Primary Type"):
        assert column in raised.value.message
    assert raised.value.details["missing_columns"][:2] == ["ID", "Date"]
    assert count(db, Incident) == 0


def test_unknown_preset_and_missing_file_are_usage_errors(db: Engine, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="known presets: chicago, uk-police, generic"):
        import_incidents(db, [SAMPLE], "nypd")
    with pytest.raises(UsageError, match="no such file"):
        import_incidents(db, [tmp_path / "missing.csv"], "chicago")
    assert count(db, ImportBatch) == 0


def test_reimporting_the_same_file_adds_nothing(db: Engine) -> None:
    first = import_incidents(db, [SAMPLE], "chicago").files[0]
    second = import_incidents(db, [SAMPLE], "chicago").files[0]
    assert second.inserted == 0 and second.updated == 0
    assert second.unchanged == first.inserted == 30438
    assert second.identical_to_batch == first.batch_id
    assert count(db, Incident) == 30438


def test_newer_overlapping_export_updates_changed_rows_and_adds_new_ones(
    db: Engine, tmp_path: Path, chicago_header: str, chicago_lines: list[str]
) -> None:
    header = fields(chicago_header)
    updated_on, arrest = header.index("Updated On"), header.index("Arrest")
    import_incidents(db, [write(tmp_path / "old.csv", chicago_header, chicago_lines[:100])],
                     "chicago")
    # A later export: rows 0-89 again, row 5 now has an arrest and a newer Updated On,
    # row 6 changed but claims an OLDER Updated On (stale: must not win), rows 100-149 are new.
    newer = [fields(line) for line in chicago_lines[:150]]
    newer[5][arrest] = "true" if newer[5][arrest] == "false" else "false"
    newer[5][updated_on] = "12/31/2019 11:59:59 PM"
    newer[6][arrest] = "true" if newer[6][arrest] == "false" else "false"
    newer[6][updated_on] = "01/01/2000 12:00:00 AM"
    lines = [line_of(v) for i, v in enumerate(newer) if not 90 <= i < 100]

    result = import_incidents(db, [write(tmp_path / "new.csv", chicago_header, lines)],
                              "chicago").files[0]

    assert (result.inserted, result.updated, result.stale, result.unchanged) == (50, 1, 1, 88)
    assert count(db, Incident) == 150
    with db.connect() as connection:
        stored = dict(connection.execute(select(Incident.source_key, Incident.arrest)).all())
    assert stored[newer[5][0]] is (newer[5][arrest] == "true")
    assert stored[newer[6][0]] is not (newer[6][arrest] == "true")


def test_duplicate_ids_within_a_file_keep_the_newest(
    db: Engine, tmp_path: Path, chicago_header: str, chicago_lines: list[str]
) -> None:
    header = fields(chicago_header)
    updated_on, block = header.index("Updated On"), header.index("Block")
    first = fields(chicago_lines[0])
    again = list(first)
    again[block] = "001XX W CORRECTED ST"
    again[updated_on] = "12/31/2019 11:59:59 PM"
    lines = [line_of(first), *chicago_lines[1:20], line_of(again), line_of(first)]

    result = import_incidents(db, [write(tmp_path / "dup.csv", chicago_header, lines)],
                              "chicago").files[0]

    assert result.rows_read == 22
    assert result.inserted == 20
    assert result.duplicates_in_file == 2
    with db.connect() as connection:
        address = connection.execute(
            select(Incident.address).where(Incident.source_key == first[0])).scalar_one()
    assert address == "001XX W CORRECTED ST"


def test_several_files_are_one_transaction(
    db: Engine, tmp_path: Path, chicago_header: str, chicago_lines: list[str]
) -> None:
    good = write(tmp_path / "good.csv", chicago_header, chicago_lines[:50])
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("a,b,c\n1,2,3\n", encoding="utf-8")

    with pytest.raises(InputFormatError, match="missing required column"):
        import_incidents(db, [good, wrong], "chicago")

    assert count(db, Incident) == 0
    assert count(db, RejectedRowRecord) == 0
    assert {b["status"] for b in list_imports(db)} == {"failed"}
    report = import_incidents(db, [good, SAMPLE], "chicago")
    assert [f.inserted for f in report.files] == [50, 30438 - 50]
    assert report.files[1].unchanged == 50


def test_unmapped_source_categories_are_kept_and_reported(
    db: Engine, tmp_path: Path, chicago_header: str, chicago_lines: list[str]
) -> None:
    header = fields(chicago_header)
    odd = fields(chicago_lines[0])
    odd[header.index("Primary Type")] = "JAYWALKING"
    odd[header.index("IUCR")] = "9999"
    path = write(tmp_path / "odd.csv", chicago_header, [line_of(odd), *chicago_lines[1:5]])

    result = import_incidents(db, [path], "chicago").files[0]

    assert result.inserted == 5
    assert result.unmapped_categories == {"JAYWALKING": 1}
    with db.connect() as connection:
        row = connection.execute(
            select(Incident.category, Incident.source_category, Incident.source_code)
            .where(Incident.source_key == odd[0])).one()
    assert tuple(row) == (None, "JAYWALKING", "9999")


def test_source_columns_are_all_kept(db: Engine, chicago_header: str,
                                     chicago_lines: list[str], tmp_path: Path) -> None:
    values = dict(zip(fields(chicago_header), fields(chicago_lines[0]), strict=True))
    import_incidents(db, [write(tmp_path / "one.csv", chicago_header, chicago_lines[:1])],
                     "chicago")
    with db.connect() as connection:
        row = connection.execute(select(Incident)).one()
    assert row.attributes["Case Number"] == values["Case Number"]
    assert row.attributes["FBI Code"] == values["FBI Code"]
    assert row.area_codes["district"] == values["District"].lstrip("0")
    assert row.area_codes["beat"] == values["Beat"].lstrip("0")
    assert row.source_category == values["Primary Type"]
    assert row.source_subcategory == values["Description"]
    assert row.source_code == values["IUCR"]
    assert row.location_description == values["Location Description"]
    assert row.address == values["Block"]
    assert row.lat == float(values["Latitude"]) and row.lon == float(values["Longitude"])
