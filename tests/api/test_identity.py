"""Identity through HTTP: sign-in, tokens, API keys, admin routes and their audit entries."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from argon2 import PasswordHasher, Type
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, update

from urbansec.api.app import create_app
from urbansec.config import Settings
from urbansec.errors import AuthenticationError, ConflictError, UsageError
from urbansec.services import audit, identity
from urbansec.store.collaboration import ApiKey, AuthToken, User

PASSWORD = "correct horse battery"
PRODUCTION_HASHER = identity._hasher


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2id at minimal cost: the production parameters take ~0.4 s per hash here."""
    monkeypatch.setattr(identity, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024,
                                                            parallelism=1))
    identity._dummy_hash.cache_clear()


@pytest.fixture
def client(db: Engine) -> TestClient:
    return TestClient(create_app(Settings(), db))


@pytest.fixture
def people(db: Engine) -> dict[str, Any]:
    org = identity.create_organisation(db, "city", "City of Example", "city")
    police = identity.create_organisation(db, "police-18", "Police district 18", "police")
    ids = {role: identity.create_user(db, org, f"{role}@example.org", role.title(), PASSWORD,
                                      role)
           for role in ("admin", "analyst", "viewer")}
    return {"org": org, "police": police, **ids}


def login(client: TestClient, email: str, password: str = PASSWORD) -> dict[str, Any]:
    response = client.post("/api/v1/auth/token", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return response.json()


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def actions(db: Engine, action: str) -> list[dict[str, Any]]:
    return audit.entries(db, limit=1000, action=action)


# --- sign-in ----------------------------------------------------------------------------------


def test_login_json_and_me(client: TestClient, db: Engine, people: dict[str, Any]) -> None:
    tokens = login(client, "Analyst@Example.org ")  # e-mail is case- and space-insensitive
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == 30 * 60
    assert tokens["access_token"] != tokens["refresh_token"]
    me = client.get("/api/v1/me", headers=bearer(tokens))
    assert me.status_code == 200, me.text
    body = me.json()
    assert (body["kind"], body["id"], body["role"]) == ("user", people["analyst"], "analyst")
    assert body["email"] == "analyst@example.org"
    assert body["organisation"]["key"] == "city"
    assert "incidents:read" in body["permissions"]
    assert "audit:read" not in body["permissions"]
    # only the hash of a token is stored
    with db.connect() as connection:
        stored = connection.execute(select(AuthToken.token_hash)).scalars().all()
    assert tokens["access_token"] not in stored
    assert hashlib.sha256(tokens["access_token"].encode()).hexdigest() in stored
    entry = actions(db, "auth.login")[0]
    assert entry["actor"] == f"user:{people['analyst']}"
    assert entry["details"] == {"email": "analyst@example.org"}


def test_login_oauth2_form_for_docs(client: TestClient, people: dict[str, Any]) -> None:
    response = client.post("/api/v1/auth/token", data={
        "grant_type": "password", "username": "viewer@example.org", "password": PASSWORD})
    assert response.status_code == 200, response.text
    assert client.get("/api/v1/me", headers=bearer(response.json())).json()["role"] == "viewer"


def test_login_failures_are_401_and_audited_without_password(
        client: TestClient, db: Engine, people: dict[str, Any]) -> None:
    wrong = client.post("/api/v1/auth/token",
                        json={"email": "admin@example.org", "password": "not the password"})
    unknown = client.post("/api/v1/auth/token",
                          json={"email": "nobody@example.org", "password": PASSWORD})
    assert wrong.status_code == unknown.status_code == 401
    # the same message: the response does not reveal which accounts exist
    assert wrong.json()["error"]["message"] == unknown.json()["error"]["message"]
    assert wrong.json()["error"]["code"] == "unauthenticated"
    assert wrong.headers["www-authenticate"] == "Bearer"
    failed = actions(db, "auth.login_failed")
    assert [e["details"]["email"] for e in failed] == ["nobody@example.org",
                                                       "admin@example.org"]
    assert [e["details"]["reason"] for e in failed] == ["unknown e-mail", "wrong password"]
    assert failed[1]["target_id"] == str(people["admin"])
    text = json.dumps(audit.entries(db, limit=1000))
    assert "not the password" not in text and PASSWORD not in text


@pytest.mark.parametrize("body", [{}, {"email": "a@b.c"}, {"email": 5, "password": []},
                                  ["a", "b"], "text", None])
def test_login_malformed_is_422(client: TestClient, body: Any) -> None:
    response = client.post("/api/v1/auth/token", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_request"


def test_login_not_json_is_422(client: TestClient) -> None:
    response = client.post("/api/v1/auth/token", content=b"\xff{",
                           headers={"content-type": "application/json"})
    assert response.status_code == 422


def test_inactive_user_is_refused_and_tokens_revoked(
        client: TestClient, db: Engine, people: dict[str, Any]) -> None:
    tokens = login(client, "viewer@example.org")
    identity.update_user(db, people["viewer"], active=False)
    assert client.get("/api/v1/me", headers=bearer(tokens)).status_code == 401
    response = client.post("/api/v1/auth/token",
                           json={"email": "viewer@example.org", "password": PASSWORD})
    assert response.status_code == 401
    assert actions(db, "auth.login_failed")[0]["details"]["reason"] == "inactive user"
    assert client.post("/api/v1/auth/refresh",
                       json={"refresh_token": tokens["refresh_token"]}).status_code == 401


def test_refresh_rotates(client: TestClient, people: dict[str, Any]) -> None:
    first = login(client, "analyst@example.org")
    response = client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert response.status_code == 200, response.text
    second = response.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert client.get("/api/v1/me", headers=bearer(second)).status_code == 200
    # the refresh token used is spent
    again = client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert again.status_code == 401
    # an access token is not a refresh token, nor the other way round
    assert client.post("/api/v1/auth/refresh",
                       json={"refresh_token": second["access_token"]}).status_code == 401
    assert client.get("/api/v1/me", headers={
        "Authorization": f"Bearer {second['refresh_token']}"}).status_code == 401


def test_logout_revokes(client: TestClient, db: Engine, people: dict[str, Any]) -> None:
    tokens = login(client, "analyst@example.org")
    other = login(client, "analyst@example.org")
    response = client.post("/api/v1/auth/logout", headers=bearer(tokens),
                           json={"refresh_token": tokens["refresh_token"]})
    assert response.status_code == 200, response.text
    assert response.json() == {"revoked": 2}
    assert client.get("/api/v1/me", headers=bearer(tokens)).status_code == 401
    assert client.post("/api/v1/auth/refresh",
                       json={"refresh_token": tokens["refresh_token"]}).status_code == 401
    # the other session lives on until "everywhere"
    assert client.get("/api/v1/me", headers=bearer(other)).status_code == 200
    everywhere = client.post("/api/v1/auth/logout", headers=bearer(other),
                             json={"everywhere": True})
    assert everywhere.json() == {"revoked": 2}
    assert client.get("/api/v1/me", headers=bearer(other)).status_code == 401
    assert len(actions(db, "auth.logout")) == 2
    assert client.post("/api/v1/auth/logout").status_code == 401


def test_expired_and_unknown_tokens_are_401_not_anonymous(
        client: TestClient, db: Engine, people: dict[str, Any]) -> None:
    tokens = login(client, "analyst@example.org")
    digest = hashlib.sha256(tokens["access_token"].encode()).hexdigest()
    with db.begin() as connection:
        connection.execute(update(AuthToken).where(AuthToken.token_hash == digest).values(
            expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    response = client.get("/api/v1/me", headers=bearer(tokens))
    assert response.status_code == 401
    assert "expired" in response.json()["error"]["message"]
    # a public route with bad credentials is still a 401: never silently anonymous
    assert client.get("/api/v1/health").status_code == 200
    assert client.get("/api/v1/me", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/api/v1/me", headers={"Authorization": "Basic eDp5"}).status_code == 401
    assert client.get("/api/v1/me").status_code == 401


def test_access_token_lifetime_follows_settings(db: Engine, people: dict[str, Any]) -> None:
    settings = Settings(access_token_minutes=5, refresh_token_days=2)
    before = datetime.now(UTC)
    tokens = identity.issue_tokens(db, "admin@example.org", PASSWORD, settings=settings)
    assert tokens["expires_in"] == 300
    with db.connect() as connection:
        rows = {r.kind: r.expires_at for r in connection.execute(
            select(AuthToken.kind, AuthToken.expires_at))}
    assert timedelta(minutes=5) <= rows["access"] - before < timedelta(minutes=5, seconds=30)
    assert timedelta(days=2) <= rows["refresh"] - before < timedelta(days=2, seconds=30)


def test_password_hash_is_argon2id_and_policy(db: Engine, people: dict[str, Any]) -> None:
    with db.connect() as connection:
        stored = connection.execute(select(User.password_hash).where(
            User.id == people["admin"])).scalar_one()
    assert stored.startswith("$argon2id$")
    with pytest.raises(UsageError, match="12 characters"):
        identity.create_user(db, people["org"], "short@example.org", "Short", "elevenchars",
                             "viewer")
    with pytest.raises(UsageError, match="unknown role"):
        identity.create_user(db, people["org"], "x@example.org", "X", PASSWORD, "root")
    with pytest.raises(ConflictError):
        identity.create_user(db, people["org"], "ADMIN@example.org", "Again", PASSWORD,
                             "viewer")
    with pytest.raises(ConflictError):
        identity.create_organisation(db, "city", "Again")
    with pytest.raises(UsageError):
        identity.create_organisation(db, "Not A Key", "Bad")


# --- API keys ---------------------------------------------------------------------------------


def test_api_key_lifecycle(client: TestClient, db: Engine, people: dict[str, Any]) -> None:
    admin = bearer(login(client, "admin@example.org"))
    created = client.post("/api/v1/api-keys", headers=admin, json={
        "organisation_id": people["police"], "name": "records system", "role": "partner"})
    assert created.status_code == 201, created.text
    body = created.json()
    key = body["key"]
    assert key.startswith(f"usk_{body['prefix']}_")
    assert body["last_used_at"] is None and body["revoked_at"] is None
    with db.connect() as connection:
        stored = connection.execute(select(ApiKey.key_hash)).scalar_one()
    assert stored == hashlib.sha256(key.encode()).hexdigest()

    me = client.get("/api/v1/me", headers={"X-API-Key": key})
    assert me.status_code == 200, me.text
    assert (me.json()["kind"], me.json()["role"]) == ("apikey", "partner")
    assert me.json()["organisation"]["key"] == "police-18"
    listed = client.get("/api/v1/api-keys", headers=admin).json()
    assert "key" not in listed[0]
    assert listed[0]["last_used_at"] is not None
    # a partner key may not administer
    assert client.get("/api/v1/users", headers={"X-API-Key": key}).status_code == 403

    revoked = client.delete(f"/api/v1/api-keys/{body['id']}", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    response = client.get("/api/v1/me", headers={"X-API-Key": key})
    assert response.status_code == 401
    assert "revoked" in response.json()["error"]["message"]
    assert client.delete("/api/v1/api-keys/999", headers=admin).status_code == 404
    assert [e["target_id"] for e in actions(db, "apikey.revoke")] == [str(body["id"])]


def test_api_key_expiry_and_forgery(client: TestClient, db: Engine,
                                    people: dict[str, Any]) -> None:
    key_id, key = identity.create_api_key(db, people["org"], "feed", "viewer",
                                          expires_at=datetime.now(UTC) + timedelta(hours=1))
    assert client.get("/api/v1/me", headers={"X-API-Key": key}).status_code == 200
    with db.begin() as connection:
        connection.execute(update(ApiKey).where(ApiKey.id == key_id).values(
            expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    assert client.get("/api/v1/me", headers={"X-API-Key": key}).status_code == 401
    _, prefix, secret = key.split("_", 2)
    for forged in (f"usk_{prefix}_{secret[:-1]}x", "usk_x", "garbage", f"usk_00000000_{secret}"):
        assert client.get("/api/v1/me", headers={"X-API-Key": forged}).status_code == 401
    with pytest.raises(AuthenticationError):
        identity.principal_from_api_key(db, key)
    with pytest.raises(UsageError):
        identity.create_api_key(db, people["org"], "old", "viewer",
                                expires_at=datetime.now(UTC) - timedelta(days=1))


# --- admin routes -----------------------------------------------------------------------------


def test_admin_creates_organisation_user_and_patches(
        client: TestClient, db: Engine, people: dict[str, Any]) -> None:
    admin = bearer(login(client, "admin@example.org"))
    org = client.post("/api/v1/organisations", headers=admin,
                      json={"key": "ngo-safe", "name": "Safe Streets", "kind": "ngo"})
    assert org.status_code == 201, org.text
    assert org.json()["key"] == "ngo-safe"
    assert client.post("/api/v1/organisations", headers=admin,
                       json={"key": "ngo-safe", "name": "Again"}).status_code == 409
    assert client.post("/api/v1/organisations", headers=admin,
                       json={"key": "Bad Key", "name": "x"}).status_code == 422
    assert [o["key"] for o in client.get("/api/v1/organisations", headers=admin).json()] == [
        "city", "ngo-safe", "police-18"]

    user = client.post("/api/v1/users", headers=admin, json={
        "organisation_id": org.json()["id"], "email": "Worker@Safe.example", "name": "W",
        "password": PASSWORD, "role": "partner"})
    assert user.status_code == 201, user.text
    assert user.json()["email"] == "worker@safe.example"
    assert "password" not in user.text and "password_hash" not in user.text
    assert client.post("/api/v1/users", headers=admin, json={
        "organisation_id": 9999, "email": "x@y.z", "name": "X", "password": PASSWORD,
        "role": "viewer"}).status_code == 404
    assert client.post("/api/v1/users", headers=admin, json={
        "organisation_id": 1, "email": "x@y.z", "name": "X", "password": "short",
        "role": "viewer"}).status_code == 422

    worker = login(client, "worker@safe.example")
    patched = client.patch(f"/api/v1/users/{user.json()['id']}", headers=admin,
                           json={"role": "viewer"})
    assert patched.status_code == 200 and patched.json()["role"] == "viewer"
    # a role change signs the user out (the old token carried the old role)
    assert client.get("/api/v1/me", headers=bearer(worker)).status_code == 401
    assert login(client, "worker@safe.example")
    assert client.patch("/api/v1/users/9999", headers=admin,
                        json={"active": False}).status_code == 404
    # an admin cannot lock themselves out
    assert client.patch(f"/api/v1/users/{people['admin']}", headers=admin,
                        json={"active": False}).status_code == 409
    only_org = client.get(f"/api/v1/users?organisation_id={org.json()['id']}",
                          headers=admin).json()
    assert [u["email"] for u in only_org] == ["worker@safe.example"]

    update_entry = actions(db, "user.update")[0]
    assert update_entry["actor"] == f"user:{people['admin']}"
    assert update_entry["details"] == {"changes": {"role": "viewer"},
                                       "before": {"role": "partner"}}
    assert actions(db, "organisation.create")[0]["details"]["key"] == "ngo-safe"
    assert actions(db, "user.create")[0]["details"]["email"] == "worker@safe.example"
    assert audit.verify(db)["ok"]


def test_audit_routes(client: TestClient, db: Engine, people: dict[str, Any]) -> None:
    admin = bearer(login(client, "admin@example.org"))
    for _ in range(3):
        client.post("/api/v1/auth/token", json={"email": "x@example.org", "password": "p"})
    page = client.get("/api/v1/audit?limit=2&action=auth.login_failed", headers=admin)
    assert page.status_code == 200, page.text
    body = page.json()
    assert len(body["items"]) == 2 and body["next_offset"] == 2
    last = client.get("/api/v1/audit?limit=2&offset=2&action=auth.login_failed",
                      headers=admin).json()
    assert len(last["items"]) == 1 and last["next_offset"] is None
    ids = [e["id"] for e in body["items"] + last["items"]]
    assert ids == sorted(ids, reverse=True)
    # reading the trail is itself recorded
    assert len(actions(db, "audit.read")) == 2
    verified = client.get("/api/v1/audit/verify", headers=admin).json()
    assert verified["ok"] is True and verified["problems"] == []
    assert verified["entries"] == len(audit.entries(db, limit=1000))
    assert client.get("/api/v1/audit?limit=0", headers=admin).status_code == 422
    analyst = bearer(login(client, "analyst@example.org"))
    assert client.get("/api/v1/audit", headers=analyst).status_code == 403
    assert client.get("/api/v1/audit/verify").status_code == 401


def test_production_hasher_is_argon2id_and_old_hashes_are_upgraded(
        db: Engine, people: dict[str, Any]) -> None:
    assert PRODUCTION_HASHER.type is Type.ID
    assert PRODUCTION_HASHER.memory_cost >= 19 * 1024  # OWASP's argon2id minimum
    with db.connect() as connection:
        stored = connection.execute(select(User.password_hash).where(
            User.id == people["admin"])).scalar_one()
    # a hash made with weaker parameters is replaced at the next sign-in
    identity._hasher = PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1)
    identity.issue_tokens(db, "admin@example.org", PASSWORD)
    with db.connect() as connection:
        upgraded = connection.execute(select(User.password_hash).where(
            User.id == people["admin"])).scalar_one()
    assert upgraded != stored and "m=2048,t=2" in upgraded
    identity.issue_tokens(db, "admin@example.org", PASSWORD)


def test_failed_sign_ins_are_throttled_per_account_and_address(
        db: Engine, people: dict[str, Any]) -> None:
    settings = Settings(login_failure_limit=3, login_failure_address_limit=5,
                        login_failure_window_seconds=600)
    client = TestClient(create_app(settings, db))
    for _ in range(3):
        response = client.post("/api/v1/auth/token",
                               json={"email": "admin@example.org", "password": "guess"})
        assert response.status_code == 401
    # the right password no longer helps for this account: the guesser cannot tell either
    response = client.post("/api/v1/auth/token",
                           json={"email": "admin@example.org", "password": PASSWORD})
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(response.headers["retry-after"]) <= 600
    assert actions(db, "auth.login_throttled")[0]["details"]["email"] == "admin@example.org"
    # another account from the same address still signs in, until the address limit
    assert client.post("/api/v1/auth/token", json={
        "email": "analyst@example.org", "password": PASSWORD}).status_code == 200
    for _ in range(2):
        assert client.post("/api/v1/auth/token", json={
            "email": "nobody@example.org", "password": "guess"}).status_code == 401
    assert client.post("/api/v1/auth/token", json={
        "email": "analyst@example.org", "password": PASSWORD}).status_code == 429
    # a successful sign-in is never counted as a failure
    assert len(actions(db, "auth.login_failed")) == 5
