"""Vectorised reading of City of Chicago "Crimes - 2001 to present" CSV exports.

Why this exists: the row path (:class:`~urbansec.ingest.presets.ChicagoPreset` fed by
:class:`~urbansec.ingest.sources.TabularFile`) converts ~80k rows/s, which caps a PostgreSQL
import well below the benchmark goal. This module does the same conversion a block of lines at
a time with pyarrow.csv, pyarrow.compute and numpy, and gives results that are *identical* to the
row path: the same accepted tuples, the same rejections (reason text, physical line number, raw
line) and the same ``preset.stats``.

How exactness is kept (the row path is the specification):

* Only input whose meaning is unambiguous is parsed by pyarrow. A block of lines is handed to
  pyarrow only if every line is one CSV row: no bare carriage return, no NUL, no line longer
  than the ``csv`` module's field limit, and every line containing a quote is "regularly" quoted
  (quotes only around whole fields, ``""`` inside them). For such lines pyarrow and the ``csv``
  module (``strict=False``) produce the same fields, and row index = physical line. Anything
  else (a quoted newline, a stray quote, a truncated gzip stream...) switches the rest of the
  file, from the first line of that block, to the row path itself, so the results stay the same
  by construction.
* Values are converted vectorised only on a "fast set" whose row-path result is certain (e.g.
  ``Date`` of exactly ``MM/DD/YYYY hh:mm:ss AM`` with ASCII digits and a valid calendar date;
  ``Latitude`` matching ``-?digits.digits``, where Arrow's correctly rounded parser equals
  Python's ``float``). Every value outside the fast set goes through the row path's own function
  (``preset.utc``, ``parse_coordinate``, ``parse_flag``, ``normalise_code``,
  ``encode_basestring``, ``preset.map_category``), once per row or once per unique value.
* Stages run in the row path's order and a row leaves at its first failure, so a row with
  several problems gets the same reason; the statistics counters are bumped at the same stage
  (e.g. an implausible location still counts when the row is rejected later for ``Arrest``).

A corrupt gzip stream or broken CSV raises the row path's own InputFormatError (same message)
after the chunks before the damaged block; the rows converted between that block's start and
the error are not handed out (the import service fails the whole import in that case anyway).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import multiprocessing
import pickle
import queue
import re
import sys
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from urbansec.errors import UrbansecError
from urbansec.ingest.localtime import LocalToUTC
from urbansec.ingest.presets import (
    ChicagoPreset,
    RowRejected,
    parse_coordinate,
    parse_flag,
    row_hash,
)
from urbansec.ingest.records import INCIDENT_COLUMNS, RejectedRow
from urbansec.ingest.sources import TabularFile

__all__ = [
    "DEFAULT_BLOCK_ROWS",
    "INCIDENT_SCHEMA",
    "ColumnarChunk",
    "can_read_in_child",
    "columnar_supported",
    "read_chicago_columnar",
    "read_chicago_columnar_in_child",
]

# The Arrow types of INCIDENT_COLUMNS; ``rows()`` turns them into the row path's Python types.
INCIDENT_SCHEMA = pa.schema(
    [
        ("source_key", pa.string()),
        ("category", pa.string()),
        ("source_category", pa.string()),
        ("source_subcategory", pa.string()),
        ("source_code", pa.string()),
        ("occurred_at", pa.string()),
        ("time_precision", pa.string()),
        ("reported_at", pa.string()),
        ("updated_at", pa.string()),
        ("lon", pa.float64()),
        ("lat", pa.float64()),
        ("location_description", pa.string()),
        ("address", pa.string()),
        ("area_codes", pa.string()),
        ("arrest", pa.bool_()),
        ("domestic", pa.bool_()),
        ("attributes", pa.string()),
        ("row_hash", pa.string()),
        ("line_number", pa.int64()),
    ]
)
assert tuple(INCIDENT_SCHEMA.names) == INCIDENT_COLUMNS

# Exactly the characters Python's str.strip() removes (str.isspace(); a test checks the list),
# so utf8_trim with this set is str.strip() whatever Arrow's own idea of whitespace is.
_WHITESPACE = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004"
               "\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")

# One physical line made only of unquoted fields without quotes and of fully quoted fields with
# doubled inner quotes: csv.reader(strict=False) and pyarrow split such a line the same way.
_QUOTED = rb'"(?:[^"\r\n]|"")*"'
_REGULAR_LINE = re.compile(rb'(?:[^",\r\n]*|%s)(?:,(?:[^",\r\n]*|%s))*' % (_QUOTED, _QUOTED))
_BOM = b"\xef\xbb\xbf"
_READ_SIZE = 1 << 20
_STREAM_ERRORS = (EOFError, OSError, zlib.error)

# A coordinate text on which Arrow's string->double cast (fast_float, correctly rounded) equals
# Python's float(); anything else is parsed by the row path's parse_coordinate.
_PLAIN_DECIMAL = r"^-?[0-9]{1,20}(\.[0-9]{1,40})?$"
_NEEDS_JSON_ESCAPE = r'[\x00-\x1f"\\]'  # what json's C encode_basestring escapes

# Byte positions of the digits in "MM/DD/YYYY hh:mm:ss AM".
_DATE_DIGITS = np.array([0, 1, 3, 4, 6, 7, 8, 9, 11, 12, 14, 15, 17, 18])
_DATE_SPAN = np.arange(22)
_DAYS_IN_MONTH = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
_UTC_WIDTH = 26  # "YYYY-MM-DD HH:MM:SS.ffffff"
_UTC_TEMPLATE = np.frombuffer(b"0000-00-00 00:00:00.000000", np.uint8)
_EPOCH = datetime(1970, 1, 1)
_SECOND = timedelta(seconds=1)
# Years converted vectorised; others go through preset.utc (isoformat padding, overflow...).
_FAST_YEARS = (1900, 2200)

# Lines per block. Measured on crimes_2017.csv.gz (267,792 rows, with to_copy_csv per chunk):
# peak RSS over the interpreter's is ~110 MB at 8192 (~65 MB of it fixed: pyarrow's first use
# imports pandas and sets up its allocator), ~150 MB at 16384 and ~290 MB at 65536, while
# 65536 saves only ~10% of the CPU time of 8192.
DEFAULT_BLOCK_ROWS = 8192


@dataclass
class ColumnarChunk:
    """The result of one block of lines.

    ``columns`` is a :class:`pyarrow.Table` with exactly the columns ``INCIDENT_COLUMNS`` (types
    in ``INCIDENT_SCHEMA``), holding only the accepted rows, in file order. ``rejected`` holds
    the rows of the block the row path would reject (same reason, physical line number, and
    raw_line = the line's text as ``TabularFile.raw_lines`` gives it). ``rows_read`` counts the
    block's data rows (accepted + rejected; blank lines are skipped, as in the row path).
    """

    columns: pa.Table
    rejected: list[RejectedRow]
    rows_read: int

    def rows(self) -> list[tuple[Any, ...]]:
        """The accepted rows as tuples equal to ``ChicagoPreset.convert`` output."""
        table = self.columns
        if not table.num_rows:
            return []
        return list(zip(*(column.to_pylist() for column in table.columns), strict=True))

    def to_copy_csv(self) -> bytes:
        """Accepted rows (all columns but ``line_number``) for ``COPY ... FROM STDIN (FORMAT csv)``.

        Arrow's writer quotes every string value and writes nulls as nothing, which is exactly
        PostgreSQL's CSV convention (unquoted empty = NULL, ``""`` = empty string); booleans are
        ``true``/``false`` and doubles use the shortest text that round-trips.
        """
        # Into BytesIO, whose getvalue() hands over its buffer: one copy of the text in memory.
        sink = io.BytesIO()
        options = pcsv.WriteOptions(include_header=False, quoting_style="needed")
        pcsv.write_csv(self.columns.drop_columns(["line_number"]), sink, options)
        return sink.getvalue()


def columnar_supported(path: Path) -> bool:
    """Can :func:`read_chicago_columnar` read ``path``? (``.csv``/``.csv.gz`` with a plain header.)

    Cheap: only the first line is read. Irregular content further down (quoted newlines, stray
    quotes, corrupt gzip data) does not need to be detected here: the reader switches to the row
    path from that block on, so its results stay exact. False means "use the row path".
    """
    if not path.name.lower().endswith((".csv", ".csv.gz")) or not path.is_file():
        return False
    try:
        raw, stream = _open_binary(path)
        try:
            first = stream.readline()
        finally:
            stream.close()
            raw.close()
    except _STREAM_ERRORS:
        return False
    return _parse_header(first) is not None


def read_chicago_columnar(
    path: Path, preset: ChicagoPreset, *, block_rows: int = DEFAULT_BLOCK_ROWS
) -> Iterator[ColumnarChunk]:
    """Convert a Chicago CSV file block by block, with results identical to the row path.

    Binds ``preset`` to the header first (a wrong header raises the row path's
    :class:`InputFormatError`) and adds to ``preset.stats`` exactly what the row path would; like
    the row path, it does not reset the stats (the import service does, per file). Blocks hold
    ``block_rows`` physical lines, so memory stays bounded whatever the file size; the next
    block is read and gunzipped in a background thread while one is converted (zlib and numpy
    release the GIL), which hides most of the decompression time.
    """
    if block_rows < 1:
        raise ValueError("block_rows must be at least 1")
    if TabularFile(path).format != "csv":  # (raises the row path's error for a missing file)
        yield from _row_path_chunks(path, preset, block_rows, 1, bind=True)
        return
    raw, stream = _open_binary(path)
    fallback_from: int | None = None
    bind = False
    blocks: _Prefetcher | None = None
    try:
        try:
            header = _parse_header(stream.readline())
        except _STREAM_ERRORS:
            header = None
        if header is None:
            fallback_from, bind = 1, True
        else:
            preset.bind(header, path.name)
            converter = _BlockConverter(preset)
            next_line = 2
            if not converter.exact:
                fallback_from = next_line
            else:
                blocks = _Prefetcher(_line_blocks(stream, block_rows))
                for block, newlines in blocks:
                    converted = converter.convert(block, newlines, next_line)
                    if converted is None:
                        fallback_from = next_line
                        break
                    chunk, lines = converted
                    next_line += lines
                    if chunk.rows_read:
                        yield chunk
                if blocks.broken:
                    fallback_from = next_line
    finally:
        if blocks is not None:
            blocks.close()
        stream.close()
        raw.close()
    if fallback_from is not None:
        yield from _row_path_chunks(path, preset, block_rows, fallback_from, bind=bind)


# --------------------------------------------------------------------------------------------
# Converting in a child process
# --------------------------------------------------------------------------------------------


def can_read_in_child() -> bool:
    """Is :func:`read_chicago_columnar_in_child` available here (Linux, where fork is safe)?"""
    return sys.platform == "linux"


def read_chicago_columnar_in_child(
    path: Path, preset: ChicagoPreset, *, block_rows: int = DEFAULT_BLOCK_ROWS
) -> Iterator[ColumnarChunk]:
    """:func:`read_chicago_columnar` run in a forked child process, chunks streamed back.

    Why: conversion is Python and the GIL keeps it from overlapping with the caller's work on
    the chunks (SQLite's ``executemany`` takes and drops the GIL for every row); a process of
    its own converts the next blocks on the second CPU meanwhile. The chunks, the rejections,
    ``preset.stats`` and the binding of ``preset`` to the header end up exactly as the
    in-process reader leaves them, and its errors (e.g. :class:`InputFormatError`) are raised
    here. The child is forked, so it starts at once with everything imported, and only reads
    the file: it never touches the caller's database connection (it ends with ``os._exit``,
    which runs no finalizer). If the caller stops early, the child is stopped too.
    """
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_child_main,
                            args=(receiver, sender, path, preset, block_rows),
                            name="urbansec-convert", daemon=True)
    child.start()
    sender.close()
    done = False
    try:
        while True:
            try:
                kind, payload, stats, header = pickle.loads(receiver.recv_bytes())
            except EOFError:
                child.join(timeout=5)
                raise UrbansecError(
                    f"{path.name}: the conversion process ended unexpectedly (exit code "
                    f"{child.exitcode}); nothing was imported") from None
            _copy_stats(stats, preset)
            if kind == "error":
                done = True
                raise payload
            if header is not None and preset.header != header:
                preset.bind(header, path.name)  # (cheap: column positions and templates)
            if kind == "end":
                done = True
                return
            yield payload
    finally:
        receiver.close()
        if not done:
            child.terminate()
        child.join()


def _child_main(receiver: Any, sender: Any, path: Path, preset: ChicagoPreset,
                block_rows: int) -> None:
    # The fork copied the reading end too: closed here, so that once the caller is gone
    # (stopped early, or killed) the next send fails instead of blocking on a full pipe.
    receiver.close()

    def send(kind: str, payload: Any) -> None:
        message = pickle.dumps((kind, payload, preset.stats, preset.header or None), protocol=5)
        try:
            sender.send_bytes(message)
        except OSError:  # the caller has gone (stopped early, or killed): nobody to tell
            raise _CallerGone from None

    try:
        try:
            for chunk in read_chicago_columnar(path, preset, block_rows=block_rows):
                send("chunk", chunk)
        except _CallerGone:
            raise
        except BaseException as exc:
            try:
                send("error", exc)
            except _CallerGone:
                raise
            except Exception:  # unpicklable: the message still tells what happened
                send("error", UrbansecError(f"{path.name}: {type(exc).__name__}: {exc}"))
        else:
            send("end", None)
    except _CallerGone:
        pass
    finally:
        sender.close()


class _CallerGone(Exception):
    pass


def _copy_stats(source: Any, preset: ChicagoPreset) -> None:
    """Make ``preset.stats`` (the same object) equal to the child's."""
    target = preset.stats
    for field in fields(target):
        setattr(target, field.name, getattr(source, field.name))


# --------------------------------------------------------------------------------------------
# Reading blocks of lines
# --------------------------------------------------------------------------------------------


def _open_binary(path: Path) -> tuple[BinaryIO, BinaryIO]:
    """The same byte stream as ``TabularFile`` reads (gunzipped for ``.gz``)."""
    raw = path.open("rb")
    if path.name.lower().endswith(".gz"):
        gunzipped = gzip.GzipFile(fileobj=raw)
        return raw, io.BufferedReader(gunzipped, buffer_size=1 << 20)  # type: ignore[arg-type]
    return raw, raw


def _parse_header(line: bytes) -> list[str] | None:
    """The header as ``TabularFile`` sees it, or None if only the row path can say."""
    if not line:
        return None  # empty file: the row path raises its own error
    content = line[:-1] if line.endswith(b"\n") else line
    if content.endswith(b"\r"):
        content = content[:-1]
    body = content[len(_BOM):] if content.startswith(_BOM) else content
    if not body or b"\r" in body or b"\x00" in body or len(body) > csv.field_size_limit():
        return None
    if b'"' in body and not _REGULAR_LINE.fullmatch(body):
        return None
    values = next(csv.reader([content.decode("utf-8-sig", errors="replace")]))
    return [value.strip() for value in values]


Block = tuple[bytes, np.ndarray]  # complete lines, and the positions of their line feeds


def _line_blocks(stream: BinaryIO, block_rows: int) -> Iterator[Block]:
    """Blocks of ``block_rows`` complete lines (the last block may be shorter).

    Reads 1 MiB pieces and joins a block once from views of them, so a block costs its own size
    in memory (no bigger buffer to cut it from, no large temporary for finding line feeds).
    """
    pieces: list[memoryview] = []  # the block being assembled
    ends: list[np.ndarray] = []  # its line feed positions
    size = lines = 0
    while True:
        piece = stream.read(_READ_SIZE)
        if not piece:
            break
        view = memoryview(piece)
        found = np.flatnonzero(np.frombuffer(piece, dtype=np.uint8) == 10)
        start = used = 0  # what of this piece is already in a block: bytes, line feeds
        while lines + found.size - used >= block_rows:
            last = used + block_rows - lines - 1  # the block's last line feed
            cut = int(found[last]) + 1
            pieces.append(view[start:cut])
            ends.append(found[used : last + 1] - start + size)
            yield b"".join(pieces), np.concatenate(ends)
            pieces, ends, size, lines = [], [], 0, 0
            start, used = cut, last + 1
        if start < len(piece):
            pieces.append(view[start:])
            ends.append(found[used:] - start + size)
            size += len(piece) - start
            lines += found.size - used
    if pieces:
        yield b"".join(pieces), np.concatenate(ends)


class _Prefetcher:
    """Runs a block iterator one step ahead in a thread; a read error ends it with ``broken``.

    The thread only reads, gunzips and finds line feeds (mostly GIL-free work), and starts on a
    block only when the previous one has been taken, so at most two blocks are in memory.
    ``close`` stops it before the stream is closed, also when the consumer abandons the
    generator early.
    """

    _END = object()

    def __init__(self, blocks: Iterator[Block]) -> None:
        self.broken = False
        self._queue: queue.Queue[object] = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._taken = threading.Semaphore(0)
        self._thread = threading.Thread(target=self._run, args=(blocks,), daemon=True)
        self._thread.start()

    def _run(self, blocks: Iterator[Block]) -> None:
        try:
            for block in blocks:  # the next block is read once this one has been taken
                if not self._put(block) or not self._wait(self._taken):
                    return
        except _STREAM_ERRORS as exc:
            self._put(exc)
            return
        except BaseException as exc:  # handed to the consumer, who re-raises it
            self._put(_Failure(exc))
            return
        self._put(self._END)

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _wait(self, signal: threading.Semaphore) -> bool:
        while not self._stop.is_set():
            if signal.acquire(timeout=0.05):
                return True
        return False

    def __iter__(self) -> Iterator[Block]:
        while True:
            item = self._queue.get()
            self._taken.release()
            if item is self._END:
                return
            if isinstance(item, _STREAM_ERRORS):
                self.broken = True  # the row path re-reads from here and reports it its way
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item  # type: ignore[misc]

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            with suppress(queue.Empty):
                self._queue.get(timeout=0.05)
        self._thread.join()


@dataclass
class _Failure:
    error: BaseException


# --------------------------------------------------------------------------------------------
# Converting one block
# --------------------------------------------------------------------------------------------


@dataclass
class _Lines:
    """Where the lines of a block are: start, end of content (no CR/LF), end incl. the LF."""

    starts: np.ndarray
    content_ends: np.ndarray
    next_starts: np.ndarray

    def text(self, block: bytes, line: int) -> str:
        """The line as ``TabularFile.raw_lines`` reports it."""
        data = block[self.starts[line] : self.next_starts[line]]
        return data.decode("utf-8", errors="replace").rstrip("\r\n").lstrip("\ufeff")

    def content(self, block: bytes, line: int) -> str:
        return block[self.starts[line] : self.content_ends[line]].decode(
            "utf-8", errors="replace")


class _Rejections:
    """First-failure bookkeeping: a row leaves ``alive`` with the first reason it gets."""

    def __init__(self, rows: int) -> None:
        self.alive = np.ones(rows, dtype=bool)
        self.found: list[tuple[int, str]] = []

    def reject(self, failed: np.ndarray, reason: str | Callable[[int], str]) -> None:
        failed = failed & self.alive
        if not failed.any():
            return
        for row in np.flatnonzero(failed).tolist():
            self.found.append((row, reason if isinstance(reason, str) else reason(row)))
        self.alive &= ~failed


class _BlockConverter:
    """Holds what ``preset.bind`` decided (column positions, JSON templates) for every block."""

    def __init__(self, preset: ChicagoPreset) -> None:
        self.preset = preset
        self.width: int = preset.expected_width
        self.area_columns = preset.area_json.columns
        self.area_transform = preset.area_json.transform
        self.extra_columns = preset.extra.columns
        # JsonObjectTemplate %-formats a template built from column names: a "%" in a name makes
        # the row path fail or misbehave, so such files are left to the row path.
        self.exact = not any(
            "%" in name for _, name in [*self.area_columns, *self.extra_columns])
        self.hour_offsets: dict[int, int | None] = {}  # local hour -> UTC offset seconds
        fields = {f"f{i}": pa.string() for i in range(self.width)}
        # Single-threaded: as fast per row as Arrow's thread pool for blocks this size on a
        # loaded 2-core machine, with less memory held by per-thread allocator caches.
        self.read_options = pcsv.ReadOptions(autogenerate_column_names=True, use_threads=False)
        self.parse_options = pcsv.ParseOptions(newlines_in_values=False, ignore_empty_lines=True)
        self.convert_options = pcsv.ConvertOptions(
            column_types=fields, strings_can_be_null=False, quoted_strings_can_be_null=False,
            null_values=[], check_utf8=False)

    # -- structure ---------------------------------------------------------------------------
    def convert(self, block: bytes, ends: np.ndarray,
                first_line: int) -> tuple[ColumnarChunk, int] | None:
        """The chunk of ``block`` and its number of lines; None if only the row path can say.

        ``ends`` are the positions of the block's line feeds.
        """
        buf = np.frombuffer(block, dtype=np.uint8)
        size = buf.size
        if size and (not ends.size or ends[-1] != size - 1):
            if buf[-1] == 13:
                return None  # a final bare CR: leave it to the csv module
            ends = np.append(ends, size)  # last line of the file without a newline
        count = ends.size
        if not count:
            return _empty_chunk(), 0
        starts = np.concatenate(([0], ends[:-1] + 1))
        next_starts = np.minimum(ends + 1, size)
        # (bytes methods below are memchr-fast; numpy passes only where positions are needed)
        has_cr = (ends > starts) & (buf[np.maximum(ends - 1, 0)] == 13)
        carriage_returns = int(has_cr.sum())
        if block.count(b"\r") != carriage_returns:
            return None  # a CR not followed by LF is a line break for the csv module
        content_ends = ends - has_cr
        lengths = content_ends - starts
        if int(lengths.max()) > csv.field_size_limit() or b"\x00" in block:
            return None
        lines = _Lines(starts, content_ends, next_starts)
        # Field counts: commas per line, from where line starts and ends fall among the commas.
        commas = np.flatnonzero(buf == 44)
        first_comma = np.searchsorted(commas, starts)
        fields = np.searchsorted(commas, ends) - first_comma + 1
        quoted = np.zeros(0, dtype=np.int64)
        if b'"' in block:
            quotes = np.flatnonzero(buf == 34)
            quoted = np.unique(np.searchsorted(starts, quotes, side="right") - 1)
            for line in quoted.tolist():
                if not _REGULAR_LINE.fullmatch(block, starts[line], content_ends[line]):
                    return None
            fields -= _quoted_commas(commas, quotes, quoted, first_comma, fields - 1, count)
        fields[lengths == 0] = 0

        blank = fields == 0
        for line in np.flatnonzero(fields == 1).tolist():
            values = next(csv.reader([lines.content(block, line)]))
            blank[line] = not values[0].strip()
        early: list[tuple[int, str]] = []  # (line index, reason) before any value is looked at
        width_ok = fields == self.width
        for line in np.flatnonzero(~width_ok & ~blank).tolist():
            early.append((line, f"wrong column count: expected {self.width}, "
                                f"found {int(fields[line])}"))
        good = width_ok & ~blank
        # U+FFFD after decoding (invalid bytes, or the character itself) is only possible on
        # lines with non-ASCII bytes; bytes are split into lines the same either way.
        if not block.isascii():
            high = np.flatnonzero(buf >= 0x80)
            for line in np.unique(np.searchsorted(starts, high, side="right") - 1).tolist():
                if good[line] and "\ufffd" in lines.content(block, line):
                    early.append((line, "not valid UTF-8 text"))
                    good[line] = False

        good_lines = np.flatnonzero(good)
        accepted: pa.Table | None = None
        if good_lines.size:
            data = block if good.all() else buf[np.repeat(good, next_starts - starts)].tobytes()
            if data.startswith(_BOM):  # pyarrow drops a leading BOM; the csv module only does
                data = b"\n" + data   # at the start of the file (an empty line is skipped)
            try:
                table = pcsv.read_csv(pa.py_buffer(data), read_options=self.read_options,
                                      parse_options=self.parse_options,
                                      convert_options=self.convert_options)
            except pa.ArrowInvalid:
                return None  # cannot happen for regular lines; stay exact regardless
            if table.num_rows != good_lines.size or table.num_columns != self.width:
                return None
            columns = [column.combine_chunks() for column in table.columns]
            del table, data
            # No value can need JSON escaping unless the block has a backslash, a control
            # character other than CR/LF, or a doubled quote (a quote inside a value).
            line_feeds = count - int(buf[-1] != 10)
            plain = (b"\\" not in block and b'""' not in block
                     and int(np.count_nonzero(buf < 32)) == line_feeds + carriage_returns)
            output, late, keep = self._convert_values(columns, good_lines + first_line, plain)
            kept_lines = good_lines[keep]
            output["row_hash"] = _row_hashes(buf, commas, lines, kept_lines, quoted, block)
            accepted = pa.table(output, schema=INCIDENT_SCHEMA)
            early.extend((int(good_lines[row]), reason) for row, reason in late)
        early.sort()
        rejected = [RejectedRow(first_line + line, reason, lines.text(block, line))
                    for line, reason in early]
        if accepted is None:
            accepted = _empty_table()
        return ColumnarChunk(accepted, rejected, int((~blank).sum())), count

    # -- values ------------------------------------------------------------------------------
    def _convert_values(
        self, columns: list[pa.Array], line_numbers: np.ndarray, plain_json: bool
    ) -> tuple[dict[str, pa.Array], list[tuple[int, str]], np.ndarray]:
        """``ChicagoPreset.convert_values`` over whole columns, stage by stage in its order.

        Returns the output columns of the accepted rows (all but ``row_hash``), the rejected
        rows (row index, reason) and the mask of accepted rows.
        """
        p = self.preset
        stats = p.stats
        n = len(line_numbers)
        state = _Rejections(n)

        key = _strip(columns[p.i_id])
        state.reject(~_nonempty(key), "missing ID")

        occurred = self._times(columns[p.i_date], np.ones(n, dtype=bool), state)
        if p.i_updated is not None:
            raw_updated = columns[p.i_updated]
            updated = self._times(raw_updated, _nonempty(raw_updated), state)
        else:
            updated = pa.nulls(n, pa.string())

        lat, lon, located = self._coordinates(columns[p.i_lat], columns[p.i_lon], state)
        if p.coverage is not None:
            min_lon, min_lat, max_lon, max_lat = p.coverage
            inside = (min_lon <= lon) & (lon <= max_lon) & (min_lat <= lat) & (lat <= max_lat)
            implausible = located & ~inside & state.alive
            stats.implausible_location += int(implausible.sum())
            located &= inside
        stats.unlocated += int((state.alive & ~located).sum())

        flags = [self._flag(columns, index, what, state)
                 for index, what in ((p.i_arrest, "Arrest"), (p.i_domestic, "Domestic"))]

        keep = state.alive.copy()
        indices = None if keep.all() else pa.array(np.flatnonzero(keep))

        def take(array: pa.Array) -> pa.Array:
            return array if indices is None else array.take(indices)

        cols = [take(column) for column in columns]
        kept = len(cols[0])
        source_category = _strip(cols[p.i_type])
        source_code = _strip(cols[p.i_iucr])
        areas = [(self._transformed(cols[i]), name) for i, name in self.area_columns]
        output = {
            "source_key": take(key),
            "category": self._categories(source_category, source_code),
            "source_category": _none_if_empty(source_category),
            "source_subcategory": _none_if_empty(_strip(cols[p.i_desc])),
            "source_code": _none_if_empty(source_code),
            "occurred_at": take(occurred),
            "time_precision": pa.repeat(pa.scalar("second"), kept),
            "reported_at": pa.nulls(kept, pa.string()),
            "updated_at": take(updated),
            "lon": pa.array(lon[keep], mask=~located[keep]),
            "lat": pa.array(lat[keep], mask=~located[keep]),
            "location_description": self._optional_text(cols, p.i_locdesc, kept),
            "address": self._optional_text(cols, p.i_block, kept),
            "area_codes": _json_objects(areas, kept, escapes=not plain_json),
            "arrest": take(flags[0]),
            "domestic": take(flags[1]),
            "attributes": _json_objects([(cols[i], name) for i, name in self.extra_columns],
                                        kept, escapes=not plain_json),
            "row_hash": None,
            "line_number": pa.array(line_numbers[keep].astype(np.int64)),
        }
        return output, state.found, keep

    def _times(self, raw: pa.Array, present: np.ndarray, state: _Rejections) -> pa.Array:
        """``preset.utc`` of the rows where ``present`` (others: null); failures rejected."""
        # Converted once per distinct text (a year has ~115k Date and ~1k Updated On values
        # in ~265k rows).
        encoded = pc.dictionary_encode(raw)
        distinct, distinct_fast = _us_times_to_utc(encoded.dictionary, self.preset.clock,
                                                   self.hour_offsets)
        converted = distinct.take(encoded.indices)
        fast = distinct_fast[encoded.indices.to_numpy()]
        slow = np.flatnonzero(present & ~fast & state.alive)
        if not slow.size:
            return converted
        texts = raw.take(pa.array(slow)).to_pylist()
        results: dict[str, tuple[str | None, str | None]] = {}
        for text in texts:
            if text not in results:
                try:
                    results[text] = (self.preset.utc(text), None)
                except RowRejected as exc:
                    results[text] = (None, str(exc))
        reasons = {row: results[text][1] for row, text in zip(slow.tolist(), texts, strict=True)}
        failed = np.zeros(len(raw), dtype=bool)
        failed[[row for row, reason in reasons.items() if reason is not None]] = True
        state.reject(failed, lambda row: reasons[row] or "")
        good = [(row, results[text][0]) for row, text in zip(slow.tolist(), texts, strict=True)
                if results[text][0] is not None]
        if not good:
            return converted
        mask = np.zeros(len(raw), dtype=bool)
        mask[[row for row, _ in good]] = True
        return pc.replace_with_mask(converted, pa.array(mask),
                                    pa.array([value for _, value in good], pa.string()))

    def _coordinates(
        self, raw_lat: pa.Array, raw_lon: pa.Array, state: _Rejections
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Latitude, longitude (NaN where none) and "has both" mask, rejecting bad rows."""
        lat_text, lon_text = _strip(raw_lat), _strip(raw_lon)
        has_lat, has_lon = _nonempty(lat_text), _nonempty(lon_text)
        state.reject(has_lat ^ has_lon, "only one of Latitude/Longitude given")
        both = has_lat & has_lon
        lat, lat_plain = _plain_floats(lat_text)
        lon, lon_plain = _plain_floats(lon_text)
        with np.errstate(invalid="ignore"):
            fast = (lat_plain & lon_plain & (lat >= -90.0) & (lat <= 90.0)
                    & (lon >= -180.0) & (lon <= 180.0))
        slow = np.flatnonzero(both & ~fast & state.alive)
        if slow.size:
            index = pa.array(slow)
            reasons: dict[int, str] = {}
            rows = zip(slow.tolist(), lat_text.take(index).to_pylist(),
                       lon_text.take(index).to_pylist(), strict=True)
            for row, lat_value, lon_value in rows:
                try:
                    lat[row] = parse_coordinate(lat_value, "Latitude", -90.0, 90.0)
                    lon[row] = parse_coordinate(lon_value, "Longitude", -180.0, 180.0)
                except RowRejected as exc:
                    reasons[row] = str(exc)
            failed = np.zeros(len(lat), dtype=bool)
            failed[list(reasons)] = True
            state.reject(failed, reasons.__getitem__)
        return lat, lon, both.copy()

    def _flag(self, columns: list[pa.Array], index: int | None, what: str,
              state: _Rejections) -> pa.Array:
        """``parse_flag`` once per distinct text; rows with a bad flag rejected."""
        n = len(columns[0])
        if index is None:
            return pa.nulls(n, pa.bool_())
        encoded = pc.dictionary_encode(columns[index])
        codes = encoded.indices.to_numpy()
        values: list[bool | None] = []
        reasons: list[str | None] = []
        for text in encoded.dictionary.to_pylist():
            try:
                values.append(parse_flag(text, what))
                reasons.append(None)
            except RowRejected as exc:
                values.append(None)
                reasons.append(str(exc))
        bad = np.array([reason is not None for reason in reasons], dtype=bool)
        if bad.size:
            state.reject(bad[codes], lambda row: reasons[codes[row]] or "")
        return pa.array(values, pa.bool_()).take(encoded.indices)

    def _categories(self, source_category: pa.Array, source_code: pa.Array) -> pa.Array:
        """``preset.map_category`` once per (type, IUCR) pair, counting unmapped rows."""
        if not len(source_category):
            return pa.nulls(0, pa.string())
        types = pc.dictionary_encode(source_category)
        codes = pc.dictionary_encode(source_code)
        type_names, code_names = types.dictionary.to_pylist(), codes.dictionary.to_pylist()
        pair = (types.indices.to_numpy().astype(np.int64) * len(code_names)
                + codes.indices.to_numpy())
        unique, first, inverse, counts = np.unique(
            pair, return_index=True, return_inverse=True, return_counts=True)
        unmapped = self.preset.stats.unmapped_categories
        mapped: list[str | None] = [None] * len(unique)
        # First-occurrence order, so the Counter's key order matches the row path's.
        for u in np.argsort(first, kind="stable").tolist():
            category = type_names[int(unique[u]) // len(code_names)]
            code = code_names[int(unique[u]) % len(code_names)]
            before = unmapped.get(category, 0)
            mapped[u] = self.preset.map_category(category, code)
            if unmapped.get(category, 0) != before:  # counted once; the row path counts per row
                unmapped[category] += int(counts[u]) - 1
        return pa.array(mapped, pa.string()).take(pa.array(inverse.reshape(-1)))

    def _transformed(self, values: pa.Array) -> pa.Array:
        """The area template's transform (``normalise_code``), once per distinct value."""
        if self.area_transform is None:
            return values
        encoded = pc.dictionary_encode(values)
        distinct = [self.area_transform(value) for value in encoded.dictionary.to_pylist()]
        return pa.array(distinct, pa.string()).take(encoded.indices)

    @staticmethod
    def _optional_text(cols: list[pa.Array], index: int | None, rows: int) -> pa.Array:
        if index is None:
            return pa.nulls(rows, pa.string())
        return _none_if_empty(_strip(cols[index]))


# --------------------------------------------------------------------------------------------
# Vectorised helpers
# --------------------------------------------------------------------------------------------


def _quoted_commas(commas: np.ndarray, quotes: np.ndarray, quoted: np.ndarray,
                   first_comma: np.ndarray, line_commas: np.ndarray, lines: int) -> np.ndarray:
    """Per line, how many of its commas are inside quotes (only ``quoted`` lines have any).

    Every line is regularly quoted, so the number of quotes before a comma (counted over the
    block) is even outside a quoted field and odd inside one.
    """
    counts = line_commas[quoted]
    total = int(counts.sum())
    inside = np.zeros(lines, dtype=np.int64)
    if not total:
        return inside
    owner = np.repeat(quoted, counts)
    position = (np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
                + np.repeat(first_comma[quoted], counts))
    odd = (np.searchsorted(quotes, commas[position]) & 1).astype(bool)
    np.add.at(inside, owner[odd], 1)
    return inside


def _strip(array: pa.Array) -> pa.Array:
    """``str.strip()`` of every value."""
    return pc.utf8_trim(array, characters=_WHITESPACE)


def _nonempty(array: pa.Array) -> np.ndarray:
    return pc.binary_length(array).to_numpy(zero_copy_only=False) > 0


def _none_if_empty(array: pa.Array) -> pa.Array:
    """``value or None``."""
    return pc.if_else(pc.equal(pc.binary_length(array), 0), pa.scalar(None, pa.string()), array)


def _string_buffers(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (int64, len n+1) and data bytes of a string array without copying the data."""
    buffers = array.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int32)[array.offset : array.offset + len(array)
                                                        + 1].astype(np.int64)
    data = (np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None
            else np.zeros(0, dtype=np.uint8))
    return offsets, data


def _plain_floats(text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Values (NaN where not plain) and the mask of plain decimal texts."""
    plain = pc.match_substring_regex(text, _PLAIN_DECIMAL)
    values = pc.cast(pc.if_else(plain, text, pa.scalar("nan")), pa.float64())
    return values.to_numpy(zero_copy_only=False).copy(), plain.to_numpy(zero_copy_only=False)


def _days_from_civil(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of proleptic Gregorian dates (H. Hinnant's algorithm)."""
    year = year - (month <= 2)
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + np.where(month > 2, -3, 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


def _civil_from_days(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    z = days + 719468
    era = z // 146097
    day_of_era = z - era * 146097
    year_of_era = (day_of_era - day_of_era // 1460 + day_of_era // 36524
                   - day_of_era // 146096) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    shifted_month = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * shifted_month + 2) // 5 + 1
    month = np.where(shifted_month < 10, shifted_month + 3, shifted_month - 9)
    return year_of_era + era * 400 + (month <= 2), month, day


def _us_times_to_utc(raw: pa.Array, clock: LocalToUTC,
                     hour_offsets: dict[int, int | None]) -> tuple[pa.Array, np.ndarray]:
    """UTC text of the values in the "fast set" of ``MM/DD/YYYY hh:mm:ss AM`` (others null).

    The fast set is what ``parse_chicago_time`` certainly accepts: 22 ASCII characters, digits
    where it calls ``int()``, a real calendar date and a year in ``_FAST_YEARS``. The offset comes
    from ``clock.offset`` once per local hour, which is what ``LocalToUTC`` caches; an hour
    containing a transition is computed per row, as ``LocalToUTC`` does. ``hour_offsets``
    remembers the hours across blocks (None: per row).
    """
    n = len(raw)
    fast = np.zeros(n, dtype=bool)
    offsets, data = _string_buffers(raw)
    candidates = np.flatnonzero(np.diff(offsets) == 22)
    if not candidates.size:
        return pa.nulls(n, pa.string()), fast
    text = data[offsets[candidates][:, None] + _DATE_SPAN]
    digits = text[:, _DATE_DIGITS].astype(np.int64) - 48
    meridiem = text[:, 20]
    ok = (((digits >= 0) & (digits <= 9)).all(axis=1) & (text < 0x80).all(axis=1)
          & (text[:, 2] == 47) & (text[:, 5] == 47)
          & ((meridiem == 65) | (meridiem == 80)) & (text[:, 21] == 77))
    month = digits[:, 0] * 10 + digits[:, 1]
    day = digits[:, 2] * 10 + digits[:, 3]
    year = digits[:, 4] * 1000 + digits[:, 5] * 100 + digits[:, 6] * 10 + digits[:, 7]
    hour12 = digits[:, 8] * 10 + digits[:, 9]
    minute = digits[:, 10] * 10 + digits[:, 11]
    second = digits[:, 12] * 10 + digits[:, 13]
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_days = _DAYS_IN_MONTH[np.clip(month, 1, 12) - 1] + (leap & (month == 2))
    ok &= ((hour12 >= 1) & (hour12 <= 12) & (month >= 1) & (month <= 12) & (day >= 1)
           & (day <= month_days) & (minute <= 59) & (second <= 59)
           & (year >= _FAST_YEARS[0]) & (year <= _FAST_YEARS[1]))
    rows = candidates[ok]
    if not rows.size:
        return pa.nulls(n, pa.string()), fast
    fast[rows] = True
    month, day, year, minute, second = month[ok], day[ok], year[ok], minute[ok], second[ok]
    hour = hour12[ok] % 12 + 12 * (meridiem[ok] == 80)
    local = (_days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second)
    hours, inverse = np.unique(local // 3600, return_inverse=True)
    inverse = inverse.reshape(-1)
    hour_offset = np.zeros(hours.size, dtype=np.int64)
    per_row: list[int] = []
    for position, value in enumerate(hours.tolist()):
        if value not in hour_offsets:
            start = _EPOCH + timedelta(hours=value)
            first, last = clock.offset(start), clock.offset(start.replace(minute=59))
            hour_offsets[value] = first // _SECOND if first == last else None
        known = hour_offsets[value]
        if known is None:
            per_row.append(position)
        else:
            hour_offset[position] = known
    utc = local - hour_offset[inverse]
    if per_row:
        for row in np.flatnonzero(np.isin(inverse, per_row)).tolist():
            moment = _EPOCH + timedelta(seconds=int(local[row]))
            utc[row] = local[row] - clock.offset(moment) // _SECOND
    text_out = np.zeros((n, _UTC_WIDTH), dtype=np.uint8)
    text_out[rows] = _format_utc(utc)
    return _fixed_width_strings(text_out, fast), fast


def _format_utc(seconds: np.ndarray) -> np.ndarray:
    """``YYYY-MM-DD HH:MM:SS.000000`` bytes (one row each) of UTC seconds since the epoch."""
    days, in_day = np.divmod(seconds, 86400)
    year, month, day = _civil_from_days(days)
    hour, rest = np.divmod(in_day, 3600)
    minute, second = np.divmod(rest, 60)
    out = np.tile(_UTC_TEMPLATE, (seconds.size, 1))
    for column, (value, width) in zip(
            (0, 5, 8, 11, 14, 17), ((year, 4), (month, 2), (day, 2), (hour, 2), (minute, 2),
                                    (second, 2)), strict=True):
        for place in range(width):
            out[:, column + width - 1 - place] = 48 + (value // 10**place) % 10
    return out


def _fixed_width_strings(matrix: np.ndarray, valid: np.ndarray) -> pa.Array:
    """A string array from the rows of a uint8 matrix (nulls where not ``valid``)."""
    rows, width = matrix.shape
    offsets = np.arange(0, (rows + 1) * width, width, dtype=np.int32)
    validity = pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(
        pa.string(), rows, [validity, pa.py_buffer(offsets), pa.py_buffer(matrix.tobytes())],
        null_count=int(rows - valid.sum()))


def _json_objects(columns: list[tuple[pa.Array, str]], rows: int, *, escapes: bool) -> pa.Array:
    """``JsonObjectTemplate.render`` of every row; ``columns`` = (values, JSON-encoded name).

    Rows are grouped by which values are empty (usually one or two groups); each group is one
    ``binary_join_element_wise`` of literal key text and the values. Rows with a value that needs
    JSON escaping (only looked for when ``escapes``) are rendered in Python with
    ``encode_basestring``, like the row path. (``null_handling="skip"`` is avoided: in pyarrow 26
    it drops rows whose inputs are all null from its output.)
    """
    if not columns:
        return pa.repeat(pa.scalar("{}"), rows)
    if not rows:
        return pa.array([], pa.string())
    bits = np.zeros(rows, dtype=np.int64)
    for k, (values, _) in enumerate(columns):
        bits |= (~_nonempty(values)).astype(np.int64) << k
    if escapes:
        special = np.zeros(rows, dtype=bool)
        for values, _ in columns:
            special |= pc.match_substring_regex(values, _NEEDS_JSON_ESCAPE).to_numpy(
                zero_copy_only=False)
        bits[special] = -1
    groups = np.unique(bits)
    parts: list[pa.Array] = []
    order: list[np.ndarray] = []
    for group in groups.tolist():
        index = None if groups.size == 1 else np.flatnonzero(bits == group)
        picked = [values if index is None else values.take(pa.array(index))
                  for values, _ in columns]
        size = rows if index is None else index.size
        if group == -1:
            rendered = [
                "{" + ",".join(f"{name}:{encode_basestring(value)}"
                               for (_, name), value in zip(columns, row, strict=True) if value)
                + "}"
                for row in zip(*(values.to_pylist() for values in picked), strict=True)]
            parts.append(pa.array(rendered, pa.string()))
        else:
            present = [(values, name) for k, ((_, name), values)
                       in enumerate(zip(columns, picked, strict=True)) if not group >> k & 1]
            if not present:
                parts.append(pa.repeat(pa.scalar("{}"), size))
            else:
                pieces: list[Any] = []
                for k, (values, name) in enumerate(present):
                    pieces.extend([("{" if k == 0 else '",') + name + ':"', values])
                pieces.append('"}')
                parts.append(pc.binary_join_element_wise(*pieces, ""))
        if index is not None:
            order.append(index)
    if groups.size == 1:
        return parts[0]
    position = np.empty(rows, dtype=np.int64)
    position[np.concatenate(order)] = np.arange(rows)
    return pa.concat_arrays(parts).take(pa.array(position))


def _row_hashes(buf: np.ndarray, commas: np.ndarray, lines: _Lines, kept: np.ndarray,
                quoted: np.ndarray, block: bytes) -> pa.Array:
    """``row_hash("\\x1f".join(values))`` of the kept lines.

    For a line without quotes the joined values are its bytes with commas turned into unit
    separators, so only the (few) quoted lines need their values from the csv module.
    """
    if not kept.size:
        return pa.array([], pa.string())
    separated = buf.copy()
    separated[commas] = 0x1F
    joined = memoryview(separated)
    md5 = hashlib.md5
    hashes = [md5(joined[a:b], usedforsecurity=False).hexdigest()
              for a, b in zip(lines.starts[kept].tolist(), lines.content_ends[kept].tolist(),
                              strict=True)]
    if quoted.size:
        for position in np.flatnonzero(np.isin(kept, quoted)).tolist():
            values = next(csv.reader([lines.content(block, int(kept[position]))]))
            hashes[position] = row_hash("\x1f".join(values))
    return pa.array(hashes, pa.string())


def _empty_table() -> pa.Table:
    return INCIDENT_SCHEMA.empty_table()


def _empty_chunk() -> ColumnarChunk:
    return ColumnarChunk(_empty_table(), [], 0)


# --------------------------------------------------------------------------------------------
# The row path, for what the columnar path cannot vouch for
# --------------------------------------------------------------------------------------------


def _row_path_chunks(path: Path, preset: ChicagoPreset, block_rows: int, start_line: int,
                     *, bind: bool) -> Iterator[ColumnarChunk]:
    """Rows from physical line ``start_line`` on, converted by the row path itself.

    ``start_line`` is always the first line of a row (every line before it was a whole row), so
    skipping the rows that start earlier resumes exactly where the columnar path stopped. With
    ``bind`` the preset is bound as the import service does, once the first row is fetched.
    """
    table = TabularFile(path)
    rows: Iterable[Any] = table.rows()
    if bind:
        iterator = iter(rows)
        first = next(iterator, None)
        preset.bind(table.header, path.name)
        rows = iterator if first is None else _prepend(first, iterator)
    accepted: list[tuple[Any, ...]] = []
    rejected: list[RejectedRow] = []
    spans: dict[int, int] = {}
    read = 0
    convert = preset.convert
    # A broken CSV or gzip stream raises the row path's InputFormatError from here; the rows
    # of the unfinished chunk are dropped with it (the import fails as a whole anyway).
    for row in rows:
        if row.line_number < start_line:
            continue
        read += 1
        result = convert(row)
        if type(result) is tuple:
            accepted.append(result)
        else:
            rejected.append(result)
            spans[row.line_number] = row.last_line
        if read >= block_rows:
            yield _chunk_from_rows(table, accepted, rejected, spans, read)
            accepted, rejected, spans, read = [], [], {}, 0
    if read:
        yield _chunk_from_rows(table, accepted, rejected, spans, read)


def _prepend(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest


def _chunk_from_rows(table: TabularFile, accepted: list[tuple[Any, ...]],
                     rejected: list[RejectedRow], spans: dict[int, int],
                     read: int) -> ColumnarChunk:
    try:
        raw = table.raw_lines(spans)
    except _STREAM_ERRORS:  # a damaged stream: the row iteration is about to raise anyway
        raw = {}
    rejected = [replace(r, raw_line=raw.get(r.line_number, r.raw_line)) for r in rejected]
    columns = list(zip(*accepted, strict=True)) if accepted else [()] * len(INCIDENT_COLUMNS)
    arrays = [pa.array(list(values), type=field.type)
              for values, field in zip(columns, INCIDENT_SCHEMA, strict=True)]
    return ColumnarChunk(pa.Table.from_arrays(arrays, schema=INCIDENT_SCHEMA), rejected, read)
