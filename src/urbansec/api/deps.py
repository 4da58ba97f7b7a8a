"""Dependencies every route shares: the engine, the caller, and the one permission check."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, Request
from sqlalchemy import Engine

from urbansec.config import Settings
from urbansec.services.access import ANONYMOUS, Principal, require


def get_engine(request: Request) -> Engine:
    return request.app.state.engine


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def client_address(request: Request) -> str:
    """The client's address for rate limits (the direct peer; a proxy deployment configures
    uvicorn's --forwarded-allow-ips so this is the real client)."""
    return request.client.host if request.client else "unknown"


def get_principal(request: Request, engine: Engine = Depends(get_engine)) -> Principal:
    """The caller from ``Authorization: Bearer TOKEN`` or ``X-API-Key: KEY``; anonymous
    without either. Wrong, expired or revoked credentials are a 401, never anonymous."""
    from urbansec.services import identity

    authorization = request.headers.get("authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            from urbansec.errors import AuthenticationError

            raise AuthenticationError("use Authorization: Bearer TOKEN")
        principal = identity.principal_from_token(engine, token.strip())
    elif request.headers.get("x-api-key"):
        principal = identity.principal_from_api_key(engine, request.headers["x-api-key"])
    else:
        principal = ANONYMOUS
    request.state.principal = principal
    return principal


def allowed(permission: str) -> Callable[..., Principal]:
    """Route dependency: the caller, once it is known to hold ``permission``.

    The permission is also recorded on the route (``openapi_extra`` is not needed): the
    permission-table test reads it from ``dependant`` to check every route."""

    def dependency(principal: Principal = Depends(get_principal)) -> Principal:
        require(principal, permission)
        return principal

    dependency.permission = permission  # type: ignore[attr-defined]
    return dependency
