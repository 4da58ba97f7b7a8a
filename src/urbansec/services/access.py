"""Who may do what: roles, permissions and the caller (``Principal``), decided in one place.

Every API route and every service that changes or reveals restricted data asks ``require``;
the permission table below is the whole policy, and ``tests/api/test_permissions.py`` checks
each role against each route.
"""

from __future__ import annotations

from dataclasses import dataclass

from urbansec.errors import AuthenticationError, PermissionDeniedError

ROLES = ("admin", "analyst", "partner", "viewer")
ALL = frozenset(ROLES)
STAFF = frozenset({"admin", "analyst"})
PARTNERS = frozenset({"admin", "analyst", "partner"})

#: permission -> roles that hold it. Anonymous callers hold only what ``PUBLIC`` lists.
PERMISSIONS: dict[str, frozenset[str]] = {
    # evidence
    "incidents:read": PARTNERS,  # individual incidents: never viewers, never the public
    "aggregates:read": ALL,  # counts, hotspots, patterns: k-suppressed for viewers
    "analysis:run": PARTNERS,  # hotspots/patterns/near-repeat on individual-level detail
    "forecast:run": PARTNERS,
    "imports:read": STAFF,
    "imports:write": STAFF,
    # citizen reports
    "reports:submit": ALL,
    "reports:read": PARTNERS,  # public fields of individual reports
    "reports:read_restricted": STAFF,  # contact details and the unredacted text
    "reports:moderate": STAFF,
    # risk register
    "risks:read": ALL,  # further limited by each risk's sharing level
    "risks:write": PARTNERS,
    # sensor feeds (OGC SensorThings API): things, datastreams, observations, zones
    "sensors:read": PARTNERS,
    "sensors:write": PARTNERS,
    # administration
    "organisations:manage": frozenset({"admin"}),
    "users:manage": frozenset({"admin"}),
    "audit:read": frozenset({"admin"}),
    "privacy:purge": frozenset({"admin"}),
}
PUBLIC = frozenset({"reports:submit", "aggregates:read", "risks:read"})


@dataclass(frozen=True)
class Principal:
    """The caller: a signed-in user, an organisation's API key, or anonymous."""

    kind: str  # user | apikey | anonymous | system
    id: int | None
    organisation_id: int | None
    role: str | None
    name: str = ""

    @property
    def actor(self) -> str:
        """How the audit trail names the caller."""
        if self.kind in ("anonymous", "system"):
            return self.kind if not self.name else f"{self.kind}:{self.name}"
        return f"{self.kind}:{self.id}"

    @property
    def anonymous(self) -> bool:
        return self.kind == "anonymous"


ANONYMOUS = Principal(kind="anonymous", id=None, organisation_id=None, role=None)
SYSTEM = Principal(kind="system", id=None, organisation_id=None, role="admin", name="cli")


def can(principal: Principal, permission: str) -> bool:
    if permission not in PERMISSIONS:
        raise KeyError(f"unknown permission {permission!r}")
    if principal.kind == "system":
        return True
    if principal.anonymous or principal.role is None:
        return permission in PUBLIC
    return principal.role in PERMISSIONS[permission]


def require(principal: Principal, permission: str) -> None:
    """Raise 401 for an anonymous caller lacking ``permission``, 403 for a known one."""
    if can(principal, permission):
        return
    if principal.anonymous:
        raise AuthenticationError("sign in (Authorization: Bearer TOKEN, or X-API-Key) to do "
                                  "this")
    raise PermissionDeniedError(f"the {principal.role} role may not do this ({permission})")


def sees_individual_records(principal: Principal) -> bool:
    """Viewers and the public only ever receive aggregates (privacy by default)."""
    return can(principal, "incidents:read")
