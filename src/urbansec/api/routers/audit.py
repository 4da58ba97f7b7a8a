"""The audit trail: read it (newest first) and verify its hash chain (admins only)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from sqlalchemy import Engine

from urbansec.api.deps import allowed, get_engine
from urbansec.services import audit
from urbansec.services.access import Principal
from urbansec.store.engine import write_transaction

router = APIRouter()

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Not signed in"},
    403: {"description": "The role may not do this"},
}


class AuditEntryOut(BaseModel):
    id: int
    at: str
    actor: str
    organisation_id: int | None
    action: str
    target_type: str | None
    target_id: str | None
    details: dict[str, Any]
    hash: str


class AuditPage(BaseModel):
    items: list[AuditEntryOut]
    limit: int
    offset: int
    next_offset: int | None = Field(description="Offset of the next page; null on the last")


class Problem(BaseModel):
    id: int | None = Field(description="the entry concerned; null for a problem of the "
                                        "trail as a whole (entries left unchained)")
    problem: str


class Verification(BaseModel):
    ok: bool
    entries: int
    last_id: int | None
    last_hash: str | None
    problems: list[Problem]


@router.get("/audit", response_model=AuditPage, tags=["audit"], responses=ERRORS)
def read_audit(limit: int = Query(default=100, ge=1, le=500),
               offset: int = Query(default=0, ge=0, le=10**9),
               action: str | None = Query(default=None, min_length=1, max_length=100),
               principal: Principal = Depends(allowed("audit:read")),
               engine: Engine = Depends(get_engine)) -> dict[str, Any]:
    """Audit entries, newest first; ``action`` filters (e.g. ``auth.login_failed``)."""
    items = audit.entries(engine, limit=limit, offset=offset, action=action)
    # reading the trail reveals who did what (and failed sign-ins' e-mails): itself audited
    with write_transaction(engine) as connection:
        audit.record(connection, principal, "audit.read",
                     details={"limit": limit, "offset": offset, "action": action})
    return {"items": items, "limit": limit, "offset": offset,
            "next_offset": offset + limit if len(items) == limit else None}


@router.get("/audit/verify", response_model=Verification, tags=["audit"], responses=ERRORS)
def verify_audit(_: Principal = Depends(allowed("audit:read")),
                 engine: Engine = Depends(get_engine)) -> dict[str, Any]:
    """Recompute the hash chain: ``ok`` false lists altered entries and broken links."""
    return audit.verify(engine)
