"""Response models of the evidence routes (pydantic v2), so the OpenAPI schema is exact.

Analyses return rich, method-dependent summaries; those stay open objects (``extra="allow"``)
while the parts a client relies on (GeoJSON structure, counts, suppression flags) are typed.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorBody(BaseModel):
    error: ErrorDetail


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Feature(BaseModel):
    type: Literal["Feature"] = "Feature"
    id: str | int | None = None
    geometry: dict[str, Any] | None
    properties: dict[str, Any]


class FeatureCollection(BaseModel):
    """RFC 7946 FeatureCollection (WGS84); ``urbansec`` holds the run's summary."""

    type: Literal["FeatureCollection"] = "FeatureCollection"
    urbansec: dict[str, Any] = Field(default_factory=dict)
    features: list[Feature]


class IncidentPage(BaseModel):
    """One page of individual incidents (export columns)."""

    items: list[dict[str, Any]]
    limit: int
    offset: int
    next_offset: int | None = Field(description="offset of the next page; null on the last")
    filter: dict[str, Any]


class CategoryCount(BaseModel):
    code: str | None
    name: str
    count: int | None = Field(description="null when suppressed (below k)")
    suppressed: bool


class CountSummary(Open):
    filter: dict[str, Any]
    total: int | None
    located: int | None
    located_share: float | None = None
    by_category: list[CategoryCount]
    suppressed: bool


class AreaCount(BaseModel):
    code: str
    name: str | None
    count: int | None
    suppressed: bool


class AreaCounts(BaseModel):
    filter: dict[str, Any]
    kind: str
    total: int | None
    unassigned: int | None
    suppressed: bool
    k: int | None
    areas: list[AreaCount]


class FileReport(Open):
    file: str
    batch_id: int | None
    status: str
    rows_read: int
    inserted: int
    updated: int
    unchanged: int
    rejected: int


class ImportReportOut(BaseModel):
    kind: str
    preset: str
    status: str
    message: str | None
    files: list[FileReport]


class ImportBatch(Open):
    id: int
    kind: str
    preset: str
    source_key: str | None
    file_name: str
    status: str
    rows_read: int | None
    rows_inserted: int | None
    rows_rejected: int | None
    message: str | None
    started_at: Any = None
    finished_at: Any = None


class RejectedRow(BaseModel):
    line: int | None
    reason: str | None
    raw: str


class ImportBatchDetail(ImportBatch):
    rejected_rows: list[RejectedRow]
