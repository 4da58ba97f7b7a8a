"""Presets: how one real open-data schema maps onto urbansec's incident fields.

A preset checks a file's header (failing at once, naming missing columns, when the file is not
what the preset expects) and then converts each row to an incident tuple (``INCIDENT_COLUMNS``)
or a :class:`RejectedRow` with its line number and a reason a person can act on.

The per-row code is written for speed: an import handles hundreds of thousands of rows and the
benchmark holds it to "validation and dedup at least as fast as pandas without either".
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from operator import itemgetter
from typing import Any, ClassVar

from urbansec.domain.taxonomy import CategoryMapper
from urbansec.errors import InputFormatError, UsageError
from urbansec.ingest.areas import normalize_area_code
from urbansec.ingest.localtime import LocalToUTC
from urbansec.ingest.records import IncidentTuple, RejectedRow
from urbansec.ingest.sources import SourceRow, normalise_column

Bounds = tuple[float, float, float, float]  # min lon, min lat, max lon, max lat


@dataclass(frozen=True)
class SourceInfo:
    key: str
    name: str
    timezone: str
    url: str | None = None
    licence: str | None = None


@dataclass
class ConversionStats:
    """What a person needs to judge an import beyond "n rows in"."""

    rows: int = 0
    unlocated: int = 0
    implausible_location: int = 0
    ambiguous_or_missing_local_time: int = 0
    unmapped_categories: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "unlocated": self.unlocated,
            "implausible_location": self.implausible_location,
            "unmapped_categories": dict(self.unmapped_categories.most_common()),
        }


class RowRejected(Exception):
    """Raised inside a converter for one bad row; turned into a RejectedRow by the loop."""


def normalise_code(value: str, _cache: dict[str, str] = {}) -> str:  # noqa: B006
    """Area codes compared the same everywhere: ``"001"`` and ``"1"`` are one district.

    The same rule as :func:`urbansec.ingest.areas.normalize_area_code`, for text only and
    memoised, because every incident row carries several codes from a small set.
    """
    found = _cache.get(value)
    if found is None:
        found = normalize_area_code(value)
        if len(_cache) < 100_000:
            _cache[value] = found
    return found


def row_hash(raw: str) -> str:
    return hashlib.md5(raw.encode("utf-8"), usedforsecurity=False).hexdigest()


def json_object(pairs: Sequence[tuple[str, str]]) -> str:
    """``json.dumps`` of a flat str->str dict, ~3x faster; values are escaped by the C encoder."""
    return "{" + ",".join(f"{encode_basestring(k)}:{encode_basestring(v)}" for k, v in pairs) + "}"


class JsonObjectTemplate:
    """Renders chosen columns of a row as a JSON object; empty values are left out.

    Built once per file so the per-row work is a few C calls (itemgetter, map, %), not a
    Python loop: this runs for every row of every import.
    """

    def __init__(self, columns: Sequence[tuple[int, str]],
                 transform: Callable[[str], str] | None = None) -> None:
        self.columns = [(i, encode_basestring(name)) for i, name in columns]
        self.transform = transform
        indices = [i for i, _ in columns]
        self._get = (itemgetter(*indices) if len(indices) > 1
                     else (lambda v: (v[indices[0]],)) if indices else (lambda v: ()))
        # a "%" in a column name must not be read as a placeholder
        self._template = "{" + ",".join(
            f"{name.replace('%', '%%')}:%s" for _, name in self.columns) + "}"

    def render(self, values: list[str]) -> str:
        picked = self._get(values)
        if self.transform is not None:
            picked = tuple(map(self.transform, picked))
        if all(picked):
            return self._template % tuple(map(encode_basestring, picked))
        return "{" + ",".join(
            f"{name}:{encode_basestring(value)}"
            for (_, name), value in zip(self.columns, picked, strict=True) if value
        ) + "}"


def utc_text(value: datetime) -> str:
    return value.isoformat(sep=" ", timespec="microseconds")


def parse_coordinate(text: str, what: str, low: float, high: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise RowRejected(f"unparseable {what} {text!r}") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise RowRejected(f"{what} {text!r} out of range [{low:g}, {high:g}]")
    return value


_BOOLEANS = {"true": True, "false": False, "": None, "y": True, "n": False, "yes": True,
             "no": False, "1": True, "0": False, "t": True, "f": False}


def parse_flag(text: str, what: str) -> bool | None:
    try:
        return _BOOLEANS[text.strip().lower()]
    except KeyError:
        raise RowRejected(f"{what} is {text!r}, expected true or false") from None


class IncidentPreset:
    """Base: column lookup, the header check and the per-row loop with rejection."""

    name: ClassVar[str]
    description: ClassVar[str]
    required: ClassVar[tuple[str, ...]]
    optional: ClassVar[tuple[str, ...]] = ()
    scheme: ClassVar[str | None] = None
    source: SourceInfo
    coverage: Bounds | None = None

    def __init__(self) -> None:
        self.stats = ConversionStats()
        self.header: list[str] = []
        self.index: dict[str, int] = {}
        self.mapper = CategoryMapper(self.scheme) if self.scheme else None

    def bind(self, header: list[str], file_label: str) -> None:
        """Check the header; remember where every column is. Raises InputFormatError."""
        self.header = header
        self.index = {}
        for position, column in enumerate(header):
            self.index.setdefault(normalise_column(column), position)
        missing = [c for c in self.required if normalise_column(c) not in self.index]
        if missing:
            raise InputFormatError(
                f"{file_label} is not a '{self.name}' file: missing required column(s) "
                f"{', '.join(missing)} (found: {', '.join(header) or 'no header'})",
                details={"missing_columns": missing, "found_columns": header},
            )
        self.expected_width = len(header)

    def col(self, name: str) -> int | None:
        return self.index.get(normalise_column(name))

    def convert(self, row: SourceRow) -> IncidentTuple | RejectedRow:
        """The incident tuple, or the rejection (raw text left for the caller to fill)."""
        values = row.values
        if len(values) != self.expected_width:
            return RejectedRow(
                row.line_number,
                f"wrong column count: expected {self.expected_width}, found {len(values)}",
                row.raw or "",
            )
        joined = "\x1f".join(values)
        if "\ufffd" in joined:
            return RejectedRow(row.line_number, "not valid UTF-8 text", row.raw or "")
        try:
            return self.convert_values(values, row.line_number, row_hash(joined))
        except RowRejected as exc:
            return RejectedRow(row.line_number, str(exc), row.raw or "")

    def convert_values(self, v: list[str], line_number: int, digest: str) -> IncidentTuple:
        """Convert a row of the right width; raise RowRejected with a reason if it is bad."""
        raise NotImplementedError

    def map_category(self, source_category: str, source_code: str | None) -> str | None:
        if self.mapper is None or not source_category:
            return None
        code = self.mapper.map(source_category, source_code)
        if code is None:
            self.stats.unmapped_categories[source_category] += 1
        return code

    def located(self, lon: float, lat: float) -> bool:
        """Within the source's area of coverage? Outside means a geocoding failure."""
        if self.coverage is None:
            return True
        min_lon, min_lat, max_lon, max_lat = self.coverage
        if min_lon <= lon <= max_lon and min_lat <= lat <= max_lat:
            return True
        self.stats.implausible_location += 1
        return False

    def extra_columns(self, used: set[int]) -> JsonObjectTemplate:
        """The columns kept only in ``attributes`` (so nothing the source published is lost)."""
        return JsonObjectTemplate(
            [(i, name) for i, name in enumerate(self.header) if i not in used])


# --------------------------------------------------------------------------------------------
# City of Chicago "Crimes - 2001 to present"
# --------------------------------------------------------------------------------------------


def parse_chicago_time(text: str) -> datetime:
    """``MM/DD/YYYY hh:mm:ss AM`` (CSV export) or ISO ``2017-01-01T00:01:00.000`` (JSON API)."""
    if len(text) == 22 and text[2] == "/" and text[5] == "/":
        try:
            month, day, year = int(text[0:2]), int(text[3:5]), int(text[6:10])
            hour, minute, second = int(text[11:13]), int(text[14:16]), int(text[17:19])
        except ValueError:
            raise RowRejected(f"unparseable time {text!r}") from None
        meridiem = text[20:22]
        if not 1 <= hour <= 12 or meridiem not in ("AM", "PM"):
            raise RowRejected(f"unparseable time {text!r}")
        if meridiem == "PM" and hour != 12:
            hour += 12
        elif meridiem == "AM" and hour == 12:
            hour = 0
        try:
            return datetime(year, month, day, hour, minute, second)
        except ValueError as exc:
            raise RowRejected(f"impossible time {text!r} ({exc})") from None
    if not text:
        raise RowRejected("missing time")
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise RowRejected(f"unparseable time {text!r}") from None
    return value.replace(tzinfo=None)


class ChicagoPreset(IncidentPreset):
    name = "chicago"
    description = 'City of Chicago "Crimes - 2001 to present" export (CSV or GeoJSON)'
    scheme = "chicago"
    required = ("ID", "Date", "IUCR", "Primary Type", "Description", "Latitude", "Longitude")
    optional = ("Case Number", "Block", "Location Description", "Arrest", "Domestic", "Beat",
                "District", "Ward", "Community Area", "FBI Code", "Updated On")
    source = SourceInfo(
        key="chicago-pd",
        name="Chicago Police Department, via the City of Chicago Data Portal",
        timezone="America/Chicago",
        url="https://data.cityofchicago.org/d/ijzp-q8t2",
        licence="City of Chicago Data Portal terms of use",
    )
    # The city with a margin: points outside are failed geocodes (e.g. 36.6N, -91.7W).
    coverage = (-88.1, 41.5, -87.4, 42.1)
    AREA_COLUMNS = (("Beat", "beat"), ("District", "district"), ("Ward", "ward"),
                    ("Community Area", "community_area"))

    def bind(self, header: list[str], file_label: str) -> None:
        super().bind(header, file_label)
        self.clock = LocalToUTC(self.source.timezone)
        self._time_cache: dict[str, str] = {}
        c = self.col
        self.i_id, self.i_date, self.i_iucr = c("ID"), c("Date"), c("IUCR")
        self.i_type, self.i_desc = c("Primary Type"), c("Description")
        self.i_lat, self.i_lon = c("Latitude"), c("Longitude")
        self.i_updated, self.i_block = c("Updated On"), c("Block")
        self.i_locdesc, self.i_arrest, self.i_domestic = (
            c("Location Description"), c("Arrest"), c("Domestic"))
        self.areas = [(i, kind) for name, kind in self.AREA_COLUMNS if (i := c(name)) is not None]
        used = {self.i_id, self.i_date, self.i_iucr, self.i_type, self.i_desc, self.i_lat,
                self.i_lon, self.i_updated, self.i_block, self.i_locdesc, self.i_arrest,
                self.i_domestic, *(i for i, _ in self.areas)}
        # "Location" repeats Latitude/Longitude as text in some exports: redundant, not lost.
        if (location := c("Location")) is not None:
            used.add(location)
        self.extra = self.extra_columns({i for i in used if i is not None})
        self.area_json = JsonObjectTemplate(self.areas, normalise_code)

    def utc(self, text: str) -> str:
        cached = self._time_cache.get(text)
        if cached is None:
            cached = utc_text(self.clock.to_utc(parse_chicago_time(text)))
            if len(self._time_cache) > 500_000:
                self._time_cache.clear()
            self._time_cache[text] = cached
        return cached

    def convert_values(self, v: list[str], line_number: int, digest: str) -> IncidentTuple:
        key = v[self.i_id].strip()
        if not key:
            raise RowRejected("missing ID")
        occurred = self.utc(v[self.i_date])
        updated = None
        if self.i_updated is not None and v[self.i_updated]:
            updated = self.utc(v[self.i_updated])
        lat_text, lon_text = v[self.i_lat].strip(), v[self.i_lon].strip()
        lon = lat = None
        if lat_text or lon_text:
            if not (lat_text and lon_text):
                raise RowRejected("only one of Latitude/Longitude given")
            lat = parse_coordinate(lat_text, "Latitude", -90.0, 90.0)
            lon = parse_coordinate(lon_text, "Longitude", -180.0, 180.0)
            if not self.located(lon, lat):
                lon = lat = None
        if lon is None:
            self.stats.unlocated += 1
        arrest = parse_flag(v[self.i_arrest], "Arrest") if self.i_arrest is not None else None
        domestic = (parse_flag(v[self.i_domestic], "Domestic")
                    if self.i_domestic is not None else None)
        iucr = v[self.i_iucr].strip()
        source_category = v[self.i_type].strip()
        areas = self.area_json.render(v)
        return (
            key,
            self.map_category(source_category, iucr),
            source_category or None,
            v[self.i_desc].strip() or None,
            iucr or None,
            occurred,
            "second",
            None,
            updated,
            lon,
            lat,
            (v[self.i_locdesc].strip() or None) if self.i_locdesc is not None else None,
            (v[self.i_block].strip() or None) if self.i_block is not None else None,
            areas,
            arrest,
            domestic,
            self.extra.render(v),
            digest,
            line_number,
        )


# --------------------------------------------------------------------------------------------
# data.police.uk street-level crime
# --------------------------------------------------------------------------------------------


class UkPolicePreset(IncidentPreset):
    """data.police.uk street-level CSV: month resolution, anonymised (snapped) locations.

    Anti-social behaviour rows have no Crime ID. Their id is derived from the row's content plus
    its ordinal among identical rows in the file, so re-importing the same file finds the same
    ids while two identical reports in one month both count.
    """

    name = "uk-police"
    description = "data.police.uk street-level crime CSV (England, Wales, Northern Ireland)"
    scheme = "uk-police"
    required = ("Crime ID", "Month", "Reported by", "Falls within", "Longitude", "Latitude",
                "Location", "LSOA code", "LSOA name", "Crime type", "Last outcome category",
                "Context")
    source = SourceInfo(
        key="uk-police",
        name="Police forces of England, Wales and Northern Ireland, via data.police.uk",
        timezone="Europe/London",
        url="https://data.police.uk/data/",
        licence="Open Government Licence v3.0",
    )
    coverage = (-8.7, 49.8, 2.0, 60.9)

    def bind(self, header: list[str], file_label: str) -> None:
        super().bind(header, file_label)
        self.clock = LocalToUTC(self.source.timezone)
        self._seen_derived: Counter[str] = Counter()
        c = self.col
        self.i_id, self.i_month, self.i_lon, self.i_lat = (
            c("Crime ID"), c("Month"), c("Longitude"), c("Latitude"))
        self.i_location, self.i_lsoa, self.i_type = c("Location"), c("LSOA code"), c("Crime type")
        self.i_force = c("Falls within")
        self.extra = self.extra_columns({self.i_id, self.i_month, self.i_lon, self.i_lat,
                                         self.i_location, self.i_lsoa, self.i_type})

    def convert_values(self, v: list[str], line_number: int, digest: str) -> IncidentTuple:
        month = v[self.i_month].strip()
        try:
            local = datetime.strptime(month, "%Y-%m")
        except ValueError:
            raise RowRejected(f"unparseable Month {month!r}, expected YYYY-MM") from None
        key = v[self.i_id].strip()
        if not key:
            self._seen_derived[digest] += 1
            key = f"derived:{digest[:20]}:{self._seen_derived[digest]}"
        lat_text, lon_text = v[self.i_lat].strip(), v[self.i_lon].strip()
        lon = lat = None
        if lat_text or lon_text:
            if not (lat_text and lon_text):
                raise RowRejected("only one of Latitude/Longitude given")
            lat = parse_coordinate(lat_text, "Latitude", -90.0, 90.0)
            lon = parse_coordinate(lon_text, "Longitude", -180.0, 180.0)
            if not self.located(lon, lat):
                lon = lat = None
        if lon is None:
            self.stats.unlocated += 1
        crime_type = v[self.i_type].strip()
        areas = [("lsoa", v[self.i_lsoa].strip()), ("force", v[self.i_force].strip())]
        location = v[self.i_location].strip()
        return (
            key,
            self.map_category(crime_type, None),
            crime_type or None,
            None,
            None,
            utc_text(self.clock.to_utc(local)),
            "month",
            None,
            None,
            lon,
            lat,
            location or None,
            None,
            json_object([(k, code) for k, code in areas if code]),
            None,
            None,
            self.extra.render(v),
            digest,
            line_number,
        )


PRESETS: dict[str, type[IncidentPreset]] = {
    ChicagoPreset.name: ChicagoPreset,
    UkPolicePreset.name: UkPolicePreset,
}


def preset_for(name: str, mapping: Any = None) -> IncidentPreset:
    """The preset called ``name``; ``generic`` needs a :class:`GenericMapping`."""
    from urbansec.ingest.generic import GenericPreset

    if name == GenericPreset.name:
        if mapping is None:
            raise UsageError("the generic preset needs a column mapping (--mapping FILE or flags)")
        return GenericPreset(mapping)
    try:
        return PRESETS[name]()
    except KeyError:
        known = ", ".join([*PRESETS, GenericPreset.name])
        raise UsageError(f"unknown preset {name!r}; known presets: {known}") from None


