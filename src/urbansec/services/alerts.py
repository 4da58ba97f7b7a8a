"""Alert rules and stored alerts: rules CRUD, turning rule rows into
:mod:`urbansec.crowd.rules` objects, storing what an evaluation raised, updated and cleared
(with the audit trail and the webhook outbox, in the caller's transaction), acknowledgement,
and the lists the API and the SSE stream read.

An *alert change* (:class:`AlertEvent`) is what subscribers receive: the alert as JSON, what
happened to it (``raised``, ``updated``, ``cleared``, ``acknowledged``) and its sequence
number. The SSE event name is ``alert`` for ``raised`` and ``update`` for the others.

Acknowledging an open alert sets its status to ``acknowledged``; acknowledging a cleared
alert records who saw it but leaves it ``cleared``; acknowledging twice is a conflict. A
cleared alert stays listed (``status=cleared`` or ``all``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, bindparam, delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from urbansec.crowd import rules as crowd_rules
from urbansec.errors import ConflictError, NotFoundError, UsageError
from urbansec.services import audit
from urbansec.services.access import Principal
from urbansec.services.sensors import iso
from urbansec.store.alerts import (
    ALERT_CHANGES,
    ALERT_STATUSES,
    RULE_KINDS,
    SEVERITIES,
    AlertRule,
    AlertSequence,
    StoredAlert,
    Webhook,
    WebhookDelivery,
)
from urbansec.store.engine import write_transaction

rules_table = AlertRule.__table__
alerts_table = StoredAlert.__table__
sequence_table = AlertSequence.__table__
webhooks_table = Webhook.__table__
deliveries_table = WebhookDelivery.__table__

ENGINE_ACTOR = "system:alert-engine"
MAX_NAME = 200
MAX_LIST = 1000
SEVERITY_OF = {"info": crowd_rules.Severity.INFO, "warning": crowd_rules.Severity.WARNING,
               "critical": crowd_rules.Severity.CRITICAL}
SEVERITY_NAME = {v: k for k, v in SEVERITY_OF.items()}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def now_utc() -> datetime:
    return datetime.now(UTC)


def to_datetime(value: np.datetime64) -> datetime:
    """A numpy UTC instant as an aware datetime (millisecond precision)."""
    milliseconds = int(value.astype("datetime64[ms]").astype("int64"))
    return EPOCH + timedelta(milliseconds=milliseconds)


def finite(value: Any) -> float | None:
    """JSON has no NaN or infinity: those become null."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


# --- rules ------------------------------------------------------------------------------------

def _rule_dict(row: Any) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "kind": row.kind, "severity": row.severity,
            "params": dict(row.params or {}), "zones": row.zones, "enabled": bool(row.enabled),
            "created_by": row.created_by, "created_at": iso(row.created_at),
            "updated_at": iso(row.updated_at)}


def _number(params: Mapping[str, Any], name: str, default: Any = ..., *,
            positive: bool = False) -> float:
    if name not in params:
        if default is ...:
            raise UsageError(f"params.{name} is required")
        return float(default)
    value = params[name]
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(float(value)):
        raise UsageError(f"params.{name} must be a number")
    if positive and value <= 0:
        raise UsageError(f"params.{name} must be positive")
    return float(value)


def _strings(params: Mapping[str, Any], name: str) -> list[str] | None:
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"params.{name} must be a list of strings")
    return value


KNOWN_PARAMS = {
    "threshold": {"metric", "threshold", "hysteresis", "zone_types"},
    "trend": {"threshold", "within_minutes", "window", "min_points", "zone_types"},
    "silent": {"minutes", "datastreams"},
    "light_failed": {"min_occupancy"},
    "geofence": {"fence", "fence_id", "trigger", "dwell_minutes", "device_kinds"},
}


def build_rule(rule_id: int | str, kind: str, severity: str, params: Mapping[str, Any],
               zones: Sequence[str] | None, *,
               sensors_of_zones: Mapping[str, Sequence[str]] | None = None,
               name: str = "") -> crowd_rules.Rule:
    """The :mod:`urbansec.crowd.rules` object of a rule row; UsageError on bad params.

    ``sensors_of_zones`` (zone key -> sensor ids) limits a silent rule with zones to the
    datastreams of those zones; without it the rule watches every zone's datastreams."""
    if kind not in RULE_KINDS:
        raise UsageError(f"unknown rule kind {kind!r}; one of {', '.join(RULE_KINDS)}")
    if severity not in SEVERITY_OF:
        raise UsageError(f"unknown severity {severity!r}; one of {', '.join(SEVERITIES)}")
    if not isinstance(params, Mapping):
        raise UsageError("params must be an object")
    unknown = set(params) - KNOWN_PARAMS[kind]
    if unknown:
        raise UsageError(f"unknown params for a {kind} rule: {', '.join(sorted(unknown))} "
                         f"(known: {', '.join(sorted(KNOWN_PARAMS[kind]))})")
    if zones is not None and kind in ("light_failed", "geofence"):
        raise UsageError(f"a {kind} rule does not take zones (it watches every light / the "
                         "devices in its fence)")
    level = SEVERITY_OF[severity]
    rid = str(rule_id)
    zone_ids = None if zones is None else frozenset(zones)
    try:
        if kind == "threshold":
            threshold = params.get("threshold")
            if isinstance(threshold, bool) or not isinstance(threshold, int | float | str):
                raise UsageError("params.threshold must be a number (or a LoS letter)")
            if not isinstance(threshold, str):
                threshold = _number(params, "threshold")
            return crowd_rules.ThresholdRule(
                rid, str(params.get("metric", "density")), threshold, level,
                _number(params, "hysteresis", 0.0), zone_ids, _strings(params, "zone_types"))
        if kind == "trend":
            return crowd_rules.TrendRule(
                rid, _number(params, "threshold", positive=True),
                _number(params, "within_minutes", positive=True), level,
                int(_number(params, "window", 10)), int(_number(params, "min_points", 5)),
                zone_ids, _strings(params, "zone_types"))
        if kind == "silent":
            sensors = params.get("datastreams")
            sensor_ids: set[str] | None = None
            if sensors is not None:
                if not isinstance(sensors, list) or not all(
                        isinstance(s, int) and not isinstance(s, bool) for s in sensors):
                    raise UsageError("params.datastreams must be a list of datastream ids")
                sensor_ids = {sensor_name(s) for s in sensors}
            if zones is not None and sensors_of_zones is not None:
                in_zones = {s for z in zones for s in sensors_of_zones.get(z, ())}
                sensor_ids = in_zones if sensor_ids is None else sensor_ids & in_zones
            return crowd_rules.SensorSilentRule(rid, _number(params, "minutes", positive=True),
                                                level, sensor_ids)
        if kind == "light_failed":
            return crowd_rules.LightFailedRule(rid, _number(params, "min_occupancy", 1.0),
                                               level)
        return _geofence(rid, level, params, name)
    except UsageError:
        raise
    except (TypeError, ValueError) as exc:
        raise UsageError(f"bad params for a {kind} rule: {exc}") from None


def _geofence(rid: str, level: crowd_rules.Severity, params: Mapping[str, Any],
              name: str) -> crowd_rules.GeofenceRule:
    from shapely.geometry import shape

    fence = params.get("fence")
    if not isinstance(fence, Mapping):
        raise UsageError("params.fence must be a GeoJSON Polygon (WGS84 lon/lat)")
    try:
        polygon = shape(fence)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise UsageError(f"params.fence is not a GeoJSON polygon ({exc})") from None
    if polygon.geom_type not in ("Polygon", "MultiPolygon") or not polygon.is_valid \
            or polygon.is_empty:
        raise UsageError("params.fence must be a valid GeoJSON Polygon")
    trigger = params.get("trigger")
    if trigger not in ("enter", "exit", "dwell"):
        raise UsageError("params.trigger must be enter, exit or dwell")
    fence_id = params.get("fence_id") or name or f"fence-{rid}"
    if not isinstance(fence_id, str):
        raise UsageError("params.fence_id must be a string")
    kinds = _strings(params, "device_kinds")
    return crowd_rules.GeofenceRule(rid, fence_id, polygon, trigger,
                                    _number(params, "dwell_minutes", 0.0), level,
                                    None if kinds is None else frozenset(kinds))


def sensor_name(datastream_id: int) -> str:
    """How alerts name a datastream (the SensorThings form)."""
    return f"Datastreams({datastream_id})"


def _check_zones(connection: Connection, zones: Sequence[str] | None) -> None:
    if zones is None:
        return
    from urbansec.store.sensors import Zone

    if not isinstance(zones, list | tuple) or not all(isinstance(z, str) for z in zones):
        raise UsageError("zones must be a list of zone keys (or null for every zone)")
    known = set(connection.execute(select(Zone.__table__.c.key)
                                   .where(Zone.__table__.c.key.in_(list(zones)))).scalars())
    missing = sorted(set(zones) - known)
    if missing:
        raise UsageError(f"unknown zones: {', '.join(missing)}",
                         details={"unknown_zones": missing})


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
        raise UsageError(f"a rule needs a name of 1 to {MAX_NAME} characters")
    return name.strip()


def create_rule(engine: Engine, principal: Principal, *, name: str, kind: str,
                params: Mapping[str, Any], severity: str = "warning",
                zones: Sequence[str] | None = None, enabled: bool = True) -> dict[str, Any]:
    name = _check_name(name)
    build_rule(0, kind, severity, params, zones, name=name)
    now = now_utc()
    with write_transaction(engine) as connection:
        _check_zones(connection, zones)
        rule_id = connection.execute(insert(rules_table).values(
            name=name, kind=kind, severity=severity, params=dict(params),
            zones=None if zones is None else list(zones), enabled=enabled,
            created_by=principal.actor, created_at=now, updated_at=now)
            .returning(rules_table.c.id)).scalar_one()
        audit.record(connection, principal, "alert_rule.created", target_type="alert_rule",
                     target_id=rule_id, details={"name": name, "kind": kind})
        row = connection.execute(select(rules_table).where(rules_table.c.id == rule_id)).one()
    return _rule_dict(row)


def list_rules(engine: Engine, *, enabled_only: bool = False) -> list[dict[str, Any]]:
    query = select(rules_table).order_by(rules_table.c.id)
    if enabled_only:
        query = query.where(rules_table.c.enabled.is_(True))
    with engine.connect() as connection:
        return [_rule_dict(r) for r in connection.execute(query)]


def get_rule(engine: Engine, rule_id: int) -> dict[str, Any]:
    with engine.connect() as connection:
        row = connection.execute(select(rules_table).where(rules_table.c.id == rule_id)).first()
    if row is None:
        raise NotFoundError(f"no alert rule {rule_id}")
    return _rule_dict(row)


def update_rule(engine: Engine, principal: Principal, rule_id: int,
                changes: Mapping[str, Any]) -> dict[str, Any]:
    """Change name, severity, params, zones (None: every zone) or enabled; the whole rule is
    checked again."""
    allowed = {"name", "severity", "params", "zones", "enabled"}
    unknown = set(changes) - allowed
    if unknown:
        raise UsageError(f"cannot change {', '.join(sorted(unknown))}")
    with write_transaction(engine) as connection:
        row = connection.execute(select(rules_table).where(rules_table.c.id == rule_id)).first()
        if row is None:
            raise NotFoundError(f"no alert rule {rule_id}")
        merged = {**_rule_dict(row), **changes}
        merged["name"] = _check_name(merged["name"])
        if not isinstance(merged["enabled"], bool):
            raise UsageError("enabled must be true or false")
        build_rule(rule_id, row.kind, merged["severity"], merged["params"], merged["zones"],
                   name=merged["name"])
        _check_zones(connection, merged["zones"])
        connection.execute(update(rules_table).where(rules_table.c.id == rule_id).values(
            name=merged["name"], severity=merged["severity"], params=dict(merged["params"]),
            zones=merged["zones"], enabled=merged["enabled"], updated_at=now_utc()))
        audit.record(connection, principal, "alert_rule.updated", target_type="alert_rule",
                     target_id=rule_id, details={"changed": sorted(changes)})
        row = connection.execute(select(rules_table).where(rules_table.c.id == rule_id)).one()
    return _rule_dict(row)


def delete_rule(engine: Engine, principal: Principal, rule_id: int) -> None:
    """Delete a rule; the alerts it raised stay (with its name), and its open ones clear at
    the engine's next evaluation."""
    with write_transaction(engine) as connection:
        deleted = connection.execute(delete(rules_table).where(rules_table.c.id == rule_id)
                                     ).rowcount
        if not deleted:
            raise NotFoundError(f"no alert rule {rule_id}")
        audit.record(connection, principal, "alert_rule.deleted", target_type="alert_rule",
                     target_id=rule_id)


@dataclass(frozen=True)
class LoadedRule:
    id: int
    name: str
    kind: str
    rule: crowd_rules.Rule
    threshold: float | None


def load_rules(connection: Connection,
               sensors_of_zones: Mapping[str, Sequence[str]] | None = None
               ) -> list[LoadedRule]:
    """The enabled rules as rule objects (a row that no longer validates is skipped, so one
    bad row never stops the engine)."""
    loaded = []
    for row in connection.execute(select(rules_table).where(rules_table.c.enabled.is_(True))
                                  .order_by(rules_table.c.id)):
        try:
            rule = build_rule(row.id, row.kind, row.severity, row.params or {}, row.zones,
                              sensors_of_zones=sensors_of_zones, name=row.name)
        except UsageError:
            continue
        threshold = getattr(rule, "threshold", None)
        loaded.append(LoadedRule(row.id, row.name, row.kind, rule,
                                 finite(threshold) if threshold is not None else None))
    return loaded


# --- alerts -----------------------------------------------------------------------------------

def alert_json(row: Any) -> dict[str, Any]:
    """The alert as the API and the stream show it (contract of issue 8)."""
    return {"id": row.id, "key": row.key, "rule_id": row.rule_id, "rule_name": row.rule_name,
            "kind": row.kind, "severity": row.severity, "subject": row.subject,
            "zone": row.zone, "message": row.message, "value": finite(row.value),
            "threshold": finite(row.threshold), "raised_at": iso(row.raised_at),
            "last_seen_at": iso(row.last_seen_at), "cleared_at": iso(row.cleared_at),
            "acknowledged_at": iso(row.acknowledged_at),
            "acknowledged_by": row.acknowledged_by, "status": row.status,
            "details": dict(row.details or {}), "seq": row.seq}


@dataclass(frozen=True)
class AlertEvent:
    """One alert change for subscribers: ``seq`` orders them and names them uniquely."""

    seq: int
    change: str  # raised | updated | cleared | acknowledged
    alert: dict[str, Any]

    @property
    def event(self) -> str:
        return "alert" if self.change == "raised" else "update"

    def as_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "event": self.event, "change": self.change,
                "alert": self.alert}

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> AlertEvent:
        return cls(int(document["seq"]), str(document["change"]), dict(document["alert"]))


def next_sequence(connection: Connection, count: int = 1) -> int:
    """Reserve ``count`` sequence numbers; returns the first (row-locked counter, so
    concurrent writers in several processes never share a number)."""
    last = connection.execute(update(sequence_table).where(sequence_table.c.id == 1)
                              .values(value=sequence_table.c.value + count)
                              .returning(sequence_table.c.value)).scalar_one()
    return int(last) - count + 1


@dataclass
class RaisedAlert:
    """An alert of an evaluation to store (see :func:`store_changes`)."""

    alert: crowd_rules.Alert
    rule: LoadedRule
    zone: str | None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class AlertUpdate:
    alert_id: int
    value: float | None
    message: str
    at: datetime


def _insert_ignoring(connection: Connection) -> Any:
    dialect_insert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    return dialect_insert(alerts_table).on_conflict_do_nothing(index_elements=["key"])


def store_changes(connection: Connection, raised: Sequence[RaisedAlert],
                  updated: Sequence[AlertUpdate], cleared: Mapping[int, datetime]
                  ) -> tuple[list[AlertEvent], dict[str, int]]:
    """Store one evaluation's changes in the caller's transaction, with one audit entry per
    alert raised or cleared and the webhook deliveries; returns the events to publish (in
    sequence order) and the ids of the alerts stored, by rule key.

    A raised alert whose key is stored already (the same batch evaluated again) is skipped:
    no second row, no second event."""
    total = len(raised) + len(updated) + len(cleared)
    if not total:
        return [], {}
    seq = next_sequence(connection, total)
    events: list[AlertEvent] = []
    ids: dict[str, int] = {}
    # one statement per kind of change (a batch may change many zones at once)
    rows = []
    for item in raised:
        alert = item.alert
        at = to_datetime(alert.time)
        threshold = alert.details.get("threshold", item.rule.threshold)
        rows.append({
            "key": f"{alert.key}|{iso(at)}", "rule_key": alert.key, "rule_id": item.rule.id,
            "rule_name": item.rule.name, "kind": alert.kind,
            "severity": SEVERITY_NAME[crowd_rules.Severity(alert.severity)],
            "subject": alert.subject[:300], "zone": item.zone, "message": alert.message,
            "value": finite(alert.value), "threshold": finite(threshold),
            "details": {**_plain(alert.details), **item.details}, "status": "open",
            "raised_at": at, "last_seen_at": at, "cleared_at": None,
            "acknowledged_at": None, "acknowledged_by": None, "ack_note": None, "seq": seq})
        seq += 1
    if rows:
        # a key stored already (the same batch evaluated again) inserts nothing
        inserted = {rule_key: (int(row_id), int(row_seq)) for row_id, rule_key, row_seq in
                    connection.execute(_insert_ignoring(connection).values(rows).returning(
                        alerts_table.c.id, alerts_table.c.rule_key, alerts_table.c.seq))}
        for row in rows:
            if row["rule_key"] not in inserted:
                continue
            row_id, row_seq = inserted[row["rule_key"]]
            ids[row["rule_key"]] = row_id
            audit.record(connection, ENGINE_ACTOR, "alert.raised", target_type="alert",
                         target_id=row_id, details={"key": row["rule_key"],
                                                    "message": row["message"],
                                                    "severity": row["severity"]})
            events.append(AlertEvent(row_seq, "raised", {"id": row_id}))
    if updated:
        params = []
        for change in updated:
            params.append({"b_id": change.alert_id, "b_value": change.value,
                           "b_message": change.message, "b_at": change.at, "b_seq": seq})
            events.append(AlertEvent(seq, "updated", {"id": change.alert_id}))
            seq += 1
        connection.execute(update(alerts_table).where(alerts_table.c.id == bindparam("b_id"))
                           .values(value=bindparam("b_value"), message=bindparam("b_message"),
                                   last_seen_at=bindparam("b_at"), seq=bindparam("b_seq")),
                           params)
    clearing = []
    if cleared:
        params = []
        for alert_id, at in cleared.items():
            params.append({"b_id": alert_id, "b_at": at, "b_seq": seq})
            clearing.append(AlertEvent(seq, "cleared", {"id": alert_id}))
            seq += 1
        connection.execute(update(alerts_table).where(alerts_table.c.id == bindparam("b_id"),
                                                      alerts_table.c.cleared_at.is_(None))
                           .values(status="cleared", cleared_at=bindparam("b_at"),
                                   seq=bindparam("b_seq")), params)
    # the rows as stored, in one read: what subscribers and webhooks receive
    wanted = [e.alert["id"] for e in [*events, *clearing]]
    stored = {r.id: r for r in connection.execute(select(alerts_table).where(
        alerts_table.c.id.in_(wanted)))}
    for event in clearing:
        row = stored.get(event.alert["id"])
        if row is not None and row.seq == event.seq:  # cleared now, not before
            audit.record(connection, ENGINE_ACTOR, "alert.cleared", target_type="alert",
                         target_id=row.id)
            events.append(event)
    events = [AlertEvent(e.seq, e.change, alert_json(stored[e.alert["id"]])) for e in events]
    events.sort(key=lambda e: e.seq)
    queue_deliveries(connection, events)
    return events, ids


def _plain(details: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in details.items():
        if isinstance(value, float | np.floating):
            out[key] = finite(value)
        elif isinstance(value, str | int | bool) or value is None:
            out[key] = value
        else:
            out[key] = str(value)
    return out


def active_alerts(connection: Connection) -> list[Any]:
    """Alerts not cleared yet (the engine's memory after a restart)."""
    return list(connection.execute(select(alerts_table)
                                   .where(alerts_table.c.cleared_at.is_(None))
                                   .order_by(alerts_table.c.id)))


def list_alerts(engine: Engine, status: str = "open", limit: int = 100) -> list[dict[str, Any]]:
    """Alerts newest first. ``open`` lists the ones not cleared (acknowledged ones too: a
    seen alert is still a live condition); ``all`` everything."""
    if status not in ("open", "acknowledged", "cleared", "all"):
        raise UsageError("status must be open, acknowledged, cleared or all")
    if not 1 <= limit <= MAX_LIST:
        raise UsageError(f"limit must be between 1 and {MAX_LIST}")
    query = select(alerts_table).order_by(alerts_table.c.raised_at.desc(),
                                          alerts_table.c.id.desc()).limit(limit)
    if status == "open":
        query = query.where(alerts_table.c.cleared_at.is_(None))
    elif status != "all":
        query = query.where(alerts_table.c.status == status)
    with engine.connect() as connection:
        return [alert_json(r) for r in connection.execute(query)]


def get_alert(engine: Engine, alert_id: int) -> dict[str, Any]:
    with engine.connect() as connection:
        row = connection.execute(select(alerts_table).where(alerts_table.c.id == alert_id)
                                 ).first()
    if row is None:
        raise NotFoundError(f"no alert {alert_id}")
    return alert_json(row)


def changes_since(engine: Engine, seq: int, limit: int = 500) -> list[AlertEvent]:
    """Alerts changed after sequence number ``seq``, as events of their current state (for
    an SSE client resuming with Last-Event-ID). An alert changed several times since comes
    once, with its latest state."""
    with engine.connect() as connection:
        rows = connection.execute(select(alerts_table).where(alerts_table.c.seq > seq)
                                  .order_by(alerts_table.c.seq).limit(limit)).all()
    events = []
    for row in rows:
        if row.acknowledged_at is not None and row.status != "cleared":
            change = "acknowledged"
        elif row.status == "cleared":
            change = "cleared"
        elif row.last_seen_at > row.raised_at:
            change = "updated"
        else:
            change = "raised"
        events.append(AlertEvent(int(row.seq), change, alert_json(row)))
    return events


def last_sequence(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(sequence_table.c.value)
                                      .where(sequence_table.c.id == 1)).scalar() or 0)


def acknowledge(engine: Engine, principal: Principal, alert_id: int,
                note: str | None = None) -> AlertEvent:
    """Acknowledge an alert (audited, queued to webhooks); returns the change to publish."""
    if note is not None and len(note) > 2000:
        raise UsageError("the note is longer than 2000 characters")
    with write_transaction(engine) as connection:
        row = connection.execute(select(alerts_table).where(alerts_table.c.id == alert_id)
                                 ).first()
        if row is None:
            raise NotFoundError(f"no alert {alert_id}")
        if row.acknowledged_at is not None:
            raise ConflictError(f"alert {alert_id} was acknowledged already by "
                                f"{row.acknowledged_by}")
        seq = next_sequence(connection)
        connection.execute(update(alerts_table).where(alerts_table.c.id == alert_id).values(
            acknowledged_at=now_utc(), acknowledged_by=principal.actor, ack_note=note,
            status="cleared" if row.status == "cleared" else "acknowledged", seq=seq))
        audit.record(connection, principal, "alert.acknowledged", target_type="alert",
                     target_id=alert_id, details={"key": row.rule_key, "note": note or ""})
        row = connection.execute(select(alerts_table).where(alerts_table.c.id == alert_id)
                                 ).one()
        event = AlertEvent(seq, "acknowledged", alert_json(row))
        queue_deliveries(connection, [event])
    return event


# --- webhooks ---------------------------------------------------------------------------------

def _webhook_dict(row: Any) -> dict[str, Any]:
    # the secret is never shown again after creation
    return {"id": row.id, "url": row.url, "events": list(row.events),
            "min_severity": row.min_severity, "active": bool(row.active),
            "created_by": row.created_by, "created_at": iso(row.created_at)}


def create_webhook(engine: Engine, principal: Principal, *, url: str, secret: str,
                   events: Sequence[str] | None = None, min_severity: str = "info"
                   ) -> dict[str, Any]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 1000:
        raise UsageError("the webhook url must be an http(s) URL of at most 1000 characters")
    if not 16 <= len(secret) <= 200:
        raise UsageError("the secret must be 16 to 200 characters (it signs each delivery)")
    chosen = list(events) if events is not None else list(ALERT_CHANGES)
    unknown = sorted(set(chosen) - set(ALERT_CHANGES))
    if unknown or not chosen:
        raise UsageError(f"events must be a non-empty subset of {', '.join(ALERT_CHANGES)}")
    if min_severity not in SEVERITY_OF:
        raise UsageError(f"min_severity must be one of {', '.join(SEVERITIES)}")
    with write_transaction(engine) as connection:
        webhook_id = connection.execute(insert(webhooks_table).values(
            url=url, secret=secret, events=chosen, min_severity=min_severity, active=True,
            created_by=principal.actor, created_at=now_utc()).returning(webhooks_table.c.id)
        ).scalar_one()
        audit.record(connection, principal, "webhook.created", target_type="webhook",
                     target_id=webhook_id, details={"url": url, "events": chosen})
        row = connection.execute(select(webhooks_table)
                                 .where(webhooks_table.c.id == webhook_id)).one()
    return _webhook_dict(row)


def list_webhooks(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        return [_webhook_dict(r) for r in connection.execute(
            select(webhooks_table).order_by(webhooks_table.c.id))]


def delete_webhook(engine: Engine, principal: Principal, webhook_id: int) -> None:
    with write_transaction(engine) as connection:
        if not connection.execute(delete(webhooks_table)
                                  .where(webhooks_table.c.id == webhook_id)).rowcount:
            raise NotFoundError(f"no webhook {webhook_id}")
        audit.record(connection, principal, "webhook.deleted", target_type="webhook",
                     target_id=webhook_id)


def webhook_deliveries(engine: Engine, webhook_id: int, limit: int = 100
                       ) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        if connection.execute(select(webhooks_table.c.id)
                              .where(webhooks_table.c.id == webhook_id)).scalar() is None:
            raise NotFoundError(f"no webhook {webhook_id}")
        rows = connection.execute(select(deliveries_table)
                                  .where(deliveries_table.c.webhook_id == webhook_id)
                                  .order_by(deliveries_table.c.id.desc()).limit(limit))
        return [{"id": r.id, "seq": r.seq, "event": r.event, "alert_id": r.alert_id,
                 "status": r.status, "attempts": r.attempts, "last_status": r.last_status,
                 "last_error": r.last_error, "created_at": iso(r.created_at),
                 "next_attempt_at": iso(r.next_attempt_at),
                 "delivered_at": iso(r.delivered_at)} for r in rows]


def queue_deliveries(connection: Connection, events: Sequence[AlertEvent]) -> int:
    """Write a delivery row per (webhook, event) the webhook asked for, in the caller's
    transaction (the outbox the delivery worker sends from)."""
    if not events:
        return 0
    hooks = connection.execute(select(webhooks_table.c.id, webhooks_table.c.events,
                                      webhooks_table.c.min_severity)
                               .where(webhooks_table.c.active.is_(True))).all()
    if not hooks:
        return 0
    now = now_utc()
    rows = []
    for hook in hooks:
        floor = SEVERITY_OF[hook.min_severity]
        for event in events:
            if event.change not in hook.events \
                    or SEVERITY_OF.get(event.alert["severity"], 0) < floor:
                continue
            rows.append({"webhook_id": hook.id, "alert_id": event.alert["id"],
                         "seq": event.seq, "event": event.change,
                         "payload": event.as_json(), "status": "pending", "attempts": 0,
                         "next_attempt_at": now, "created_at": now})
    if rows:
        connection.execute(insert(deliveries_table), rows)
    return len(rows)


__all__ = ["ALERT_STATUSES", "AlertEvent", "AlertUpdate", "LoadedRule", "RaisedAlert",
           "acknowledge", "active_alerts", "alert_json", "build_rule", "changes_since",
           "create_rule", "create_webhook", "delete_rule", "delete_webhook", "get_alert",
           "get_rule", "last_sequence", "list_alerts", "list_rules", "list_webhooks",
           "load_rules", "next_sequence", "queue_deliveries", "store_changes", "update_rule",
           "webhook_deliveries"]
