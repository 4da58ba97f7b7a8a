"""Concurrent submissions: the idempotency check is the insert itself (ON CONFLICT DO NOTHING on
the unique client_key, inside the write transaction), so racing retries of one report store it
once, with one audit entry, and all get the same answer; the anonymous rate limit counts each
stored report once, never a retry, and a report refused by it leaves nothing behind.
Runs on SQLite and PostgreSQL (the ``db`` fixture)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from urbansec.config import Settings
from urbansec.errors import RateLimitedError
from urbansec.services import audit
from urbansec.services import reports as svc
from urbansec.services.access import ANONYMOUS
from urbansec.store.collaboration import AuditEntry, Report

REPORTS = Report.__table__
AUDIT = AuditEntry.__table__
THREADS = 8


def submit(db: Engine, settings: Settings, **extra: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"service_code": "poor-lighting",
                              "description": "The lamp at the bus stop is out.",
                              "lat": 41.8781, "lon": -87.6298, "client_address": "198.51.100.7"}
    values.update(extra)
    return svc.submit_report(db, ANONYMOUS, settings=settings, **values)


def all_at_once(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run the calls on threads released together; each answer or the exception raised."""
    start = threading.Barrier(len(calls))

    def run(call: Callable[[], Any]) -> Any:
        start.wait()
        try:
            return call()
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def counts(db: Engine) -> tuple[int, int]:
    with db.connect() as connection:
        reports = connection.execute(select(func.count()).select_from(REPORTS)).scalar_one()
        audited = connection.execute(select(func.count()).select_from(AUDIT)
                                     .where(AUDIT.c.action == "reports.submit")).scalar_one()
    return reports, audited


def test_racing_retries_of_one_report_store_it_once(db: Engine) -> None:
    settings = Settings(report_rate_limit=1000, report_rate_window_seconds=60)
    key = "0b5e7f2a-race-4000-8000-000000000001"
    answers = all_at_once([lambda: submit(db, settings, client_key=key)] * THREADS)
    assert not [a for a in answers if isinstance(a, Exception)], answers
    assert all(a == answers[0] for a in answers)
    assert counts(db) == (1, 1)
    assert audit.verify(db)["ok"]


def test_a_retry_is_answered_but_not_counted(db: Engine) -> None:
    settings = Settings(report_rate_limit=2, report_rate_window_seconds=3600)
    first = submit(db, settings, client_key="retry-not-counted-000001")
    for _ in range(5):
        assert submit(db, settings, client_key="retry-not-counted-000001") == first
    # the retries left the second slot free
    submit(db, settings, client_key="retry-not-counted-000002")
    with pytest.raises(RateLimitedError):
        submit(db, settings, client_key="retry-not-counted-000003")
    # over the limit, an accepted report's retry is still answered
    assert submit(db, settings, client_key="retry-not-counted-000001") == first
    assert counts(db) == (2, 2)


def test_racing_new_reports_over_the_limit_leave_nothing(db: Engine) -> None:
    settings = Settings(report_rate_limit=2, report_rate_window_seconds=3600)
    answers = all_at_once([
        (lambda i=i: submit(db, settings, client_key=f"over-the-limit-{i:06d}"))
        for i in range(THREADS)])
    stored = [a for a in answers if isinstance(a, dict)]
    refused = [a for a in answers if isinstance(a, RateLimitedError)]
    assert len(stored) == 2 and len(refused) == THREADS - 2, answers
    # refused ones were rolled back with their audit entry: exactly the accepted remain
    assert counts(db) == (2, 2)
    with db.connect() as connection:
        public_ids = set(connection.execute(select(REPORTS.c.public_id)).scalars())
    assert public_ids == {a["public_id"] for a in stored}
    assert audit.verify(db)["ok"]
