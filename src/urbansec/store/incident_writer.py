"""Bulk-writing incidents: new rows straight in, the rest through a staging merge.

An import must be one transaction, must add nothing when a file is imported again, and must
update rows the source has changed. Most rows of most imports are simply new, so the writer
routes each row:

* a new id (not stored for this source, not seen earlier in the file) goes straight into
  ``incidents`` (``executemany`` on SQLite; on PostgreSQL one ``COPY`` kept open while the
  file is parsed, so the server indexes rows while Python reads the next ones);
* an id already stored, or repeated within the file, goes to a temporary staging table, and
  :meth:`IncidentWriter.merge` decides in set-based SQL whether it is unchanged, newer
  (update) or older than what is stored (kept as stored, counted as stale).

Nothing is visible to anyone else until the caller commits.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
from sqlalchemy import Connection, text

from urbansec.ingest.records import INCIDENT_COLUMNS, IncidentTuple

STAGING = "staging_incidents"
# Columns copied into incidents (all but the line number, which only matters per file).
DATA_COLUMNS = tuple(c for c in INCIDENT_COLUMNS if c != "line_number")
_LINE = INCIDENT_COLUMNS.index("line_number")
# What a direct write names, in this order: the batch's two ids, then the row's data.
_TARGET = ", ".join(("source_id", "batch_id", *DATA_COLUMNS))
_SQLITE_INSERT = (f"INSERT INTO incidents ({_TARGET}) "
                  f"VALUES ({', '.join('?' * (len(DATA_COLUMNS) + 2))})")
_SLOW_FLUSH_ROWS = 20_000

_SQLITE_STAGING_TYPES = {"lon": "REAL", "lat": "REAL", "arrest": "INTEGER",
                         "domestic": "INTEGER", "line_number": "INTEGER"}
_PG_STAGING_TYPES = {
    "occurred_at": "timestamptz", "reported_at": "timestamptz", "updated_at": "timestamptz",
    "lon": "double precision", "lat": "double precision", "area_codes": "jsonb",
    "arrest": "boolean", "domestic": "boolean", "attributes": "jsonb", "line_number": "integer",
}


@dataclass
class MergeCounts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    stale: int = 0  # the stored row is newer than the file's: kept as stored
    duplicates_in_file: int = 0


class IncidentWriter:
    """Writes one file's incidents for one source and batch inside the caller's transaction."""

    def __init__(self, connection: Connection, source_id: int, batch_id: int) -> None:
        self.connection = connection
        self.dialect = connection.dialect.name
        self.source_id = source_id
        self.batch_id = batch_id
        self.driver: Any = connection.connection.driver_connection
        self.direct_inserted = 0
        self.seen: set[str] = set()
        self.duplicate_rows = 0
        self._slow: list[IncidentTuple] = []
        self._staged = 0
        self._copy_context: Any = None
        self._copy: Any = None
        self._copy_format = ""
        self._cursor: Any = None
        if self.dialect == "postgresql":
            connection.exec_driver_sql("SET LOCAL TIME ZONE 'UTC'")
        self.stored = self._stored_keys()
        self._create_staging()

    def _stored_keys(self) -> set[str]:
        rows = self.connection.execute(
            text("SELECT source_key FROM incidents WHERE source_id = :s"), {"s": self.source_id}
        )
        return {row[0] for row in rows}

    def _create_staging(self) -> None:
        types = _PG_STAGING_TYPES if self.dialect == "postgresql" else _SQLITE_STAGING_TYPES
        columns = ", ".join(f"{c} {types.get(c, 'TEXT')}" for c in INCIDENT_COLUMNS)
        # prior: the id was stored before this file (only those count as updated/unchanged)
        columns += ", prior BOOLEAN"
        self.connection.exec_driver_sql(f"DROP TABLE IF EXISTS {STAGING}")
        if self.dialect == "postgresql":
            self.connection.exec_driver_sql(
                f"CREATE TEMP TABLE {STAGING} (seq bigserial PRIMARY KEY, {columns}) "
                "ON COMMIT DROP"
            )
        else:
            self.connection.exec_driver_sql(
                f"CREATE TEMP TABLE {STAGING} (seq INTEGER PRIMARY KEY, {columns})"
            )

    # -- writing ---------------------------------------------------------------------------
    def add(self, rows: Iterable[IncidentTuple]) -> None:
        """Route and write rows; call as often as convenient, then :meth:`merge` once."""
        seen, stored, slow = self.seen, self.stored, self._slow
        fast: list[tuple[Any, ...]] = []
        for row in rows:
            key = row[0]
            if key in seen:
                self.duplicate_rows += 1
                slow.append((*row, key in stored))
            elif key in stored:
                seen.add(key)
                slow.append((*row, True))
            else:
                seen.add(key)
                fast.append(row[:_LINE] + row[_LINE + 1:])
        if fast:
            self._write_direct(fast)
        if len(slow) >= _SLOW_FLUSH_ROWS:
            self._flush_slow()

    def add_table(self, table: pa.Table, rows: Callable[[], list[IncidentTuple]]) -> None:
        """Write a block of converted rows given as an Arrow table (``INCIDENT_COLUMNS``).

        A block of new, distinct ids goes straight in: on PostgreSQL as CSV written by Arrow
        into the open ``COPY``, with no Python object per row; on SQLite column lists zipped
        into ``executemany``. A block with ids seen before takes the per-row route through
        :meth:`add`, with the tuples ``rows()`` builds.
        """
        if not table.num_rows:
            return
        keys = table.column("source_key").to_pylist()
        if (not self.stored.isdisjoint(keys) or not self.seen.isdisjoint(keys)
                or len(set(keys)) != len(keys)):
            self.add(rows())
            return
        self.seen.update(keys)
        count = table.num_rows
        if self.dialect != "postgresql":
            # columns straight into executemany: no tuple per row is built or sliced here
            columns = [table.column(name).to_pylist() for name in DATA_COLUMNS]
            self._sqlite_insert(zip(repeat(self.source_id), repeat(self.batch_id), *columns))
            self.direct_inserted += count
            return
        table = table.drop_columns(["line_number"])
        table = table.add_column(0, "batch_id", pa.array(np.full(count, self.batch_id)))
        table = table.add_column(0, "source_id", pa.array(np.full(count, self.source_id)))
        sink = io.BytesIO()
        # Arrow quotes strings and writes nulls as nothing: PostgreSQL's CSV convention
        # (an unquoted empty field is NULL, "" is the empty string).
        pcsv.write_csv(table, sink, pcsv.WriteOptions(include_header=False,
                                                      quoting_style="needed"))
        # One COPY stays open across blocks: psycopg sends from its own thread and the server
        # stores rows while the next block is converted, instead of a round trip per block.
        self._open_copy("csv").write(sink.getbuffer())
        self.direct_inserted += count

    def _write_direct(self, rows: list[tuple[Any, ...]]) -> None:
        self.direct_inserted += len(rows)
        if self.dialect == "postgresql":
            self._open_copy("text")
            write, prefix = self._copy.write_row, (self.source_id, self.batch_id)
            for row in rows:
                write(prefix + row)
        else:
            prefix = (self.source_id, self.batch_id)
            self._sqlite_insert(prefix + row for row in rows)

    def _sqlite_insert(self, rows: Iterable[tuple[Any, ...]]) -> None:
        cursor = self.driver.cursor()
        cursor.executemany(_SQLITE_INSERT, rows)
        cursor.close()

    def _open_copy(self, fmt: str) -> Any:
        """The COPY into incidents in ``fmt`` (text rows or CSV bytes), opened once."""
        if self._copy is not None and self._copy_format == fmt:
            return self._copy
        self._close_copy()
        option = " (FORMAT csv)" if fmt == "csv" else ""
        self._cursor = self.driver.cursor()
        self._copy_context = self._cursor.copy(f"COPY incidents ({_TARGET}) FROM STDIN{option}")
        self._copy = self._copy_context.__enter__()
        self._copy_format = fmt
        return self._copy

    def _close_copy(self) -> None:
        if self._copy_context is not None:
            self._copy_context.__exit__(None, None, None)
            self._cursor.close()
            self._copy_context = self._copy = self._cursor = None

    def abort(self) -> None:
        """Leave the connection usable for the rollback after a failure mid-file."""
        if self._copy_context is not None:
            with contextlib.suppress(Exception):
                self._copy_context.__exit__(RuntimeError, RuntimeError("import aborted"), None)
            self._cursor.close()
            self._copy_context = self._copy = self._cursor = None

    def _flush_slow(self) -> None:
        if not self._slow:
            return
        self._close_copy()  # one statement at a time on a connection
        names = ", ".join((*INCIDENT_COLUMNS, "prior"))
        if self.dialect == "postgresql":
            with self.driver.cursor() as cursor, cursor.copy(
                f"COPY {STAGING} ({names}) FROM STDIN"
            ) as copy:
                for row in self._slow:
                    copy.write_row(row)
        else:
            marks = ", ".join("?" * (len(INCIDENT_COLUMNS) + 1))
            cursor = self.driver.cursor()
            cursor.executemany(f"INSERT INTO {STAGING} ({names}) VALUES ({marks})", self._slow)
            cursor.close()
        self._staged += len(self._slow)
        self._slow.clear()

    # -- merging ---------------------------------------------------------------------------
    def merge(self) -> MergeCounts:
        """Finish writing; apply staged rows (update changed ones, count the rest)."""
        self._flush_slow()
        self._close_copy()
        counts = MergeCounts(inserted=self.direct_inserted,
                             duplicates_in_file=self.duplicate_rows)
        if self._staged:
            self._merge_staged(counts)
        self.connection.exec_driver_sql(f"DROP TABLE IF EXISTS {STAGING}")
        return counts

    def _merge_staged(self, counts: MergeCounts) -> None:
        run = self.connection.execute
        if self.duplicate_rows:
            # Per id keep the row updated last (then the one furthest down the file); an id
            # written directly earlier in this file takes part through the join below.
            run(text(
                f"DELETE FROM {STAGING} WHERE seq IN (SELECT seq FROM ("
                "SELECT seq, ROW_NUMBER() OVER (PARTITION BY source_key ORDER BY "
                "CASE WHEN updated_at IS NULL THEN 1 ELSE 0 END, updated_at DESC, seq DESC) AS rn "
                f"FROM {STAGING}) ranked WHERE rn > 1)"
            ))
        if self.dialect == "postgresql":
            # A temp table has no statistics; without them the planner picks nested loops.
            run(text(f"ANALYZE {STAGING}"))
        params = {"source_id": self.source_id, "batch_id": self.batch_id}
        # The file's row replaces the stored one when its content differs and it is not older.
        newer = "(s.updated_at IS NULL OR i.updated_at IS NULL OR s.updated_at >= i.updated_at)"
        row = run(text(
            "SELECT "
            "SUM(CASE WHEN i.id IS NULL THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN s.prior AND i.row_hash = s.row_hash THEN 1 ELSE 0 END), "
            f"SUM(CASE WHEN s.prior AND i.row_hash <> s.row_hash AND {newer} "
            "THEN 1 ELSE 0 END), "
            f"SUM(CASE WHEN s.prior AND i.row_hash <> s.row_hash AND NOT {newer} "
            "THEN 1 ELSE 0 END) "
            f"FROM {STAGING} s LEFT JOIN incidents i "
            "ON i.source_id = :source_id AND i.source_key = s.source_key"
        ), params).one()
        inserted, counts.unchanged, counts.updated, counts.stale = (int(v or 0) for v in row)
        counts.inserted += inserted
        if counts.updated or self.duplicate_rows:
            assignments = ", ".join(f"{c} = s.{c}" for c in DATA_COLUMNS if c != "source_key")
            run(text(
                f"UPDATE incidents SET {assignments}, batch_id = :batch_id "
                f"FROM {STAGING} s WHERE incidents.source_id = :source_id "
                "AND incidents.source_key = s.source_key "
                "AND incidents.row_hash <> s.row_hash "
                f"AND {newer.replace('i.', 'incidents.')}"
            ), params)
        if inserted:
            selected = ", ".join(f"s.{c}" for c in DATA_COLUMNS)
            run(text(
                f"INSERT INTO incidents ({_TARGET}) "
                f"SELECT :source_id, :batch_id, {selected} FROM {STAGING} s "
                "WHERE NOT EXISTS (SELECT 1 FROM incidents i "
                "WHERE i.source_id = :source_id AND i.source_key = s.source_key) "
                "ORDER BY s.seq"
            ), params)
