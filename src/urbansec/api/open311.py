"""Open311 GeoReport v2 (https://wiki.open311.org/GeoReport_v2) under ``/open311/v2``.

Every resource answers in the format its suffix names (``services.json``, ``services.xml``),
with the specification's field names and element names, so an existing Open311 client works
unchanged. Errors, too, are the specification's: ``[{"code", "description"}]`` or
``<errors><error><code/><description/></error></errors>`` with the matching HTTP status;
an unknown format suffix answers in JSON.

Decisions worth knowing:
- Requests are created in real time, so POST returns the ``service_request_id`` at once,
  plus a ``token``: the reporter's private tracking token, which ``tokens/{token}`` resolves
  and which (outside Open311) lets the reporter follow or erase the report.
- GET requests publishes only moderated reports (approved -> ``open``, closed -> ``closed``);
  pending ones are never listed, and locations are generalised by the reports service.
- ``jurisdiction_id`` is optional (one jurisdiction per server); another one is a 404.
- ``api_key`` (form field, or the X-API-Key header) is required for POST when the deployment
  sets ``URBANSEC_OPEN311_REQUIRE_API_KEY``; a wrong key is always a 403, never ignored.
- ``media_url`` is accepted and not fetched: the server never downloads what a client names
  (no server-side requests to arbitrary URLs); photos go through the reports API.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException

from urbansec.api import open311_format as fmt311
from urbansec.api.deps import allowed, client_address, get_engine, get_settings
from urbansec.config import Settings
from urbansec.domain.report_categories import CATEGORIES, category
from urbansec.errors import AuthenticationError, UrbansecError
from urbansec.services.access import Principal

router = APIRouter(tags=["open311"])

#: GET requests answers at most this many requests over at most this span (the spec's limits)
MAX_REQUESTS = 1000
MAX_SPAN = timedelta(days=90)
MAX_IDS = 100
#: when the service catalogue (CATEGORIES) last changed; clients refresh cached definitions
CATALOGUE_CHANGESET = "2025-06-01T00:00:00Z"
SERVICE_NOTICE = ("Thank you. A moderator checks every report before it is published; "
                  "keep the token to follow your report.")
_MAX_FIELD = 500  # characters of any form field but the description
_MAX_DESCRIPTION = 4000


class Open311Error(Exception):
    """An error to answer in the specification's format."""

    def __init__(self, status: int, description: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.headers = headers or {}


# --- response models (the JSON shape, for the OpenAPI schema) ------------------------------

class ServiceOut(BaseModel):
    service_code: str
    service_name: str
    description: str
    metadata: bool
    type: str
    keywords: str
    group: str


class AttributeValueOut(BaseModel):
    key: str
    name: str


class AttributeOut(BaseModel):
    variable: bool
    code: str
    datatype: str
    required: bool
    datatype_description: str | None
    order: int
    description: str
    values: list[AttributeValueOut]


class ServiceDefinitionOut(BaseModel):
    service_code: str
    attributes: list[AttributeOut]


class ServiceRequestOut(BaseModel):
    service_request_id: str
    status: str
    status_notes: str | None
    service_name: str | None
    service_code: str
    description: str | None
    agency_responsible: str | None
    service_notice: str | None
    requested_datetime: str | None
    updated_datetime: str | None
    expected_datetime: str | None
    address: str | None
    address_id: str | None
    zipcode: str | None
    lat: float | None
    long: float | None
    media_url: str | None


class CreatedRequestOut(BaseModel):
    service_request_id: str
    token: str
    service_notice: str | None
    account_id: str | None


class TokenOut(BaseModel):
    service_request_id: str
    token: str


class EndpointOut(BaseModel):
    specification: str
    url: str
    changeset: str
    type: str
    formats: list[str]


class DiscoveryOut(BaseModel):
    changeset: str
    contact: str
    key_service: str
    endpoints: list[EndpointOut]


class ErrorOut(BaseModel):
    code: int
    description: str


_XML = {"application/xml": {"schema": {"type": "string"}}}


def _documented(model: Any, *errors: int) -> dict[int | str, dict[str, Any]]:
    answers: dict[int | str, dict[str, Any]] = {
        200: {"model": model, "content": dict(_XML),
              "description": "JSON with the .json suffix, XML with .xml"}}
    for status in (*errors, 404):
        answers[status] = {"model": list[ErrorOut], "content": dict(_XML),
                           "description": "Open311 errors: [{code, description}]"}
    return answers


FORMAT = Path(description="response format", json_schema_extra={"enum": list(fmt311.FORMATS)})
JURISDICTION = Query(None, description="optional: this server serves one jurisdiction")


# --- helpers -------------------------------------------------------------------------------

def _respond(document: Any, root: str, fmt: str, status: int = 200,
             headers: dict[str, str] | None = None) -> Response:
    body, media_type = fmt311.render(document, root, fmt)
    return Response(body, status_code=status, media_type=f"{media_type}; charset=utf-8",
                    headers=headers)


def _error_response(fmt: str, exc: Exception) -> Response:
    if isinstance(exc, Open311Error):
        status, description, headers = exc.status, exc.description, exc.headers
    elif isinstance(exc, AuthenticationError):
        # the spec's answer to a missing or bad api_key is 403
        status, description, headers = 403, exc.message, {}
    elif isinstance(exc, UrbansecError):
        status, description, headers = exc.http_status, exc.message, {}
        if "retry_after" in exc.details:
            headers = {"retry-after": str(int(exc.details["retry_after"]))}
    else:  # pragma: no cover - the callers pass only the two kinds above
        raise exc
    return _respond(fmt311.errors(status, description), "errors", fmt, status, headers)


def _answer(fmt: str, root: str, build: Callable[[], Any]) -> Response:
    """Build the document and render it; any user-caused error in the spec's format."""
    out = fmt if fmt in fmt311.FORMATS else "json"
    try:
        if fmt not in fmt311.FORMATS:
            raise Open311Error(404, f"unknown format {fmt[:20]!r}: use .json or .xml")
        document = build()
    except (Open311Error, UrbansecError) as exc:
        return _error_response(out, exc)
    return _respond(document, root, out)


def _check_jurisdiction(jurisdiction_id: str | None, settings: Settings) -> None:
    if jurisdiction_id and jurisdiction_id != settings.open311_jurisdiction_id:
        raise Open311Error(404, f"jurisdiction_id {jurisdiction_id[:100]!r} was not found: "
                                f"this server serves {settings.open311_jurisdiction_id!r}")


def _service(service_code: str) -> Any:
    found = category(service_code)
    if found is None:
        raise Open311Error(404, f"service_code {service_code[:60]!r} was not found; see "
                                "services.json")
    return found


def _w3c(value: str | None, name: str) -> datetime | None:
    """A W3C date-time (with offset), or a bare date taken as UTC midnight."""
    if value is None or value == "":
        return None
    text = value.strip()
    try:
        if len(text) > 40:
            raise ValueError
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise Open311Error(400, f"{name} is not a W3C date-time (e.g. "
                                "2010-04-14T06:37:38-08:00)") from None
    if parsed.tzinfo is None:
        if len(text) > 10:  # a time without its offset is ambiguous
            raise Open311Error(400, f"{name} needs a time zone offset (e.g. ...-08:00 or ...Z)")
        parsed = parsed.replace(tzinfo=UTC)
    if not 1900 <= parsed.year <= 2200:  # keeps the 90-day arithmetic inside datetime's range
        raise Open311Error(400, f"{name} must be between the years 1900 and 2200")
    return parsed.astimezone(UTC)


def _comma_list(value: str | None, name: str, limit: int) -> list[str] | None:
    if value is None or not value.strip():
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    if len(items) > limit:
        raise Open311Error(400, f"{name}: at most {limit} values")
    if any(len(v) > 100 for v in items):
        raise Open311Error(400, f"{name}: a value is longer than 100 characters")
    return items


# --- discovery and services ----------------------------------------------------------------

@router.get("/discovery.{fmt}", summary="Service discovery",
            responses=_documented(DiscoveryOut), response_class=Response)
def discovery(request: Request, fmt: str = FORMAT,
              _principal: Principal = Depends(allowed("reports:submit"))) -> Response:
    url = str(request.url_for("discovery", fmt="json")).rsplit("/discovery.", 1)[0]
    return _answer(fmt, "discovery", lambda: fmt311.discovery(
        url, CATALOGUE_CHANGESET,
        contact="Contact the operator of this urbansec deployment.",
        key_service="API keys are issued per organisation by this deployment's "
                    "administrator (urbansec API keys)."))


@router.get("/services.{fmt}", summary="List services (report categories)",
            responses=_documented(list[ServiceOut]), response_class=Response)
def services(fmt: str = FORMAT, jurisdiction_id: str | None = JURISDICTION,
             settings: Settings = Depends(get_settings),
             _principal: Principal = Depends(allowed("reports:submit"))) -> Response:
    def build() -> Any:
        _check_jurisdiction(jurisdiction_id, settings)
        return [fmt311.service(c) for c in CATEGORIES]

    return _answer(fmt, "services", build)


@router.get("/services/{service_code}.{fmt}", summary="Service definition",
            responses=_documented(ServiceDefinitionOut), response_class=Response)
def service_definition(service_code: str, fmt: str = FORMAT,
                       jurisdiction_id: str | None = JURISDICTION,
                       settings: Settings = Depends(get_settings),
                       _principal: Principal = Depends(allowed("reports:submit"))) -> Response:
    def build() -> Any:
        _check_jurisdiction(jurisdiction_id, settings)
        return fmt311.service_definition(_service(service_code))

    return _answer(fmt, "service_definition", build)


# --- service requests ----------------------------------------------------------------------

def _published(report: dict[str, Any]) -> dict[str, Any]:
    return fmt311.service_request(report)


@router.get("/requests.{fmt}", summary="Search service requests (published reports)",
            responses=_documented(list[ServiceRequestOut], 400), response_class=Response)
def get_requests(
        fmt: str = FORMAT, jurisdiction_id: str | None = JURISDICTION,
        service_request_id: str | None = Query(
            None, description="comma-separated ids; when given, other filters are ignored"),
        service_code: str | None = Query(None, description="comma-separated service codes"),
        start_date: str | None = Query(None, description="W3C date-time, inclusive"),
        end_date: str | None = Query(None, description="W3C date-time, exclusive"),
        status: str | None = Query(None, description="open, closed or open,closed"),
        engine: Engine = Depends(get_engine), settings: Settings = Depends(get_settings),
        # the public list is of moderated reports with generalised locations
        principal: Principal = Depends(allowed("aggregates:read"))) -> Response:
    from urbansec.services import reports

    def build() -> Any:
        _check_jurisdiction(jurisdiction_id, settings)
        ids = _comma_list(service_request_id, "service_request_id", MAX_IDS)
        if ids is not None:
            found = reports.list_reports(engine, principal, public_ids=ids,
                                         statuses=list(reports.PUBLIC_STATUSES),
                                         limit=MAX_IDS, settings=settings)
            order = {public_id: i for i, public_id in enumerate(ids)}
            found.sort(key=lambda r: order.get(r["public_id"], 0))
            return [_published(r) for r in found]
        codes = _comma_list(service_code, "service_code", len(CATEGORIES))
        for code in codes or ():
            _service(code)
        wanted = _comma_list(status, "status", 2) or ["open", "closed"]
        if any(s not in ("open", "closed") for s in wanted):
            raise Open311Error(400, "status is open, closed or open,closed")
        statuses = [s for s in reports.PUBLIC_STATUSES
                    if reports.report_status_for_open311(s) in wanted]
        start, end = _w3c(start_date, "start_date"), _w3c(end_date, "end_date")
        if start is None and end is None:
            end = datetime.now(UTC) + timedelta(seconds=1)
        if start is None:
            assert end is not None
            start = end - MAX_SPAN
        if end is None:
            end = start + MAX_SPAN
        if end <= start:
            raise Open311Error(400, "end_date must be after start_date")
        if end - start > MAX_SPAN:
            raise Open311Error(400, "start_date and end_date may not span more than 90 days")
        found = reports.list_reports(engine, principal, service_codes=codes, statuses=statuses,
                                     start=start, end=end, limit=MAX_REQUESTS,
                                     settings=settings)
        return [_published(r) for r in found]

    return _answer(fmt, "service_requests", build)


@router.get("/requests/{service_request_id}.{fmt}", summary="One service request",
            responses=_documented(list[ServiceRequestOut]), response_class=Response)
def get_request(service_request_id: str, fmt: str = FORMAT,
                jurisdiction_id: str | None = JURISDICTION,
                engine: Engine = Depends(get_engine),
                settings: Settings = Depends(get_settings),
                principal: Principal = Depends(allowed("aggregates:read"))) -> Response:
    from urbansec.services import reports

    def build() -> Any:
        _check_jurisdiction(jurisdiction_id, settings)
        found = reports.list_reports(engine, principal, public_ids=[service_request_id[:100]],
                                     statuses=list(reports.PUBLIC_STATUSES), limit=1,
                                     settings=settings)
        if not found:
            raise Open311Error(404, f"service_request_id {service_request_id[:60]!r} was not "
                                    "found (reports are published once moderated)")
        return [_published(found[0])]

    return _answer(fmt, "service_requests", build)


@router.get("/tokens/{token}.{fmt}", summary="Service request id from a token",
            responses=_documented(list[TokenOut]), response_class=Response)
def get_token(token: str, fmt: str = FORMAT, jurisdiction_id: str | None = JURISDICTION,
              engine: Engine = Depends(get_engine), settings: Settings = Depends(get_settings),
              _principal: Principal = Depends(allowed("reports:submit"))) -> Response:
    from urbansec.services import reports

    def build() -> Any:
        _check_jurisdiction(jurisdiction_id, settings)
        view = reports.get_report_by_token(engine, token, settings=settings)
        return [{"service_request_id": view["public_id"], "token": token}]

    return _answer(fmt, "service_requests", build)


_FORM_FIELDS = {
    "api_key": "string", "jurisdiction_id": "string", "service_code": "string",
    "lat": "number", "long": "number", "address_string": "string", "address_id": "string",
    "email": "string", "device_id": "string", "account_id": "string",
    "first_name": "string", "last_name": "string", "phone": "string",
    "description": "string", "media_url": "string",
}
_POST_BODY = {
    "requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {
        "schema": {"type": "object", "required": ["service_code"], "properties": {
            name: {"type": kind, **({"maxLength": _MAX_DESCRIPTION} if name == "description"
                                    else {"maxLength": _MAX_FIELD} if kind == "string"
                                    else {})}
            for name, kind in _FORM_FIELDS.items()},
            "additionalProperties": {"type": "string", "maxLength": _MAX_FIELD,
                                     "description": "attribute[CODE]=value (attribute[CODE][]"
                                                    " for multivaluelist)"}}}}}}


def _field(form: FormData, name: str, limit: int = _MAX_FIELD) -> str | None:
    values = form.getlist(name)
    if not values:
        return None
    value = values[-1]
    if not isinstance(value, str):
        raise Open311Error(400, f"{name} must be text, not a file")
    if len(value) > limit:
        raise Open311Error(400, f"{name} is longer than {limit} characters")
    return value.strip() or None


def _coordinate(form: FormData, name: str, bound: float) -> float | None:
    text = _field(form, name, 40)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise Open311Error(400, f"{name} is not a number") from None
    if not math.isfinite(value) or abs(value) > bound:
        raise Open311Error(400, f"{name} must be within -{bound:g}..{bound:g} (WGS84)")
    return value


def _attributes(form: FormData) -> dict[str, Any]:
    """``attribute[CODE]=v`` -> {CODE: v}; ``attribute[CODE][]=v`` (repeated) -> {CODE: [v]}."""
    out: dict[str, Any] = {}
    for key in dict.fromkeys(form.keys()):
        if not key.startswith("attribute[") or len(out) >= 50:
            continue
        many = key.endswith("[]")
        code = key[len("attribute["):-3 if many else -1] if key.endswith("]") else ""
        if not code or "[" in code or "]" in code or len(code) > 100:
            raise Open311Error(400, f"malformed attribute field {key[:60]!r}: use "
                                    "attribute[CODE]=value")
        values = [v for v in form.getlist(key) if isinstance(v, str)]
        if any(len(v) > _MAX_FIELD for v in values) or len(values) > 50:
            raise Open311Error(400, f"attribute {code!r}: values too long or too many")
        out[code] = values if many else (values[-1] if values else "")
    return out


@router.post("/requests.{fmt}", summary="Create a service request (a citizen report)",
             responses=_documented(list[CreatedRequestOut], 400, 403, 429),
             response_class=Response, openapi_extra=_POST_BODY)
async def post_request(request: Request, fmt: str = FORMAT,
                       engine: Engine = Depends(get_engine),
                       settings: Settings = Depends(get_settings),
                       principal: Principal = Depends(allowed("reports:submit"))) -> Response:
    from urbansec.services import identity, reports

    out = fmt if fmt in fmt311.FORMATS else "json"
    try:
        if fmt not in fmt311.FORMATS:
            raise Open311Error(404, f"unknown format {fmt[:20]!r}: use .json or .xml")
        try:
            form = await request.form(max_files=0, max_fields=200)
        except StarletteHTTPException as exc:
            raise Open311Error(400, f"unreadable form: {exc.detail}") from None
        _check_jurisdiction(_field(form, "jurisdiction_id"), settings)
        api_key = _field(form, "api_key")
        if api_key is not None:
            principal = await run_in_threadpool(identity.principal_from_api_key, engine,
                                                api_key)
        elif settings.open311_require_api_key and principal.kind not in ("apikey", "user"):
            raise Open311Error(403, "api_key was not provided: this server requires one "
                                    "to create service requests")
        service_code = _field(form, "service_code")
        if service_code is None:
            raise Open311Error(400, "service_code was not provided")
        _service(service_code)
        lat, lon = _coordinate(form, "lat", 90.0), _coordinate(form, "long", 180.0)
        address = _field(form, "address_string") or _field(form, "address_id")
        if (lat is None) != (lon is None):
            raise Open311Error(400, "give both lat and long")
        if lat is None and address is None:
            raise Open311Error(400, "a location is required: lat and long, address_string "
                                    "or address_id")
        names = [_field(form, "first_name"), _field(form, "last_name")]
        contact_name = " ".join(n for n in names if n) or None
        # the spec makes description optional; the reports service needs some text
        description = (_field(form, "description", _MAX_DESCRIPTION)
                       or _service(service_code).name)
        for unused in ("device_id", "account_id", "media_url"):
            _field(form, unused)  # validated (bounded, text) and otherwise ignored
        created = await run_in_threadpool(
            lambda: reports.submit_report(
                engine, principal, service_code=service_code, description=description,
                lat=lat, lon=lon, address=address, contact_name=contact_name,
                contact_email=_field(form, "email"), contact_phone=_field(form, "phone"),
                attributes=_attributes(form), channel="open311",
                client_address=client_address(request), settings=settings))
    except (Open311Error, UrbansecError) as exc:
        return _error_response(out, exc)
    document = [fmt311.created_request(created["public_id"], created["tracking_token"],
                                       SERVICE_NOTICE)]
    return _respond(document, "service_requests", out)
