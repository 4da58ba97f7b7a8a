"""Sign-in: tokens (login, refresh, logout) and who the caller is (``GET /me``).

``POST /auth/token`` takes JSON ``{"email", "password"}`` or the OAuth2 password form
(``username``, ``password``), so the Authorize button of ``/docs`` works unchanged.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Engine

from urbansec.api.deps import client_address, get_engine, get_principal, get_settings
from urbansec.api.routers.admin import OrganisationOut
from urbansec.config import Settings
from urbansec.errors import AuthenticationError
from urbansec.services import identity
from urbansec.services.access import Principal

router = APIRouter()

# declared for the OpenAPI document (the Authorize button of /docs); the credentials are
# read and checked by ``deps.get_principal``, so these never fail a request themselves
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)
api_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False)

UNAUTHORISED = {401: {"description": "Wrong e-mail or password, or an unknown, expired or "
                                     "revoked token"}}


class Login(BaseModel):
    model_config = ConfigDict(extra="ignore")

    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=identity.MAX_PASSWORD_LENGTH)


class LoginForm(BaseModel):
    """OAuth2 password grant (``application/x-www-form-urlencoded``)."""

    model_config = ConfigDict(extra="ignore")

    grant_type: Literal["password"] | None = None
    username: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=identity.MAX_PASSWORD_LENGTH)


class Tokens(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"]
    expires_in: int = Field(description="Seconds until the access token expires")


class RefreshRequest(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=200)


class LogoutRequest(BaseModel):
    refresh_token: str | None = Field(default=None, max_length=200,
                                      description="Also revoke this refresh token")
    everywhere: bool = Field(default=False, description="Revoke every token of the user")


class LogoutResult(BaseModel):
    revoked: int


class Me(BaseModel):
    kind: Literal["user", "apikey"]
    id: int | None
    organisation_id: int | None
    organisation: OrganisationOut | None
    role: str | None
    name: str
    email: str | None
    permissions: list[str]


_LOGIN_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": Login.model_json_schema()},
            "application/x-www-form-urlencoded": {"schema": LoginForm.model_json_schema()},
        },
    }
}


async def _login_body(request: Request) -> Login:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if content_type == "application/x-www-form-urlencoded":
            form = await request.form()
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
            parsed = LoginForm.model_validate(fields)
            return Login(email=parsed.username, password=parsed.password)
        raw = await request.body()
        try:
            data = json.loads(raw) if raw else None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RequestValidationError([{
                "loc": ("body",), "msg": "the body is not JSON (send {\"email\", \"password\"} "
                "or the OAuth2 password form)", "type": "json_invalid"}]) from exc
        return Login.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e.get("loc", ()))} for e in exc.errors(
                include_url=False, include_context=False, include_input=False)]) from exc


@router.post("/auth/token", response_model=Tokens, tags=["auth"], openapi_extra=_LOGIN_BODY,
             responses={**UNAUTHORISED, 422: {"description": "Malformed request"},
                        429: {"description": "Too many failed sign-ins for this account or "
                                             "from this address (Retry-After)"}})
async def login(request: Request, engine: Engine = Depends(get_engine),
                settings: Settings = Depends(get_settings)) -> dict[str, Any]:
    """Sign in with e-mail and password; returns an access and a refresh token."""
    body = await _login_body(request)
    # argon2 is deliberately slow: keep it off the event loop
    return await run_in_threadpool(identity.issue_tokens, engine, body.email, body.password,
                                   settings=settings, client_address=client_address(request))


@router.post("/auth/refresh", response_model=Tokens, tags=["auth"], responses=UNAUTHORISED)
def refresh(body: RefreshRequest, engine: Engine = Depends(get_engine),
            settings: Settings = Depends(get_settings)) -> dict[str, Any]:
    """Trade a refresh token for new tokens; the refresh token used stops working."""
    return identity.refresh_tokens(engine, body.refresh_token, settings=settings)


def signed_in(principal: Principal = Depends(get_principal)) -> Principal:
    """Any authenticated caller (a user or an API key), whatever the role."""
    if principal.anonymous:
        raise AuthenticationError("sign in (Authorization: Bearer TOKEN, or X-API-Key) to do "
                                  "this")
    return principal


@router.post("/auth/logout", response_model=LogoutResult, tags=["auth"],
             responses={**UNAUTHORISED, 400: {"description": "Not a signed-in user"}})
def logout(request: Request, body: LogoutRequest | None = None,
           principal: Principal = Depends(signed_in), engine: Engine = Depends(get_engine),
           _token: Annotated[str | None, Depends(oauth2_scheme)] = None) -> dict[str, int]:
    """Revoke the access token used (and the given refresh token, or all with everywhere)."""
    body = body or LogoutRequest()
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    access = token.strip() if scheme.lower() == "bearer" else None
    return identity.logout(engine, principal, access, refresh_token=body.refresh_token,
                           everywhere=body.everywhere)


@router.get("/me", response_model=Me, tags=["auth"], responses=UNAUTHORISED)
def me(principal: Principal = Depends(signed_in), engine: Engine = Depends(get_engine),
       _token: Annotated[str | None, Depends(oauth2_scheme)] = None,
       _key: Annotated[str | None, Depends(api_key_scheme)] = None) -> dict[str, Any]:
    """The caller: user or API key, organisation, role and the permissions it holds."""
    from urbansec.services.access import PERMISSIONS, can

    info = identity.describe(engine, principal)
    info["permissions"] = sorted(p for p in PERMISSIONS if can(principal, p))
    return info
