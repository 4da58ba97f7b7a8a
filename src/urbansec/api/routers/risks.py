"""The shared risk register: ``/api/v1/risks`` (thin over ``urbansec.services.risks``).

Who sees what (organisation / partners / public summary) and who may change what is decided by
the service; the models here bound every input so malformed requests are a 4xx, never a 5xx.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, status
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from sqlalchemy import Engine

from urbansec.api.deps import allowed, get_engine
from urbansec.domain.text import storable
from urbansec.services import risks as service
from urbansec.services.access import Principal

router = APIRouter(tags=["risks"])

ThreatType = Literal[
    "violence", "property", "public_order", "drugs", "harassment", "terrorism",
    "crowd_safety", "cyber_attack_city_services", "phishing_against_residents",
    "infrastructure", "other"]
RiskStatus = Literal["open", "mitigating", "monitoring", "closed"]
Sharing = Literal["organisation", "partners", "public"]
Level = Literal["low", "medium", "high", "critical"]
ActionStatus = Literal["planned", "in_progress", "done", "cancelled"]
EvidenceType = Literal["query", "report", "hotspot", "incident", "url"]


def _text(max_length: int, min_length: int = 0) -> Any:
    return Annotated[str, Field(min_length=min_length, max_length=max_length),
                     AfterValidator(storable)]


Title = _text(service.MAX_TITLE, 1)
Description = _text(service.MAX_DESCRIPTION)
AreaKind = _text(service.MAX_AREA_KIND, 1)
AreaCodeText = _text(service.MAX_AREA_CODE, 1)
EvidenceRef = _text(service.MAX_EVIDENCE_REF, 1)
EvidenceNote = _text(service.MAX_EVIDENCE_NOTE)
CommentBody = _text(service.MAX_COMMENT, 1)
DbId = Annotated[int, Field(ge=1, le=service.MAX_ID)]
Scale = Annotated[int, Field(ge=1, le=5, description="1 (lowest) to 5 (highest)")]
Lon = Annotated[float, Field(ge=-180, le=180)]
Lat = Annotated[float, Field(ge=-90, le=90)]
Ring = Annotated[list[tuple[Lon, Lat]], Field(min_length=4, max_length=service.MAX_AREA_VERTICES)]
PolygonCoordinates = Annotated[list[Ring], Field(min_length=1, max_length=100)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AreaCode(Strict):
    """An imported area, by kind and code (e.g. ``{"kind": "district", "code": "001"}``)."""

    kind: AreaKind  # type: ignore[valid-type]
    code: AreaCodeText  # type: ignore[valid-type]


class PolygonArea(Strict):
    """A GeoJSON Polygon in WGS84 (longitude, latitude)."""

    type: Literal["Polygon"]
    coordinates: PolygonCoordinates


class MultiPolygonArea(Strict):
    """A GeoJSON MultiPolygon in WGS84 (longitude, latitude)."""

    type: Literal["MultiPolygon"]
    coordinates: Annotated[list[PolygonCoordinates], Field(min_length=1, max_length=100)]


AreaIn = AreaCode | PolygonArea | MultiPolygonArea


class EvidenceLink(Strict):
    """A link to what supports the risk: a saved query, a report, a hotspot, an incident or a
    web page (``url`` links must be http(s))."""

    type: EvidenceType
    ref: EvidenceRef  # type: ignore[valid-type]
    note: EvidenceNote = ""  # type: ignore[valid-type]


Evidence = Annotated[list[EvidenceLink], Field(max_length=service.MAX_EVIDENCE)]


class RiskCreate(Strict):
    title: Title  # type: ignore[valid-type]
    description: Description = ""  # type: ignore[valid-type]
    threat_type: ThreatType
    area: AreaIn | None = Field(None, description="None for city-wide; an area code or a "
                                                  "GeoJSON polygon")
    likelihood: Scale
    impact: Scale
    owner_organisation_id: DbId | None = Field(
        None, description="defaults to the caller's organisation; only admins may name "
                          "another")
    status: RiskStatus = "open"
    sharing: Sharing = "organisation"
    review_date: date | None = None
    evidence: Evidence = []


class RiskUpdate(Strict):
    """Only the fields sent change; ``null`` clears description, area, review_date and
    evidence."""

    title: Title | None = None  # type: ignore[valid-type]
    description: Description | None = None  # type: ignore[valid-type]
    threat_type: ThreatType | None = None
    area: AreaIn | None = None
    likelihood: Scale | None = None
    impact: Scale | None = None
    owner_organisation_id: DbId | None = None
    status: RiskStatus | None = None
    sharing: Sharing | None = None
    review_date: date | None = None
    evidence: Evidence | None = None


class ActionCreate(Strict):
    title: Title  # type: ignore[valid-type]
    owner_organisation_id: DbId | None = Field(None, description="defaults to the risk's owner")
    owner_user_id: DbId | None = None
    due_date: date | None = None
    status: ActionStatus = "planned"


class ActionUpdate(Strict):
    title: Title | None = None  # type: ignore[valid-type]
    owner_organisation_id: DbId | None = None
    owner_user_id: DbId | None = None
    due_date: date | None = None
    status: ActionStatus | None = None


class CommentCreate(Strict):
    body: CommentBody  # type: ignore[valid-type]


class ActionOut(BaseModel):
    id: int
    risk_id: int
    title: str
    owner_organisation_id: int
    owner_user_id: int | None
    due_date: date | None
    status: ActionStatus
    created_at: str
    updated_at: str


class CommentOut(BaseModel):
    id: int
    risk_id: int
    user_id: int | None
    author: str
    body: str
    created_at: str


class AreaSummary(BaseModel):
    """An area code, or the bounding box of a drawn polygon (rounded outwards)."""

    kind: str | None = None
    code: str | None = None
    bbox: list[float] | None = Field(None, description="[min_lon, min_lat, max_lon, max_lat]")


class RiskSummaryOut(BaseModel):
    """The public summary: what anonymous callers and viewers receive."""

    view: Literal["summary"]
    id: int
    title: str
    threat_type: str
    level: Level
    status: RiskStatus
    area: AreaSummary | None


class RiskOut(BaseModel):
    view: Literal["full"]
    id: int
    title: str
    description: str
    threat_type: str
    area: dict[str, Any] | None = Field(description="{kind, code} or a GeoJSON polygon")
    likelihood: int
    impact: int
    score: int
    level: Level
    owner_organisation_id: int
    owner_organisation: str
    status: RiskStatus
    sharing: Sharing
    review_date: date | None
    review_overdue: bool
    evidence: list[EvidenceLink]
    created_by: int | None
    created_at: str
    updated_at: str


class RiskDetailOut(RiskOut):
    actions: list[ActionOut]
    comments: list[CommentOut]


RiskListItem = Annotated[RiskOut | RiskSummaryOut, Field(discriminator="view")]
RiskDetail = Annotated[RiskDetailOut | RiskSummaryOut, Field(discriminator="view")]


class RiskPage(BaseModel):
    items: list[RiskListItem]
    total: int
    limit: int
    offset: int


class MatrixCell(BaseModel):
    likelihood: int
    impact: int
    score: int
    level: Level
    count: int


class MatrixOut(BaseModel):
    cells: list[MatrixCell] = Field(description="25 cells, likelihood-major")
    levels: dict[str, int]
    total: int


class HistoryEntry(BaseModel):
    id: int
    at: str
    user_id: int | None
    actor: str
    event: str = Field(description="created | updated | action_added | action_updated | "
                                   "comment_added")
    action_id: int | None
    comment_id: int | None
    fields: dict[str, Any] = Field(description="field -> {before, after}")


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "invalid values (message says which)"},
    401: {"description": "sign in to do this"},
    403: {"description": "your role or organisation may not do this"},
    404: {"description": "no such risk, or it is not shared with you"},
    422: {"description": "malformed request"},
}

RiskId = Annotated[int, Path(ge=1, le=service.MAX_ID)]
ActionId = Annotated[int, Path(ge=1, le=service.MAX_ID)]
AreaFilter = Annotated[str | None, Query(max_length=151, pattern=r"^[^:\x00]{1,50}:[^\x00]{1,100}$",
                                         description="KIND:CODE, e.g. district:001")]
OwnerFilter = Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_-]{1,64}$",
                                          description="organisation id or key")]


@router.get("/risks", response_model=RiskPage, responses=_ERRORS,
            summary="Risks visible to the caller, highest score first")
def list_risks(
    principal: Principal = Depends(allowed("risks:read")),
    engine: Engine = Depends(get_engine),
    status_: Annotated[RiskStatus | None, Query(alias="status")] = None,
    level: Level | None = None,
    threat_type: ThreatType | None = None,
    area: AreaFilter = None,
    owner: OwnerFilter = None,
    overdue: Annotated[bool, Query(description="only risks whose review date has passed")
                       ] = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> dict[str, Any]:
    return service.list_risks(engine, principal, status=status_, level=level,
                              threat_type=threat_type, area=area, owner=owner, overdue=overdue,
                              limit=limit, offset=offset)


@router.post("/risks", response_model=RiskDetailOut, status_code=status.HTTP_201_CREATED,
             responses=_ERRORS, summary="Add a risk (owned by your organisation)")
def create_risk(body: RiskCreate, principal: Principal = Depends(allowed("risks:write")),
                engine: Engine = Depends(get_engine)) -> dict[str, Any]:
    return service.create_risk(engine, principal, body.model_dump(mode="json",
                                                                  exclude_unset=True))


@router.get("/risks/matrix", response_model=MatrixOut, responses=_ERRORS,
            summary="Counts of visible risks per likelihood x impact")
def risk_matrix(
    principal: Principal = Depends(allowed("risks:read")),
    engine: Engine = Depends(get_engine),
    status_: Annotated[RiskStatus | None, Query(alias="status")] = None,
    threat_type: ThreatType | None = None,
    area: AreaFilter = None,
    owner: OwnerFilter = None,
) -> dict[str, Any]:
    return service.risk_matrix(engine, principal, status=status_, threat_type=threat_type,
                               area=area, owner=owner)


@router.get("/risks/{risk_id}", response_model=RiskDetail, responses=_ERRORS,
            summary="One risk: in full, or the public summary")
def get_risk(risk_id: RiskId, principal: Principal = Depends(allowed("risks:read")),
             engine: Engine = Depends(get_engine)) -> dict[str, Any]:
    return service.get_risk(engine, principal, risk_id)


@router.patch("/risks/{risk_id}", response_model=RiskDetailOut, responses=_ERRORS,
              summary="Change a risk (owner organisation or admin)")
def update_risk(risk_id: RiskId, body: RiskUpdate,
                principal: Principal = Depends(allowed("risks:write")),
                engine: Engine = Depends(get_engine)) -> dict[str, Any]:
    changes = body.model_dump(mode="json", exclude_unset=True)
    for name in ("title", "threat_type", "likelihood", "impact", "owner_organisation_id",
                 "status", "sharing"):
        if name in changes and changes[name] is None:
            changes.pop(name)  # null for a required field means "leave it"
    return service.update_risk(engine, principal, risk_id, changes)


@router.get("/risks/{risk_id}/history", response_model=list[HistoryEntry], responses=_ERRORS,
            summary="Every change of the risk, its actions and comments")
def risk_history(risk_id: RiskId, principal: Principal = Depends(allowed("risks:read")),
                 engine: Engine = Depends(get_engine)) -> list[dict[str, Any]]:
    return service.risk_history(engine, principal, risk_id)


@router.post("/risks/{risk_id}/actions", response_model=ActionOut,
             status_code=status.HTTP_201_CREATED, responses=_ERRORS,
             summary="Add an action (risk owner organisation or admin)")
def add_action(risk_id: RiskId, body: ActionCreate,
               principal: Principal = Depends(allowed("risks:write")),
               engine: Engine = Depends(get_engine)) -> dict[str, Any]:
    return service.add_action(engine, principal, risk_id,
                              body.model_dump(mode="json", exclude_unset=True))


@router.patch("/risks/{risk_id}/actions/{action_id}", response_model=ActionOut,
              responses=_ERRORS,
              summary="Change an action (risk or action owner organisation, or admin)")
def update_action(risk_id: RiskId, action_id: ActionId, body: ActionUpdate,
                  principal: Principal = Depends(allowed("risks:write")),
                  engine: Engine = Depends(get_engine)) -> dict[str, Any]:
    changes = body.model_dump(mode="json", exclude_unset=True)
    for name in ("title", "owner_organisation_id", "status"):
        if name in changes and changes[name] is None:
            changes.pop(name)
    return service.update_action(engine, principal, risk_id, action_id, changes)


@router.post("/risks/{risk_id}/comments", response_model=CommentOut,
             status_code=status.HTTP_201_CREATED, responses=_ERRORS,
             summary="Comment on a risk shared with you")
def add_comment(risk_id: RiskId, body: Annotated[CommentCreate, Body()],
                principal: Principal = Depends(allowed("risks:write")),
                engine: Engine = Depends(get_engine)) -> dict[str, Any]:
    return service.add_comment(engine, principal, risk_id, body.body)
