"""The ``generic`` preset: any CSV/GeoJSON, described by a small column mapping.

The mapping comes from a TOML or YAML file (or the equivalent CLI flags)::

    [source]
    key = "oakland-pd"            # identifies the publisher; ids are unique per source
    name = "Oakland Police Department"
    timezone = "America/Los_Angeles"

    [columns]
    id = "case_number"            # optional: without it, ids derive from the row content
    time = "datetime"
    time_format = "%m/%d/%Y %H:%M"   # strptime pattern, or "iso", "epoch", "epoch_ms"
    category = "crime_type"
    lat = "lat"                   # or x = "X", y = "Y" with crs = "EPSG:2227"
    lon = "lon"
    areas = { beat = "beat", district = "district" }

    [categories]
    scheme = "chicago"            # optional: reuse a shipped mapping
    map = { "BURGLARY" = "0501" } # optional: this source's own categories -> canonical codes
"""

from __future__ import annotations

import math
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

from urbansec.domain.taxonomy import CATEGORIES, CategoryMapper
from urbansec.errors import InputFormatError, UsageError
from urbansec.ingest.localtime import LocalToUTC, zone
from urbansec.ingest.presets import (
    IncidentPreset,
    RowRejected,
    SourceInfo,
    json_object,
    normalise_code,
    parse_coordinate,
    utc_text,
)
from urbansec.ingest.records import IncidentTuple


@dataclass
class GenericMapping:
    time: str
    source_key: str = "generic"
    source_name: str | None = None
    timezone: str = "UTC"
    time_format: str = "iso"
    id: str | None = None
    category: str | None = None
    subcategory: str | None = None
    code: str | None = None
    lat: str | None = None
    lon: str | None = None
    x: str | None = None
    y: str | None = None
    crs: str | None = None
    location: str | None = None
    address: str | None = None
    reported: str | None = None
    updated: str | None = None
    areas: dict[str, str] = field(default_factory=dict)
    category_scheme: str | None = None
    category_map: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        zone(self.timezone)  # fail early on a bad zone name
        if (self.x is None) != (self.y is None):
            raise UsageError("give both x and y columns, or neither")
        if (self.lat is None) != (self.lon is None):
            raise UsageError("give both lat and lon columns, or neither")
        if self.x is not None and self.crs is None:
            raise UsageError("x/y columns need the CRS they are in (e.g. crs = 'EPSG:3435')")
        unknown = sorted(set(self.category_map.values()) - set(CATEGORIES))
        if unknown:
            raise UsageError(f"category map names unknown canonical codes: {', '.join(unknown)}")

    @classmethod
    def from_file(cls, path: Path) -> GenericMapping:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read mapping file {path}: {exc}") from exc
        try:
            data = tomllib.loads(text) if path.suffix.lower() == ".toml" else yaml.safe_load(text)
        except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
            raise UsageError(f"mapping file {path} is not valid TOML/YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise UsageError(f"mapping file {path} must hold a table/mapping")
        return cls.from_dict(data, label=str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], label: str = "mapping") -> GenericMapping:
        source = data.get("source") or {}
        columns = data.get("columns") or {}
        categories = data.get("categories") or {}
        if "time" not in columns:
            raise UsageError(f"{label}: [columns] needs 'time', the column with the date/time")
        allowed = set(cls.__dataclass_fields__) - {
            "source_key", "source_name", "timezone", "category_scheme", "category_map"}
        unknown = sorted(set(columns) - allowed)
        if unknown:
            raise UsageError(f"{label}: unknown column setting(s) {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(allowed))}")
        return cls(
            **columns,
            source_key=str(source.get("key", "generic")),
            source_name=source.get("name"),
            timezone=str(source.get("timezone", "UTC")),
            category_scheme=categories.get("scheme"),
            category_map={str(k): str(v) for k, v in (categories.get("map") or {}).items()},
        )


class GenericPreset(IncidentPreset):
    name = "generic"
    description = "any CSV/GeoJSON, with a column mapping (--mapping FILE or flags)"
    required = ()

    def __init__(self, mapping: GenericMapping) -> None:
        self.mapping = mapping
        self.source = SourceInfo(
            key=mapping.source_key,
            name=mapping.source_name or mapping.source_key,
            timezone=mapping.timezone,
        )
        super().__init__()
        if mapping.category_scheme:
            self.mapper = CategoryMapper(mapping.category_scheme)
        self.required = tuple(  # type: ignore[misc]  # per instance: depends on the mapping
            c for c in (mapping.id, mapping.time, mapping.category, mapping.lat, mapping.lon,
                        mapping.x, mapping.y) if c
        )
        self.transformer: Transformer | None = None
        if mapping.x is not None:
            try:
                self.transformer = Transformer.from_crs(
                    CRS.from_user_input(mapping.crs), "EPSG:4326", always_xy=True)
            except CRSError as exc:
                raise UsageError(f"unknown CRS {mapping.crs!r}: {exc}") from exc

    def bind(self, header: list[str], file_label: str) -> None:
        super().bind(header, file_label)
        m = self.mapping
        self.clock = LocalToUTC(m.timezone)
        self._seen_derived: Counter[str] = Counter()
        self.slots = {
            name: self.col(column)
            for name in ("id", "time", "category", "subcategory", "code", "lat", "lon", "x",
                         "y", "location", "address", "reported", "updated")
            if (column := getattr(m, name)) is not None
        }
        missing_optional = [getattr(m, n) for n, i in self.slots.items() if i is None]
        if missing_optional:
            # an optional column named in the mapping but absent is a mapping error, say so
            raise InputFormatError(
                f"{file_label}: mapped column(s) not in the file: {', '.join(missing_optional)}")
        self.area_slots = []
        for kind, column in m.areas.items():
            index = self.col(column)
            if index is None:
                raise InputFormatError(f"{file_label}: area column {column!r} not in the file")
            self.area_slots.append((index, kind))
        used = {i for i in self.slots.values() if i is not None}
        used.update(i for i, _ in self.area_slots)
        self.extra = self.extra_columns(used)

    def parse_time(self, text: str, what: str) -> str:
        text = text.strip()
        if not text:
            raise RowRejected(f"missing {what}")
        fmt = self.mapping.time_format
        try:
            if fmt in ("epoch", "epoch_ms"):
                seconds = float(text) / (1000.0 if fmt == "epoch_ms" else 1.0)
                return utc_text(datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None))
            value = datetime.fromisoformat(text) if fmt == "iso" else datetime.strptime(text, fmt)
        except (ValueError, OverflowError, OSError):
            raise RowRejected(f"unparseable {what} {text!r} (format {fmt})") from None
        if value.tzinfo is not None:  # the text carried its own offset: trust it
            return utc_text(value.astimezone(UTC).replace(tzinfo=None))
        return utc_text(self.clock.to_utc(value))

    def precision(self) -> str:
        fmt = self.mapping.time_format
        if fmt in ("iso", "epoch", "epoch_ms") or "%S" in fmt or "%T" in fmt:
            return "second"
        if "%M" in fmt:
            return "minute"
        if "%H" in fmt or "%I" in fmt:
            return "hour"
        if "%d" in fmt or "%j" in fmt:
            return "day"
        return "month"

    def map_category(self, source_category: str, source_code: str | None) -> str | None:
        if not source_category:
            return None
        direct = self.mapping.category_map.get(source_category)
        if direct is not None:
            return direct
        if self.mapper is not None:
            code = self.mapper.map(source_category, source_code)
            if code is not None:
                return code
        self.stats.unmapped_categories[source_category] += 1
        return None

    def convert_values(self, v: list[str], line_number: int, digest: str) -> IncidentTuple:
        s = self.slots

        def get(name: str) -> str:
            index = s.get(name)
            return v[index].strip() if index is not None else ""

        occurred = self.parse_time(get("time"), f"time ({self.mapping.time})")
        key = get("id")
        if "id" in s and not key:
            raise RowRejected(f"missing id ({self.mapping.id})")
        if not key:
            self._seen_derived[digest] += 1
            key = f"derived:{digest[:20]}:{self._seen_derived[digest]}"
        lon = lat = None
        if "lat" in s:
            lat_text, lon_text = get("lat"), get("lon")
            if lat_text or lon_text:
                if not (lat_text and lon_text):
                    raise RowRejected("only one of lat/lon given")
                lat = parse_coordinate(lat_text, "latitude", -90.0, 90.0)
                lon = parse_coordinate(lon_text, "longitude", -180.0, 180.0)
        elif "x" in s and self.transformer is not None:
            x_text, y_text = get("x"), get("y")
            if x_text or y_text:
                if not (x_text and y_text):
                    raise RowRejected("only one of x/y given")
                x = parse_coordinate(x_text, "x", -1e12, 1e12)
                y = parse_coordinate(y_text, "y", -1e12, 1e12)
                lon, lat = self.transformer.transform(x, y)
                if not (math.isfinite(lon) and math.isfinite(lat)
                        and -180 <= lon <= 180 and -90 <= lat <= 90):
                    raise RowRejected(f"x/y ({x_text}, {y_text}) outside {self.mapping.crs}")
        if lon is None:
            self.stats.unlocated += 1
        category_text = get("category")
        code = get("code")
        reported = self.parse_time(get("reported"), "reported time") if get("reported") else None
        updated = self.parse_time(get("updated"), "updated time") if get("updated") else None
        areas = json_object([(kind, normalise_code(v[i])) for i, kind in self.area_slots if v[i]])
        return (
            key,
            self.map_category(category_text, code or None),
            category_text or None,
            get("subcategory") or None,
            code or None,
            occurred,
            self.precision(),
            reported,
            updated,
            lon,
            lat,
            get("location") or None,
            get("address") or None,
            areas,
            None,
            None,
            self.extra.render(v),
            digest,
            line_number,
        )
