"""Open evidence files and hand out their rows with physical line numbers and raw text.

Every reader goes through here so that a rejected row can always be reported with the line it
came from and the exact text that was there.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from urbansec.errors import InputFormatError

ProgressCallback = Callable[[int], None]  # called with bytes of the file consumed so far

SUPPORTED_SUFFIXES = (".csv", ".csv.gz", ".geojson", ".json", ".geojson.gz")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_format(path: Path) -> str:
    """``csv`` or ``geojson``, from the name; anything else is refused up front."""
    name = path.name.lower()
    if name.endswith((".csv", ".csv.gz")):
        return "csv"
    if name.endswith((".geojson", ".json", ".geojson.gz")):
        return "geojson"
    raise InputFormatError(
        f"{path}: unsupported file type; expected one of {', '.join(SUPPORTED_SUFFIXES)}"
    )


@dataclass(slots=True)
class SourceRow:
    """One logical row: the physical lines it spans and its values by column.

    ``raw`` is filled for GeoJSON features; for CSV it stays ``None`` on the fast path and
    :func:`raw_lines` fetches the exact text of the few rows that need it (rejected ones).
    """

    line_number: int
    values: list[str]
    raw: str | None = None
    last_line: int = 0


class TabularFile:
    """A CSV (optionally gzipped) or GeoJSON file seen as a header plus rows of strings.

    GeoJSON features are flattened to the same shape: a point geometry becomes the leading
    ``longitude``/``latitude`` columns (in the file's CRS; the geometry wins over properties of
    the same name) and the properties the other columns, so presets work on either format.
    For GeoJSON the "line number" is the feature's 1-based position.
    """

    def __init__(self, path: Path, *, progress: ProgressCallback | None = None) -> None:
        if not path.is_file():
            raise InputFormatError(f"{path}: no such file")
        self.path = path
        self.format = file_format(path)
        self.size = path.stat().st_size
        self._progress = progress
        self.header: list[str] = []
        self.crs: str | None = None

    def estimate_rows(self) -> int:
        """A cheap estimate of the row count (no full read), to choose a loading strategy."""
        total = self.size
        if self.path.name.lower().endswith(".gz"):
            with self.path.open("rb") as handle:
                handle.seek(-4, io.SEEK_END)
                # gzip stores the uncompressed size modulo 2**32 in its last four bytes
                total = int.from_bytes(handle.read(4), "little")
            if total < self.size:  # over 4 GiB, the field wrapped around
                total = self.size * 6
        raw_file, stream = self._open_binary()
        try:
            sample = stream.read(1 << 18)
        finally:
            stream.close()
            raw_file.close()
        lines = sample.count(b"\n")
        if self.format != "csv" or not lines:
            return total // 300
        return int(total / (len(sample) / lines))

    # -- CSV -------------------------------------------------------------------------------
    def _open_binary(self) -> tuple[BinaryIO, BinaryIO]:
        raw = self.path.open("rb")
        if self.path.name.lower().endswith(".gz"):
            return raw, io.BufferedReader(gzip.GzipFile(fileobj=raw), buffer_size=1 << 20)
        return raw, raw

    def rows(self) -> Iterator[SourceRow]:
        if self.format == "csv":
            yield from self._csv_rows()
        else:
            yield from self._geojson_rows()

    def _csv_rows(self) -> Iterator[SourceRow]:
        raw_file, stream = self._open_binary()
        # Undecodable bytes become U+FFFD; presets reject such rows with their line number
        # instead of failing the whole file.
        text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="replace", newline="")
        progress = self._progress
        try:
            reader = csv.reader(text, strict=False)
            try:
                header = next(reader)
            except StopIteration:
                raise InputFormatError(f"{self.path}: the file is empty") from None
            except (csv.Error, EOFError, OSError, zlib.error) as exc:
                raise InputFormatError(f"{self.path}: not a readable CSV file ({exc})") from exc
            self.header = [column.strip() for column in header]
            previous = reader.line_num
            count = 0
            while True:
                try:
                    values = next(reader)
                except StopIteration:
                    break
                except csv.Error as exc:
                    raise InputFormatError(
                        f"{self.path}:{previous + 1}: broken CSV ({exc})"
                    ) from exc
                except (EOFError, OSError, zlib.error) as exc:
                    raise InputFormatError(
                        f"{self.path}: file is truncated or corrupt after line {previous} ({exc})"
                    ) from exc
                first, previous = previous + 1, reader.line_num
                if not values or (len(values) == 1 and not values[0].strip()):
                    continue  # blank line
                yield SourceRow(first, values, None, previous)
                count += 1
                if progress is not None and not count & 4095:
                    progress(raw_file.tell())
        finally:
            if progress is not None:
                progress(self.size)
            text.close()
            raw_file.close()

    def raw_lines(self, spans: dict[int, int]) -> dict[int, str]:
        """Exact text of the rows starting at the given lines (first line -> last line).

        Lines are counted exactly as the CSV reader counts them (``\n``, ``\r\n`` or a lone
        ``\r`` ends a line), so the numbers agree with the ones rows were reported with.
        """
        if not spans or self.format != "csv":
            return {}
        found: dict[int, str] = {}
        raw_file, stream = self._open_binary()
        text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="replace", newline="")
        wanted = sorted(spans)
        position = 0
        collecting: list[str] = []
        try:
            for number, line in enumerate(text, start=1):
                if position >= len(wanted):
                    break
                start = wanted[position]
                if number < start:
                    continue
                collecting.append(line)
                if number >= spans[start]:
                    found[start] = "".join(collecting).rstrip("\r\n")
                    collecting = []
                    position += 1
        except (EOFError, OSError, zlib.error) as exc:
            raise InputFormatError(f"{self.path}: file is truncated or corrupt ({exc})") from exc
        finally:
            text.close()
            raw_file.close()
        return found

    # -- GeoJSON ---------------------------------------------------------------------------
    def _geojson_rows(self) -> Iterator[SourceRow]:
        raw_file, stream = self._open_binary()
        try:
            try:
                document: Any = json.load(stream)
            except (ValueError, EOFError, OSError) as exc:
                raise InputFormatError(f"{self.path}: not valid JSON ({exc})") from exc
        finally:
            stream.close()
            raw_file.close()
        if not isinstance(document, dict) or document.get("type") != "FeatureCollection":
            raise InputFormatError(f"{self.path}: not a GeoJSON FeatureCollection")
        crs = document.get("crs")
        if isinstance(crs, dict):
            self.crs = str((crs.get("properties") or {}).get("name") or "") or None
        features = document.get("features") or []
        columns: dict[str, None] = {}
        for feature in features:
            if isinstance(feature, dict) and isinstance(feature.get("properties"), dict):
                columns.update(dict.fromkeys(feature["properties"]))
        # The geometry columns come first so that a preset looking up "Longitude"/"Latitude"
        # finds the feature's point, not a (possibly stale or null) property of the same name.
        self.header = ["longitude", "latitude", *columns]
        names = list(columns)
        for number, feature in enumerate(features, start=1):
            raw = json.dumps(feature, ensure_ascii=False, separators=(",", ":"))
            if not isinstance(feature, dict) or feature.get("type") != "Feature":
                yield SourceRow(number, [], raw, number)  # no values: rejected as malformed
                continue
            properties = feature.get("properties") or {}
            values = [_as_text(properties.get(name)) for name in names]
            geometry = feature.get("geometry")
            lon = lat = ""
            if isinstance(geometry, dict) and geometry.get("type") == "Point":
                coordinates = geometry.get("coordinates") or []
                if len(coordinates) >= 2:
                    lon, lat = _as_text(coordinates[0]), _as_text(coordinates[1])
            elif geometry is not None:
                lon = lat = "not a point"
            yield SourceRow(number, [lon, lat, *values], raw, number)
        if self._progress is not None:
            self._progress(self.size)


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def normalise_column(name: str) -> str:
    """Column names compared loosely: ``Updated On`` = ``updated_on`` = ``UPDATED ON``."""
    return "".join(ch for ch in name.lower() if ch.isalnum())
