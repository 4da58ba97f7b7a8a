"""The shared risk register: risks, their actions and comments, a full history, and who sees what.

Scoring (a 5 x 5 matrix, as in ISO 31000-style registers used by crime-prevention councils)::

    score = likelihood x impact          likelihood, impact: integers 1..5

    impact ->   1   2   3   4   5
    likel. 5    5  10  15  20  25        low       score 1-4
           4    4   8  12  16  20        medium    score 5-9
           3    3   6   9  12  15        high      score 10-16
           2    2   4   6   8  10        critical  score 20-25
           1    1   2   3   4   5        (17-19 and 21-24 are not products of 1..5)

Visibility (decided here, once; the API only renders what these functions return):

* ``admin`` (and the CLI's ``system``): every risk, in full.
* ``analyst`` / ``partner`` (users or API keys): every risk of their own organisation, and
  every risk shared at ``partners`` or ``public`` level by any organisation, in full
  (description, evidence, actions, comments, history).
* ``viewer``: the public summary only (read-only) of their own organisation's risks and of
  risks shared at ``partners`` or ``public`` level. Viewers never receive description,
  evidence links, actions, comments or history, because evidence points at individual
  records (reports, incidents), which viewers never see (privacy by default).
* anonymous: the public summary of ``public`` risks only.
* A risk the caller may not see at all is reported as not found (404), so its existence does
  not leak; a risk seen only as a summary refuses its history with 403.

The public summary is: id, title, threat type, level, status and the area generalised to its
area kind + code, or for a drawn polygon to its bounding box rounded outwards to 0.001 degree.

Writes need ``risks:write`` (admin, analyst, partner). Changing a risk or adding an action
needs membership of the owner organisation (admins may change any risk, and may create risks
for another organisation). An action may also be updated by its own owner organisation (the
police updating the action they took on for the city's risk). Any caller who sees a risk in
full and holds ``risks:write`` may comment on it: comments are how partners work together.

Every write appends to ``risk_history`` (who, when, before/after per field) and to the audit
trail, in the same transaction as the change. Reads of risks are not audited: risks hold no
personal data (evidence links are references, not copies).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlsplit

from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry
from sqlalchemy import Connection, Engine, and_, or_, select

from urbansec.domain.text import unstorable_reason
from urbansec.errors import AuthenticationError, NotFoundError, PermissionDeniedError, UsageError
from urbansec.services import audit
from urbansec.services.access import Principal, require
from urbansec.store.collaboration import (
    Organisation,
    Risk,
    RiskAction,
    RiskComment,
    RiskHistory,
    User,
)
from urbansec.store.engine import write_transaction
from urbansec.store.tables import Area

RISKS = Risk.__table__
ACTIONS = RiskAction.__table__
COMMENTS = RiskComment.__table__
HISTORY = RiskHistory.__table__
ORGS = Organisation.__table__
USERS = User.__table__
AREAS = Area.__table__

#: threat type code -> what it covers; includes cyber threats to the city's services
THREAT_TYPES: dict[str, str] = {
    "violence": "Violence against persons (assault, robbery, knife crime)",
    "property": "Property crime (burglary, theft, vehicle crime, vandalism)",
    "public_order": "Public order and anti-social behaviour",
    "drugs": "Drug dealing and drug-related nuisance",
    "harassment": "Harassment, stalking, hate incidents, feeling unsafe",
    "terrorism": "Terrorism and violent extremism",
    "crowd_safety": "Crowd safety at events and busy places",
    "cyber_attack_city_services": "Cyber attack on city services (ransomware, outage of "
                                  "digital services, compromised systems)",
    "phishing_against_residents": "Phishing and online fraud aimed at residents",
    "infrastructure": "Failure or sabotage of infrastructure (lighting, transport, utilities)",
    "other": "Anything else",
}
STATUSES = ("open", "mitigating", "monitoring", "closed")
SHARING = ("organisation", "partners", "public")
LEVELS = ("low", "medium", "high", "critical")
ACTION_STATUSES = ("planned", "in_progress", "done", "cancelled")
EVIDENCE_TYPES = ("query", "report", "hotspot", "incident", "url")

MAX_TITLE = 300
MAX_DESCRIPTION = 20_000
MAX_COMMENT = 5_000
MAX_EVIDENCE = 50
MAX_EVIDENCE_REF = 500
MAX_EVIDENCE_NOTE = 1_000
MAX_AREA_VERTICES = 10_000
MAX_AREA_CODE = 100
MAX_AREA_KIND = 50
#: the largest id either database stores in an Integer column (ids beyond it cannot exist)
MAX_ID = 2**31 - 1
#: summary bounding boxes are rounded outwards to this many decimals of a degree (~100 m)
BBOX_DECIMALS = 3

#: fields a PATCH may change, in the order history lists them
RISK_FIELDS = ("title", "description", "threat_type", "area", "likelihood", "impact",
               "owner_organisation_id", "status", "sharing", "review_date", "evidence")
ACTION_FIELDS = ("title", "owner_organisation_id", "owner_user_id", "due_date", "status")


# --- scoring -------------------------------------------------------------------------------

def level_for(score: int) -> str:
    """The level of a score (1..25): low 1-4, medium 5-9, high 10-16, critical 20-25."""
    if not 1 <= score <= 25:
        raise UsageError(f"a risk score is between 1 and 25, not {score}")
    if score <= 4:
        return "low"
    if score <= 9:
        return "medium"
    if score <= 16:
        return "high"
    return "critical"


def score_and_level(likelihood: int, impact: int) -> tuple[int, str]:
    """``(likelihood x impact, level)`` for likelihood and impact on the 1..5 scale."""
    for name, value in (("likelihood", likelihood), ("impact", impact)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
            raise UsageError(f"{name} must be a whole number from 1 to 5, not {value!r}")
    score = likelihood * impact
    return score, level_for(score)


def _levels_scores(levels: Iterable[str]) -> list[int]:
    """Every achievable score whose level is in ``levels`` (for filtering in SQL)."""
    wanted = set(levels)
    return sorted({lk * im for lk in range(1, 6) for im in range(1, 6)
                   if level_for(lk * im) in wanted})


# --- visibility ----------------------------------------------------------------------------

def _is_admin(principal: Principal) -> bool:
    return principal.kind == "system" or principal.role == "admin"


def _full_reader(principal: Principal) -> bool:
    """Roles that may see risks in full (subject to sharing)."""
    return _is_admin(principal) or principal.role in ("analyst", "partner")


def _visible_clause(principal: Principal) -> Any:
    """SQL condition for the risks ``principal`` may see at all (in full or as summary)."""
    if _is_admin(principal):
        return RISKS.c.id.isnot(None)
    if principal.anonymous or principal.role is None:
        return RISKS.c.sharing == "public"
    shared = RISKS.c.sharing.in_(("partners", "public"))
    if principal.organisation_id is None:
        return shared
    return or_(shared, RISKS.c.owner_organisation_id == principal.organisation_id)


def _sees_full(principal: Principal, row: Mapping[str, Any]) -> bool:
    """Whether ``principal`` sees this (already visible) risk in full, not as the summary."""
    if _is_admin(principal):
        return True
    if not _full_reader(principal):
        return False
    return (row["sharing"] in ("partners", "public")
            or row["owner_organisation_id"] == principal.organisation_id)


def _in_owner_org(principal: Principal, organisation_id: int) -> bool:
    return _is_admin(principal) or (principal.organisation_id is not None
                                    and principal.organisation_id == organisation_id)


# --- validation ----------------------------------------------------------------------------

def _clean_text(value: Any, field: str, *, max_length: int, required: bool = True) -> str:
    if not isinstance(value, str):
        raise UsageError(f"{field} must be text")
    reason = unstorable_reason(value)
    if reason:
        raise UsageError(f"{field} {reason}")
    value = value.strip()
    if required and not value:
        raise UsageError(f"{field} must not be empty")
    if len(value) > max_length:
        raise UsageError(f"{field} is longer than {max_length:,} characters")
    return value


def _choice(value: Any, field: str, choices: Iterable[str]) -> str:
    options = tuple(choices)
    if value not in options:
        raise UsageError(f"{field} must be one of {', '.join(options)}, not {value!r}")
    return str(value)


def _scale(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
        raise UsageError(f"{field} must be a whole number from 1 to 5, not {value!r}")
    return value


def _date(value: Any, field: str) -> date | None:
    if value is None or (isinstance(value, date) and not isinstance(value, datetime)):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError as exc:
            raise UsageError(f"{field} must be a date like 2025-06-30, not {value!r}") from exc
    raise UsageError(f"{field} must be a date like 2025-06-30")


def _id(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ID:
        raise UsageError(f"{field} must be a positive whole number")
    return value


def _clean_evidence(value: Any) -> list[dict[str, str]]:
    """Validate evidence links: ``[{type, ref, note}]``; refs are kept, not dereferenced."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise UsageError("evidence must be a list of {type, ref, note} links")
    if len(value) > MAX_EVIDENCE:
        raise UsageError(f"a risk holds at most {MAX_EVIDENCE} evidence links")
    links: list[dict[str, str]] = []
    for index, item in enumerate(value):
        where = f"evidence[{index}]"
        if not isinstance(item, Mapping):
            raise UsageError(f"{where} must be an object with type, ref and note")
        unknown = set(item) - {"type", "ref", "note"}
        if unknown:
            raise UsageError(f"{where} has unknown fields: {', '.join(sorted(map(str, unknown)))}")
        kind = _choice(item.get("type"), f"{where}.type", EVIDENCE_TYPES)
        ref = _clean_text(item.get("ref"), f"{where}.ref", max_length=MAX_EVIDENCE_REF)
        note = _clean_text(item.get("note") or "", f"{where}.note",
                           max_length=MAX_EVIDENCE_NOTE, required=False)
        if kind == "url":
            parts = urlsplit(ref)
            # only web links: a javascript: or file: link in a shared register is an attack
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise UsageError(f"{where}.ref must be an http(s) URL for type url")
        links.append({"type": kind, "ref": ref, "note": note})
    return links


def _check_polygon(value: Mapping[str, Any]) -> str:
    """Validate a GeoJSON Polygon/MultiPolygon in WGS84; return it as compact GeoJSON."""
    if value.get("type") not in ("Polygon", "MultiPolygon"):
        raise UsageError("area geometry must be a GeoJSON Polygon or MultiPolygon")
    try:
        geometry: BaseGeometry = shape({"type": value["type"],
                                        "coordinates": value.get("coordinates")})
    except Exception as exc:  # shapely raises several types for malformed coordinates
        raise UsageError(f"area geometry is not a valid GeoJSON {value['type']}: {exc}") from exc
    coords = [xy for poly in getattr(geometry, "geoms", [geometry])
              for ring in (poly.exterior, *poly.interiors) for xy in ring.coords]
    if len(coords) > MAX_AREA_VERTICES:
        raise UsageError(f"area geometry has more than {MAX_AREA_VERTICES:,} vertices: "
                         "simplify it")
    for lon, lat, *_ in coords:
        if not (math.isfinite(lon) and math.isfinite(lat)
                and -180 <= lon <= 180 and -90 <= lat <= 90):
            raise UsageError("area geometry must be longitude/latitude in WGS84 "
                             "(EPSG:4326), longitude first")
    if not geometry.is_valid:
        from shapely.validation import explain_validity

        raise UsageError(f"area geometry is not a valid polygon: {explain_validity(geometry)}")
    if geometry.is_empty or geometry.area <= 0:
        raise UsageError("area geometry is empty or has no area")
    return json.dumps(mapping(geometry), separators=(",", ":"))


def _clean_area(connection: Connection, value: Any) -> dict[str, str | None]:
    """Area columns from an ``area`` value: None (city-wide), ``{kind, code}`` or a GeoJSON
    polygon. A code is checked against imported areas of that kind when any are imported."""
    empty: dict[str, str | None] = {"area_kind": None, "area_code": None, "area_geometry": None}
    if value is None:
        return empty
    if not isinstance(value, Mapping):
        raise UsageError("area must be {kind, code} or a GeoJSON Polygon/MultiPolygon")
    if "type" in value:
        return {**empty, "area_geometry": _check_polygon(value)}
    if set(value) != {"kind", "code"}:
        raise UsageError("area must be {kind, code} or a GeoJSON Polygon/MultiPolygon")
    kind = _clean_text(value["kind"], "area.kind", max_length=MAX_AREA_KIND)
    code = _clean_text(value["code"], "area.code", max_length=MAX_AREA_CODE)
    kind_known = connection.execute(
        select(AREAS.c.id).where(AREAS.c.kind == kind).limit(1)).first() is not None
    if kind_known and connection.execute(select(AREAS.c.id).where(
            AREAS.c.kind == kind, AREAS.c.code == code)).first() is None:
        raise UsageError(f"no {kind} area with code {code!r} has been imported",
                         details={"area_kind": kind, "area_code": code})
    return {**empty, "area_kind": kind, "area_code": code}


def _check_organisation(connection: Connection, organisation_id: Any, field: str) -> int:
    organisation_id = _id(organisation_id, field)
    if connection.execute(select(ORGS.c.id).where(ORGS.c.id == organisation_id)).first() is None:
        raise UsageError(f"{field}: no organisation with id {organisation_id}")
    return organisation_id


def _check_owner_user(connection: Connection, user_id: Any, organisation_id: int) -> int | None:
    if user_id is None:
        return None
    user_id = _id(user_id, "owner_user_id")
    row = connection.execute(select(USERS.c.organisation_id, USERS.c.active)
                             .where(USERS.c.id == user_id)).first()
    if row is None or not row.active:
        raise UsageError(f"owner_user_id: no active user with id {user_id}")
    if row.organisation_id != organisation_id:
        raise UsageError("owner_user_id must belong to the action's owner organisation")
    return user_id


def _reject_unknown(data: Mapping[str, Any], allowed: Iterable[str]) -> None:
    unknown = set(data) - set(allowed)
    if unknown:
        raise UsageError(f"unknown fields: {', '.join(sorted(map(str, unknown)))}")


# --- rendering -----------------------------------------------------------------------------

def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return value.isoformat()


def _area_full(row: Mapping[str, Any]) -> dict[str, Any] | None:
    if row["area_geometry"]:
        return json.loads(row["area_geometry"])
    if row["area_kind"] is not None:
        return {"kind": row["area_kind"], "code": row["area_code"]}
    return None


def _area_summary(row: Mapping[str, Any]) -> dict[str, Any] | None:
    if row["area_geometry"]:
        min_lon, min_lat, max_lon, max_lat = shape(json.loads(row["area_geometry"])).bounds
        scale = 10**BBOX_DECIMALS
        # outwards, so the generalised box still contains the whole area
        return {"bbox": [math.floor(min_lon * scale) / scale, math.floor(min_lat * scale) / scale,
                         math.ceil(max_lon * scale) / scale, math.ceil(max_lat * scale) / scale]}
    if row["area_kind"] is not None:
        return {"kind": row["area_kind"], "code": row["area_code"]}
    return None


def _summary(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"view": "summary", "id": row["id"], "title": row["title"],
            "threat_type": row["threat_type"], "level": row["level"], "status": row["status"],
            "area": _area_summary(row)}


def _full(row: Mapping[str, Any], organisations: Mapping[int, str]) -> dict[str, Any]:
    evidence = row["evidence"]
    if isinstance(evidence, str):
        evidence = json.loads(evidence)
    today = date.today()
    return {
        "view": "full", "id": row["id"], "title": row["title"],
        "description": row["description"] or "", "threat_type": row["threat_type"],
        "area": _area_full(row), "likelihood": row["likelihood"], "impact": row["impact"],
        "score": row["score"], "level": row["level"],
        "owner_organisation_id": row["owner_organisation_id"],
        "owner_organisation": organisations.get(row["owner_organisation_id"], ""),
        "status": row["status"], "sharing": row["sharing"],
        "review_date": _iso(row["review_date"]),
        "review_overdue": bool(row["review_date"] is not None and row["review_date"] < today
                               and row["status"] != "closed"),
        "evidence": list(evidence or []), "created_by": row["created_by"],
        "created_at": _iso(row["created_at"]), "updated_at": _iso(row["updated_at"]),
    }


def _organisation_names(connection: Connection) -> dict[int, str]:
    return {r.id: r.name for r in connection.execute(select(ORGS.c.id, ORGS.c.name))}


def _action_out(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "risk_id": row["risk_id"], "title": row["title"],
            "owner_organisation_id": row["owner_organisation_id"],
            "owner_user_id": row["owner_user_id"], "due_date": _iso(row["due_date"]),
            "status": row["status"], "created_at": _iso(row["created_at"]),
            "updated_at": _iso(row["updated_at"])}


def _comment_out(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "risk_id": row["risk_id"], "user_id": row["user_id"],
            "author": row["author"] or "", "body": row["body"],
            "created_at": _iso(row["created_at"])}


def _json_value(value: Any) -> Any:
    """A history value as JSON (dates as ISO text, geometry as parsed GeoJSON)."""
    if isinstance(value, date | datetime):
        return value.isoformat()
    return value


# --- internals -----------------------------------------------------------------------------

def _load(connection: Connection, risk_id: Any, principal: Principal) -> Mapping[str, Any]:
    """The risk row if ``principal`` may see it at all; otherwise 404 (existence not leaked)."""
    if isinstance(risk_id, bool) or not isinstance(risk_id, int) or not 1 <= risk_id <= MAX_ID:
        raise NotFoundError(f"no risk {risk_id}")
    row = connection.execute(select(RISKS).where(RISKS.c.id == risk_id,
                                                 _visible_clause(principal))).mappings().first()
    if row is None:
        raise NotFoundError(f"no risk {risk_id} (or it is not shared with you)")
    return row


def _require_full(principal: Principal, row: Mapping[str, Any]) -> None:
    if not _sees_full(principal, row):
        if principal.anonymous:
            raise AuthenticationError("sign in to see more than the public summary of this "
                                      "risk")
        raise PermissionDeniedError("this risk is shared with you as a public summary only")


def _actor_user_id(principal: Principal) -> int | None:
    # risk_history.user_id references users; API keys and the CLI are named in the change
    return principal.id if principal.kind == "user" else None


def _history(connection: Connection, principal: Principal, risk_id: int, event: str,
             fields: dict[str, dict[str, Any]], now: datetime, **extra: Any) -> None:
    change = {"event": event, "actor": principal.actor, "fields": fields, **extra}
    connection.execute(HISTORY.insert().values(
        risk_id=risk_id, user_id=_actor_user_id(principal), at=now,
        change=json.loads(json.dumps(change, default=str))))


def _risk_values(row: Mapping[str, Any]) -> dict[str, Any]:
    """The PATCH-able fields of a stored risk, as JSON values (for history diffs)."""
    evidence = row["evidence"]
    if isinstance(evidence, str):
        evidence = json.loads(evidence)
    values = {name: _json_value(row[name]) for name in RISK_FIELDS
              if name not in ("area", "evidence")}
    values["area"] = _area_full(row)
    values["evidence"] = list(evidence or [])
    values["score"] = row["score"]
    values["level"] = row["level"]
    return values


def _detail(connection: Connection, principal: Principal, row: Mapping[str, Any]
            ) -> dict[str, Any]:
    if not _sees_full(principal, row):
        return _summary(row)
    out = _full(row, _organisation_names(connection))
    out["actions"] = [_action_out(a) for a in connection.execute(
        select(ACTIONS).where(ACTIONS.c.risk_id == row["id"]).order_by(ACTIONS.c.id)
    ).mappings()]
    out["comments"] = [_comment_out(c) for c in connection.execute(
        select(COMMENTS, USERS.c.name.label("author"))
        .select_from(COMMENTS.outerjoin(USERS, USERS.c.id == COMMENTS.c.user_id))
        .where(COMMENTS.c.risk_id == row["id"]).order_by(COMMENTS.c.id)).mappings()]
    return out


# --- use cases -----------------------------------------------------------------------------

def create_risk(engine: Engine, principal: Principal, data: Mapping[str, Any]
                ) -> dict[str, Any]:
    """Add a risk. ``data``: title, threat_type, likelihood, impact (required); description,
    area (None | {kind, code} | GeoJSON polygon), status (open), sharing (organisation),
    review_date, evidence, owner_organisation_id (admins only; default the caller's)."""
    require(principal, "risks:write")
    _reject_unknown(data, RISK_FIELDS)
    for name in ("title", "threat_type", "likelihood", "impact"):
        if name not in data:
            raise UsageError(f"{name} is required")
    title = _clean_text(data["title"], "title", max_length=MAX_TITLE)
    description = _clean_text(data.get("description") or "", "description",
                              max_length=MAX_DESCRIPTION, required=False)
    threat_type = _choice(data["threat_type"], "threat_type", THREAT_TYPES)
    likelihood = _scale(data["likelihood"], "likelihood")
    impact = _scale(data["impact"], "impact")
    score, level = score_and_level(likelihood, impact)
    status = _choice(data.get("status") or "open", "status", STATUSES)
    sharing = _choice(data.get("sharing") or "organisation", "sharing", SHARING)
    review_date = _date(data.get("review_date"), "review_date")
    evidence = _clean_evidence(data.get("evidence"))
    now = datetime.now(UTC)
    with write_transaction(engine) as connection:
        owner = data.get("owner_organisation_id")
        if owner is None:
            if principal.organisation_id is None:
                raise UsageError("owner_organisation_id is required (the caller belongs to "
                                 "no organisation)")
            owner = principal.organisation_id
        owner = _check_organisation(connection, owner, "owner_organisation_id")
        if not _in_owner_org(principal, owner):
            raise PermissionDeniedError("you may only create risks owned by your own "
                                        "organisation")
        area = _clean_area(connection, data.get("area"))
        values = {"title": title, "description": description, "threat_type": threat_type,
                  **area, "likelihood": likelihood, "impact": impact, "score": score,
                  "level": level, "owner_organisation_id": owner, "status": status,
                  "sharing": sharing, "review_date": review_date, "evidence": evidence,
                  "created_by": _actor_user_id(principal), "created_at": now, "updated_at": now}
        risk_id = connection.execute(RISKS.insert().values(**values)
                                     .returning(RISKS.c.id)).scalar_one()
        row = connection.execute(select(RISKS).where(RISKS.c.id == risk_id)).mappings().one()
        after = _risk_values(row)
        _history(connection, principal, risk_id, "created",
                 {k: {"before": None, "after": v} for k, v in after.items()}, now)
        audit.record(connection, principal, "risk.create", target_type="risk",
                     target_id=risk_id, details={"title": title, "level": level,
                                                 "sharing": sharing, "owner": owner})
        return _detail(connection, principal, row)


def update_risk(engine: Engine, principal: Principal, risk_id: int, changes: Mapping[str, Any]
                ) -> dict[str, Any]:
    """Change some fields of a risk (only those present in ``changes``; ``None`` clears
    description, area, review_date, evidence). Score and level follow likelihood and impact."""
    require(principal, "risks:write")
    _reject_unknown(changes, RISK_FIELDS)
    now = datetime.now(UTC)
    with write_transaction(engine) as connection:
        row = _load(connection, risk_id, principal)
        _require_full(principal, row)
        if not _in_owner_org(principal, row["owner_organisation_id"]):
            raise PermissionDeniedError("only the owner organisation (or an admin) may change "
                                        "this risk")
        values: dict[str, Any] = {}
        for name, value in changes.items():
            if name == "title":
                values[name] = _clean_text(value, name, max_length=MAX_TITLE)
            elif name == "description":
                values[name] = _clean_text(value or "", name, max_length=MAX_DESCRIPTION,
                                           required=False)
            elif name == "threat_type":
                values[name] = _choice(value, name, THREAT_TYPES)
            elif name in ("likelihood", "impact"):
                values[name] = _scale(value, name)
            elif name == "status":
                values[name] = _choice(value, name, STATUSES)
            elif name == "sharing":
                values[name] = _choice(value, name, SHARING)
            elif name == "review_date":
                values[name] = _date(value, name)
            elif name == "evidence":
                values[name] = _clean_evidence(value)
            elif name == "area":
                values.update(_clean_area(connection, value))
            elif name == "owner_organisation_id":
                owner = _check_organisation(connection, value, name)
                if owner != row["owner_organisation_id"] and not _is_admin(principal):
                    raise PermissionDeniedError("only an admin may hand a risk to another "
                                                "organisation")
                values[name] = owner
        if "likelihood" in values or "impact" in values:
            values["score"], values["level"] = score_and_level(
                values.get("likelihood", row["likelihood"]), values.get("impact", row["impact"]))
        before = _risk_values(row)
        after = _risk_values({**row, **values})
        diff = {k: {"before": before[k], "after": after[k]} for k in after
                if before[k] != after[k]}
        if not diff:
            # nothing changes: no write, no history, nothing to audit
            return _detail(connection, principal, row)
        connection.execute(RISKS.update().where(RISKS.c.id == row["id"])
                           .values(**values, updated_at=now))
        _history(connection, principal, row["id"], "updated", diff, now)
        audit.record(connection, principal, "risk.update", target_type="risk",
                     target_id=row["id"], details={"fields": sorted(diff)})
        new_row = connection.execute(select(RISKS).where(RISKS.c.id == row["id"])
                                     ).mappings().one()
        return _detail(connection, principal, new_row)


def get_risk(engine: Engine, principal: Principal, risk_id: int) -> dict[str, Any]:
    """One risk: in full (with actions and comments) or as the public summary."""
    require(principal, "risks:read")
    with engine.connect() as connection:
        return _detail(connection, principal, _load(connection, risk_id, principal))


def _filtered_rows(connection: Connection, principal: Principal, *, status: str | None,
                   level: str | None, threat_type: str | None, area: str | None,
                   owner: str | None, overdue: bool, today: date | None
                   ) -> list[Mapping[str, Any]]:
    conditions = [_visible_clause(principal)]
    if status is not None:
        conditions.append(RISKS.c.status == _choice(status, "status", STATUSES))
    if level is not None:
        conditions.append(RISKS.c.score.in_(_levels_scores([_choice(level, "level", LEVELS)])))
    if threat_type is not None:
        conditions.append(RISKS.c.threat_type == _choice(threat_type, "threat_type",
                                                         THREAT_TYPES))
    if owner is not None:
        owner = _clean_text(owner, "owner", max_length=64)
        if owner.isdigit():
            conditions.append(RISKS.c.owner_organisation_id == int(owner))
        else:
            conditions.append(RISKS.c.owner_organisation_id.in_(
                select(ORGS.c.id).where(ORGS.c.key == owner)))
    if overdue:
        conditions.append(and_(RISKS.c.review_date.isnot(None),
                               RISKS.c.review_date < (today or date.today()),
                               RISKS.c.status != "closed"))
    area_geometry: BaseGeometry | None = None
    if area is not None:
        area = _clean_text(area, "area", max_length=MAX_AREA_KIND + MAX_AREA_CODE + 1)
        kind, sep, code = area.partition(":")
        if not sep or not kind or not code:
            raise UsageError("area filter must be KIND:CODE, e.g. district:001")
        stored = connection.execute(select(AREAS.c.geometry).where(
            AREAS.c.kind == kind, AREAS.c.code == code)).scalar()
        if stored is not None:
            area_geometry = shape(json.loads(stored))
            # risks named by this code, and drawn polygons that overlap the imported area
            conditions.append(or_(and_(RISKS.c.area_kind == kind, RISKS.c.area_code == code),
                                  RISKS.c.area_geometry.isnot(None)))
        else:
            conditions.append(and_(RISKS.c.area_kind == kind, RISKS.c.area_code == code))
    rows = list(connection.execute(select(RISKS).where(*conditions)
                                   .order_by(RISKS.c.score.desc(), RISKS.c.id)).mappings())
    if area_geometry is not None:
        rows = [r for r in rows if not r["area_geometry"]
                or shape(json.loads(r["area_geometry"])).intersects(area_geometry)]
    return rows


def list_risks(engine: Engine, principal: Principal, *, status: str | None = None,
               level: str | None = None, threat_type: str | None = None,
               area: str | None = None, owner: str | None = None, overdue: bool = False,
               limit: int = 100, offset: int = 0, today: date | None = None
               ) -> dict[str, Any]:
    """The risks the caller may see, highest score first, each in full or as the summary.

    ``area`` is ``KIND:CODE``: risks named by that area, plus drawn polygons overlapping it
    when the area is imported. ``owner`` is an organisation id or key. ``overdue`` keeps
    risks not closed whose review date is before ``today``. The register is small (hundreds
    of risks), so the polygon overlap test runs in Python after the SQL filters."""
    require(principal, "risks:read")
    if not 1 <= limit <= 500 or offset < 0:
        raise UsageError("limit must be 1..500 and offset 0 or more")
    with engine.connect() as connection:
        rows = _filtered_rows(connection, principal, status=status, level=level,
                              threat_type=threat_type, area=area, owner=owner,
                              overdue=overdue, today=today)
        organisations = _organisation_names(connection)
    page = rows[offset:offset + limit]
    items = [_full(r, organisations) if _sees_full(principal, r) else _summary(r) for r in page]
    return {"items": items, "total": len(rows), "limit": limit, "offset": offset}


def risk_matrix(engine: Engine, principal: Principal, *, status: str | None = None,
                threat_type: str | None = None, area: str | None = None,
                owner: str | None = None) -> dict[str, Any]:
    """Counts of the risks the caller may see per likelihood x impact (25 cells)."""
    require(principal, "risks:read")
    with engine.connect() as connection:
        rows = _filtered_rows(connection, principal, status=status, level=None,
                              threat_type=threat_type, area=area, owner=owner, overdue=False,
                              today=None)
    counts: dict[tuple[int, int], int] = {}
    for r in rows:
        key = (r["likelihood"], r["impact"])
        counts[key] = counts.get(key, 0) + 1
    cells = [{"likelihood": lk, "impact": im, "score": lk * im, "level": level_for(lk * im),
              "count": counts.get((lk, im), 0)} for lk in range(1, 6) for im in range(1, 6)]
    levels = {name: sum(c["count"] for c in cells if c["level"] == name) for name in LEVELS}
    return {"cells": cells, "levels": levels, "total": len(rows)}


def risk_history(engine: Engine, principal: Principal, risk_id: int) -> list[dict[str, Any]]:
    """Every change of the risk and its actions and comments, oldest first."""
    require(principal, "risks:read")
    with engine.connect() as connection:
        row = _load(connection, risk_id, principal)
        _require_full(principal, row)
        return [{"id": h.id, "at": _iso(h.at), "user_id": h.user_id,
                 "actor": (h.change or {}).get("actor", ""),
                 "event": (h.change or {}).get("event", ""),
                 "action_id": (h.change or {}).get("action_id"),
                 "comment_id": (h.change or {}).get("comment_id"),
                 "fields": (h.change or {}).get("fields", {})}
                for h in connection.execute(select(HISTORY).where(HISTORY.c.risk_id == row["id"])
                                            .order_by(HISTORY.c.id))]


def add_action(engine: Engine, principal: Principal, risk_id: int, data: Mapping[str, Any]
               ) -> dict[str, Any]:
    """Add an action to a risk (owner organisation or admin). ``data``: title; optional
    owner_organisation_id (default the risk's owner), owner_user_id, due_date, status."""
    require(principal, "risks:write")
    _reject_unknown(data, ACTION_FIELDS)
    if "title" not in data:
        raise UsageError("title is required")
    title = _clean_text(data["title"], "title", max_length=MAX_TITLE)
    status = _choice(data.get("status") or "planned", "status", ACTION_STATUSES)
    due_date = _date(data.get("due_date"), "due_date")
    now = datetime.now(UTC)
    with write_transaction(engine) as connection:
        row = _load(connection, risk_id, principal)
        _require_full(principal, row)
        if not _in_owner_org(principal, row["owner_organisation_id"]):
            raise PermissionDeniedError("only the risk's owner organisation (or an admin) may "
                                        "add actions")
        owner = data.get("owner_organisation_id")
        owner = row["owner_organisation_id"] if owner is None else _check_organisation(
            connection, owner, "owner_organisation_id")
        owner_user = _check_owner_user(connection, data.get("owner_user_id"), owner)
        values = {"risk_id": row["id"], "title": title, "owner_organisation_id": owner,
                  "owner_user_id": owner_user, "due_date": due_date, "status": status,
                  "created_at": now, "updated_at": now}
        action_id = connection.execute(ACTIONS.insert().values(**values)
                                       .returning(ACTIONS.c.id)).scalar_one()
        _history(connection, principal, row["id"], "action_added",
                 {k: {"before": None, "after": _json_value(values[k])} for k in ACTION_FIELDS},
                 now, action_id=action_id)
        connection.execute(RISKS.update().where(RISKS.c.id == row["id"]).values(updated_at=now))
        audit.record(connection, principal, "risk.action.create", target_type="risk_action",
                     target_id=action_id, details={"risk_id": row["id"], "title": title})
        return _action_out(connection.execute(select(ACTIONS).where(ACTIONS.c.id == action_id)
                                              ).mappings().one())


def update_action(engine: Engine, principal: Principal, risk_id: int, action_id: int,
                  changes: Mapping[str, Any]) -> dict[str, Any]:
    """Change an action (by the risk's owner organisation, the action's owner organisation,
    or an admin)."""
    require(principal, "risks:write")
    _reject_unknown(changes, ACTION_FIELDS)
    now = datetime.now(UTC)
    with write_transaction(engine) as connection:
        row = _load(connection, risk_id, principal)
        _require_full(principal, row)
        if isinstance(action_id, bool) or not isinstance(action_id, int) \
                or not 1 <= action_id <= MAX_ID:
            raise NotFoundError(f"no action {action_id} on risk {risk_id}")
        action = connection.execute(select(ACTIONS).where(
            ACTIONS.c.id == action_id, ACTIONS.c.risk_id == row["id"])).mappings().first()
        if action is None:
            raise NotFoundError(f"no action {action_id} on risk {risk_id}")
        if not (_in_owner_org(principal, row["owner_organisation_id"])
                or _in_owner_org(principal, action["owner_organisation_id"])):
            raise PermissionDeniedError("only the risk's or the action's owner organisation "
                                        "(or an admin) may change this action")
        values: dict[str, Any] = {}
        for name, value in changes.items():
            if name == "title":
                values[name] = _clean_text(value, name, max_length=MAX_TITLE)
            elif name == "status":
                values[name] = _choice(value, name, ACTION_STATUSES)
            elif name == "due_date":
                values[name] = _date(value, name)
            elif name == "owner_organisation_id":
                values[name] = _check_organisation(connection, value, name)
        owner = values.get("owner_organisation_id", action["owner_organisation_id"])
        if "owner_user_id" in changes:
            values["owner_user_id"] = _check_owner_user(connection, changes["owner_user_id"],
                                                        owner)
        elif owner != action["owner_organisation_id"] and action["owner_user_id"] is not None:
            # the named person belongs to the old organisation: handing over clears them
            values["owner_user_id"] = None
        diff = {k: {"before": _json_value(action[k]), "after": _json_value(v)}
                for k, v in values.items() if action[k] != v}
        if diff:
            connection.execute(ACTIONS.update().where(ACTIONS.c.id == action_id)
                               .values(**values, updated_at=now))
            connection.execute(RISKS.update().where(RISKS.c.id == row["id"])
                               .values(updated_at=now))
            _history(connection, principal, row["id"], "action_updated", diff, now,
                     action_id=action_id)
            audit.record(connection, principal, "risk.action.update",
                         target_type="risk_action", target_id=action_id,
                         details={"risk_id": row["id"], "fields": sorted(diff)})
        return _action_out(connection.execute(select(ACTIONS).where(ACTIONS.c.id == action_id)
                                              ).mappings().one())


def add_comment(engine: Engine, principal: Principal, risk_id: int, body: Any
                ) -> dict[str, Any]:
    """Comment on a risk the caller sees in full (any organisation, with ``risks:write``)."""
    require(principal, "risks:write")
    body = _clean_text(body, "body", max_length=MAX_COMMENT)
    now = datetime.now(UTC)
    with write_transaction(engine) as connection:
        row = _load(connection, risk_id, principal)
        _require_full(principal, row)
        comment_id = connection.execute(COMMENTS.insert().values(
            risk_id=row["id"], user_id=_actor_user_id(principal), body=body, created_at=now
        ).returning(COMMENTS.c.id)).scalar_one()
        _history(connection, principal, row["id"], "comment_added",
                 {"comment": {"before": None, "after": body}}, now, comment_id=comment_id)
        audit.record(connection, principal, "risk.comment.create", target_type="risk_comment",
                     target_id=comment_id, details={"risk_id": row["id"]})
        return _comment_out(connection.execute(
            select(COMMENTS, USERS.c.name.label("author"))
            .select_from(COMMENTS.outerjoin(USERS, USERS.c.id == COMMENTS.c.user_id))
            .where(COMMENTS.c.id == comment_id)).mappings().one())


__all__ = ["ACTION_STATUSES", "EVIDENCE_TYPES", "LEVELS", "SHARING", "STATUSES",
           "THREAT_TYPES", "add_action", "add_comment", "create_risk", "get_risk", "level_for",
           "list_risks", "risk_history", "risk_matrix", "score_and_level", "update_action",
           "update_risk"]
