"""Planned crowd events (a concert, a festival, a match): name, window, expected attendance and
zones. An event bounds the crowd state and series of its zones, and flow-based occupancy starts
from an empty zone at its start (see :mod:`urbansec.services.crowd`).

Every write is recorded in the audit trail in the same transaction (``crowd_event.created``,
``.updated``, ``.deleted``). The caller's permission is checked by the API / CLI face.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, update

from urbansec.crowd.zones import Event
from urbansec.errors import UsageError
from urbansec.services import audit
from urbansec.services.access import Principal
from urbansec.services.crowd import InvalidRequestError, aware_utc, event_with_zones, iso
from urbansec.store.crowd import CrowdEvent, CrowdEventZone
from urbansec.store.engine import write_transaction
from urbansec.store.sensors import Zone

__all__ = ["create_event", "delete_event", "get_event", "list_events", "update_event"]

events = CrowdEvent.__table__
event_zones = CrowdEventZone.__table__
zones = Zone.__table__

MAX_NAME = 300
MAX_DESCRIPTION = 5000
MAX_ZONES = 500
_UNSET: Any = object()




def _check(name: str, starts_at: datetime, ends_at: datetime,
           expected_attendance: int | None, zone_keys: Sequence[str]) -> None:
    """The pure model's checks (:class:`urbansec.crowd.zones.Event`), as 422s."""
    if not name.strip() or len(name) > MAX_NAME:
        raise InvalidRequestError(f"an event needs a name of 1 to {MAX_NAME} characters")
    if len(zone_keys) > MAX_ZONES:
        raise InvalidRequestError(f"an event has at most {MAX_ZONES} zones")
    try:
        Event(name, starts_at.replace(tzinfo=None), ends_at.replace(tzinfo=None),
              tuple(zone_keys), expected_attendance)
    except UsageError as exc:
        raise InvalidRequestError(exc.message) from None


def _zone_ids(connection: Connection, keys: Sequence[str]) -> list[int]:
    unique = list(dict.fromkeys(keys))
    found = dict(connection.execute(select(zones.c.key, zones.c.id)
                                    .where(zones.c.key.in_(unique))).all()) if unique else {}
    missing = [k for k in unique if k not in found]
    if missing:
        raise InvalidRequestError(f"no zone {missing[0]!r}", details={"missing": missing})
    return [int(found[k]) for k in unique]


def _document(connection: Connection, event_id: int) -> dict[str, Any]:
    row, keys = event_with_zones(connection, event_id)
    return {"id": int(row.id), "name": row.name, "description": row.description,
            "starts_at": iso(row.starts_at), "ends_at": iso(row.ends_at),
            "expected_attendance": row.expected_attendance, "zones": list(keys),
            "created_by": row.created_by, "created_at": iso(row.created_at),
            "updated_at": iso(row.updated_at)}


def create_event(engine: Engine, principal: Principal, name: str, starts_at: datetime,
                 ends_at: datetime, zone_keys: Sequence[str] = (),
                 expected_attendance: int | None = None, description: str = ""
                 ) -> dict[str, Any]:
    starts_at, ends_at = aware_utc(starts_at, "starts_at"), aware_utc(ends_at, "ends_at")
    _check(name, starts_at, ends_at, expected_attendance, zone_keys)
    if len(description) > MAX_DESCRIPTION:
        raise InvalidRequestError(f"the description has at most {MAX_DESCRIPTION} characters")
    now = datetime.now(UTC)
    with write_transaction(engine) as connection:
        zone_ids = _zone_ids(connection, zone_keys)
        event_id = int(connection.execute(insert(events).values(
            name=name, description=description, starts_at=starts_at, ends_at=ends_at,
            expected_attendance=expected_attendance, created_by=principal.actor,
            created_at=now, updated_at=now).returning(events.c.id)).scalar_one())
        if zone_ids:
            connection.execute(insert(event_zones),
                               [{"event_id": event_id, "zone_id": z} for z in zone_ids])
        document = _document(connection, event_id)
        audit.record(connection, principal, "crowd_event.created", target_type="crowd_event",
                     target_id=event_id, details={"name": name, "zones": document["zones"]})
    return document


def get_event(engine: Engine, event_id: int) -> dict[str, Any]:
    with engine.connect() as connection:
        return _document(connection, event_id)


def list_events(engine: Engine, active_at: datetime | None = None) -> list[dict[str, Any]]:
    """Every event by start time (those whose window holds ``active_at`` when given)."""
    query = select(events.c.id).order_by(events.c.starts_at, events.c.id)
    if active_at is not None:
        active_at = aware_utc(active_at, "active_at")
        query = query.where(events.c.starts_at <= active_at, events.c.ends_at > active_at)
    with engine.connect() as connection:
        return [_document(connection, int(i)) for i in connection.execute(query).scalars()]


def update_event(engine: Engine, principal: Principal, event_id: int, *,
                 name: str = _UNSET, starts_at: datetime = _UNSET, ends_at: datetime = _UNSET,
                 zone_keys: Sequence[str] = _UNSET, expected_attendance: int | None = _UNSET,
                 description: str = _UNSET) -> dict[str, Any]:
    """Change the fields given (``zone_keys`` replaces the event's zones)."""
    with write_transaction(engine) as connection:
        before = _document(connection, event_id)
        after = dict(before)
        if name is not _UNSET:
            after["name"] = name
        if starts_at is not _UNSET:
            after["starts_at"] = iso(aware_utc(starts_at, "starts_at"))
        if ends_at is not _UNSET:
            after["ends_at"] = iso(aware_utc(ends_at, "ends_at"))
        if zone_keys is not _UNSET:
            after["zones"] = list(dict.fromkeys(zone_keys))
        if expected_attendance is not _UNSET:
            after["expected_attendance"] = expected_attendance
        if description is not _UNSET:
            if description is None or len(description) > MAX_DESCRIPTION:
                raise InvalidRequestError("the description is text of at most "
                                          f"{MAX_DESCRIPTION} characters")
            after["description"] = description
        if after["name"] is None:
            raise InvalidRequestError("an event needs a name")
        start = datetime.fromisoformat(after["starts_at"])
        end = datetime.fromisoformat(after["ends_at"])
        _check(after["name"], start, end, after["expected_attendance"], after["zones"])
        changed = {k: [before[k], after[k]] for k in after if before[k] != after[k]}
        if not changed:
            return before
        connection.execute(update(events).where(events.c.id == event_id).values(
            name=after["name"], description=after["description"], starts_at=start,
            ends_at=end, expected_attendance=after["expected_attendance"],
            updated_at=datetime.now(UTC)))
        if "zones" in changed:
            zone_ids = _zone_ids(connection, after["zones"])
            connection.execute(delete(event_zones).where(event_zones.c.event_id == event_id))
            if zone_ids:
                connection.execute(insert(event_zones),
                                   [{"event_id": event_id, "zone_id": z} for z in zone_ids])
        audit.record(connection, principal, "crowd_event.updated", target_type="crowd_event",
                     target_id=event_id, details={"changed": changed})
        return _document(connection, event_id)


def delete_event(engine: Engine, principal: Principal, event_id: int) -> None:
    with write_transaction(engine) as connection:
        document = _document(connection, event_id)
        connection.execute(delete(events).where(events.c.id == event_id))
        audit.record(connection, principal, "crowd_event.deleted", target_type="crowd_event",
                     target_id=event_id, details={"name": document["name"]})
