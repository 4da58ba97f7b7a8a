"""``urbansec demo``: the demo accounts (idempotent, on SQLite and PostgreSQL) and the dashboard
it serves afterwards, with the address and the logins printed before serving."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from typer.testing import CliRunner

from urbansec.cli import app
from urbansec.config import get_settings
from urbansec.services import identity
from urbansec.services.demo import DEMO_ACCOUNTS, ensure_demo_accounts

runner = CliRunner()

# the logins the dashboard contract and the e2e tests rely on
CONTRACT_LOGINS = {
    "analyst@demo.urbansec.invalid": ("demo-analyst-2017", "analyst"),
    "admin@demo.urbansec.invalid": ("demo-admin-2017", "admin"),
    "partner@demo.urbansec.invalid": ("demo-partner-2017", "partner"),
}


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """argon2id at minimal cost: the production parameters take ~0.4 s per hash here."""
    monkeypatch.setattr(identity, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024,
                                                            parallelism=1))
    identity._dummy_hash.cache_clear()
    yield
    identity._dummy_hash.cache_clear()


def test_demo_accounts_match_the_contract() -> None:
    assert {a.email: (a.password, a.role) for a in DEMO_ACCOUNTS} == CONTRACT_LOGINS


def test_demo_accounts_are_created_once_and_sign_in(db: Engine) -> None:
    first = ensure_demo_accounts(db)
    assert first["organisation"]["name"] == "Demo city"
    assert [a["created"] for a in first["accounts"]] == [True, True, True]
    second = ensure_demo_accounts(db)
    assert second["organisation"] == first["organisation"]
    assert [a["created"] for a in second["accounts"]] == [False, False, False]
    users = identity.list_users(db)
    assert sorted(u["email"] for u in users) == sorted(CONTRACT_LOGINS)
    assert {u["organisation_id"] for u in users} == {first["organisation"]["id"]}
    assert len(identity.list_organisations(db)) == 1
    for email, (password, role) in CONTRACT_LOGINS.items():
        tokens = identity.issue_tokens(db, email, password)
        principal = identity.principal_from_token(db, tokens["access_token"])
        assert principal.role == role


def test_an_existing_account_is_left_alone(db: Engine) -> None:
    org = identity.create_organisation(db, "demo-city", "Demo city", "city")
    identity.create_user(db, org, "admin@demo.urbansec.invalid", "Someone", "a-changed-password",
                         "admin")
    result = ensure_demo_accounts(db)
    assert [a["created"] for a in result["accounts"]] == [True, False, True]
    # the password someone chose still works; the published one does not replace it
    assert identity.issue_tokens(db, "admin@demo.urbansec.invalid", "a-changed-password")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def demo_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    port = _free_port()
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    monkeypatch.setenv("URBANSEC_DATABASE_URL", url)
    monkeypatch.setenv("URBANSEC_PORT", str(port))
    get_settings.cache_clear()
    served: list[dict[str, Any]] = []

    def fake_run(asgi_app: Any, **options: Any) -> None:
        # stands in for uvicorn.run, which would serve until Ctrl+C
        served.append({"app": asgi_app, **options})

    import uvicorn

    monkeypatch.setattr(uvicorn, "run", fake_run)
    yield {"port": port, "url": url, "out": tmp_path / "out", "served": served}
    get_settings.cache_clear()


def test_demo_prints_the_address_and_logins_then_serves_the_dashboard(
    demo_env: dict[str, Any],
) -> None:
    result = runner.invoke(app, ["demo", "--out", str(demo_env["out"])])
    assert result.exit_code == 0, (result.output, result.exception)
    address = f"http://127.0.0.1:{demo_env['port']}/"
    assert address in result.output
    for email, (password, role) in CONTRACT_LOGINS.items():
        line = next(line for line in result.output.splitlines() if email in line)
        assert password in line and role in line
    (served,) = demo_env["served"]
    assert (served["host"], served["port"]) == ("127.0.0.1", demo_env["port"])
    # the app served is the dashboard over the demo database: the analyst signs in
    client = TestClient(served["app"])
    assert client.get("/static/js/core.js").status_code == 200
    tokens = client.post("/api/v1/auth/token", json={
        "email": "analyst@demo.urbansec.invalid", "password": "demo-analyst-2017"}).json()
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.json()["role"] == "analyst"
    assert me.json()["organisation"]["name"] == "Demo city"
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert client.get("/api/v1/incidents/count", headers=bearer).json()["total"] == 30438

    # a second run adds nothing and, with --no-serve, returns instead of serving
    again = runner.invoke(app, ["demo", "--out", str(demo_env["out"]), "--no-serve"])
    assert again.exit_code == 0, (again.output, again.exception)
    assert len(demo_env["served"]) == 1
    assert "0 new" in again.output
    assert f"urbansec serve`, then open {address}" in again.output
    assert "analyst@demo.urbansec.invalid" in again.output


def test_demo_refuses_a_busy_port_before_the_work(demo_env: dict[str, Any]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", demo_env["port"]))
        busy.listen()
        result = runner.invoke(app, ["demo", "--out", str(demo_env["out"])])
    assert result.exit_code == 2, result.output
    assert f"127.0.0.1:{demo_env['port']}" in result.output
    assert "URBANSEC_PORT" in result.output
    assert not demo_env["out"].exists()  # nothing was imported or written
    assert demo_env["served"] == []
