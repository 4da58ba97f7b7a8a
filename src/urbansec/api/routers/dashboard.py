"""The web dashboard's API: configuration, categories, area outlines and the analyst view.

Thin over ``services.dashboard``. The view is served from the in-memory event cube, which is
built in a background thread when the app starts (and rebuilt after imports), so the first
page load does not wait for it. Large responses are serialised once with ``json.dumps`` on
plain Python values (FastAPI's encoder would walk every coordinate of every feature).
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from urbansec.api.analysis_pool import ANALYSES, engine_of
from urbansec.api.deps import allowed, get_engine, get_settings
from urbansec.api.routers.evidence import (
    ERRORS,
    MAX_BANDWIDTH_CELLS,
    MAX_FORECAST_CELLS,
    Area,
    Category,
)
from urbansec.api.schemas_evidence import Open
from urbansec.config import Settings
from urbansec.errors import UsageError
from urbansec.services import dashboard as service
from urbansec.services.access import Principal
from urbansec.services.aggregates import MAX_CELL_M, MIN_CELL_M, check_work, privacy_for
from urbansec.services.dashboard_cube import cache_for, data_version
from urbansec.services.incidents import IncidentFilter

#: views smaller than this go as they are (the app's GZip middleware has the same floor)
GZIP_MIN_BYTES = 1024
GZIP_LEVEL = 5
#: forecasts here are cached per data version, and the city at 250 m is ~23,000 cells
MAX_DASHBOARD_FORECAST_CELLS = 4 * MAX_FORECAST_CELLS


@asynccontextmanager
async def warm_cube(app: FastAPI) -> AsyncIterator[None]:
    """Start building the event cube as the server starts (a daemon thread that ends when
    the cube is built; startup does not wait for it); as it stops, end the analysis
    workers, running analyses included (left alone they kept computing, orphaned, after the
    server had gone: measured, minutes of CPU taken from the next server on the machine)."""
    engine = getattr(app.state, "engine", None)
    if engine is not None:
        cache_for(engine).warm(engine)
    try:
        yield
    finally:
        await run_in_threadpool(ANALYSES.shutdown, terminate=True)


router = APIRouter(prefix="/dashboard", tags=["dashboard"], lifespan=warm_cube)


class FastJSON(JSONResponse):
    """A JSON body already serialised by ``service.dumps`` (bytes pass through untouched;
    a JSONResponse so that OpenAPI documents the route's JSON schema)."""

    def render(self, content: Any) -> bytes:
        if isinstance(content, bytes):
            return content
        return super().render(content)


def _json(value: Any) -> Response:
    return FastJSON(service.dumps(value))


Day = r"^\d{4}-\d{2}-\d{2}$"
From = Annotated[str | None, Query(alias="from", max_length=10, pattern=Day,
                                   description="first day, YYYY-MM-DD (UTC day)")]
To = Annotated[str | None, Query(alias="to", max_length=10, pattern=Day,
                                 description="last day, YYYY-MM-DD; the day is included")]
TimeOfDay = Annotated[str, Query(
    max_length=11, pattern=r"^(all|day|night|\d{1,2}:\d{2}-\d{1,2}:\d{2})$",
    description="all, day (06:00-22:00), night (22:00-06:00) or HH:MM-HH:MM, local time")]
ViewCell = Annotated[float, Query(ge=MIN_CELL_M, le=MAX_CELL_M,
                                  description="square cell side, metres (viewers and the "
                                              "public: at least public_cell_m)")]
ForecastCell = Annotated[float, Query(ge=100, le=MAX_CELL_M, description="cell side, metres")]
Horizon = Annotated[str, Query(max_length=4, pattern=r"^([1-9]|1[0-9]|2[0-8])d$",
                               description="1d to 28d")]


@router.get("/config", responses=ERRORS, response_class=FastJSON, response_model=Open,
            summary="What the map page needs first: title, extent, period, area kinds")
def config(http: Request, principal: Principal = Depends(allowed("aggregates:read")),
           engine: Engine = Depends(get_engine),
           settings: Settings = Depends(get_settings)) -> Response:
    shown = (settings.dashboard_title, settings.tile_url, settings.tile_attribution,
             settings.k_anonymity, settings.public_cell_m, settings.contact_retention_days)
    return _revalidated(http, ("config", service.current_version(engine), shown),
                        lambda: service.dashboard_config(engine, settings))


@router.get("/taxonomy", responses=ERRORS, response_class=FastJSON, response_model=Open,
            summary="The ICCS categories that occur in the data, as a tree with counts")
def taxonomy(http: Request, principal: Principal = Depends(allowed("aggregates:read")),
             engine: Engine = Depends(get_engine),
             settings: Settings = Depends(get_settings)) -> Response:
    privacy = privacy_for(principal, settings)
    return _revalidated(http, ("taxonomy", service.current_version(engine), privacy),
                        lambda: service.taxonomy(engine, privacy))


@router.get("/areas/{kind}", responses=ERRORS, response_class=FastJSON, response_model=Open,
            summary="Outlines of the imported areas of one kind, simplified for drawing")
def areas(http: Request, kind: Annotated[str, Path(min_length=1, max_length=50,
                                                   pattern=r"^[A-Za-z0-9_.-]+$")],
          principal: Principal = Depends(allowed("aggregates:read")),
          engine: Engine = Depends(get_engine)) -> Response:
    return _revalidated(http, ("areas", data_version(engine, count=False), kind.lower()),
                        lambda: service.area_outlines(engine, kind))


def _revalidated(request: Request, key: tuple[Any, ...], build: Callable[[], Any]
                 ) -> Response:
    """``build()`` as JSON with an ETag naming ``key`` (which holds the data version): the
    browser keeps the answer and asks again with If-None-Match on each page load, and a
    304 saves the body until an import changes the data."""
    digest = hashlib.sha256(repr(key).encode()).hexdigest()[:20]
    tag = f'W/"{digest}"'
    headers = {"ETag": tag, "Cache-Control": "private, no-cache"}
    asked = request.headers.get("if-none-match", "")
    if tag in {part.strip() for part in asked.split(",")}:
        return Response(status_code=304, headers=headers)
    response = _json(build())
    response.headers.update(headers)
    return response


def _compressed(body: bytes, request: Request) -> Response:
    """``body`` gzipped here when the client takes gzip (level 5: 10 ms for the 180 kB
    default view of 800k incidents, where the app-wide middleware's level 9 took 75 ms for
    1% fewer bytes); the middleware passes an encoded body through untouched."""
    accepted = request.headers.get("accept-encoding", "")
    if len(body) < GZIP_MIN_BYTES or "gzip" not in accepted.lower():
        return FastJSON(body, headers={"Vary": "Accept-Encoding"})
    return FastJSON(gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0),
                    headers={"Content-Encoding": "gzip", "Vary": "Accept-Encoding"})


@router.get("/view", responses=ERRORS, response_class=FastJSON, response_model=Open,
            summary="The analyst view of one filter: cells, hour x weekday, months, "
                    "categories (k-suppressed for viewers and the public)")
def view(
    http: Request,
    category: Category = None, start: From = None, end: To = None,
    time: TimeOfDay = "all", area: Area = None,
    layer: Annotated[Literal["count", "kde", "gi"], Query()] = "count",
    cell: ViewCell = 250.0,
    bandwidth: Annotated[float | None, Query(ge=10, le=50_000,
                                             description="KDE search radius, metres")] = None,
    cells_format: Annotated[Literal["grid", "geojson"], Query(
        alias="format",
        description="cells as the grid and one [col, row, value, class] row each (what the "
                    "map page draws), or as a GeoJSON FeatureCollection of WGS84 squares")
    ] = "grid",
    principal: Principal = Depends(allowed("aggregates:read")),
    engine: Engine = Depends(get_engine), settings: Settings = Depends(get_settings),
) -> Response:
    if bandwidth is not None and bandwidth > MAX_BANDWIDTH_CELLS * cell:
        raise UsageError(f"bandwidth may be at most {MAX_BANDWIDTH_CELLS} cells "
                         f"({MAX_BANDWIDTH_CELLS * cell:g} m at {cell:g} m cells)")
    request = service.ViewRequest(category=category, start=start, end=end, time=time,
                                  area=area, layer=layer, cell=cell, bandwidth=bandwidth)
    body = service.view_json(engine, request, privacy_for(principal, settings),
                             geojson=cells_format == "geojson")
    return _compressed(body, http)


@router.get("/emerging", responses=ERRORS, response_class=FastJSON, response_model=Open,
            summary="Emerging hot spots per cell over the stored period")
def emerging(
    category: Category = None, area: Area = None, cell: ForecastCell = 500.0,
    time: TimeOfDay = "all",
    slice: Annotated[Literal["week", "month"], Query(description="time slice")] = "month",
    principal: Principal = Depends(allowed("analysis:run")),
    engine: Engine = Depends(get_engine),
) -> Response:
    return _json(service.emerging(engine, category=category, area=area, cell=cell,
                                  time_of_day=time, slice_by=slice))


def _forecast_body(database: Engine | str, *, flt: IncidentFilter, model: str, horizon: str,
                   cell: float, top: float) -> dict[str, Any]:
    engine = engine_of(database)
    # fitting a model costs far more per cell than counting: the tighter forecast cap
    check_work(engine, flt, cell, None, 0, max_cells=MAX_DASHBOARD_FORECAST_CELLS)
    return service.forecast_layer(engine, flt, model=model, horizon=horizon, cell=cell, top=top)


@router.get("/forecast", responses=ERRORS, response_class=FastJSON, response_model=Open,
            summary="Risk per cell for the next horizon, the top share flagged")
async def forecast(
    category: Category = None, area: Area = None,
    model: Annotated[Literal["sepp", "kde", "historical"], Query()] = "sepp",
    horizon: Horizon = "7d",
    top: Annotated[float, Query(gt=0, le=0.5)] = 0.05,
    cell: ForecastCell = 250.0,
    principal: Principal = Depends(allowed("forecast:run")),
    engine: Engine = Depends(get_engine),
) -> Response:
    flt = IncidentFilter.parse(category=category, area=area)
    key = await run_in_threadpool(service.forecast_key, engine, flt, model=model,
                                  horizon=horizon, cell=cell, top=top)
    body = service.cache_get(engine, key)
    if body is None:
        # a model fit is seconds of CPU: in the analysis workers, not this process
        body = await ANALYSES.run(engine, _forecast_body, flt=flt, model=model,
                                  horizon=horizon, cell=cell, top=top)
        service.cache_put(engine, key, body)
    return _json(body)


def _backtest_body(database: Engine | str, *, plan: service.BacktestPlan) -> dict[str, Any]:
    engine = engine_of(database)
    check_work(engine, plan.flt, 250.0, None, 0, max_cells=MAX_DASHBOARD_FORECAST_CELLS)
    return service.backtest_table(engine, plan)


@router.get("/backtest", responses=ERRORS, response_class=FastJSON, response_model=Open,
            summary="How the forecasts would have done over the last 12 weeks")
async def backtest(
    category: Category = None, area: Area = None,
    horizon: Annotated[Literal["1d", "7d"], Query(
        description="a day or a week ahead, from weekly origins")] = "7d",
    principal: Principal = Depends(allowed("forecast:run")),
    engine: Engine = Depends(get_engine),
) -> Response:
    flt = IncidentFilter.parse(category=category, area=area)
    plan = await run_in_threadpool(service.plan_backtest, engine, flt, horizon=horizon)
    body = service.cache_get(engine, plan.key)
    if body is None:
        body = await ANALYSES.run(engine, _backtest_body, plan=plan)
        service.cache_put(engine, plan.key, body)
    return _json(body)


@router.get("/reports", responses=ERRORS, response_class=FastJSON, response_model=Open,
            summary="Approved citizen reports: points for partners, k-suppressed cells for "
                    "viewers and the public")
def reports(
    category: Category = None, start: From = None, end: To = None,
    principal: Principal = Depends(allowed("aggregates:read")),
    engine: Engine = Depends(get_engine), settings: Settings = Depends(get_settings),
) -> Response:
    return _json(service.reports_layer(engine, principal, settings, category=category,
                                       start=start, end=end))


@router.get("/risks", responses=ERRORS, response_class=FastJSON, response_model=Open,
            summary="Register risks that have an area, as map features")
def risks(principal: Principal = Depends(allowed("risks:read")),
          engine: Engine = Depends(get_engine)) -> Response:
    return _json(service.risks_layer(engine, principal))
