"""OGC SensorThings API v1.1 (https://docs.ogc.org/is/18-088/18-088.html) under
``/sensorthings/v1.1``: the service root, entity sets, single entities, navigation paths,
properties (``/name``, ``/name/$value``), ``$ref``, the query options and create / update /
delete, plus the ``CreateObservations`` (dataArray) extension. A thin face over
:mod:`urbansec.services.sensors`.

Access: reading needs ``sensors:read`` (partners, analysts, admins), writing
``sensors:write``. Besides the platform's ``Authorization: Bearer`` and ``X-API-Key``,
HTTP Basic is accepted with an API key as the password (any user name), because that is what
SensorThings clients such as FROST's Python client send. Errors are the platform's JSON errors
(``{"error": {"code", "message", "details"}}``) with a 4xx status.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from urbansec.api.deps import get_engine, get_principal
from urbansec.errors import AuthenticationError, UsageError
from urbansec.sensors import query as q
from urbansec.services import sensors as service
from urbansec.services.access import Principal, require

PREFIX = "/sensorthings/v1.1"
router = APIRouter(tags=["sensorthings"])


def _principal(request: Request, engine: Engine = Depends(get_engine)) -> Principal:
    authorization = request.headers.get("authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() != "basic":
        return get_principal(request, engine)
    from urbansec.services import identity

    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise AuthenticationError("Basic credentials are not base64 user:password") from None
    _, colon, key = decoded.partition(":")
    if not colon or not key:
        raise AuthenticationError("use HTTP Basic with an API key as the password")
    principal = identity.principal_from_api_key(engine, key)
    request.state.principal = principal
    return principal


def sta_allowed(permission: str) -> Callable[..., Principal]:
    """Like :func:`urbansec.api.deps.allowed`, also accepting HTTP Basic with an API key."""

    def dependency(principal: Principal = Depends(_principal)) -> Principal:
        require(principal, permission)
        return principal

    dependency.permission = permission  # type: ignore[attr-defined]
    return dependency


def _links(request: Request) -> service.Links:
    return service.Links(str(request.base_url).rstrip("/") + PREFIX)


def _raw_options(request: Request) -> dict[str, str]:
    options: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        if key in options:
            raise UsageError(f"query option {key} is given twice")
        options[key] = value
    return options


async def _body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        raise UsageError("the request needs a JSON body")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"the body is not JSON: {exc}") from None
    if "json-patch" in request.headers.get("content-type", ""):
        return _merge_from_json_patch(body)
    return body


def _merge_from_json_patch(operations: Any) -> dict[str, Any]:
    """A JSON Patch of top-level ``add``/``replace``/``remove`` operations as the equivalent
    merge (what SensorThings PATCH means); deeper paths are refused."""
    if not isinstance(operations, list):
        raise UsageError("a JSON Patch is a list of operations")
    merged: dict[str, Any] = {}
    for operation in operations:
        if not isinstance(operation, dict) or operation.get("op") not in ("add", "replace",
                                                                           "remove"):
            raise UsageError("JSON Patch: only add, replace and remove are supported")
        path = operation.get("path", "")
        if not isinstance(path, str) or not path.startswith("/") or "/" in path[1:]:
            raise UsageError("JSON Patch: only top-level paths such as /name are supported")
        merged[path[1:]] = None if operation["op"] == "remove" else operation.get("value")
    return merged


def _mqtt_endpoints() -> list[str]:
    url = os.environ.get("URBANSEC_MQTT_URL")
    return [url] if url else []


@router.get("", include_in_schema=False)
@router.get("/", summary="Service root: the entity sets and the server's conformance classes")
def root(request: Request, _principal: Principal = Depends(sta_allowed("sensors:read"))
         ) -> dict[str, Any]:
    return service.service_root(_links(request), _mqtt_endpoints())


@router.post("/CreateObservations", status_code=201,
             summary="Create many Observations at once (dataArray extension)")
async def create_observations(request: Request, engine: Engine = Depends(get_engine),
                              _principal: Principal = Depends(sta_allowed("sensors:write"))
                              ) -> JSONResponse:
    body = await _body(request)
    answers = await run_in_threadpool(service.create_observations, engine, body,
                                      _links(request))
    return JSONResponse(answers, status_code=201)


@router.get("/{resource:path}", summary="Read an entity set, an entity, a navigation path or "
                                        "a property, with $filter, $expand, $select, "
                                        "$orderby, $top, $skip, $count")
def read(resource: str, request: Request, engine: Engine = Depends(get_engine),
         _principal: Principal = Depends(sta_allowed("sensors:read"))) -> Response:
    path = q.parse_resource_path(resource)
    options = q.parse_options(_raw_options(request))
    document = service.read(engine, path, options, _links(request),
                            request.url.query)
    if "__raw__" in document:
        value = document["__raw__"]
        text = value if isinstance(value, str) else json.dumps(value)
        return PlainTextResponse(text)
    return JSONResponse(document)


def _created(request: Request, engine: Engine, entity: service.EntityType, id: int
             ) -> JSONResponse:
    links = _links(request)
    document = service.read(engine, q.ResourcePath((q.Segment(entity.plural, id),)),
                            q.QueryOptions(), links)
    return JSONResponse(document, status_code=201,
                        headers={"location": links.entity(entity, id)})


@router.post("/{resource:path}", status_code=201,
             summary="Create an entity (deep insert allowed), or link it to its parent path")
async def create(resource: str, request: Request, engine: Engine = Depends(get_engine),
                 _principal: Principal = Depends(sta_allowed("sensors:write"))) -> JSONResponse:
    path = q.parse_resource_path(resource)
    body = await _body(request)
    entity, new_id = await run_in_threadpool(service.create, engine, path, body)
    return await run_in_threadpool(_created, request, engine, entity, new_id)


async def _update(resource: str, request: Request, engine: Engine) -> JSONResponse:
    path = q.parse_resource_path(resource)
    body = await _body(request)
    entity, id = await run_in_threadpool(service.update_entity, engine, path, body)
    document = await run_in_threadpool(
        service.read, engine, q.ResourcePath((q.Segment(entity.plural, id),)),
        q.QueryOptions(), _links(request))
    return JSONResponse(document)


@router.patch("/{resource:path}", summary="Change an entity (only the members given)")
async def patch(resource: str, request: Request, engine: Engine = Depends(get_engine),
                _principal: Principal = Depends(sta_allowed("sensors:write"))) -> JSONResponse:
    return await _update(resource, request, engine)


@router.put("/{resource:path}", summary="Change an entity (as PATCH: the members given)")
async def put(resource: str, request: Request, engine: Engine = Depends(get_engine),
              _principal: Principal = Depends(sta_allowed("sensors:write"))) -> JSONResponse:
    return await _update(resource, request, engine)


@router.delete("/{resource:path}", status_code=200,
               summary="Delete an entity (with what belongs to it)")
def remove(resource: str, engine: Engine = Depends(get_engine),
           _principal: Principal = Depends(sta_allowed("sensors:write"))) -> Response:
    service.delete_entity(engine, q.parse_resource_path(resource))
    return Response(status_code=200)
