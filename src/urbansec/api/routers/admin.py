"""Administration: organisations, users and API keys (admins only; every change audited)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import Engine

from urbansec.api.deps import allowed, get_engine
from urbansec.services import identity
from urbansec.services.access import Principal

router = APIRouter()

Role = Literal["admin", "analyst", "partner", "viewer"]
Kind = Literal["city", "police", "partner", "ngo", "school", "business", "other"]
IdPath = Annotated[int, Path(ge=1, le=2**31 - 1)]

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "The request breaks a rule the schema cannot express (e.g. an "
                         "expiry in the past)"},
    401: {"description": "Not signed in"},
    403: {"description": "The role may not do this"},
}


class OrganisationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", max_length=64,
                     examples=["police-18"])
    name: str = Field(min_length=1, max_length=300, pattern=r"\S")
    kind: Kind = "partner"


class OrganisationOut(BaseModel):
    id: int
    key: str
    name: str
    kind: str
    created_at: datetime


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    organisation_id: int = Field(ge=1, le=2**31 - 1)
    email: str = Field(min_length=3, max_length=320, pattern=identity.EMAIL_PATTERN)
    name: str = Field(min_length=1, max_length=300, pattern=r"\S")
    password: str = Field(min_length=identity.MIN_PASSWORD_LENGTH,
                          max_length=identity.MAX_PASSWORD_LENGTH)
    role: Role


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role | None = None
    active: bool | None = None
    name: str | None = Field(default=None, min_length=1, max_length=300, pattern=r"\S")
    password: str | None = Field(default=None, min_length=identity.MIN_PASSWORD_LENGTH,
                                 max_length=identity.MAX_PASSWORD_LENGTH)


class UserOut(BaseModel):
    id: int
    organisation_id: int
    email: str
    name: str
    role: str
    active: bool
    created_at: datetime
    last_login_at: datetime | None


class ApiKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    organisation_id: int = Field(ge=1, le=2**31 - 1)
    name: str = Field(min_length=1, max_length=200, pattern=r"\S")
    role: Role
    expires_at: AwareDatetime | None = None


class ApiKeyOut(BaseModel):
    id: int
    organisation_id: int
    name: str
    prefix: str
    role: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The key itself (usk_<prefix>_<secret>): shown only now")


# --- organisations ----------------------------------------------------------------------------


@router.get("/organisations", response_model=list[OrganisationOut], tags=["organisations"],
            responses=ERRORS)
def list_organisations(_: Principal = Depends(allowed("organisations:manage")),
                       engine: Engine = Depends(get_engine)) -> list[dict[str, Any]]:
    """All organisations."""
    return identity.list_organisations(engine)


@router.post("/organisations", response_model=OrganisationOut, tags=["organisations"],
             status_code=status.HTTP_201_CREATED,
             responses={**ERRORS, 409: {"description": "The key is taken"}})
def create_organisation(body: OrganisationIn,
                        principal: Principal = Depends(allowed("organisations:manage")),
                        engine: Engine = Depends(get_engine)) -> dict[str, Any]:
    """Add an organisation (a partner of the council)."""
    identity.create_organisation(engine, body.key, body.name, body.kind, principal=principal)
    return identity.organisation_by_key(engine, body.key)


# --- users ------------------------------------------------------------------------------------


@router.get("/users", response_model=list[UserOut], tags=["users"], responses=ERRORS)
def list_users(organisation_id: int | None = Query(default=None, ge=1, le=2**31 - 1),
               _: Principal = Depends(allowed("users:manage")),
               engine: Engine = Depends(get_engine)) -> list[dict[str, Any]]:
    """Users, optionally of one organisation."""
    return identity.list_users(engine, organisation_id)


@router.post("/users", response_model=UserOut, tags=["users"],
             status_code=status.HTTP_201_CREATED,
             responses={**ERRORS, 404: {"description": "No such organisation"},
                        409: {"description": "The e-mail is taken"}})
def create_user(body: UserIn, principal: Principal = Depends(allowed("users:manage")),
                engine: Engine = Depends(get_engine)) -> dict[str, Any]:
    """Add a user with a role; the password must have at least 12 characters."""
    user_id = identity.create_user(engine, body.organisation_id, body.email, body.name,
                                   body.password, body.role, principal=principal)
    return identity.get_user(engine, user_id)


@router.patch("/users/{user_id}", response_model=UserOut, tags=["users"],
              responses={**ERRORS, 404: {"description": "No such user"},
                         409: {"description": "An admin cannot lock themselves out"}})
def update_user(body: UserPatch, user_id: IdPath,
                principal: Principal = Depends(allowed("users:manage")),
                engine: Engine = Depends(get_engine)) -> dict[str, Any]:
    """Change a user's role, active flag, name or password (their tokens are revoked when the
    role or password changes or the user is deactivated)."""
    return identity.update_user(engine, user_id, role=body.role, active=body.active,
                                name=body.name, password=body.password, principal=principal)


# --- API keys ---------------------------------------------------------------------------------


@router.get("/api-keys", response_model=list[ApiKeyOut], tags=["api keys"], responses=ERRORS)
def list_api_keys(organisation_id: int | None = Query(default=None, ge=1, le=2**31 - 1),
                  _: Principal = Depends(allowed("users:manage")),
                  engine: Engine = Depends(get_engine)) -> list[dict[str, Any]]:
    """API keys (never the keys themselves: only their prefixes)."""
    return identity.list_api_keys(engine, organisation_id)


@router.post("/api-keys", response_model=ApiKeyCreated, tags=["api keys"],
             status_code=status.HTTP_201_CREATED,
             responses={**ERRORS, 404: {"description": "No such organisation"}})
def create_api_key(body: ApiKeyIn, principal: Principal = Depends(allowed("users:manage")),
                   engine: Engine = Depends(get_engine)) -> dict[str, Any]:
    """A new key for a machine client; the response holds the key, shown this once."""
    key_id, plaintext = identity.create_api_key(engine, body.organisation_id, body.name,
                                                body.role, expires_at=body.expires_at,
                                                principal=principal)
    record = next(k for k in identity.list_api_keys(engine, body.organisation_id)
                  if k["id"] == key_id)
    return {**record, "key": plaintext}


@router.delete("/api-keys/{key_id}", response_model=ApiKeyOut, tags=["api keys"],
               responses={**ERRORS, 404: {"description": "No such key"}})
def revoke_api_key(key_id: IdPath, principal: Principal = Depends(allowed("users:manage")),
                   engine: Engine = Depends(get_engine)) -> dict[str, Any]:
    """Revoke a key: requests with it are refused from now on."""
    return identity.revoke_api_key(engine, key_id, principal=principal)
