"""``urbansec privacy purge`` on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select, update
from typer.testing import CliRunner

import urbansec.cli.privacy  # noqa: F401  (registers the commands until cli/__init__ does)
from urbansec.cli import app
from urbansec.config import Settings
from urbansec.errors import UsageError
from urbansec.services import audit
from urbansec.services import reports as svc
from urbansec.services.access import ANONYMOUS
from urbansec.store.collaboration import Report

REPORTS = Report.__table__
runner = CliRunner()


def _submit(db: Engine, email: str, age_days: int) -> str:
    pid = svc.submit_report(db, ANONYMOUS, service_code="feeling-unsafe",
                            description=f"unsafe; write {email}", lat=41.88, lon=-87.63,
                            contact_email=email, client_address="192.0.2.1",
                            settings=Settings(report_rate_limit=100))["public_id"]
    with db.begin() as c:
        c.execute(update(REPORTS).where(REPORTS.c.public_id == pid).values(
            submitted_at=datetime.now(UTC) - timedelta(days=age_days)))
    return pid


def _contacts(db: Engine) -> dict[str, str | None]:
    with db.connect() as c:
        return dict(c.execute(select(REPORTS.c.public_id, REPORTS.c.contact_email)).all())


def test_purge_command(db: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("URBANSEC_CONTACT_RETENTION_DAYS", "30")
    from urbansec.config import get_settings

    get_settings.cache_clear()
    try:
        url = db.url.render_as_string(hide_password=False)
        old = _submit(db, "old@example.org", 40)
        middle = _submit(db, "mid@example.org", 20)
        new = _submit(db, "new@example.org", 1)
        result = runner.invoke(app, ["--database", url, "privacy", "purge", "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == {"older_than_days": 30, "reports_purged": 1,
                                             "tokens_purged": 0}
        assert _contacts(db) == {old: None, middle: "mid@example.org",
                                 new: "new@example.org"}
        result = runner.invoke(app, ["--database", url, "privacy", "purge",
                                     "--older-than", "10"])
        assert result.exit_code == 0, result.output
        assert "1 report submitted more than 10 days ago" in result.stdout
        assert _contacts(db) == {old: None, middle: None, new: "new@example.org"}
        bad = runner.invoke(app, ["--database", url, "privacy", "purge", "--older-than",
                                  "-3"])
        assert bad.exit_code == 2
        entry = audit.entries(db, limit=1, action="privacy.purge")[0]
        assert entry["actor"] == "system:cli" and entry["details"]["reports"] == 1
        assert audit.verify(db)["ok"]
    finally:
        get_settings.cache_clear()
        from urbansec.store.engine import engine_for

        engine_for(url).dispose()  # the CLI's cached engine: close its pooled connections


def test_purge_deletes_expired_and_revoked_tokens_only(db: Engine) -> None:
    from urbansec.services import identity
    from urbansec.store.collaboration import AuthToken

    tokens = AuthToken.__table__
    org = identity.create_organisation(db, "city", "City", "city")
    identity.create_user(db, org, "a@example.org", "A", "a long enough password 1", "analyst")
    for _ in range(3):
        identity.issue_tokens(db, "a@example.org", "a long enough password 1")
    with db.begin() as c:
        ids = sorted(c.execute(select(tokens.c.id)).scalars())
        assert len(ids) == 6  # an access and a refresh token per sign-in
        long_ago = datetime.now(UTC) - timedelta(days=3)
        c.execute(update(tokens).where(tokens.c.id == ids[0]).values(expires_at=long_ago))
        c.execute(update(tokens).where(tokens.c.id == ids[1]).values(revoked_at=long_ago))
        c.execute(update(tokens).where(tokens.c.id == ids[2]).values(
            revoked_at=datetime.now(UTC)))  # revoked just now: kept a day
    assert identity.purge_expired_tokens(db) == 2
    with db.connect() as c:
        assert sorted(c.execute(select(tokens.c.id)).scalars()) == ids[2:]
    assert audit.entries(db, limit=1, action="auth.tokens_purged")[0]["details"]["tokens"] == 2
    assert identity.purge_expired_tokens(db) == 0
    with pytest.raises(UsageError):
        identity.purge_expired_tokens(db, older_than_days=-1)
