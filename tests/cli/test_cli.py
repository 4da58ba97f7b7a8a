"""End-to-end tests of the ``urbansec`` command line, on SQLite and on PostgreSQL+PostGIS.

Every expected number is computed here, independently of urbansec, from the bundled real
sample with Python's csv module (and zoneinfo for local time -> UTC).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import shapely
from sqlalchemy import text
from typer.testing import CliRunner, Result

from urbansec.cli import app
from urbansec.ingest.areas import read_areas
from urbansec.store.engine import engine_for, make_engine

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "src" / "urbansec" / "samples" / "chicago"
SAMPLE_INCIDENTS = SAMPLES / "crimes_2017_districts_01_18.csv.gz"
DISTRICTS_KMZ = SAMPLES / "police-districts.kmz"
BERLIN_ATLAS = ROOT.parent / "shared" / "data" / "berlin-crime-atlas" / (
    "berlin_crimes_by_district.csv")
CHICAGO = ZoneInfo("America/Chicago")
HEAD_REVISION = "0006"  # src/urbansec/store/migrations/versions/0006_audit_pending.py
# the Chicago preset's plausibility box: points outside are failed geocodes
COVERAGE = (-88.1, 41.5, -87.4, 42.1)
# a box around the Loop; lon/lat bounds inclusive
BBOX = (-87.635, 41.875, -87.62, 41.89)
BBOX_TEXT = ",".join(map(str, BBOX))
JUNE = (datetime(2017, 6, 1, tzinfo=UTC), datetime(2017, 7, 1, tzinfo=UTC))  # UTC days

runner = CliRunner()


# --------------------------------------------------------------------------------------------
# helpers and independent expectations
# --------------------------------------------------------------------------------------------


@cache
def sample_header_and_lines() -> tuple[str, list[str]]:
    with gzip.open(SAMPLE_INCIDENTS, "rt", encoding="utf-8", newline="") as handle:
        lines = handle.read().split("\r\n")  # the portal's export ends lines with CRLF
    assert lines[-1] == ""
    assert not any("\n" in line for line in lines)  # no row spans two lines
    return lines[0], lines[1:-1]


@cache
def sample() -> list[dict[str, Any]]:
    """The sample's rows, each with its UTC time and its location (or None) added."""
    with gzip.open(SAMPLE_INCIDENTS, "rt", encoding="utf-8", newline="") as handle:
        rows: list[dict[str, Any]] = list(csv.DictReader(handle))
    for row in rows:
        local = datetime.strptime(row["Date"], "%m/%d/%Y %I:%M:%S %p")
        row["utc"] = local.replace(tzinfo=CHICAGO).astimezone(UTC)
        row["point"] = None
        if row["Latitude"]:
            lon, lat = float(row["Longitude"]), float(row["Latitude"])
            if COVERAGE[0] <= lon <= COVERAGE[2] and COVERAGE[1] <= lat <= COVERAGE[3]:
                row["point"] = (lon, lat)
    return rows


def in_june(row: dict[str, Any]) -> bool:
    return JUNE[0] <= row["utc"] < JUNE[1]


def in_bbox(row: dict[str, Any]) -> bool:
    if row["point"] is None:
        return False
    lon, lat = row["point"]
    return BBOX[0] <= lon <= BBOX[2] and BBOX[1] <= lat <= BBOX[3]


def cli(url: str | None, *args: object) -> Result:
    prefix = ["--database", url] if url else []
    return runner.invoke(app, [*prefix, *map(str, args)])


def cli_json(url: str | None, *args: object, exit_code: int = 0) -> Any:
    result = cli(url, *args, "--json")
    assert result.exit_code == exit_code, (result.exit_code, result.output, result.exception)
    return json.loads(result.stdout)


def cli_error(url: str | None, *args: object, exit_code: int, code: str) -> dict[str, Any]:
    payload = cli_json(url, *args, exit_code=exit_code)
    assert set(payload) == {"error"}
    error = payload["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], dict)
    return error


def import_sample(url: str) -> dict[str, Any]:
    report = cli_json(url, "import", "incidents", SAMPLE_INCIDENTS, "--preset", "chicago")
    assert report["files"][0]["inserted"] == len(sample())
    return report


def total(url: str, *filters: object) -> dict[str, Any]:
    return cli_json(url, "incidents", "count", *filters)


@pytest.fixture
def url(database_url: str) -> Iterator[str]:
    """The empty test database, not migrated (the CLI must do that itself)."""
    yield database_url
    engine_for(database_url).dispose()  # the CLI caches one engine per URL
    engine_for.cache_clear()


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise TimeoutError in the main thread after ``seconds`` (a hang becomes a failure).

    Keeps pytest-timeout's own SIGALRM handler and timer: both are restored afterwards.
    """

    def expire(_signum: int, _frame: object) -> None:
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    outer, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    started = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer:
            signal.setitimer(signal.ITIMER_REAL,
                             max(outer - (time.monotonic() - started), 0.001))


def bad_file(tmp_path: Path) -> tuple[Path, dict[int, tuple[str, str]], int]:
    """Real header + real lines + two bad rows; returns (path, {line: (raw, reason)}, good)."""
    header, lines = sample_header_and_lines()
    good = lines[:6]
    columns = header.split(",")
    impossible = next(csv.reader([good[0]]))
    impossible[0] = "99000001"
    impossible[columns.index("Date")] = "02/30/2017 01:35:00 AM"
    half_located = next(csv.reader([good[1]]))
    half_located[0] = "99000002"
    half_located[columns.index("Description")] = "OVER $500\nSEE REPORT"  # a quoted newline
    half_located[columns.index("Longitude")] = ""
    raw_impossible = _csv_line(impossible)
    raw_half = _csv_line(half_located)
    assert "\n" in raw_half
    body = [header, good[0], good[1], raw_impossible, good[2], good[3], raw_half, good[4],
            good[5]]
    path = tmp_path / "crimes-with-errors.csv"
    path.write_bytes(("\r\n".join(body) + "\r\n").encode("utf-8"))
    # physical line numbers: header 1, good 2-3, impossible 4, good 5-6, half 7-8, good 9-10
    expected = {4: (raw_impossible, "impossible time '02/30/2017 01:35:00 AM'"),
                7: (raw_half, "only one of Latitude/Longitude given")}
    return path, expected, len(good)


def _csv_line(values: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(values)  # quotes embedded newlines
    return buffer.getvalue().removesuffix("\r\n")


# --------------------------------------------------------------------------------------------
# db
# --------------------------------------------------------------------------------------------


def test_db_upgrade_json(url: str) -> None:
    payload = cli_json(url, "db", "upgrade")
    assert payload["revision"] == HEAD_REVISION
    assert payload["database"].split(":")[0] in ("sqlite", "postgresql+psycopg")
    # idempotent
    assert cli_json(url, "db", "upgrade")["revision"] == HEAD_REVISION
    assert total(url)["total"] == 0


def test_postgres_schema_later_on_search_path_is_not_mistaken_for_this_one(
    database_url: str, tmp_path: Path
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("search_path is PostgreSQL's")
    assert database_url.endswith(",public")
    other = "other_" + database_url.rsplit("%3D", 1)[1].split(",")[0]
    other_url = database_url.rsplit("%3D", 1)[0] + f"%3D{other},public"
    url = database_url.removesuffix(",public") + f",{other},public"
    header, lines = sample_header_and_lines()
    path = tmp_path / "twenty.csv"
    path.write_text("\n".join([header, *lines[:20]]) + "\n", encoding="utf-8")
    admin = make_engine(database_url)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {other}"))
    try:
        assert cli_json(other_url, "db", "upgrade")["revision"] == HEAD_REVISION
        with deadline(30):
            report = cli_json(url, "import", "incidents", path)
        assert report["files"][0]["inserted"] == 20
        with admin.connect() as connection:
            in_other = connection.execute(text(f"SELECT count(*) FROM {other}.incidents"))
            assert in_other.scalar() == 0  # nothing went to the other schema
        assert total(url)["total"] == 20
    finally:
        for used in (url, other_url):
            engine_for(used).dispose()
        engine_for.cache_clear()
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {other} CASCADE"))
        admin.dispose()


# --------------------------------------------------------------------------------------------
# import incidents
# --------------------------------------------------------------------------------------------


def test_import_sample_twice_then_list(url: str) -> None:
    rows = sample()
    unlocated = sum(1 for r in rows if r["point"] is None)
    assert (len(rows), unlocated) == (30438, 442)

    first = cli_json(url, "import", "incidents", SAMPLE_INCIDENTS, "--preset", "chicago")
    assert first["status"] == "succeeded" and first["preset"] == "chicago"
    (f,) = first["files"]
    assert (f["rows_read"], f["inserted"], f["updated"], f["unchanged"], f["rejected"]) == (
        30438, 30438, 0, 0, 0)
    assert f["unlocated"] == unlocated
    assert f["located_share"] == pytest.approx((30438 - unlocated) / 30438, abs=1e-4)
    assert f["located_share"] == pytest.approx(0.986, abs=1e-3)
    assert f["identical_to_batch"] is None
    assert f["unmapped_categories"] == {}

    second = cli_json(url, "import", "incidents", SAMPLE_INCIDENTS, "--preset", "chicago")
    (s,) = second["files"]
    assert (s["inserted"], s["updated"], s["unchanged"]) == (0, 0, 30438)
    assert s["identical_to_batch"] == f["batch_id"]
    assert s["batch_id"] != f["batch_id"]

    listed = cli_json(url, "imports", "list")["imports"]
    assert [b["id"] for b in listed] == [s["batch_id"], f["batch_id"]]  # newest first
    assert [b["rows_inserted"] for b in listed] == [0, 30438]
    assert [b["rows_unchanged"] for b in listed] == [30438, 0]
    assert {b["status"] for b in listed} == {"succeeded"}
    assert {b["kind"] for b in listed} == {"incidents"}
    assert {b["source_key"] for b in listed} == {"chicago-pd"}
    assert {Path(b["file_name"]).name for b in listed} == {SAMPLE_INCIDENTS.name}

    counted = total(url)
    assert (counted["total"], counted["located"]) == (30438, 30438 - unlocated)



def test_imports_show_lists_rejected_rows_with_exact_raw_text(url: str,
                                                               tmp_path: Path) -> None:
    # new rows and rejected rows in one file: on PostgreSQL this once hung for ever (the
    # rejects were written while the COPY of the new rows was still open on the connection)
    path, expected, good = bad_file(tmp_path)
    with deadline(15):  # an import of 8 rows takes well under a second
        report = cli_json(url, "import", "incidents", path)
    (f,) = report["files"]
    assert (f["rows_read"], f["inserted"], f["rejected"]) == (good + 2, good, 2)
    assert [e["line"] for e in f["rejected_examples"]] == sorted(expected)

    shown = cli_json(url, "imports", "show", f["batch_id"])
    assert shown["batch"] == f["batch_id"]
    assert [r["line_number"] for r in shown["rejected"]] == sorted(expected)
    for row in shown["rejected"]:
        raw, reason = expected[row["line_number"]]
        assert reason in row["reason"]
        assert row["raw_line"] == raw  # byte for byte, the quoted newline included

    assert total(url)["total"] == good
    error = cli_error(url, "imports", "show", 9999, exit_code=1, code="not_found")
    assert "9999" in error["message"]


def test_strict_with_a_bad_row_writes_nothing(url: str, tmp_path: Path) -> None:
    path, expected, _ = bad_file(tmp_path)
    error = cli_error(url, "import", "incidents", path, "--strict", exit_code=1,
                      code="rejected_rows")
    assert error["details"]["rejected"] == 2
    assert "first at line 4" in error["message"]
    assert total(url)["total"] == 0
    (failed,) = cli_json(url, "imports", "list")["imports"]
    assert (failed["status"], failed["rows_rejected"], failed["rows_inserted"]) == (
        "failed", 2, 0)
    shown = cli_json(url, "imports", "show", failed["id"])["rejected"]
    assert {r["line_number"]: r["raw_line"] for r in shown} == {
        line: raw for line, (raw, _) in expected.items()}

    # without --json: exit code 1 and a message on stderr, nothing on stdout
    human = cli(url, "import", "incidents", path, "--strict")
    assert human.exit_code == 1
    assert human.stdout == ""
    assert "rejected in --strict mode" in " ".join(human.stderr.split())
    assert total(url)["total"] == 0


def test_wrong_preset_names_the_missing_columns(url: str) -> None:
    missing = ["Crime ID", "Month", "Reported by", "Falls within", "Location", "LSOA code",
               "LSOA name", "Crime type", "Last outcome category", "Context"]
    error = cli_error(url, "import", "incidents", SAMPLE_INCIDENTS, "--preset", "uk-police",
                      exit_code=1, code="input_format")
    assert error["details"]["missing_columns"] == missing
    for column in missing:
        assert column in error["message"].split("(found:")[0]
    human = cli(url, "import", "incidents", SAMPLE_INCIDENTS, "--preset", "uk-police")
    assert human.exit_code == 1
    message = " ".join(human.stderr.split())  # Rich wraps long lines
    assert "missing required column(s) " + ", ".join(missing) in message
    assert total(url)["total"] == 0


def test_unknown_preset_is_exit_2(url: str) -> None:
    error = cli_error(url, "import", "incidents", SAMPLE_INCIDENTS, "--preset", "nypd",
                      exit_code=2, code="usage_error")
    assert "nypd" in error["message"] and "uk-police" in error["message"]


def test_unsupported_extension_is_exit_1(url: str, tmp_path: Path) -> None:
    header, lines = sample_header_and_lines()
    path = tmp_path / "crimes.txt"
    path.write_text("\n".join([header, *lines[:3]]) + "\n", encoding="utf-8")
    error = cli_error(url, "import", "incidents", path, exit_code=1, code="input_format")
    assert "unsupported file type" in error["message"] and "crimes.txt" in error["message"]


def test_missing_file_is_a_usage_error(url: str, tmp_path: Path) -> None:
    error = cli_error(url, "import", "incidents", tmp_path / "absent.csv", exit_code=2,
                      code="usage_error")
    assert "no such file" in error["message"]


@pytest.mark.parametrize("args", [
    ["--bbox", "-87.7,41.8,-87.6"],
    ["--bbox", "west,south,east,north"],
    ["--bbox", "-87.6,41.8,-87.7,41.9"],  # min > max
    ["--bbox", "-87.7,41.8,-87.6,95"],
    ["--from", "2017-13-01"],
    ["--from", "June 2017"],
    ["--to", "2017-06-31"],
    ["--from", "2017-07-01", "--to", "2017-06-01"],
    ["--area", "district"],
    ["--category", "jaywalking-in-space"],
])
def test_malformed_filters_are_exit_2(url: str, args: list[str]) -> None:
    error = cli_error(url, "incidents", "count", *args, exit_code=2, code="usage_error")
    assert args[-1] in error["message"] or args[0] in error["message"]


def test_malformed_filter_without_json_prints_to_stderr(url: str) -> None:
    result = cli(url, "incidents", "count", "--bbox", "1,2,3")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "--bbox '1,2,3'" in " ".join(result.stderr.split())


# --------------------------------------------------------------------------------------------
# counts on the imported sample
# --------------------------------------------------------------------------------------------


def test_counts_on_the_imported_sample(url: str) -> None:
    """One import, three kinds of filter (each import costs seconds)."""
    import_sample(url)
    check_category_and_utc_period(url)
    check_area_code_and_bbox(url)


def check_category_and_utc_period(url: str) -> None:
    burglaries = [r for r in sample() if r["Primary Type"] == "BURGLARY"]
    expected = sum(1 for r in burglaries if in_june(r))
    by_local_date = sum(1 for r in burglaries if r["Date"].startswith("06/"))
    # the data can tell UTC days from local days here (a burglary on 30 June after 7 pm CDT)
    assert (expected, by_local_date) == (40, 41)

    result = total(url, "--category", "burglary", "--from", "2017-06-01", "--to", "2017-06-30")
    assert result["total"] == expected
    assert result["by_category"] == [{"code": "0501", "name": "Burglary", "count": expected}]
    assert result["located"] == sum(1 for r in burglaries if in_june(r) and r["point"])
    assert result["first"] >= "2017-06-01T00:00:00Z" and result["last"] < "2017-07-01"
    assert result["first"] == min(r["utc"] for r in burglaries if in_june(r)).isoformat(
        ).replace("+00:00", "Z")
    # the code means the same as the name; the whole year has every burglary
    assert total(url, "--category", "0501", "--from", "2017-06-01", "--to", "2017-06-30"
                 )["total"] == expected
    assert total(url, "--category", "burglary")["total"] == len(burglaries) == 577
    # an instant bound: the same period written as ISO times
    assert total(url, "--category", "burglary", "--from", "2017-06-01T00:00:00Z",
                 "--to", "2017-06-30T23:59:59Z")["total"] == expected


def check_area_code_and_bbox(url: str) -> None:
    rows = sample()
    district_18 = sum(1 for r in rows if r["District"] == "018")
    assert district_18 == 15064
    for spelling in ("district:18", "district:018", "District:18"):
        result = total(url, "--area", spelling)
        assert result["total"] == district_18, spelling
        assert result["area_match"] == "source codes"
    assert total(url, "--area", "district:1")["total"] == len(rows) - district_18

    in_box = [r for r in rows if in_bbox(r)]
    assert 100 < len(in_box) < 10_000  # a real test: neither everything nor nothing
    result = total(url, "--bbox", BBOX_TEXT)
    assert result["total"] == result["located"] == len(in_box)
    combined = total(url, "--bbox", BBOX_TEXT, "--area", "district:18",
                     "--from", "2017-06-01", "--to", "2017-06-30")
    assert combined["total"] == sum(
        1 for r in in_box if r["District"] == "018" and in_june(r))


# --------------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------------


def test_export_formats_agree_with_count(url: str, tmp_path: Path) -> None:
    """CSV, GeoJSON and Parquet of one filter; then GeoJSON with and without unlocated."""
    import pyarrow.parquet as pq

    import_sample(url)
    flt = ["--bbox", BBOX_TEXT, "--from", "2017-06-01", "--to", "2017-06-30"]
    expected_ids = {r["ID"] for r in sample() if in_bbox(r) and in_june(r)}
    assert len(expected_ids) > 50
    counted = total(url, *flt)["total"]
    assert counted == len(expected_ids)

    written = {}
    for fmt in ("csv", "geojson", "parquet"):
        out = tmp_path / f"june.{fmt}"
        result = cli_json(url, "incidents", "export", "--format", fmt, "--out", out, *flt)
        assert result["rows"] == counted and result["format"] == fmt
        assert Path(result["path"]) == out and out.is_file()
        assert not (tmp_path / f"june.{fmt}.partial").exists()
        written[fmt] = out

    with written["csv"].open(encoding="utf-8", newline="") as handle:
        records = list(csv.DictReader(handle))
    assert len(records) == counted
    assert {r["source_key"] for r in records} == expected_ids
    assert {r["source"] for r in records} == {"chicago-pd"}
    assert all(json.loads(r["area_codes"])["district"] in ("1", "18") for r in records)
    by_id = {r["ID"]: r for r in sample()}
    for record in records:
        row = by_id[record["source_key"]]
        assert (float(record["lon"]), float(record["lat"])) == row["point"]
        assert datetime.fromisoformat(record["occurred_at"].replace("Z", "+00:00")) == row["utc"]

    collection = json.loads(written["geojson"].read_text(encoding="utf-8"))
    assert collection["type"] == "FeatureCollection"
    assert len(collection["features"]) == counted
    for feature in collection["features"]:
        lon, lat = feature["geometry"]["coordinates"]
        assert BBOX[0] <= lon <= BBOX[2] and BBOX[1] <= lat <= BBOX[3]
    assert {f["properties"]["source_key"] for f in collection["features"]} == expected_ids

    table = pq.read_table(written["parquet"])
    assert table.num_rows == counted
    assert set(table.column("source_key").to_pylist()) == expected_ids
    times = table.column("occurred_at").to_pylist()
    assert all(JUNE[0] <= t < JUNE[1] for t in times)

    check_geojson_unlocated_have_null_geometry(url, tmp_path)


def check_geojson_unlocated_have_null_geometry(url: str, tmp_path: Path) -> None:
    june = [r for r in sample() if in_june(r)]
    unlocated = sum(1 for r in june if r["point"] is None)
    assert unlocated > 0
    flt = ["--from", "2017-06-01", "--to", "2017-06-30"]

    everything = tmp_path / "all.geojson"
    assert cli_json(url, "incidents", "export", "--out", everything, *flt)["rows"] == len(june)
    features = json.loads(everything.read_text(encoding="utf-8"))["features"]
    assert len(features) == len(june)
    assert sum(1 for f in features if f["geometry"] is None) == unlocated

    located = tmp_path / "located.geojson"
    result = cli_json(url, "incidents", "export", "--out", located, "--located-only", *flt)
    assert result["rows"] == len(june) - unlocated == total(url, *flt)["located"]
    features = json.loads(located.read_text(encoding="utf-8"))["features"]
    assert len(features) == len(june) - unlocated
    assert all(f["geometry"]["type"] == "Point" for f in features)


def test_export_unknown_format_is_exit_2(url: str, tmp_path: Path) -> None:
    error = cli_error(url, "incidents", "export", "--format", "xlsx", "--out",
                      tmp_path / "x.xlsx", exit_code=2, code="usage_error")
    assert "xlsx" in error["message"]
    assert not (tmp_path / "x.xlsx").exists()


# --------------------------------------------------------------------------------------------
# areas and area counts
# --------------------------------------------------------------------------------------------


def test_import_areas_then_count_by_polygon(url: str, tmp_path: Path) -> None:
    first = cli_json(url, "import", "areas", DISTRICTS_KMZ, "--kind", "district")
    (f,) = first["files"]
    assert (f["rows_read"], f["inserted"], f["updated"], f["unchanged"]) == (23, 23, 0, 0)
    again = cli_json(url, "import", "areas", DISTRICTS_KMZ, "--kind", "district")
    (a,) = again["files"]
    assert (a["inserted"], a["updated"], a["unchanged"]) == (0, 0, 23)
    assert a["identical_to_batch"] == f["batch_id"]

    # no incidents yet: the district exists, nothing is in it
    empty = total(url, "--area", "district:1")
    assert (empty["total"], empty["area_match"]) == (0, "polygon")
    error = cli_error(url, "incidents", "count", "--area", "district:99", exit_code=1,
                      code="not_found")
    assert "district" in error["message"]

    # incidents without district columns: --area falls back to the imported polygon
    header, lines = sample_header_and_lines()
    columns = header.split(",")
    keep = [i for i, c in enumerate(columns)
            if c not in ("Beat", "District", "Ward", "Community Area")]
    chosen = list(csv.reader(lines[:400]))
    path = tmp_path / "no-districts.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow([columns[i] for i in keep])
        writer.writerows([[values[i] for i in keep] for values in chosen])
    cli_json(url, "import", "incidents", path)

    polygon = {r.code: r.geometry for r in read_areas(DISTRICTS_KMZ)}["1"]
    lat_i, lon_i, district_i = (columns.index(c) for c in ("Latitude", "Longitude", "District"))
    located = [v for v in chosen if v[lat_i]]
    inside = sum(1 for v in located
                 if shapely.contains_xy(polygon, float(v[lon_i]), float(v[lat_i])))
    by_column = sum(1 for v in located if v[district_i] == "001")
    assert abs(inside - by_column) <= 2  # the polygon is district 1 (geocoding aside)
    assert inside > 50
    result = total(url, "--area", "district:1")
    assert result["area_match"] == "polygon"
    assert result["total"] == result["located"] == inside


def test_import_area_counts_berlin_atlas(url: str) -> None:
    if not BERLIN_ATLAS.is_file():
        pytest.skip(f"{BERLIN_ATLAS} not found: the shared data sets live in ../shared/data")
    with BERLIN_ATLAS.open(encoding="utf-8", newline="") as handle:
        table = list(csv.reader(handle))
    # one count per data row and offence column (Year, District, Code, Location come first)
    expected = (len(table) - 1) * (len(table[0]) - 4)
    assert expected == 19200

    first = cli_json(url, "import", "area-counts", BERLIN_ATLAS, "--preset", "berlin-atlas")
    (f,) = first["files"]
    assert (f["inserted"], f["updated"], f["unchanged"], f["rejected"]) == (expected, 0, 0, 0)
    assert f["rows_read"] == len(table) - 1
    again = cli_json(url, "import", "area-counts", BERLIN_ATLAS, "--preset", "berlin-atlas")
    (a,) = again["files"]
    assert (a["inserted"], a["updated"], a["unchanged"]) == (0, 0, expected)
    assert a["identical_to_batch"] == f["batch_id"]

    error = cli_error(url, "import", "area-counts", BERLIN_ATLAS, "--preset", "paris",
                      exit_code=2, code="usage_error")
    assert "berlin-atlas" in error["message"]


# --------------------------------------------------------------------------------------------
# demo
# --------------------------------------------------------------------------------------------


def test_demo_uses_the_database_from_the_environment(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("URBANSEC_DATABASE_URL", url)
    out = tmp_path / "demo"
    result = cli_json(None, "demo", "--out", out)
    rows = sample()
    located = sum(1 for r in rows if r["point"] is not None)
    summary = result["summary"]
    assert summary["total"] == len(rows) == 30438
    assert summary["located"] == located
    assert result["export"]["rows"] == located
    features = json.loads(Path(result["export"]["path"]).read_text(encoding="utf-8"))["features"]
    assert Path(result["export"]["path"]).parent == out
    assert len(features) == located
    assert all(f["geometry"] is not None for f in features)
    top = result["by_district"]
    assert {d["code"]: d["count"] for d in top} == {
        "1": sum(1 for r in rows if r["District"] == "001"),
        "18": sum(1 for r in rows if r["District"] == "018")}
    # the imports: incidents, then the district and beat polygons shipped with the sample
    kinds = [(report["kind"], report["files"][0]["inserted"]) for report in result["imports"]]
    assert kinds == [("incidents", 30438), ("areas", 23), ("areas", 275)]
    # and it really went to that database
    assert total(url)["total"] == 30438
