"""Tamper detection of the hash-chained audit trail, on SQLite and PostgreSQL, and the CLI's
``urbansec audit verify`` exit codes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import pairwise

import pytest
from sqlalchemy import Engine, delete, func, select, text, update
from typer.testing import CliRunner, Result

import urbansec.cli.admin  # noqa: F401  (registers the orgs/users/apikeys/audit commands)
from urbansec.cli import app
from urbansec.services import audit
from urbansec.services.access import SYSTEM, Principal
from urbansec.store.collaboration import AuditEntry, PendingAuditEntry
from urbansec.store.engine import engine_for, write_transaction

runner = CliRunner()
ALICE = Principal(kind="user", id=7, organisation_id=1, role="analyst", name="Alice")


@pytest.fixture
def trail(db: Engine) -> Iterator[list[int]]:
    """Five entries written through ``audit.record``; yields their ids in order."""
    for i in range(5):
        with write_transaction(db) as connection:
            audit.record(connection, ALICE if i % 2 else SYSTEM, f"test.action{i}",
                         target_type="thing", target_id=i,
                         details={"n": i, "text": "straße ünïcode", "nested": {"k": [1, 2]}})
    with db.connect() as connection:
        yield list(connection.execute(select(AuditEntry.id).order_by(AuditEntry.id)).scalars())


def invoke(engine: Engine, *args: str) -> Result:
    url = engine.url.render_as_string(hide_password=False)
    try:
        return runner.invoke(app, ["--database", url, *args])
    finally:
        engine_for(url).dispose()


def test_untouched_chain_verifies(db: Engine, trail: list[int]) -> None:
    result = audit.verify(db)
    assert result["ok"] is True
    assert result["entries"] == 5 and result["last_id"] == trail[-1]
    assert result["problems"] == []
    with db.connect() as connection:
        rows = connection.execute(select(AuditEntry).order_by(AuditEntry.id)).all()
    # each entry links to the previous one; the first to the genesis hash
    assert rows[0].prev_hash == audit.GENESIS
    assert all(b.prev_hash == a.hash for a, b in pairwise(rows))
    assert result["last_hash"] == rows[-1].hash
    assert rows[1].actor == "user:7" and rows[1].organisation_id == 1
    assert rows[0].actor == "system:cli"


def test_empty_trail_is_ok(db: Engine) -> None:
    assert audit.verify(db) == {"entries": 0, "last_id": None, "last_hash": None, "ok": True,
                                "problems": []}


@pytest.mark.parametrize("column", ["details", "actor", "action", "target_id"])
def test_edited_entry_is_reported_altered(db: Engine, trail: list[int], column: str) -> None:
    values = {"details": {"n": 99, "text": "straße ünïcode", "nested": {"k": [1, 2]}},
              "actor": "user:8", "action": "test.other", "target_id": "x"}
    with db.begin() as connection:
        connection.execute(update(AuditEntry).where(AuditEntry.id == trail[2])
                           .values({column: values[column]}))
    result = audit.verify(db)
    assert result["ok"] is False
    assert result["problems"] == [{"id": trail[2], "problem": "entry altered (hash mismatch)"}]


def test_edited_details_in_raw_sql_is_reported(db: Engine, trail: list[int]) -> None:
    # the way someone with database access would do it, bypassing the ORM
    with db.begin() as connection:
        connection.execute(text("UPDATE audit_log SET details = :d WHERE id = :id"),
                           {"d": json.dumps({"n": 1}), "id": trail[1]})
    problems = audit.verify(db)["problems"]
    assert [p["id"] for p in problems] == [trail[1]]
    assert "altered" in problems[0]["problem"]


def test_rehashed_edit_still_breaks_the_chain(db: Engine, trail: list[int]) -> None:
    """A forger who also recomputes the edited entry's hash breaks the next entry's link."""
    with db.begin() as connection:
        row = connection.execute(select(AuditEntry).where(AuditEntry.id == trail[2])).one()
        details = {"n": 42}
        forged = audit.entry_hash(row.prev_hash, audit._canonical(
            row.at, row.actor, row.organisation_id, row.action, row.target_type,
            row.target_id, details))
        connection.execute(update(AuditEntry).where(AuditEntry.id == trail[2])
                           .values(details=details, hash=forged))
    problems = audit.verify(db)["problems"]
    assert [p["id"] for p in problems] == [trail[3]]
    assert "chain broken" in problems[0]["problem"]


def test_deleted_middle_entry_breaks_the_chain(db: Engine, trail: list[int]) -> None:
    with db.begin() as connection:
        connection.execute(delete(AuditEntry).where(AuditEntry.id == trail[2]))
    result = audit.verify(db)
    assert result["ok"] is False and result["entries"] == 4
    assert result["problems"] == [{"id": trail[3], "problem": "chain broken before this entry "
                                   "(an entry was deleted or reordered)"}]


def test_deleted_first_entry_breaks_the_chain(db: Engine, trail: list[int]) -> None:
    with db.begin() as connection:
        connection.execute(delete(AuditEntry).where(AuditEntry.id == trail[0]))
    assert [p["id"] for p in audit.verify(db)["problems"]] == [trail[1]]


def test_cli_audit_verify_exit_codes(db: Engine, trail: list[int]) -> None:
    ok = invoke(db, "audit", "verify")
    assert ok.exit_code == 0, ok.output
    assert "intact: 5 entries" in ok.stdout
    ok_json = invoke(db, "audit", "verify", "--json")
    assert ok_json.exit_code == 0
    assert json.loads(ok_json.stdout)["ok"] is True

    with db.begin() as connection:
        connection.execute(update(AuditEntry).where(AuditEntry.id == trail[1])
                           .values(details={"n": -1}))
        connection.execute(delete(AuditEntry).where(AuditEntry.id == trail[3]))
    broken = invoke(db, "audit", "verify")
    assert broken.exit_code == 1
    assert "audit trail broken" in broken.stderr
    assert f"entry {trail[1]}: entry altered" in broken.stderr
    assert f"entry {trail[4]}: chain broken" in broken.stderr
    broken_json = invoke(db, "audit", "verify", "--json")
    assert broken_json.exit_code == 1
    payload = json.loads(broken_json.stdout)
    assert payload["ok"] is False
    assert [p["id"] for p in payload["problems"]] == [trail[1], trail[4]]


def test_cli_bootstrap_commands_are_audited(db: Engine, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    from argon2 import PasswordHasher

    from urbansec.services import identity

    monkeypatch.setattr(identity, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024,
                                                            parallelism=1))
    monkeypatch.setenv("URBANSEC_ADMIN_PASSWORD", "bootstrap password 1")
    admin = invoke(db, "users", "create-admin", "--email", "root@city.example", "--name",
                   "Root", "--json")
    assert admin.exit_code == 0, admin.output
    assert json.loads(admin.stdout)["organisation"]["key"] == "city"
    org = invoke(db, "orgs", "add", "police-18", "Police district 18", "--kind", "police")
    assert org.exit_code == 0, org.output
    assert invoke(db, "orgs", "add", "police-18", "Again").exit_code == 1  # conflict
    listed = json.loads(invoke(db, "orgs", "list", "--json").stdout)
    assert [o["key"] for o in listed] == ["city", "police-18"]
    user = invoke(db, "users", "add", "--email", "a@police.example", "--name", "A", "--org",
                  "police-18", "--role", "analyst", "--password", "another password")
    assert user.exit_code == 0, user.output
    bad_role = invoke(db, "users", "add", "--email", "b@police.example", "--name", "B",
                      "--org", "police-18", "--role", "root", "--json")
    assert bad_role.exit_code == 2
    assert "unknown role" in json.loads(bad_role.stdout)["error"]["message"]
    short = invoke(db, "users", "add", "--email", "c@police.example", "--name", "C", "--org",
                   "police-18", "--role", "viewer", "--password", "short")
    assert short.exit_code == 2
    key = invoke(db, "apikeys", "create", "--org", "police-18", "--name", "feed", "--role",
                 "partner", "--json")
    assert key.exit_code == 0, key.output
    plaintext = json.loads(key.stdout)["key"]
    assert identity.principal_from_api_key(db, plaintext).role == "partner"
    assert identity.issue_tokens(db, "root@city.example", "bootstrap password 1")

    actions = [e["action"] for e in reversed(audit.entries(db, limit=100))]
    assert actions == ["organisation.create", "user.create", "organisation.create",
                       "user.create", "apikey.create", "auth.login"]
    assert all(e["actor"] == "system:cli" for e in audit.entries(db, limit=100)
               if e["action"] != "auth.login")
    assert invoke(db, "audit", "verify").exit_code == 0


def test_concurrent_appends_keep_one_chain(db: Engine) -> None:
    """Writers racing on the chain head never fork it (PostgreSQL chains at commit under the
    chain lock; SQLite serialises writers)."""
    from concurrent.futures import ThreadPoolExecutor

    def append(i: int) -> None:
        with write_transaction(db) as connection:
            audit.record(connection, ALICE, "test.race", target_id=i,
                         details={"i": i, "text": "Ελλάδα"})

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(append, range(200)))
    result = audit.verify(db)
    assert result["ok"], result["problems"]
    assert result["entries"] == 200
    with db.connect() as connection:
        targets = connection.execute(select(AuditEntry.target_id)).scalars().all()
        pending = connection.execute(select(func.count()).select_from(PendingAuditEntry))
        assert pending.scalar_one() == 0  # every staged entry was chained and removed
    assert sorted(targets, key=int) == [str(i) for i in range(200)]


def test_entry_is_chained_only_when_its_transaction_commits(db: Engine) -> None:
    class Refused(Exception):
        pass

    with pytest.raises(Refused), write_transaction(db) as connection:
        audit.record(connection, ALICE, "test.rolled_back")
        raise Refused
    with write_transaction(db) as connection:
        for i in range(3):  # several entries of one transaction keep their order
            audit.record(connection, ALICE, f"test.step{i}")
    assert [e["action"] for e in reversed(audit.entries(db))] == [
        "test.step0", "test.step1", "test.step2"]
    assert audit.verify(db)["ok"]
    with db.connect() as connection:
        assert connection.execute(
            select(func.count()).select_from(PendingAuditEntry)).scalar_one() == 0


def test_entries_left_unchained_are_reported(db: Engine, trail: list[int]) -> None:
    """Someone with database access could stop the trail recording (drop or disable the
    trigger that chains staged entries, or insert staged rows that never get chained)."""
    row = {"at": datetime(2026, 1, 1, tzinfo=UTC), "actor": "user:7", "organisation_id": 1,
           "action": "test.hidden", "target_type": None, "target_id": None, "details": {},
           "canonical": "{}"}
    with db.begin() as connection:
        if db.dialect.name == "postgresql":
            connection.execute(text("ALTER TABLE audit_pending DISABLE TRIGGER "
                                    "audit_pending_chain"))
        connection.execute(PendingAuditEntry.__table__.insert().values(**row))
    result = audit.verify(db)
    assert result["ok"] is False and result["entries"] == 5
    problems = [p["problem"] for p in result["problems"]]
    assert all(p["id"] is None for p in result["problems"])
    assert "1 committed entries were never chained" in problems[0]
    if db.dialect.name == "postgresql":
        assert problems[1] == ("the trigger audit_pending_chain that chains entries at commit "
                               "is disabled")
        with db.begin() as connection:
            connection.execute(text("DELETE FROM audit_pending"))
            connection.execute(text("DROP TRIGGER audit_pending_chain ON audit_pending"))
        assert [p["problem"] for p in audit.verify(db)["problems"]] == [
            "the trigger audit_pending_chain that chains entries at commit is missing"]
    verdict = invoke(db, "audit", "verify")
    assert verdict.exit_code == 1
    assert "entry None" not in verdict.output
