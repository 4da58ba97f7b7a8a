"""Citizen reports: ``/api/v1/reports`` (thin over ``urbansec.services.reports``).

Anyone may submit (JSON, or multipart/form-data with a photo) and follow or erase their own
report with the private tracking token; staff moderate. Who sees which fields (generalised
location for the public and viewers, contact details for staff only) is decided by the
service, once for this API, Open311 and the CLI.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from urbansec.api.deps import allowed, client_address, get_engine, get_settings
from urbansec.config import Settings
from urbansec.domain.report_categories import CATEGORIES
from urbansec.domain.text import storable
from urbansec.errors import UsageError
from urbansec.services import reports as service
from urbansec.services.access import Principal

router = APIRouter(tags=["reports"])


def _iso_datetime(value: Any) -> Any:
    # pydantic would read "0.5" as seconds since 1970; a query time must be ISO 8601
    if isinstance(value, str) and not re.match(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}", value):
        raise ValueError("give an ISO 8601 date-time with a zone, e.g. 2026-01-31T00:00:00Z")
    return value


QueryTime = Annotated[datetime | None, BeforeValidator(_iso_datetime)]


def _text(max_length: int, min_length: int = 0) -> Any:
    return Annotated[str, Field(min_length=min_length, max_length=max_length),
                     AfterValidator(storable)]


PublicId = Annotated[str, Path(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9._\-]+$",
                               description="The report's public id (Open311 "
                                           "service_request_id)")]
TrackingToken = Annotated[str, Path(min_length=16, max_length=200,
                                    pattern=r"^[A-Za-z0-9_\-]+$",
                                    description="The private tracking token given at "
                                                "submission")]
AttributeValue = Annotated[str, Field(min_length=1, max_length=100)]
Status = Literal["pending", "approved", "rejected", "merged", "closed", "erased"]
# the catalogue as an enum, so the schema says exactly which codes are accepted
ServiceCode = Literal[tuple(c.code for c in CATEGORIES)]  # type: ignore[valid-type]
_NUMBER = r"\s*-?\d{1,3}(?:\.\d{1,15})?\s*"
BBOX_PATTERN = rf"^{_NUMBER},{_NUMBER},{_NUMBER},{_NUMBER}$"


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ReportError(BaseModel):
    """Every error: ``{"error": {"code", "message", "details"}}``."""

    error: ErrorDetail


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {400: "Invalid report or parameter", 401: "Not signed in, or bad credentials",
            403: "The role may not do this", 404: "No such report (or not visible to you)",
            409: "Not possible in the report's current status",
            413: "Request or photo too large", 422: "Malformed request",
            429: "Too many submissions from this client (see Retry-After)"}
    return {code: {"model": ReportError, "description": text[code]} for code in codes}


class ReportIn(BaseModel):
    """A new report. Give ``lat`` and ``lon`` (WGS84), or an ``address``, or both."""

    model_config = ConfigDict(extra="forbid")

    service_code: ServiceCode = Field(description="A category from GET /open311/v2/services")
    description: _text(service.MAX_DESCRIPTION, 1)  # type: ignore[valid-type]
    lat: Annotated[float | None, Field(ge=-90, le=90)] = None
    lon: Annotated[float | None, Field(ge=-180, le=180)] = None
    address: _text(service.MAX_ADDRESS) | None = None  # type: ignore[valid-type]
    occurred_at: datetime | None = Field(None, description="When it happened, with a time "
                                                           "zone (ISO 8601)")
    contact_name: _text(300) | None = None  # type: ignore[valid-type]
    contact_email: _text(320) | None = None  # type: ignore[valid-type]
    contact_phone: _text(50) | None = None  # type: ignore[valid-type]
    attributes: Annotated[dict[Annotated[str, Field(max_length=100)],
                               AttributeValue | Annotated[list[AttributeValue],
                                                          Field(max_length=20)]],
                          Field(max_length=20)] | None = Field(
        None, description="Answers to the category's questions (attribute code -> value key)")
    client_key: Annotated[str | None, Field(
        min_length=16, max_length=100, pattern=r"^[A-Za-z0-9._:\-]+$",
        description="Idempotency key (e.g. a UUID): a retry with the same key returns the "
                    "same report and tracking token. Keep it as secret as the token.")] = None


class ReportReceipt(BaseModel):
    public_id: str
    tracking_token: str = Field(description="Private: lets the reporter follow and erase the "
                                            "report. Shown only this once.")
    status: Status
    submitted_at: str


class Duplicate(BaseModel):
    public_id: str
    status: Status
    distance_m: float
    submitted_at: str | None
    public_description: str


class ReportView(BaseModel):
    """A report as the caller may see it: the public fields for everyone (location generalised
    to ``location_precision_m`` metres unless exact); exact location, address, time and channel
    for partners and staff; original text and contact for staff and the reporter."""

    public_id: str
    service_code: str
    service_name: str
    status: Status
    open311_status: Literal["open", "closed"]
    public_description: str
    lat: float | None
    lon: float | None
    location_precision_m: float | None
    address: str | None
    attributes: dict[str, Any]
    submitted_at: str | None
    updated_at: str | None
    status_notes: str | None
    agency_responsible: str | None
    merged_into: str | None
    occurred_at: str | None = None
    channel: str | None = None
    description: str | None = None
    contact_name: str | None = None
    contact_email: str | None = None
    contact_phone: str | None = None
    contact_erased_at: str | None = None
    has_photo: bool | None = None
    moderated_at: str | None = None


class QueueItem(ReportView):
    duplicates: list[Duplicate] = Field(description="Pending or published reports of the same "
                                                    "category within 150 m and 14 days")


class ModerationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["approve", "reject", "merge", "close"]
    reason: _text(service.MAX_REASON) | None = Field(  # type: ignore[valid-type]
        None, description="Required to reject; shown publicly as status_notes")
    merge_into: Annotated[str | None, Field(min_length=1, max_length=40,
                                            pattern=r"^[A-Za-z0-9._\-]+$")] = None


# the request body is JSON or multipart (with a photo): both documented by hand, parsed below
_MULTIPART_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["service_code", "description"],
    "properties": {
        **{name: schema for name, schema in ReportIn.model_json_schema()["properties"].items()
           if name != "attributes"},
        "attributes": {"type": "string", "maxLength": 4000,
                       "description": "JSON object: attribute code -> value key"},
        "photo": {"type": "string", "format": "binary",
                  "description": "JPEG, PNG or WebP; metadata (EXIF/GPS) is removed"},
    },
}
_SUBMIT_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": ReportIn.model_json_schema()},
    "multipart/form-data": {"schema": _MULTIPART_SCHEMA},
}}}


def _invalid(exc: ValidationError, where: str = "body") -> RequestValidationError:
    errors = []
    for e in exc.errors(include_url=False, include_context=False, include_input=False):
        errors.append({**e, "loc": (where, *e.get("loc", ()))})
    return RequestValidationError(errors)


async def _read_submission(request: Request) -> tuple[ReportIn, bytes | None, str | None]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        try:
            form = await request.form(max_files=1, max_fields=30, max_part_size=64 * 1024)
        except Exception as exc:  # starlette's MultiPartException and parser errors
            raise UsageError(f"malformed multipart body: {exc}") from exc
        fields: dict[str, Any] = {}
        photo: bytes | None = None
        photo_type: str | None = None
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if key != "photo":
                    raise UsageError(f"unexpected file field {key!r}; send the image as "
                                     "'photo'")
                photo = await value.read()
                photo_type = value.content_type
            elif key == "attributes" and value:
                try:
                    fields["attributes"] = json.loads(value)
                except ValueError as exc:
                    raise UsageError("attributes must be a JSON object") from exc
            elif value != "":
                fields[key] = value
        try:
            return ReportIn.model_validate(fields), photo, photo_type
        except ValidationError as exc:
            raise _invalid(exc) from None
    if content_type in ("application/json", ""):
        body = await request.body()
        try:
            return ReportIn.model_validate_json(body or b"null"), None, None
        except ValidationError as exc:
            raise _invalid(exc) from None
    raise UsageError(f"send the report as application/json or multipart/form-data, not "
                     f"{content_type}")


@router.post("/reports", status_code=status.HTTP_201_CREATED, response_model=ReportReceipt,
             summary="Submit a report (no account needed)", openapi_extra=_SUBMIT_BODY,
             responses=_errors(400, 401, 413, 422, 429))
async def submit_report(request: Request,
                        principal: Principal = Depends(allowed("reports:submit")),
                        engine: Engine = Depends(get_engine),
                        settings: Settings = Depends(get_settings)) -> dict[str, Any]:
    report, photo, photo_type = await _read_submission(request)
    # the service blocks on the database: keep it off the event loop
    return await run_in_threadpool(
        service.submit_report, engine, principal, service_code=report.service_code,
        description=report.description, lat=report.lat, lon=report.lon,
        address=report.address, occurred_at=report.occurred_at,
        contact_name=report.contact_name, contact_email=report.contact_email,
        contact_phone=report.contact_phone, attributes=report.attributes, photo=photo,
        photo_type=photo_type, client_key=report.client_key,
        channel="web" if principal.anonymous else "api",
        client_address=client_address(request), settings=settings)


def _bbox(bbox: str | None) -> list[float] | None:
    if bbox is None:
        return None
    try:
        values = [float(v) for v in bbox.split(",")]
    except ValueError as exc:
        raise UsageError("bbox is min_lon,min_lat,max_lon,max_lat (four numbers)") from exc
    if len(values) != 4:
        raise UsageError("bbox is min_lon,min_lat,max_lon,max_lat (four numbers)")
    return values


@router.get("/reports", response_model=list[ReportView], response_model_exclude_unset=True,
            summary="Reports visible to the caller, newest first",
            responses=_errors(400, 401, 403, 422))
def list_reports(
    service_code: Annotated[list[ServiceCode] | None, Query(max_length=20)] = None,
    report_status: Annotated[list[Status] | None, Query(alias="status", max_length=6)] = None,
    start: Annotated[QueryTime, Query(description="submitted at or after (ISO 8601 with "
                                                  "zone)")] = None,
    end: Annotated[QueryTime, Query(description="submitted before")] = None,
    bbox: Annotated[str | None, Query(max_length=200, pattern=BBOX_PATTERN,
                                      description="min_lon,min_lat,max_lon,max_lat (WGS84, "
                                                  "minimum first)")] = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_LIMIT)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    principal: Principal = Depends(allowed("aggregates:read")),
    engine: Engine = Depends(get_engine),
    settings: Settings = Depends(get_settings),
) -> list[dict[str, Any]]:
    return service.list_reports(engine, principal, service_codes=service_code,
                                statuses=report_status, start=start, end=end,
                                bbox=_bbox(bbox), limit=limit, offset=offset,
                                settings=settings)


@router.get("/reports/moderation", response_model=list[QueueItem],
            response_model_exclude_unset=True, summary="The moderation queue (staff)",
            responses=_errors(401, 403, 422))
def moderation_queue(
    limit: Annotated[int, Query(ge=1, le=service.MAX_LIMIT)] = 50,
    principal: Principal = Depends(allowed("reports:moderate")),
    engine: Engine = Depends(get_engine),
    settings: Settings = Depends(get_settings),
) -> list[dict[str, Any]]:
    return service.moderation_queue(engine, principal, limit, settings=settings)


@router.get("/reports/track/{tracking_token}", response_model=ReportView,
            response_model_exclude_unset=True, summary="The reporter's own report",
            responses=_errors(404, 422))
def track_report(tracking_token: TrackingToken, response: Response,
                 principal: Principal = Depends(allowed("reports:submit")),
                 engine: Engine = Depends(get_engine),
                 settings: Settings = Depends(get_settings)) -> dict[str, Any]:
    response.headers["cache-control"] = "no-store"
    return service.get_report_by_token(engine, tracking_token, settings=settings)


@router.delete("/reports/track/{tracking_token}", response_model=ReportView,
               response_model_exclude_unset=True,
               summary="Erase your report (contact, text, photo; irreversible)",
               responses=_errors(404, 422))
def erase_report(tracking_token: TrackingToken, response: Response,
                 principal: Principal = Depends(allowed("reports:submit")),
                 engine: Engine = Depends(get_engine),
                 settings: Settings = Depends(get_settings)) -> dict[str, Any]:
    response.headers["cache-control"] = "no-store"
    return service.erase_report(engine, None, tracking_token, settings=settings)


@router.get("/reports/{public_id}", response_model=ReportView,
            response_model_exclude_unset=True, summary="One report as the caller may see it",
            responses=_errors(401, 403, 404, 422))
def get_report(public_id: PublicId, response: Response,
               principal: Principal = Depends(allowed("aggregates:read")),
               engine: Engine = Depends(get_engine),
               settings: Settings = Depends(get_settings)) -> dict[str, Any]:
    view = service.get_report(engine, principal, public_id, settings=settings)
    if "contact_email" in view:
        response.headers["cache-control"] = "no-store"
    return view


@router.post("/reports/{public_id}/moderation", response_model=ReportView,
             response_model_exclude_unset=True,
             summary="Approve, reject (with reason), merge into another report, or close",
             responses=_errors(400, 401, 403, 404, 409, 422))
def moderate(public_id: PublicId, decision: ModerationIn,
             principal: Principal = Depends(allowed("reports:moderate")),
             engine: Engine = Depends(get_engine),
             settings: Settings = Depends(get_settings)) -> dict[str, Any]:
    return service.moderate(engine, principal, public_id, decision.action,
                            reason=decision.reason, merge_into=decision.merge_into,
                            settings=settings)


@router.get("/reports/{public_id}/photo", response_class=Response,
            summary="The report's photo (staff; metadata removed)",
            responses={200: {"content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}},
                             "description": "The photo"},
                       **_errors(401, 403, 404, 422)})
def report_photo(public_id: PublicId,
                 principal: Principal = Depends(allowed("reports:read_restricted")),
                 engine: Engine = Depends(get_engine)) -> Response:
    content, media_type = service.get_report_photo(engine, principal, public_id)
    return Response(content, media_type=media_type,
                    headers={"cache-control": "no-store",
                             "content-disposition": "inline"})
