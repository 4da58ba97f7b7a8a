"""The night-time view over HTTP: footfall beside incidents, incidents per 1,000 passers-by.

Thin over ``services.nighttime``. An aggregate route (``aggregates:read``, public like the
other counts): anonymous callers and viewers get k-suppressed incident counts, whole days
only, and rates only where they reveal no hidden count. Counters are listed by name and
hours counted; their datastream ids and positions only for callers with ``sensors:read``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from sqlalchemy import Engine

from urbansec.api.deps import allowed, get_engine, get_settings
from urbansec.api.routers.evidence import ERRORS, Category, _clean, _privacy
from urbansec.api.schemas_evidence import Open
from urbansec.config import Settings
from urbansec.services import nighttime as service
from urbansec.services.access import Principal, can

router = APIRouter(tags=["aggregates"])

_TEXT = r"^[^\x00-\x1f\x7f]*$"
AreaKind = Annotated[str, Query(min_length=1, max_length=50, pattern=r"^[A-Za-z0-9_.-]+$",
                                description="imported area kind, e.g. district")]
AreaCode = Annotated[str, Query(alias="area", min_length=1, max_length=100, pattern=_TEXT,
                                description="the area's code")]
Start = Annotated[str, Query(alias="from", max_length=40, pattern=_TEXT,
                             description="YYYY-MM-DD (local midnight) or ISO 8601; whole "
                                         "local hours")]
End = Annotated[str, Query(alias="to", max_length=40, pattern=_TEXT,
                           description="exclusive, like from")]
Night = Annotated[str | None, Query(max_length=20, pattern=_TEXT,
                                    description="HH:MM-HH:MM local whole hours (default "
                                                "the night_window setting, 22:00-06:00)")]
Timezone = Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_+/-]+$",
                                       description="IANA zone (default: the city's)")]


@router.get("/nighttime", responses=ERRORS, response_model=Open,
            summary="Footfall beside incidents per local hour; incidents per 1,000 "
                    "passers-by, night against day")
def nighttime(
    area_kind: AreaKind, area: AreaCode, start: Start, end: End, night: Night = None,
    category: Category = None, timezone: Timezone = None,
    principal: Principal = Depends(allowed("aggregates:read")),
    engine: Engine = Depends(get_engine), settings: Settings = Depends(get_settings),
) -> dict[str, Any]:
    return _clean(service.nighttime_view(
        engine, area_kind=area_kind, area=area, start=start, end=end,
        night=night or settings.night_window, category=category,
        privacy=_privacy(principal, settings), timezone=timezone,
        sensor_details=can(principal, "sensors:read")))
