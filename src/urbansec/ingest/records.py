"""Plain records the readers yield and the store writes.

Readers know files, not databases; the store knows tables, not files. These records are the
contract between them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from shapely.geometry.base import BaseGeometry


@dataclass(frozen=True, slots=True)
class RejectedRow:
    """A row that could not be imported, kept with where it was and why."""

    line_number: int
    reason: str
    raw_line: str


@dataclass(slots=True)
class AreaRecord:
    """One polygon (or multipolygon) area, geometry in WGS84 lon/lat."""

    code: str
    name: str | None
    geometry: BaseGeometry
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class AreaCountRecord:
    """A count published for one area and one period (how many European forces publish)."""

    line_number: int
    area_code: str
    area_name: str | None
    period_start: date
    period_end: date  # exclusive
    source_category: str
    count: int
    attributes: dict[str, Any] = field(default_factory=dict)


# The fields of one incident as readers hand them to the store, in this order, as a tuple
# (tuples, not objects: an import moves hundreds of thousands of them). Times are UTC text
# "YYYY-MM-DD HH:MM:SS.ffffff"; area_codes and attributes are JSON text; row_hash identifies
# the source row's content so re-imports can tell unchanged from updated rows.
INCIDENT_COLUMNS: tuple[str, ...] = (
    "source_key",
    "category",
    "source_category",
    "source_subcategory",
    "source_code",
    "occurred_at",
    "time_precision",
    "reported_at",
    "updated_at",
    "lon",
    "lat",
    "location_description",
    "address",
    "area_codes",
    "arrest",
    "domestic",
    "attributes",
    "row_hash",
    "line_number",
)
IncidentTuple = tuple[Any, ...]
