"""Import use cases: incidents, areas and area counts, each all-or-nothing.

One call is one database transaction: every file of the call commits together, or nothing
does, so a crash or a kill half-way leaves the database exactly as before. A failed import is
then recorded (status ``failed`` with its reason) in a transaction of its own.
"""

from __future__ import annotations

import gc
import itertools
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update

from urbansec.errors import InputFormatError, RejectedRowsError, UrbansecError, UsageError
from urbansec.ingest.presets import ConversionStats, IncidentPreset, preset_for
from urbansec.ingest.records import AreaCountRecord, AreaRecord, RejectedRow
from urbansec.ingest.sources import SourceRow, TabularFile, file_format, file_sha256
from urbansec.store import repository as repo
from urbansec.store.bulk import deferred_incident_indexes, is_big_load
from urbansec.store.incident_writer import IncidentWriter
from urbansec.store.tables import Area, AreaCount

# Called as (file label, bytes done, bytes total, rows read so far).
ImportProgress = Callable[[str, int, int, int], None]

MAX_STORED_REJECTS_STRICT = 1000
# From this many rows (estimated) a file bound for SQLite is converted in a child process, if
# a CPU is free for it. SQLite writes in this process, holding the GIL between rows, so
# converting here too leaves a second CPU idle: with one free, a child process converts the
# next blocks meanwhile (a 1-year import ~25% faster on 2 CPUs). Without one it only competes
# with this process and adds the work of passing the chunks (~15% slower with one CPU busy
# elsewhere, measured), and below this size starting it costs more than the overlap gains.
# PostgreSQL's server already works on the other CPU while this process converts: there a
# child was slower in every measurement.
CHILD_CONVERSION_ROWS = 50_000
# A CPU counts as free for the child when the CPUs this process may use exceed the 1-minute
# load average by this much (one for this process, most of one for the child).
CHILD_CONVERSION_SPARE_CPUS = 1.5


@dataclass
class FileImport:
    """What happened to one file, as the summary table and ``--json`` show it."""

    file: str
    sha256: str
    batch_id: int | None = None
    status: str = "succeeded"
    rows_read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    stale: int = 0
    duplicates_in_file: int = 0
    rejected: int = 0
    unlocated: int = 0
    implausible_location: int = 0
    located_share: float | None = None
    unmapped_categories: dict[str, int] = field(default_factory=dict)
    identical_to_batch: int | None = None
    rejected_examples: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    message: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ImportReport:
    kind: str
    preset: str
    files: list[FileImport]
    status: str = "succeeded"
    message: str | None = None

    @property
    def rejected(self) -> int:
        return sum(f.rejected for f in self.files)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "preset": self.preset, "status": self.status,
                "message": self.message, "files": [f.as_dict() for f in self.files]}


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Rows are acyclic tuples freed by reference counting; the cycle collector would only
    rescan the growing heap again and again (a third of the import time in measurements)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _dashboard_data_changed(engine: Engine) -> None:
    """An import in this process changed incidents or areas: the dashboard's in-memory cube
    (if this process serves one) is rebuilt in the background now, not on the next
    request (a no-op in a process that never built one, e.g. the CLI)."""
    from urbansec.services.dashboard_cube import invalidate

    invalidate(engine)


def _check_paths(paths: Sequence[Path]) -> None:
    if not paths:
        raise UsageError("give at least one file to import")
    for path in paths:
        if not path.is_file():
            raise UsageError(f"{path}: no such file")


def _example(row: RejectedRow) -> dict[str, Any]:
    return {"line": row.line_number, "reason": row.reason, "raw": row.raw_line[:300]}


class _Failure(Exception):
    """Carries the per-file results out of the rolled-back transaction."""

    def __init__(self, error: UrbansecError, rejected: dict[str, list[RejectedRow]]) -> None:
        super().__init__(error.message)
        self.error = error
        self.rejected = rejected


def import_incidents(
    engine: Engine,
    paths: Sequence[Path],
    preset_name: str,
    *,
    mapping: Any = None,
    strict: bool = False,
    chunk_rows: int = 20_000,
    progress: ImportProgress | None = None,
) -> ImportReport:
    """Import incident files with one preset, in one transaction.

    Raises :class:`InputFormatError` (nothing written) when a file does not match the preset,
    and :class:`RejectedRowsError` (nothing written) when ``strict`` and any row is rejected.
    """
    _check_paths(paths)
    for path in paths:
        file_format(path)
    preset = preset_for(preset_name, mapping)
    report = ImportReport("incidents", preset_name,
                          [FileImport(str(p), file_sha256(p)) for p in paths])
    try:
        with _gc_paused(), engine.begin() as connection:
            source = preset.source
            source_id = repo.ensure_source(connection, source.key, source.name, source.timezone,
                                           source.url, source.licence)
            rejected_by_file: dict[str, list[RejectedRow]] = {}
            expected = sum(TabularFile(path).estimate_rows() for path in paths)
            big = is_big_load(connection, expected)
            with deferred_incident_indexes(connection, enabled=big):
                for path, result in zip(paths, report.files, strict=True):
                    try:
                        _import_incident_file(connection, preset, source_id, path, result,
                                              strict, chunk_rows, progress, rejected_by_file)
                    except UrbansecError as exc:
                        raise _Failure(exc, rejected_by_file) from exc
    except _Failure as failure:
        _record_failure(engine, report, "incidents", preset_name, failure)
        raise failure.error from None
    _dashboard_data_changed(engine)
    return report


@dataclass
class _Block:
    """A run of converted rows, from either reader: as tuples, or as an Arrow table."""

    rows_read: int
    rejected: list[RejectedRow]
    tuples: list[tuple[Any, ...]] | None = None
    columnar: Any = None  # urbansec.ingest.columnar.ColumnarChunk


def _row_blocks(table: TabularFile, preset: IncidentPreset, label: str, chunk_rows: int
                ) -> Iterator[_Block]:
    """The row path: any preset, any format; rejected rows get their exact raw text."""
    rows = table.rows()
    first: SourceRow | None = next(rows, None)  # reads the header
    preset.bind(table.header, label)
    convert = preset.convert
    block = _Block(0, [], [])
    spans: dict[int, int] = {}

    def finish(block: _Block) -> _Block:
        # The fast CSV path keeps no raw text; fetch the exact lines of rejected rows only.
        raw = table.raw_lines(spans)
        block.rejected = [replace(r, raw_line=raw[r.line_number]) if r.line_number in raw
                          else r for r in block.rejected]
        spans.clear()
        return block

    for row in itertools.chain([first] if first is not None else [], rows):
        block.rows_read += 1
        converted = convert(row)
        if type(converted) is tuple:
            block.tuples.append(converted)  # type: ignore[union-attr]
            if block.rows_read >= chunk_rows:
                yield finish(block)
                block = _Block(0, [], [])
        else:
            assert isinstance(converted, RejectedRow)
            block.rejected.append(converted)
            if row.raw is None:
                spans[row.line_number] = row.last_line
    yield finish(block)


def _columnar_blocks(path: Path, preset: IncidentPreset, table: TabularFile,
                     progress: Callable[[int], None] | None, *, child: bool
                     ) -> Iterator[_Block] | None:
    """The vectorised path, where one exists for this preset and file (identical results).

    With ``child``, a big file is converted in a child process, so that conversion and writing
    use two CPUs (see CHILD_CONVERSION_ROWS).
    """
    from urbansec.ingest.columnar import (
        can_read_in_child,
        columnar_supported,
        read_chicago_columnar,
        read_chicago_columnar_in_child,
    )
    from urbansec.ingest.presets import ChicagoPreset

    if not isinstance(preset, ChicagoPreset) or not columnar_supported(path):
        return None
    expected = max(1, table.estimate_rows())
    read_chunks = (read_chicago_columnar_in_child
                   if child and expected >= CHILD_CONVERSION_ROWS and can_read_in_child()
                   else read_chicago_columnar)

    def blocks() -> Iterator[_Block]:
        read = 0
        for chunk in read_chunks(path, preset):
            read += chunk.rows_read
            if progress is not None:
                progress(min(table.size, int(table.size * read / expected)))
            yield _Block(chunk.rows_read, chunk.rejected, columnar=chunk)
        if progress is not None:
            progress(table.size)

    return blocks()


def _import_incident_file(
    connection: Connection, preset: IncidentPreset, source_id: int, path: Path,
    result: FileImport, strict: bool, chunk_rows: int, progress: ImportProgress | None,
    rejected_by_file: dict[str, list[RejectedRow]],
) -> None:
    started = time.perf_counter()
    label = path.name
    result.identical_to_batch = repo.earlier_identical_batch(connection, result.sha256,
                                                             "incidents")
    batch_id = repo.start_batch(connection, kind="incidents", preset=preset.name,
                                source_id=source_id, file_name=str(path), sha256=result.sha256,
                                started_at=repo.now())
    result.batch_id = batch_id
    report_bytes = None
    if progress is not None:
        def report_bytes(done: int) -> None:
            progress(label, done, table.size, result.rows_read)
    table = TabularFile(path, progress=report_bytes)
    preset.stats = ConversionStats()  # fresh counters per file
    child = (connection.dialect.name == "sqlite"
             and _spare_cpus() >= CHILD_CONVERSION_SPARE_CPUS)
    blocks = (_columnar_blocks(path, preset, table, report_bytes, child=child)
              or _row_blocks(table, preset, label, chunk_rows))
    rejects: list[RejectedRow] = []
    writer = IncidentWriter(connection, source_id, batch_id)
    try:
        for block in blocks:
            result.rows_read += block.rows_read
            result.rejected += len(block.rejected)
            room = MAX_STORED_REJECTS_STRICT - len(rejects) if strict else len(block.rejected)
            rejects.extend(block.rejected[:room])
            if strict and rejects:
                continue  # all or nothing: stop writing, keep reading to report every reject
            if block.columnar is not None:
                writer.add_table(block.columnar.columns, block.columnar.rows)
            else:
                writer.add(block.tuples or [])
        stats = preset.stats
        result.unlocated = stats.unlocated
        result.implausible_location = stats.implausible_location
        result.unmapped_categories = dict(stats.unmapped_categories.most_common())
        result.rejected_examples = [_example(r) for r in rejects[:20]]
        kept = result.rows_read - result.rejected
        result.located_share = round((kept - result.unlocated) / kept, 4) if kept else None
        if strict and result.rejected:
            rejected_by_file[str(path)] = rejects
            first_bad = rejects[0]
            raise RejectedRowsError(
                f"{label}: {result.rejected} row(s) rejected in --strict mode, nothing imported; "
                f"first at line {first_bad.line_number}: {first_bad.reason}",
                details={"rejected": result.rejected, "examples": result.rejected_examples},
            )
        counts = writer.merge()  # first: on PostgreSQL a COPY may still be open until now
        repo.add_rejected(connection, batch_id, rejects)
    except BaseException:
        writer.abort()
        raise
    result.inserted, result.updated, result.unchanged = (
        counts.inserted, counts.updated, counts.unchanged)
    result.stale, result.duplicates_in_file = counts.stale, counts.duplicates_in_file
    result.seconds = round(time.perf_counter() - started, 3)
    repo.finish_batch(
        connection, batch_id, status="succeeded", rows_read=result.rows_read,
        rows_inserted=result.inserted, rows_updated=result.updated,
        rows_unchanged=result.unchanged, rows_rejected=result.rejected,
        rows_unlocated=result.unlocated,
        summary=_summary(result),
    )


def _spare_cpus() -> float:
    """The CPUs this process may use less the 1-minute load average (0 where unknown)."""
    try:
        return len(os.sched_getaffinity(0)) - os.getloadavg()[0]
    except (AttributeError, OSError):  # no affinity or load average on this platform
        return 0.0


def _summary(result: FileImport) -> dict[str, Any]:
    keys = ("stale", "duplicates_in_file", "implausible_location", "located_share",
            "unmapped_categories", "identical_to_batch", "seconds")
    return {k: getattr(result, k) for k in keys}


def _record_failure(
    engine: Engine, report: ImportReport, kind: str, preset: str, failure: _Failure
) -> None:
    """After the rollback: leave a trace of the failed attempt, and nothing else."""
    report.status = "failed"
    report.message = failure.error.message
    with engine.begin() as connection:
        for result in report.files:
            batch_id = repo.start_batch(connection, kind=kind, preset=preset, source_id=None,
                                        file_name=result.file, sha256=result.sha256,
                                        started_at=repo.now())
            rejects = failure.rejected.get(result.file, [])
            result.status = "failed"
            result.batch_id = batch_id
            repo.add_rejected(connection, batch_id, rejects)
            repo.finish_batch(connection, batch_id, status="failed",
                              rows_read=result.rows_read, rows_rejected=result.rejected,
                              message=failure.error.message, summary={})


# --------------------------------------------------------------------------------------------
# Areas
# --------------------------------------------------------------------------------------------


def import_areas(
    engine: Engine, path: Path, kind: str, *, code_field: str | None = None,
    name_field: str | None = None,
) -> ImportReport:
    """Import polygons as areas of ``kind``; a re-import replaces changed polygons by code."""
    from urbansec.ingest.areas import read_areas

    _check_paths([path])
    kind = kind.strip().lower()
    if not kind:
        raise UsageError("give the kind of area, e.g. --kind district")
    result = FileImport(str(path), file_sha256(path))
    report = ImportReport("areas", kind, [result])
    started = time.perf_counter()
    records: list[AreaRecord] = read_areas(path, code_field=code_field, name_field=name_field)
    table = Area.__table__
    with engine.begin() as connection:
        result.identical_to_batch = repo.earlier_identical_batch(connection, result.sha256,
                                                                 "areas")
        batch_id = repo.start_batch(connection, kind="areas", preset=kind, source_id=None,
                                    file_name=str(path), sha256=result.sha256,
                                    started_at=repo.now())
        result.batch_id = batch_id
        existing = {
            row.code: (row.id, row.geometry, row.name)
            for row in connection.execute(
                select(table.c.id, table.c.code, table.c.geometry, table.c.name)
                .where(table.c.kind == kind))
        }
        for record in records:
            result.rows_read += 1
            geometry = json.dumps(record.geometry.__geo_interface__, separators=(",", ":"))
            min_lon, min_lat, max_lon, max_lat = record.geometry.bounds
            values = {"name": record.name, "geometry": geometry, "min_lon": min_lon,
                      "min_lat": min_lat, "max_lon": max_lon, "max_lat": max_lat,
                      "attributes": record.attributes, "batch_id": batch_id}
            found = existing.get(record.code)
            if found is None:
                connection.execute(insert(table).values(kind=kind, code=record.code, **values))
                result.inserted += 1
            elif (found[1], found[2]) != (geometry, record.name):
                connection.execute(update(table).where(table.c.id == found[0]).values(**values))
                result.updated += 1
            else:
                result.unchanged += 1
        result.seconds = round(time.perf_counter() - started, 3)
        repo.finish_batch(connection, batch_id, status="succeeded", rows_read=result.rows_read,
                          rows_inserted=result.inserted, rows_updated=result.updated,
                          rows_unchanged=result.unchanged, summary=_summary(result))
    _dashboard_data_changed(engine)
    return report


# --------------------------------------------------------------------------------------------
# Area counts (data published per area per period)
# --------------------------------------------------------------------------------------------

AREA_COUNT_PRESETS: dict[str, dict[str, Any]] = {
    "berlin-atlas": {
        "reader": "urbansec.ingest.berlin_atlas:read_berlin_atlas",
        "source": ("berlin-police-atlas", "Polizei Berlin, Kriminalitätsatlas", "Europe/Berlin",
                   "https://www.kriminalitaetsatlas.berlin.de/", "Polizei Berlin open data"),
        "area_kind": "lor-district-region",
        "scheme": "berlin-atlas",
    },
}


def import_area_counts(
    engine: Engine, path: Path, preset_name: str, *, strict: bool = False
) -> ImportReport:
    from importlib import import_module

    from urbansec.domain.taxonomy import CategoryMapper

    _check_paths([path])
    preset = AREA_COUNT_PRESETS.get(preset_name)
    if preset is None:
        raise UsageError(f"unknown area-count preset {preset_name!r}; known: "
                         f"{', '.join(AREA_COUNT_PRESETS)}")
    result = FileImport(str(path), file_sha256(path))
    report = ImportReport("area-counts", preset_name, [result])
    started = time.perf_counter()
    records: list[AreaCountRecord]
    module, _, function = str(preset["reader"]).partition(":")
    records, rejects = getattr(import_module(module), function)(path)
    result.rows_read = len({r.line_number for r in records}) + len(rejects)
    result.rejected = len(rejects)
    result.rejected_examples = [_example(r) for r in rejects[:20]]
    if strict and rejects:
        failure = RejectedRowsError(
            f"{path.name}: {len(rejects)} row(s) rejected in --strict mode, nothing imported; "
            f"first at line {rejects[0].line_number}: {rejects[0].reason}",
            details={"rejected": len(rejects), "examples": result.rejected_examples})
        _record_failure(engine, report, "area-counts", preset_name,
                        _Failure(failure, {str(path): rejects}))
        raise failure
    mapper = CategoryMapper(str(preset["scheme"]))
    table = AreaCount.__table__
    key, name, tz, url, licence = preset["source"]  # type: ignore[misc]
    with engine.begin() as connection:
        source_id = repo.ensure_source(connection, key, name, tz, url, licence)
        result.identical_to_batch = repo.earlier_identical_batch(connection, result.sha256,
                                                                 "area-counts")
        batch_id = repo.start_batch(connection, kind="area-counts", preset=preset_name,
                                    source_id=source_id, file_name=str(path),
                                    sha256=result.sha256, started_at=repo.now())
        result.batch_id = batch_id
        area_kind = str(preset["area_kind"])
        existing = {
            (row.area_code, row.period_start, row.source_category): (row.id, row.count)
            for row in connection.execute(
                select(table.c.id, table.c.area_code, table.c.period_start,
                       table.c.source_category, table.c.count)
                .where(table.c.source_id == source_id, table.c.area_kind == area_kind))
        }
        new_rows = []
        unmapped: dict[str, int] = {}
        for record in records:
            category = mapper.map(record.source_category)
            if category is None:
                unmapped[record.source_category] = unmapped.get(record.source_category, 0) + 1
            found = existing.get((record.area_code, record.period_start, record.source_category))
            if found is None:
                new_rows.append({
                    "source_id": source_id, "area_kind": area_kind,
                    "area_code": record.area_code, "area_name": record.area_name,
                    "period_start": record.period_start, "period_end": record.period_end,
                    "category": category, "source_category": record.source_category,
                    "count": record.count, "attributes": record.attributes,
                    "batch_id": batch_id})
            elif found[1] != record.count:
                connection.execute(update(table).where(table.c.id == found[0]).values(
                    count=record.count, batch_id=batch_id))
                result.updated += 1
            else:
                result.unchanged += 1
        if new_rows:
            connection.execute(insert(table), new_rows)
        result.inserted = len(new_rows)
        result.unmapped_categories = unmapped
        repo.add_rejected(connection, batch_id, rejects)
        result.seconds = round(time.perf_counter() - started, 3)
        repo.finish_batch(connection, batch_id, status="succeeded", rows_read=result.rows_read,
                          rows_inserted=result.inserted, rows_updated=result.updated,
                          rows_unchanged=result.unchanged, rows_rejected=result.rejected,
                          summary=_summary(result))
    return report


def list_imports(engine: Engine, limit: int = 50) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        return [dict(r) for r in repo.batch_rows(connection, limit)]


def rejected_rows(engine: Engine, batch_id: int, limit: int = 100) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        exists = connection.execute(
            select(func.count()).select_from(repo.batches).where(repo.batches.c.id == batch_id)
        ).scalar_one()
        if not exists:
            from urbansec.errors import NotFoundError

            raise NotFoundError(f"no import batch {batch_id}")
        return [dict(r) for r in repo.rejected_for_batch(connection, batch_id, limit)]


__all__ = ["FileImport", "ImportReport", "InputFormatError", "import_area_counts",
           "import_areas", "import_incidents", "list_imports", "rejected_rows"]
