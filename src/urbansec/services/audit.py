"""The audit trail: append-only and hash-chained, so that any altered or deleted entry shows.

Each entry's ``hash`` is SHA-256 over the previous entry's hash and the entry's canonical
JSON (time, actor, organisation, action, target, details). ``verify`` recomputes the chain:
an edited entry no longer matches its hash, a deleted one breaks the link of the next, and a
truncated tail is caught against the count and last hash the caller may keep elsewhere.
Appends are serialised (one writer extends the chain at a time, at its commit) so the chain
never forks.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, select, text

from urbansec.services.access import Principal
from urbansec.store.collaboration import AuditEntry, PendingAuditEntry

AUDIT = AuditEntry.__table__
PENDING = PendingAuditEntry.__table__
GENESIS = "0" * 64
#: migration 0006's deferred trigger that moves staged entries into the chain (PostgreSQL)
CHAIN_TRIGGER = "audit_pending_chain"


def _canonical(at: datetime, actor: str, organisation_id: int | None, action: str,
               target_type: str | None, target_id: str | None, details: dict[str, Any]) -> str:
    return json.dumps({
        "at": at.astimezone(UTC).isoformat(timespec="microseconds"), "actor": actor,
        "organisation_id": organisation_id, "action": action, "target_type": target_type,
        "target_id": target_id, "details": details,
    }, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def entry_hash(prev_hash: str, canonical: str) -> str:
    return hashlib.sha256((prev_hash + canonical).encode("utf-8")).hexdigest()


def record(connection: Connection, principal: Principal | str, action: str, *,
           target_type: str | None = None, target_id: Any = None,
           details: dict[str, Any] | None = None) -> None:
    """Append one entry inside the caller's transaction: it is chained when, and only if,
    that transaction commits.

    On PostgreSQL the entry is staged in ``audit_pending`` and a trigger deferred to the
    commit chains it (migration 0006): the chain lock is then held only while the database
    commits, never across a round trip to this process, which is what bounded how many
    audited writes per second the whole deployment could make. SQLite already serialises
    writers (``BEGIN IMMEDIATE``), so the entry is chained here."""
    actor = principal if isinstance(principal, str) else principal.actor
    organisation_id = None if isinstance(principal, str) else principal.organisation_id
    at = datetime.now(UTC)
    details = json.loads(json.dumps(details or {}, default=str))
    target = None if target_id is None else str(target_id)
    canonical = _canonical(at, actor, organisation_id, action, target_type, target, details)
    values = {"at": at, "actor": actor, "organisation_id": organisation_id, "action": action,
              "target_type": target_type, "target_id": target, "details": details}
    if connection.dialect.name == "postgresql":
        connection.execute(PENDING.insert().values(**values, canonical=canonical))
        return
    prev = connection.execute(
        select(AUDIT.c.hash).order_by(AUDIT.c.id.desc()).limit(1)).scalar() or GENESIS
    connection.execute(AUDIT.insert().values(**values, prev_hash=prev,
                                             hash=entry_hash(prev, canonical)))


def verify(engine: Engine) -> dict[str, Any]:
    """Recompute the chain; the first problem found is reported with the entry's id."""
    problems: list[dict[str, Any]] = []
    prev = GENESIS
    count = 0
    last_id = None
    with engine.connect() as connection:
        rows = connection.execution_options(stream_results=True, yield_per=2000).execute(
            select(AUDIT).order_by(AUDIT.c.id))
        for row in rows:
            count += 1
            at = row.at if isinstance(row.at, datetime) else datetime.fromisoformat(row.at)
            if at.tzinfo is None:
                at = at.replace(tzinfo=UTC)
            details = row.details if isinstance(row.details, dict) else json.loads(row.details)
            expected = entry_hash(row.prev_hash, _canonical(
                at, row.actor, row.organisation_id, row.action, row.target_type, row.target_id,
                details))
            if row.prev_hash != prev:
                problems.append({"id": row.id, "problem": "chain broken before this entry "
                                 "(an entry was deleted or reordered)"})
            if expected != row.hash:
                problems.append({"id": row.id, "problem": "entry altered (hash mismatch)"})
            prev = row.hash
            last_id = row.id
        problems.extend(_unchained(connection))
    return {"entries": count, "last_id": last_id, "last_hash": prev if count else None,
            "ok": not problems, "problems": problems[:100]}


def _unchained(connection: Connection) -> list[dict[str, Any]]:
    """Entries that bypass the chain: staged rows left after their commit, or (PostgreSQL)
    the trigger that chains them dropped or disabled. Either way writes would go on while
    the trail silently stopped recording them."""
    problems: list[dict[str, Any]] = []
    staged = connection.execute(select(func.count()).select_from(PENDING)).scalar_one()
    if staged:
        problems.append({"id": None, "problem": f"{staged} committed entries were never "
                         "chained (audit_pending should be empty outside transactions)"})
    if connection.dialect.name == "postgresql":
        enabled = connection.execute(text(
            "SELECT t.tgenabled <> 'D' FROM pg_trigger t WHERE t.tgname = :name "
            "AND t.tgrelid = to_regclass('audit_pending')"), {"name": CHAIN_TRIGGER}).scalar()
        if not enabled:
            problems.append({"id": None, "problem": f"the trigger {CHAIN_TRIGGER} that chains "
                             "entries at commit is " + ("disabled" if enabled is False
                                                        else "missing")})
    return problems


def entries(engine: Engine, *, limit: int = 100, offset: int = 0,
            action: str | None = None) -> list[dict[str, Any]]:
    query = select(AUDIT).order_by(AUDIT.c.id.desc()).limit(limit).offset(offset)
    if action:
        query = query.where(AUDIT.c.action == action)
    with engine.connect() as connection:
        return [{"id": r.id, "at": r.at.isoformat() if isinstance(r.at, datetime) else r.at,
                 "actor": r.actor, "organisation_id": r.organisation_id, "action": r.action,
                 "target_type": r.target_type, "target_id": r.target_id,
                 "details": r.details if isinstance(r.details, dict) else json.loads(r.details),
                 "hash": r.hash} for r in connection.execute(query)]
