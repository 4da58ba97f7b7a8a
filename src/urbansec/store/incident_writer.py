"""Bulk-writing incidents: new rows straight in, the rest through a staging merge.

An import must be one transaction, must add nothing when a file is imported again, and must
update rows the source has changed. Most rows of most imports are simply new, so the writer
routes each row:

* a new id (not stored for this source, not seen earlier in the file) goes straight into
  ``incidents`` (``executemany`` on SQLite; on PostgreSQL one binary ``COPY`` kept open while
  the file is parsed, fed from a thread of its own, so the server stores one block while
  Python converts the next);
* an id already stored, or repeated within the file, goes to a temporary staging table, and
  :meth:`IncidentWriter.merge` decides in set-based SQL whether it is unchanged, newer
  (update) or older than what is stored (kept as stored, counted as stale).

Nothing is visible to anyone else until the caller commits.
"""

from __future__ import annotations

import contextlib
import io
import queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
from psycopg.copy import LibpqWriter
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
# What the binary COPY encodes each column as (unlisted: varchar, as UTF-8 bytes). It must be
# the column's type in the database, checked once per file (_binary_copy_ok): should a schema
# ever differ, blocks are sent as CSV, which the server converts to whatever the types are.
_PG_BINARY_TYPES = {
    "source_id": "integer", "batch_id": "integer",
    "occurred_at": "timestamp with time zone", "reported_at": "timestamp with time zone",
    "updated_at": "timestamp with time zone", "lon": "double precision",
    "lat": "double precision", "arrest": "boolean", "domestic": "boolean",
    "area_codes": "jsonb", "attributes": "jsonb",
}
_PG_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # no flags, no header extension
_PG_TRAILER = b"\xff\xff"
_PG_EPOCH_MICROS = 946_684_800_000_000  # 2000-01-01 UTC, the zero of binary timestamps
_PG_NULL = pa.scalar(b"\xff\xff\xff\xff", pa.binary())  # a field of length -1
_JSONB_VERSION = 1
# Blocks queued for the COPY thread beyond the one it is sending: enough to keep the server
# busy, few enough to bound memory (a block is a few MB).
_COPY_QUEUE_BLOCKS = 2

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
        self._writer: _BackgroundWriter | None = None
        self._binary = False
        if self.dialect == "postgresql":
            connection.exec_driver_sql("SET LOCAL TIME ZONE 'UTC'")
            self._binary = _binary_copy_ok(connection)
        # (the ids are integers this import has just read or made: safe as SQL literals)
        self._sqlite_block_insert = (
            f"INSERT INTO incidents ({_TARGET}) VALUES ({int(source_id)}, {int(batch_id)}, "
            f"{', '.join('?' * len(DATA_COLUMNS))})")
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

        A block of new, distinct ids goes straight in: on PostgreSQL encoded column-wise as
        binary COPY data (no Python object per row) into the open ``COPY``; on SQLite column
        lists zipped into ``executemany``. A block with ids seen before takes the per-row
        route through :meth:`add`, with the tuples ``rows()`` builds.
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
            # columns straight into executemany: no tuple per row is built or sliced here,
            # and the batch's two ids are literals in the statement (two binds fewer a row)
            columns = [keys if name == "source_key" else table.column(name).to_pylist()
                       for name in DATA_COLUMNS]
            cursor = self.driver.cursor()
            cursor.executemany(self._sqlite_block_insert, zip(*columns, strict=True))
            cursor.close()
            self.direct_inserted += count
            return
        if self._binary:
            self._open_copy("binary")
            assert self._writer is not None
            # encoded in the COPY thread too: Arrow and numpy work there without the GIL
            self._writer.submit(partial(_binary_copy_data, table, self.source_id,
                                        self.batch_id))
        else:
            self._open_copy("csv").write(self._csv_data(table))
        self.direct_inserted += count

    def _csv_data(self, table: pa.Table) -> memoryview:
        count = table.num_rows
        table = table.drop_columns(["line_number"])
        table = table.add_column(0, "batch_id", pa.array(np.full(count, self.batch_id)))
        table = table.add_column(0, "source_id", pa.array(np.full(count, self.source_id)))
        sink = io.BytesIO()
        # Arrow quotes strings and writes nulls as nothing: PostgreSQL's CSV convention
        # (an unquoted empty field is NULL, "" is the empty string).
        pcsv.write_csv(table, sink, pcsv.WriteOptions(include_header=False,
                                                      quoting_style="needed"))
        return sink.getbuffer()

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
        """The COPY into incidents in ``fmt`` (text rows, CSV or binary bytes), opened once.

        One COPY stays open across blocks, fed by a thread: the server stores rows while the
        next block is converted, instead of waiting for each block in turn.
        """
        if self._copy is not None and self._copy_format == fmt:
            return self._copy
        self._close_copy()
        option = {"csv": " (FORMAT csv)", "binary": " (FORMAT binary)"}.get(fmt, "")
        self._cursor = self.driver.cursor()
        self._writer = _BackgroundWriter(self._cursor)
        self._copy_context = self._cursor.copy(
            f"COPY incidents ({_TARGET}) FROM STDIN{option}", writer=self._writer)
        self._copy = self._copy_context.__enter__()
        self._copy_format = fmt
        if fmt == "binary":
            self._copy.write(_PG_SIGNATURE)  # raw blocks: the stream's framing is ours to write
        return self._copy

    def _close_copy(self) -> None:
        if self._copy_context is not None:
            if self._copy_format == "binary":
                self._copy.write(_PG_TRAILER)
            self._copy_context.__exit__(None, None, None)
            self._cursor.close()
            self._copy_context = self._copy = self._cursor = self._writer = None

    def abort(self) -> None:
        """Leave the connection usable for the rollback after a failure mid-file."""
        if self._copy_context is not None:
            with contextlib.suppress(Exception):
                self._copy_context.__exit__(RuntimeError, RuntimeError("import aborted"), None)
            self._cursor.close()
            self._copy_context = self._copy = self._cursor = self._writer = None

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


# --------------------------------------------------------------------------------------------
# PostgreSQL binary COPY
# --------------------------------------------------------------------------------------------


def _binary_copy_ok(connection: Connection) -> bool:
    """Do the incidents columns have the types the binary encoder writes?"""
    rows = connection.execute(text(
        "SELECT a.attname, format_type(a.atttypid, NULL) FROM pg_attribute a "
        "WHERE a.attrelid = 'incidents'::regclass AND a.attnum > 0 AND NOT a.attisdropped"
    )).all()
    types = {name: kind for name, kind in rows}
    names = ("source_id", "batch_id", *DATA_COLUMNS)
    return all(types.get(name) == _PG_BINARY_TYPES.get(name, "character varying")
               for name in names)


def _binary_copy_data(table: pa.Table, source_id: int, batch_id: int) -> memoryview:
    """The rows of ``table`` as PostgreSQL binary COPY tuples (``_TARGET`` order).

    Built column-wise: each field becomes a binary array of its 4-byte length and its bytes,
    and one element-wise join makes the tuples, so no Python object is made per row. Binary
    saves the server parsing CSV, timestamps and floats (about a third of its time storing
    the rows).
    """
    count = table.num_rows
    prefix = ((len(DATA_COLUMNS) + 2).to_bytes(2, "big")
              + _int4_field(source_id) + _int4_field(batch_id))
    pieces: list[Any] = [pa.scalar(prefix, pa.binary())]
    for name in DATA_COLUMNS:
        column = table.column(name).combine_chunks()
        kind = _PG_BINARY_TYPES.get(name)
        if kind == "timestamp with time zone":
            values = _utc_micros(column) - _PG_EPOCH_MICROS
            pieces.append(_fixed_field(values.astype(">i8").view(np.uint8), 8, column))
        elif kind == "double precision":
            values = column.fill_null(0.0).to_numpy()
            pieces.append(_fixed_field(values.astype(">f8").view(np.uint8), 8, column))
        elif kind == "boolean":
            values = column.fill_null(False).to_numpy(zero_copy_only=False)
            pieces.append(_fixed_field(values.view(np.uint8), 1, column))
        else:  # text, or jsonb: a version byte, then the JSON text
            extra = 1 if kind == "jsonb" else 0
            lengths = pc.binary_length(column).fill_null(0).to_numpy() + extra
            header = np.empty((count, 4 + extra), np.uint8)
            header[:, :4] = lengths.astype(">i4").view(np.uint8).reshape(count, 4)
            if extra:
                header[:, 4] = _JSONB_VERSION
            field = _binary_rows(header)
            if column.null_count:
                field = pc.if_else(column.is_valid(), field, _PG_NULL)
                column = column.fill_null("")
            pieces += [field, column.cast(pa.binary())]
    rows = pc.binary_join_element_wise(*pieces, b"")
    offsets = np.frombuffer(rows.buffers()[1], np.int32, count + 1, rows.offset * 4)
    return memoryview(rows.buffers()[2])[int(offsets[0]) : int(offsets[count])]


def _utc_micros(column: pa.Array) -> np.ndarray:
    """Microseconds since 1970 of naive UTC texts (``YYYY-MM-DD HH:MM:SS.ffffff``); 0 if null."""
    try:
        micros = pc.cast(column, pa.timestamp("us")).cast(pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # not expected: the texts are ISO
        micros = pa.array([None if value is None else datetime.fromisoformat(value)
                           for value in column.to_pylist()], pa.timestamp("us")).cast(pa.int64())
    return micros.fill_null(0).to_numpy()


def _int4_field(value: int) -> bytes:
    return (4).to_bytes(4, "big") + value.to_bytes(4, "big", signed=True)


def _binary_rows(matrix: np.ndarray) -> pa.Array:
    """A binary array whose values are the rows of a (rows, width) uint8 matrix."""
    rows, width = matrix.shape
    offsets = np.arange(0, (rows + 1) * width, width, dtype=np.int32)
    return pa.Array.from_buffers(pa.binary(), rows,
                                 [None, pa.py_buffer(offsets), pa.py_buffer(matrix)])


def _fixed_field(payload: np.ndarray, width: int, column: pa.Array) -> pa.Array:
    """Fields of ``width`` bytes (big-endian ``payload``), length -1 where ``column`` is null."""
    rows = len(column)
    matrix = np.empty((rows, 4 + width), np.uint8)
    matrix[:, :4] = np.frombuffer(width.to_bytes(4, "big"), np.uint8)
    matrix[:, 4:] = payload.reshape(rows, width)
    field = _binary_rows(matrix)
    if column.null_count:
        field = pc.if_else(column.is_valid(), field, _PG_NULL)
    return field


class _BackgroundWriter(LibpqWriter):
    """Sends COPY data from a thread of its own, at most a few blocks behind the caller.

    ``write`` and ``submit`` return at once while the thread encodes blocks and waits on the
    socket (both mostly without the GIL), so the server stores one block while the next is
    converted. psycopg's own ``QueuedLibpqWriter`` queues up to 128 MB; this queue holds
    ``_COPY_QUEUE_BLOCKS`` blocks. An error in the thread (a block that cannot be encoded, the
    server rejected a row, the connection broke) is raised in the caller.
    """

    def __init__(self, cursor: Any) -> None:
        super().__init__(cursor)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=_COPY_QUEUE_BLOCKS)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._send, name="urbansec-copy", daemon=True)
        self._thread.start()

    def _send(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is None:  # after an error keep taking blocks, so put() never hangs
                try:
                    super().write(item() if callable(item) else item)
                except BaseException as exc:
                    self._error = exc

    def write(self, data: Any) -> None:
        self.submit(data)

    def submit(self, data: Any) -> None:
        """Queue bytes, or a function the thread calls to make them."""
        if self._error is not None:
            raise self._error
        self._queue.put(data)

    def finish(self, exc: BaseException | None = None) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None and exc is None:
            raise self._error
        super().finish(exc)
