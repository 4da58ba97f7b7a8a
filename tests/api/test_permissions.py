"""THE role x route table: every route of the app, called as each role, is refused (401/403)
exactly when ``urbansec.services.access.can`` says so.

Routes are discovered from ``create_app().routes``, so routes added later are covered without
touching this file; the permission a route needs is read from its ``allowed(...)`` dependency.
A route without one must be listed below as public or as "any signed-in caller". The explicit
tables at the top pin the policy itself: changing who may do what must change this file too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import fastapi.routing
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from urbansec.api.app import create_app
from urbansec.config import Settings
from urbansec.services import identity
from urbansec.services.access import ANONYMOUS, PERMISSIONS, PUBLIC, ROLES, Principal, can

PASSWORD = "permission table password"
CALLERS = ("anonymous", "viewer", "partner", "analyst", "admin")

#: the policy, written out: permission -> callers that hold it (anonymous included)
EXPECTED_POLICY: dict[str, set[str]] = {
    "incidents:read": {"partner", "analyst", "admin"},
    "aggregates:read": {"anonymous", "viewer", "partner", "analyst", "admin"},
    "analysis:run": {"partner", "analyst", "admin"},
    "forecast:run": {"partner", "analyst", "admin"},
    "imports:read": {"analyst", "admin"},
    "imports:write": {"analyst", "admin"},
    "reports:submit": {"anonymous", "viewer", "partner", "analyst", "admin"},
    "reports:read": {"partner", "analyst", "admin"},
    "reports:read_restricted": {"analyst", "admin"},
    "reports:moderate": {"analyst", "admin"},
    "risks:read": {"anonymous", "viewer", "partner", "analyst", "admin"},
    "risks:write": {"partner", "analyst", "admin"},
    "sensors:read": {"partner", "analyst", "admin"},
    "sensors:write": {"partner", "analyst", "admin"},
    "organisations:manage": {"admin"},
    "users:manage": {"admin"},
    "audit:read": {"admin"},
    "privacy:purge": {"admin"},
}

#: key routes and the permission each must check (a route moved to a weaker permission fails)
EXPECTED_ROUTES: dict[tuple[str, str], str] = {
    ("GET", "/api/v1/organisations"): "organisations:manage",
    ("POST", "/api/v1/organisations"): "organisations:manage",
    ("GET", "/api/v1/users"): "users:manage",
    ("POST", "/api/v1/users"): "users:manage",
    ("PATCH", "/api/v1/users/{user_id}"): "users:manage",
    ("GET", "/api/v1/api-keys"): "users:manage",
    ("POST", "/api/v1/api-keys"): "users:manage",
    ("DELETE", "/api/v1/api-keys/{key_id}"): "users:manage",
    ("GET", "/api/v1/audit"): "audit:read",
    ("GET", "/api/v1/audit/verify"): "audit:read",
}

#: routes that need no permission at all (signing in cannot require being signed in)
PUBLIC_ROUTES = {
    ("GET", "/api/v1/health"),
    ("POST", "/api/v1/auth/token"),
    ("POST", "/api/v1/auth/refresh"),
}
#: routes for any authenticated caller, whatever the role
SIGNED_IN_ROUTES = {("GET", "/api/v1/me"), ("POST", "/api/v1/auth/logout")}
#: Open311 GeoReport v2 is a public standard interface; its routes may go without allowed()
OPEN311_PREFIX = "/open311/v2"


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(identity, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024,
                                                            parallelism=1))
    identity._dummy_hash.cache_clear()


def _permissions(dependant: Dependant) -> Iterator[str]:
    for sub in dependant.dependencies:
        permission = getattr(sub.call, "permission", None)
        if permission is not None:
            yield permission
        yield from _permissions(sub)


def _api_routes(app: FastAPI) -> Iterator[Any]:
    """Every API route with its effective path and dependencies. FastAPI >= 0.16x keeps
    included routers as ``_IncludedRouter`` entries of ``app.routes``; its public
    ``iter_route_contexts`` flattens them (with the router prefixes and dependencies)."""
    flatten = getattr(fastapi.routing, "iter_route_contexts", None)
    if flatten is None:  # older FastAPI: include_router copies the routes into app.routes
        yield from (r for r in app.routes if isinstance(r, APIRoute))
        return
    for context in flatten(app.routes):
        if isinstance(context.original_route, APIRoute):
            yield context


def routes() -> list[tuple[str, str, set[str]]]:
    """(method, path, permissions) for every API route of the app."""
    found = []
    for route in _api_routes(create_app(Settings())):
        for method in sorted(set(route.methods) - {"HEAD", "OPTIONS"}):
            found.append((method, route.path, set(_permissions(route.dependant))))
    assert len(found) > 10, "route discovery found (almost) nothing"
    # logging out revokes the caller's token: call it last
    return sorted(found, key=lambda r: r[1] == "/api/v1/auth/logout")


def _url(path: str) -> str:
    """The path with placeholder parameters that match any converter: 1, or json for a
    format."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1).split(":")[0]
        return "json" if name in ("format", "fmt") else "1"

    return re.sub(r"\{([^}]+)\}", value, path)


def _call(client: TestClient, method: str, path: str, headers: dict[str, str]) -> int:
    kwargs: dict[str, Any] = {"headers": headers}
    if method in ("POST", "PUT", "PATCH"):
        kwargs["json"] = {}
    return client.request(method, _url(path), **kwargs).status_code


@pytest.fixture
def callers(db: Engine) -> tuple[TestClient, dict[str, dict[str, str]], dict[str, Principal]]:
    client = TestClient(create_app(Settings(), db))
    org = identity.create_organisation(db, "city", "City", "city")
    headers: dict[str, dict[str, str]] = {"anonymous": {}}
    principals: dict[str, Principal] = {"anonymous": ANONYMOUS}
    for role in ROLES:
        user_id = identity.create_user(db, org, f"{role}@example.org", role, PASSWORD, role)
        tokens = identity.issue_tokens(db, f"{role}@example.org", PASSWORD)
        headers[role] = {"Authorization": f"Bearer {tokens['access_token']}"}
        principals[role] = Principal("user", user_id, org, role, role)
    return client, headers, principals


def test_policy_is_the_written_one() -> None:
    assert set(PERMISSIONS) == set(EXPECTED_POLICY)
    for permission, holders in EXPECTED_POLICY.items():
        actual = {role for role in ROLES if role in PERMISSIONS[permission]}
        if permission in PUBLIC:
            actual.add("anonymous")
        assert actual == holders, permission


def test_every_route_declares_its_permission() -> None:
    problems = []
    seen = set()
    for method, path, permissions in routes():
        seen.add((method, path))
        if len(permissions) > 1:
            problems.append(f"{method} {path}: several permissions {sorted(permissions)}")
        for permission in permissions:
            if permission not in PERMISSIONS:
                problems.append(f"{method} {path}: unknown permission {permission}")
        if not permissions and (method, path) not in PUBLIC_ROUTES | SIGNED_IN_ROUTES \
                and not path.startswith(OPEN311_PREFIX):
            problems.append(f"{method} {path}: no allowed(...) dependency")
        expected = EXPECTED_ROUTES.get((method, path))
        if expected is not None and permissions != {expected}:
            problems.append(f"{method} {path}: checks {sorted(permissions)}, expected "
                            f"{expected}")
    missing = set(EXPECTED_ROUTES) - seen
    assert not missing, f"routes gone: {sorted(missing)}"
    assert not problems, "\n".join(problems)


def test_role_by_route_table(callers: tuple[TestClient, dict[str, dict[str, str]],
                                            dict[str, Principal]]) -> None:
    client, headers, principals = callers
    failures = []
    table = []
    for method, path, permissions in routes():
        permission = next(iter(permissions), None)
        row = []
        for caller in CALLERS:
            if permission is not None:
                allowed = can(principals[caller], permission)
            elif (method, path) in SIGNED_IN_ROUTES:
                allowed = caller != "anonymous"
            else:
                allowed = True
            status = _call(client, method, path, headers[caller])
            row.append(status)
            if allowed and status in (401, 403):
                failures.append(f"{method} {path} as {caller}: {status}, but allowed")
            elif not allowed:
                wanted = 401 if caller == "anonymous" else 403
                if status != wanted:
                    failures.append(f"{method} {path} as {caller}: {status}, expected "
                                    f"{wanted}")
            if status >= 500:
                failures.append(f"{method} {path} as {caller}: server error {status}")
        table.append(f"{method:6} {path:45} {permission or '-':24} {row}")
    assert not failures, "\n".join([*failures, "", *table])


def test_api_keys_follow_their_role(db: Engine) -> None:
    """A key is checked by the same table: an analyst key is not an admin."""
    client = TestClient(create_app(Settings(), db))
    org = identity.create_organisation(db, "police", "Police", "police")
    _, analyst_key = identity.create_api_key(db, org, "analyst feed", "analyst")
    _, admin_key = identity.create_api_key(db, org, "admin tool", "admin")
    assert client.get("/api/v1/audit", headers={"X-API-Key": analyst_key}).status_code == 403
    assert client.get("/api/v1/users", headers={"X-API-Key": analyst_key}).status_code == 403
    assert client.get("/api/v1/audit", headers={"X-API-Key": admin_key}).status_code == 200
    assert client.get("/api/v1/users", headers={"X-API-Key": admin_key}).status_code == 200


def test_explicit_table_for_key_routes(
        callers: tuple[TestClient, dict[str, dict[str, str]], dict[str, Principal]]) -> None:
    """Written out by hand, independent of ``can``: the status each caller gets."""
    client, headers, _ = callers
    expected = {
        ("GET", "/api/v1/audit"): (401, 403, 403, 403, 200),
        ("GET", "/api/v1/audit/verify"): (401, 403, 403, 403, 200),
        ("GET", "/api/v1/users"): (401, 403, 403, 403, 200),
        ("GET", "/api/v1/organisations"): (401, 403, 403, 403, 200),
        ("GET", "/api/v1/api-keys"): (401, 403, 403, 403, 200),
        ("POST", "/api/v1/users"): (401, 403, 403, 403, 422),
        ("PATCH", "/api/v1/users/99"): (401, 403, 403, 403, 404),
        ("DELETE", "/api/v1/api-keys/99"): (401, 403, 403, 403, 404),
        ("GET", "/api/v1/me"): (401, 200, 200, 200, 200),
        ("GET", "/api/v1/health"): (200, 200, 200, 200, 200),
    }
    got = {}
    for (method, path), _statuses in expected.items():
        body = {"json": {}} if method in ("POST", "PATCH") else {}
        got[(method, path)] = tuple(
            client.request(method, path, headers=headers[c], **body).status_code
            for c in CALLERS)
    assert got == expected
