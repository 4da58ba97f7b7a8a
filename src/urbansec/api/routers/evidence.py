"""Evidence through the API: incidents, privacy-safe aggregates, analyses, forecasts, imports.

Thin over the services. Every route checks its permission with ``deps.allowed``; viewers and
the public only reach aggregate routes and get k-suppressed counts there
(``services.aggregates``). Every parameter is bounded so that no single request can take the
server down: cells of at least 50 m, at most 9999 permutations, a cap on cells x permutations.
The analyses (hot spots, near-repeat, change, forecasts) run in worker processes, a bounded
number at a time (``api.analysis_pool``), so that they never starve the other requests; their
answer is validated against the route's response model and encoded to JSON there too.
"""

from __future__ import annotations

import itertools
import math
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, File, Form, Path, Query, Response, UploadFile
from pydantic import TypeAdapter
from shapely.geometry import mapping
from sqlalchemy import Engine

from urbansec.api.analysis_pool import ANALYSES, engine_of
from urbansec.api.deps import allowed, get_engine, get_settings
from urbansec.api.schemas_evidence import (
    AreaCounts,
    CountSummary,
    ErrorBody,
    FeatureCollection,
    ImportBatch,
    ImportBatchDetail,
    ImportReportOut,
    IncidentPage,
    Open,
)
from urbansec.config import Settings
from urbansec.errors import UsageError
from urbansec.services import aggregates, audit, jobs
from urbansec.services.access import Principal
from urbansec.services.cells import CellResult
from urbansec.services.hotspots import GridOptions
from urbansec.services.incidents import (
    IncidentFilter,
    count_incidents,
    iter_incidents,
)
from urbansec.store.engine import write_transaction

router = APIRouter()

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Bad parameter"},
    401: {"model": ErrorBody, "description": "Not signed in"},
    403: {"model": ErrorBody, "description": "The role may not do this"},
    404: {"model": ErrorBody, "description": "Unknown source, area or batch"},
    422: {"model": ErrorBody, "description": "Malformed request"},
}

#: a study may not exceed this many cells, nor cells x (permutations + 1) this much work
MAX_CELLS = aggregates.MAX_STUDY_CELLS
MAX_WORK = aggregates.MAX_STUDY_WORK
# the refusals and the privacy rules live in the service, shared with the dashboard's routes
_check_work = aggregates.check_work
_privacy = aggregates.privacy_for
MAX_HEX = 10
MAX_FORECAST_CELLS = 10_000
MAX_BANDWIDTH_CELLS = 40
MAX_NEAR_REPEAT_EVENTS = 10_000
MAX_NEAR_REPEAT_WORK = 10_000_000  # H3 resolution 10 is ~15,000 m2 (about 120 m squares)

# no control characters (NUL breaks PostgreSQL text) and bounded lengths
_TEXT = r"^[^\x00-\x1f\x7f]*$"
Category = Annotated[str | None, Query(max_length=200, pattern=_TEXT,
                                       description="category code(s), comma-separated")]
From = Annotated[str | None, Query(alias="from", max_length=40, pattern=_TEXT,
                                   description="YYYY-MM-DD (UTC day) or ISO 8601 instant")]
To = Annotated[str | None, Query(alias="to", max_length=40, pattern=_TEXT,
                                 description="exclusive; a bare day is included")]
Bbox = Annotated[str | None, Query(max_length=120, pattern=_TEXT,
                                   description="min_lon,min_lat,max_lon,max_lat")]
Area = Annotated[str | None, Query(max_length=120, pattern=_TEXT,
                                   description="KIND:CODE, e.g. district:18")]
Source = Annotated[str | None, Query(max_length=100, pattern=_TEXT)]
Cell = Annotated[float, Query(ge=aggregates.MIN_CELL_M, le=aggregates.MAX_CELL_M,
                              description="square cell side, metres")]
Hex = Annotated[int | None, Query(ge=0, le=MAX_HEX, description="H3 resolution (instead "
                                                               "of squares)")]
Within = Annotated[str | None, Query(max_length=200, pattern=_TEXT,
                                     description="KIND or KIND:CODE,CODE")]


def _filter(category: str | None, start: str | None, end: str | None, bbox: str | None,
            area: str | None, source: str | None) -> IncidentFilter:
    return IncidentFilter.parse(category=category, start=start, end=end, bbox=bbox, area=area,
                                source=source)


def _clean(value: Any) -> Any:
    """JSON-safe: numpy scalars to Python, non-finite floats to null."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def feature_collection(result: CellResult) -> dict[str, Any]:
    """A CellResult as the same FeatureCollection ``services.cells.write_geojson`` writes."""
    features = []
    if result.keys.size:
        for record, polygon in zip(result.records(), result.grid.polygons(result.keys),
                                   strict=True):
            geometry = dict(mapping(polygon))
            geometry["coordinates"] = [[[round(x, 7), round(y, 7)] for x, y in ring]
                                       for ring in geometry["coordinates"]]
            features.append({"type": "Feature", "id": record["cell_id"],
                             "geometry": geometry, "properties": _clean(record)})
    return {"type": "FeatureCollection", "urbansec": _clean(result.summary),
            "features": features}


def _json(model: Any, payload: dict[str, Any]) -> bytes:
    """``payload`` checked against the route's response model and encoded, as FastAPI would."""
    adapter = TypeAdapter(model)
    return adapter.dump_json(adapter.validate_python(payload), by_alias=True)


def _json_response(body: bytes) -> Response:
    return Response(body, media_type="application/json")


# --------------------------------------------------------------------------------------------
# Incidents (individual records: partners and analysts only)
# --------------------------------------------------------------------------------------------


@router.get("/incidents", tags=["incidents"], responses=ERRORS,
            response_model=IncidentPage | FeatureCollection,
            summary="Individual incidents (paginated; audited)")
def list_incidents(
    category: Category = None, start: From = None, end: To = None, bbox: Bbox = None,
    area: Area = None, source: Source = None,
    format: Annotated[Literal["json", "geojson"], Query()] = "json",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    principal: Principal = Depends(allowed("incidents:read")),
    engine: Engine = Depends(get_engine),
) -> dict[str, Any]:
    flt = _filter(category, start, end, bbox, area, source)
    # one row beyond the page says whether there is a next one
    rows = list(itertools.islice(iter_incidents(engine, flt, batch=min(limit + 1, 1001)),
                                 offset, offset + limit + 1))
    more = len(rows) > limit
    rows = [_clean(r) for r in rows[:limit]]
    with write_transaction(engine) as connection:
        audit.record(connection, principal, "incidents.read", target_type="incidents",
                     details={"filter": flt.description, "offset": offset,
                              "returned": len(rows), "format": format})
    if format == "geojson":
        features = [{"type": "Feature", "id": r["id"],
                     "geometry": None if r["lon"] is None else
                     {"type": "Point", "coordinates": [r["lon"], r["lat"]]},
                     "properties": r} for r in rows]
        return {"type": "FeatureCollection",
                "urbansec": {"filter": flt.description, "limit": limit, "offset": offset,
                             "next_offset": offset + limit if more else None},
                "features": features}
    return {"items": rows, "limit": limit, "offset": offset,
            "next_offset": offset + limit if more else None, "filter": flt.description}


# --------------------------------------------------------------------------------------------
# Aggregates (everyone; k-suppressed without incidents:read)
# --------------------------------------------------------------------------------------------


@router.get("/incidents/count", tags=["aggregates"], responses=ERRORS,
            response_model=CountSummary, summary="Totals and counts by category")
def count(
    category: Category = None, start: From = None, end: To = None, bbox: Bbox = None,
    area: Area = None, source: Source = None,
    principal: Principal = Depends(allowed("aggregates:read")),
    engine: Engine = Depends(get_engine), settings: Settings = Depends(get_settings),
) -> dict[str, Any]:
    privacy = _privacy(principal, settings)
    aggregates.check_filter(privacy, bbox=bbox, start=start, end=end)
    flt = _filter(category, start, end, bbox, area, source)
    return _clean(aggregates.count_summary(engine, flt, privacy))


@router.get("/aggregates/cells", tags=["aggregates"], responses=ERRORS,
            response_model=FeatureCollection, summary="Incident counts per grid cell")
def cells(
    category: Category = None, start: From = None, end: To = None, bbox: Bbox = None,
    area: Area = None, source: Source = None, cell: Cell = 250.0, hex: Hex = None,
    principal: Principal = Depends(allowed("aggregates:read")),
    engine: Engine = Depends(get_engine), settings: Settings = Depends(get_settings),
) -> dict[str, Any]:
    privacy = _privacy(principal, settings)
    aggregates.check_filter(privacy, bbox=bbox, start=start, end=end)
    flt = _filter(category, start, end, bbox, area, source)
    _check_work(engine, flt, cell, hex, 0)
    return _clean(aggregates.cell_counts(engine, flt, privacy, cell=cell, hex_resolution=hex))


@router.get("/aggregates/areas", tags=["aggregates"], responses=ERRORS,
            response_model=AreaCounts,
            summary="Incident counts per imported area")
def areas(
    kind: Annotated[str, Query(min_length=1, max_length=50, pattern=r"^[A-Za-z0-9_.-]+$",
                               description="area kind, e.g. district")] = "district",
    category: Category = None, start: From = None, end: To = None, bbox: Bbox = None,
    area: Area = None, source: Source = None,
    principal: Principal = Depends(allowed("aggregates:read")),
    engine: Engine = Depends(get_engine), settings: Settings = Depends(get_settings),
) -> dict[str, Any]:
    privacy = _privacy(principal, settings)
    aggregates.check_filter(privacy, bbox=bbox, start=start, end=end)
    flt = _filter(category, start, end, bbox, area, source)
    return _clean(aggregates.area_counts(engine, flt, privacy, kind=kind))


@router.get("/patterns", tags=["aggregates"], responses=ERRORS, response_model=Open,
            summary="Hour x weekday and monthly counts (k-suppressed for viewers)")
def patterns(
    category: Category = None, start: From = None, end: To = None, bbox: Bbox = None,
    area: Area = None, source: Source = None,
    night: Annotated[str, Query(max_length=20, pattern=r"^\d{1,2}:\d{2}-\d{1,2}:\d{2}$")
                     ] = "22:00-06:00",
    principal: Principal = Depends(allowed("aggregates:read")),
    engine: Engine = Depends(get_engine), settings: Settings = Depends(get_settings),
) -> dict[str, Any]:
    from urbansec.services.patterns import time_patterns

    privacy = _privacy(principal, settings)
    aggregates.check_filter(privacy, bbox=bbox, start=start, end=end)
    flt = _filter(category, start, end, bbox, area, source)
    result = time_patterns(engine, flt, night=night)
    if privacy.suppress:
        result = aggregates.public_patterns(result, privacy.k)
    return _clean(result)


# --------------------------------------------------------------------------------------------
# Analyses (partners and analysts)
# --------------------------------------------------------------------------------------------


def _hotspots_body(database: Engine | str, *, flt: IncidentFilter, method: str, cell: float,
                   hex_resolution: int | None, within: str | None, weights: str,
                   permutations: int, seed: int, fdr: bool, bandwidth: float | None,
                   kernel: str) -> bytes:
    from urbansec.services.hotspots import hotspots as run

    engine = engine_of(database)
    _check_work(engine, flt, cell, hex_resolution,
                permutations if method in ("gi", "lisa") else 0)
    result = run(engine, flt, method=method,
                 options=GridOptions(cell=cell, hex_resolution=hex_resolution, within=within),
                 weights=weights, permutations=permutations, seed=seed, fdr=fdr,
                 bandwidth=bandwidth, kernel=kernel)
    return _json(FeatureCollection, feature_collection(result))


@router.get("/hotspots", tags=["analysis"], responses=ERRORS, response_model=FeatureCollection,
            summary="Hot spots per cell: counts, KDE, Getis-Ord Gi* or Local Moran's I")
async def hotspots(
    category: Category = None, start: From = None, end: To = None, bbox: Bbox = None,
    area: Area = None, source: Source = None,
    method: Annotated[Literal["count", "kde", "gi", "lisa"], Query()] = "gi",
    cell: Cell = 250.0, hex: Hex = None, within: Within = None,
    weights: Annotated[str, Query(max_length=40,
                                  pattern=r"^(queen|rook|distance:\d+(\.\d+)?)$")] = "queen",
    permutations: Annotated[int, Query(ge=0, le=9999)] = 999,
    seed: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    fdr: bool = False,
    bandwidth: Annotated[float | None, Query(gt=0, le=50_000)] = None,
    kernel: Annotated[Literal["quartic", "gaussian"], Query()] = "quartic",
    principal: Principal = Depends(allowed("analysis:run")),
    engine: Engine = Depends(get_engine),
) -> Response:
    if method == "kde" and bandwidth is not None and bandwidth > MAX_BANDWIDTH_CELLS * cell:
        # each incident spreads over (2 bandwidth / cell)^2 cells
        raise UsageError(f"bandwidth may be at most {MAX_BANDWIDTH_CELLS} cells "
                         f"({MAX_BANDWIDTH_CELLS * cell:g} m at {cell:g} m cells)")
    flt = _filter(category, start, end, bbox, area, source)
    return _json_response(await ANALYSES.run(
        engine, _hotspots_body, flt=flt, method=method, cell=cell, hex_resolution=hex,
        within=within, weights=weights, permutations=permutations, seed=seed, fdr=fdr,
        bandwidth=bandwidth, kernel=kernel))


def _near_repeat_body(database: Engine | str, *, flt: IncidentFilter,
                      space_bands: list[float], time_bands: list[float], permutations: int,
                      seed: int, by_category: bool) -> bytes:
    from urbansec.services import near_repeat as service

    engine = engine_of(database)
    # the Knox test compares every pair of incidents: bound the pairs and the permutations
    located = count_incidents(engine, flt)["located"]
    if located > MAX_NEAR_REPEAT_EVENTS:
        raise UsageError(f"{located:,} located incidents match: the near-repeat test takes at "
                         f"most {MAX_NEAR_REPEAT_EVENTS:,} per request; narrow the filter "
                         "(category, period, area)")
    if located * (permutations + 1) > MAX_NEAR_REPEAT_WORK:
        raise UsageError(f"{located:,} incidents x {permutations} permutations is too much for "
                         "one request; use fewer permutations or narrow the filter")
    return _json(Open, _clean(service.near_repeat(
        engine, flt, space_bands=space_bands, time_bands=time_bands,
        permutations=permutations, seed=seed, by_category=by_category)))


@router.get("/near-repeat", tags=["analysis"], responses=ERRORS, response_model=Open,
            summary="Knox test: near-repeat victimisation")
async def near_repeat(
    category: Category = None, start: From = None, end: To = None, bbox: Bbox = None,
    area: Area = None, source: Source = None,
    space_bands: Annotated[str, Query(max_length=100, pattern=r"^[0-9.,]+$",
                                      description="metres, e.g. 100,200,400")] = "100,200,400",
    time_bands: Annotated[str, Query(max_length=100, pattern=r"^[0-9.,]+$",
                                     description="days, e.g. 7,14,30")] = "7,14,30",
    permutations: Annotated[int, Query(ge=9, le=9999)] = 99,
    seed: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    by_category: bool = False,
    principal: Principal = Depends(allowed("analysis:run")),
    engine: Engine = Depends(get_engine),
) -> Response:
    from urbansec.services import near_repeat as service

    flt = _filter(category, start, end, bbox, area, source)
    space = service.parse_bands(space_bands, "space_bands")
    time = service.parse_bands(time_bands, "time_bands")
    if len(space) > 10 or len(time) > 10:
        raise UsageError("at most 10 space bands and 10 time bands")
    return _json_response(await ANALYSES.run(
        engine, _near_repeat_body, flt=flt, space_bands=space, time_bands=time,
        permutations=permutations, seed=seed, by_category=by_category))


def _change_body(database: Engine | str, *, flt: IncidentFilter, baseline: str,
                 by: str | None, cell: float, alpha: float, correction: str,
                 limit: int | None) -> bytes:
    from urbansec.services.change import change as run

    engine = engine_of(database)
    if by is None:
        _check_work(engine, flt, cell, None, 0)
    return _json(Open, _clean(run(engine, flt, baseline=baseline, by=by, cell=cell,
                                  alpha=alpha, correction=correction, limit=limit)))


@router.get("/change", tags=["analysis"], responses=ERRORS, response_model=Open,
            summary="Change against a baseline period, per area or cell")
async def change(
    category: Category = None, start: From = None, end: To = None, bbox: Bbox = None,
    area: Area = None, source: Source = None,
    baseline: Annotated[Literal["previous", "last-year"], Query()] = "previous",
    by: Annotated[str | None, Query(max_length=50, pattern=r"^[A-Za-z0-9_.-]+$",
                                    description="area kind; cells when absent")] = None,
    cell: Cell = 500.0,
    alpha: Annotated[float, Query(gt=0, lt=1)] = 0.05,
    correction: Annotated[Literal["none", "fdr", "bonferroni"], Query()] = "fdr",
    limit: Annotated[int | None, Query(ge=1, le=10_000)] = 100,
    principal: Principal = Depends(allowed("analysis:run")),
    engine: Engine = Depends(get_engine),
) -> Response:
    flt = _filter(category, start, end, bbox, area, source)
    return _json_response(await ANALYSES.run(
        engine, _change_body, flt=flt, baseline=baseline, by=by, cell=cell, alpha=alpha,
        correction=correction, limit=limit))


def _forecast_body(database: Engine | str, *, flt: IncidentFilter, model: str, horizon: str,
                   train_days: float, cell: float, hex_resolution: int | None,
                   within: str | None, top: float) -> bytes:
    from urbansec.services.forecast import forecast as run

    engine = engine_of(database)
    # fitting a model costs far more per cell than counting: a tighter cap
    _check_work(engine, flt, cell, hex_resolution, 0, max_cells=MAX_FORECAST_CELLS)
    result = run(engine, flt, model=model, horizon=horizon, train_days=train_days,
                 options=GridOptions(cell=cell, hex_resolution=hex_resolution, within=within),
                 top=top)
    return _json(FeatureCollection, feature_collection(result))


@router.get("/forecast", tags=["forecast"], responses=ERRORS, response_model=FeatureCollection,
            summary="Risk per cell for the next horizon")
async def forecast(
    category: Category = None, bbox: Bbox = None, area: Area = None, source: Source = None,
    model: Annotated[Literal["naive", "historical", "kde", "prospective", "sepp"],
                     Query()] = "sepp",
    horizon: Annotated[str, Query(max_length=12, pattern=r"^\d{1,4}(\.\d+)?[hdw]?$",
                                  description="e.g. 1d, 7d, 12h, 2w")] = "7d",
    cell: Cell = 250.0, hex: Hex = None, within: Within = None,
    train_days: Annotated[float, Query(gt=0, le=3660)] = 365,
    top: Annotated[float, Query(gt=0, le=1)] = 0.05,
    principal: Principal = Depends(allowed("forecast:run")),
    engine: Engine = Depends(get_engine),
) -> Response:
    from urbansec.services.forecast import parse_horizon

    if parse_horizon(horizon).days > 366:
        raise UsageError("horizon: at most a year")
    flt = _filter(category, None, None, bbox, area, source)
    return _json_response(await ANALYSES.run(
        engine, _forecast_body, flt=flt, model=model, horizon=horizon, train_days=train_days,
        cell=cell, hex_resolution=hex, within=within, top=top))


# --------------------------------------------------------------------------------------------
# Imports (staff)
# --------------------------------------------------------------------------------------------


@router.post("/imports", tags=["imports"], responses=ERRORS, response_model=ImportReportOut,
             status_code=201, summary="Import an incidents file (multipart upload; audited)")
def create_import(
    file: Annotated[UploadFile, File(description="CSV (.csv, .csv.gz) or GeoJSON")],
    preset: Annotated[str, Form(min_length=1, max_length=50, pattern=r"^[a-z0-9_-]+$")],
    principal: Principal = Depends(allowed("imports:write")),
    engine: Engine = Depends(get_engine),
) -> dict[str, Any]:
    return _clean(jobs.import_upload(engine, principal, filename=file.filename or "",
                                     stream=file.file, preset=preset))


@router.get("/imports", tags=["imports"], responses=ERRORS, response_model=list[ImportBatch],
            summary="Past imports, newest first")
def list_batches(
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    principal: Principal = Depends(allowed("imports:read")),
    engine: Engine = Depends(get_engine),
) -> list[dict[str, Any]]:
    return _clean(jobs.imports(engine, limit))


@router.get("/imports/{batch_id}", tags=["imports"], responses=ERRORS,
            response_model=ImportBatchDetail, summary="One import with its rejected rows")
def get_batch(
    batch_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    principal: Principal = Depends(allowed("imports:read")),
    engine: Engine = Depends(get_engine),
) -> dict[str, Any]:
    return _clean(jobs.import_batch(engine, batch_id))
