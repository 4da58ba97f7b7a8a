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


# --------------------------------------------------------------------------------------------
# Big files: conversion in a child process, binary COPY on PostgreSQL
# --------------------------------------------------------------------------------------------


def _dirty_file(tmp_path: Path, header_text: str, lines: list[str], *,
                repeated_id: bool = True) -> Path:
    """Good rows, every kind of rejection, unlocated and unmapped rows, a repeated id (which
    sends its whole block through the per-row writer)."""
    header = fields(header_text)
    rows = [fields(line) for line in lines]
    rows[3][header.index("Date")] = "13/45/2017 10:00:00 PM"
    rows[4][header.index("Latitude")] = "north"
    rows[5][header.index("Arrest")] = "maybe"
    rows[6][header.index("Latitude")] = rows[6][header.index("Longitude")] = ""
    rows[7][header.index("Primary Type")] = "JAYWALKING"
    rows[8][header.index("Latitude")] = "36.6"  # implausible: outside the city
    rows[9][header.index("Description")] = 'SAID "HELLO", LEFT'  # quoted, escaped in JSON
    texts = [line_of(row) for row in rows]
    texts[10] += ",extra"
    if repeated_id:
        texts.append(texts[20])  # the same id again, further down
    return write(tmp_path / "dirty.csv", header_text, texts)


def test_conversion_in_a_child_process_is_identical(
    tmp_path: Path, chicago_header: str, chicago_lines: list[str]
) -> None:
    from urbansec.ingest.columnar import (
        can_read_in_child,
        read_chicago_columnar,
        read_chicago_columnar_in_child,
    )
    from urbansec.ingest.presets import preset_for

    if not can_read_in_child():
        pytest.skip("conversion in a child process is used on Linux only")
    path = _dirty_file(tmp_path, chicago_header, chicago_lines)
    here, there = preset_for("chicago", None), preset_for("chicago", None)
    expected = list(read_chicago_columnar(path, here, block_rows=64))
    got = list(read_chicago_columnar_in_child(path, there, block_rows=64))

    assert len(got) == len(expected) == 4
    for mine, theirs in zip(got, expected, strict=True):
        assert mine.columns.equals(theirs.columns)
        assert mine.rejected == theirs.rejected
        assert mine.rows_read == theirs.rows_read
    assert sum(len(c.rejected) for c in got) == 4
    assert there.stats == here.stats
    assert there.stats.unlocated >= 1 and there.stats.implausible_location == 1
    assert there.stats.unmapped_categories == {"JAYWALKING": 1}
    assert there.header == here.header == fields(chicago_header)


def test_conversion_in_a_child_process_raises_its_errors_and_stops_with_the_caller(
    tmp_path: Path, chicago_header: str, chicago_lines: list[str]
) -> None:
    import multiprocessing

    from urbansec.ingest.columnar import can_read_in_child, read_chicago_columnar_in_child
    from urbansec.ingest.presets import preset_for

    if not can_read_in_child():
        pytest.skip("conversion in a child process is used on Linux only")
    # other processes of the test session (the API's analysis pool) may be running
    others = set(multiprocessing.active_children())
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("a,b,c\n1,2,3\n", encoding="utf-8")
    with pytest.raises(InputFormatError, match="missing required column") as raised:
        list(read_chicago_columnar_in_child(wrong, preset_for("chicago", None)))
    assert raised.value.details["missing_columns"][:2] == ["ID", "Date"]

    path = write(tmp_path / "many.csv", chicago_header, chicago_lines)
    chunks = read_chicago_columnar_in_child(path, preset_for("chicago", None), block_rows=10)
    assert next(chunks).rows_read == 10
    chunks.close()  # the caller gives up after one chunk: the child must not linger
    assert not set(multiprocessing.active_children()) - others


def test_a_conversion_process_that_dies_fails_the_import_cleanly(
    db: Engine, tmp_path: Path, chicago_header: str, chicago_lines: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os

    import urbansec.ingest.columnar as columnar
    import urbansec.services.imports as imports
    from urbansec.errors import UrbansecError

    if db.dialect.name != "sqlite" or not columnar.can_read_in_child():
        pytest.skip("the conversion process is used for SQLite, on Linux")
    real = columnar.read_chicago_columnar

    def dies_after_one_chunk(*args: object, **kwargs: object) -> object:
        for chunk in real(*args, **kwargs):  # type: ignore[arg-type]
            yield chunk
            os._exit(3)  # as if killed (out of memory...) in the middle of the file

    monkeypatch.setattr(columnar, "read_chicago_columnar", dies_after_one_chunk)
    monkeypatch.setattr(imports, "CHILD_CONVERSION_ROWS", 0)
    monkeypatch.setattr(imports, "_spare_cpus", lambda: 2.0)  # however busy this machine is
    path = write(tmp_path / "many.csv", chicago_header, chicago_lines)
    with pytest.raises(UrbansecError, match="conversion process ended unexpectedly"):
        import_incidents(db, [path], "chicago")
    assert count(db, Incident) == 0
    assert [b["status"] for b in list_imports(db)] == ["failed"]


def test_big_file_path_gives_the_same_import(
    db: Engine, tmp_path: Path, chicago_header: str, chicago_lines: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A big file's path (conversion in a child process for SQLite, indexes and constraints
    rebuilt after the load) stores exactly what the small-file path stores: same report, same
    rows, same rejections."""
    import urbansec.services.imports as imports
    import urbansec.store.bulk as bulk

    path = _dirty_file(tmp_path, chicago_header, chicago_lines)
    small = import_incidents(db, [path], "chicago").files[0]
    with db.connect() as connection:
        stored = sorted(tuple(r) for r in connection.execute(
            select(*[c for c in Incident.__table__.columns if c.name not in ("id", "batch_id")])))
        connection.execute(Incident.__table__.delete())
        connection.commit()
    monkeypatch.setattr(imports, "CHILD_CONVERSION_ROWS", 0)
    monkeypatch.setattr(imports, "_spare_cpus", lambda: 2.0)  # however busy this machine is
    monkeypatch.setattr(bulk, "BIG_LOAD_ROWS", 0)  # indexes and constraints rebuilt after
    big = import_incidents(db, [path], "chicago").files[0]

    skip = ("batch_id", "seconds", "identical_to_batch")
    assert {k: v for k, v in big.as_dict().items() if k not in skip} == \
        {k: v for k, v in small.as_dict().items() if k not in skip}
    assert (big.inserted, big.rejected, big.duplicates_in_file) == (196, 4, 1)
    with db.connect() as connection:
        again = sorted(tuple(r) for r in connection.execute(
            select(*[c for c in Incident.__table__.columns if c.name not in ("id", "batch_id")])))
    assert again == stored
    assert [(r["line_number"], r["reason"]) for r in rejected_rows(db, big.batch_id)] == \
        [(r["line_number"], r["reason"]) for r in rejected_rows(db, small.batch_id)]
    if db.dialect.name == "sqlite":  # the big load's smaller page cache was given back
        with db.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA cache_size").scalar() == -65536


@pytest.mark.parametrize("binary", [True, False], ids=["binary-copy", "csv-copy"])
def test_stored_values_are_exactly_the_converted_ones(
    db: Engine, tmp_path: Path, chicago_header: str, chicago_lines: list[str], binary: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the bulk writers store (binary COPY on PostgreSQL, or CSV where the schema's types
    are not the expected ones) reads back as the row path's values: same instants to the
    microsecond, same doubles to the bit, same nulls and JSON."""
    import json

    import urbansec.store.incident_writer as incident_writer

    if not binary:
        if db.dialect.name != "postgresql":
            pytest.skip("SQLite has one bulk path")
        monkeypatch.setattr(incident_writer, "_binary_copy_ok", lambda connection: False)

    from urbansec.ingest.columnar import read_chicago_columnar
    from urbansec.ingest.presets import preset_for
    from urbansec.ingest.records import INCIDENT_COLUMNS

    path = _dirty_file(tmp_path, chicago_header, chicago_lines, repeated_id=False)
    expected = {row[0]: dict(zip(INCIDENT_COLUMNS, row, strict=True))
                for chunk in read_chicago_columnar(path, preset_for("chicago", None))
                for row in chunk.rows()}
    import_incidents(db, [path], "chicago")
    with db.connect() as connection:
        stored = {row.source_key: row._mapping for row in connection.execute(select(Incident))}
    assert stored.keys() == expected.keys()
    for key, want in expected.items():
        got = stored[key]
        for name, value in want.items():
            if name == "line_number":
                continue
            if name in ("occurred_at", "reported_at", "updated_at"):
                value = None if value is None else \
                    datetime.fromisoformat(value).replace(tzinfo=UTC)
            elif name in ("area_codes", "attributes"):
                value = json.loads(value)
            assert got[name] == value, (key, name)
            assert type(got[name]) is type(value), (key, name)
