"""Killing the API server mid-load loses no acknowledged report and duplicates none.

A real uvicorn process serves the API on a free local port; eight client threads submit
anonymous reports, each with its own idempotency key (``client_key``); part-way the server gets
SIGKILL (no shutdown handlers, no flushing: as a crash or an OOM kill). The server is then
started again on the same database and the test checks that

* every report acknowledged with 201 before the kill is stored, exactly once;
* every submission whose answer was lost (in flight at the kill) or never sent, retried with
  the same key, ends up stored exactly once: one row per key, no duplicates;
* an acknowledged key retried after the restart returns the same report, not a new one;
* the audit trail still verifies, with exactly one ``reports.submit`` entry per report
  (the report and its audit entry commit together or not at all).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy import func, select

from urbansec.services import audit
from urbansec.store.collaboration import AuditEntry, Report
from urbansec.store.engine import make_engine
from urbansec.store.migrate import upgrade

ROOT = Path(__file__).resolve().parents[2]
REPORTS = Report.__table__
AUDIT = AuditEntry.__table__
SUBMISSIONS = 240
WORKERS = 8
KILL_AFTER = 80  # acknowledged reports before the kill
START_TIMEOUT_S = 30.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _server(database_url: str, log: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A uvicorn process serving ``create_app()`` on ``database_url``; killed on exit."""
    port = _free_port()
    env = {**os.environ, "URBANSEC_DATABASE_URL": database_url,
           # one client address (127.0.0.1) submits everything: lift the anonymous limit
           "URBANSEC_REPORT_RATE_LIMIT": "1000000", "URBANSEC_REPORT_RATE_WINDOW_SECONDS": "60",
           "PYTHONPATH": str(ROOT / "src")}
    with log.open("ab") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "urbansec.api.app:create_app",
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT,
            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise AssertionError(f"server exited with {process.returncode}:\n"
                                     f"{log.read_text(errors='replace')[-3000:]}")
            try:
                if httpx.get(f"{base}/api/v1/health", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("server did not answer /api/v1/health in time")
            time.sleep(0.1)
        yield process, base
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def _body(key: str, i: int) -> dict[str, object]:
    # spread over central Chicago; the text varies so nothing could be merged by content
    return {"service_code": "poor-lighting", "description": f"street light out near no. {i}",
            "lat": 41.85 + (i % 97) * 1e-3, "lon": -87.65 + (i % 89) * 1e-3,
            "client_key": key}


def _submit(client: httpx.Client, base: str, key: str, i: int) -> httpx.Response:
    return client.post(f"{base}/api/v1/reports", json=_body(key, i))


def test_kill_server_mid_load_loses_and_duplicates_nothing(database_url: str,
                                                          tmp_path: Path) -> None:
    engine = make_engine(database_url)
    upgrade(engine)
    keys = [f"kill-test-{uuid.UUID(int=i + 1).hex}" for i in range(SUBMISSIONS)]
    acknowledged: dict[str, str] = {}  # client_key -> public_id, from 201 answers only
    in_doubt: set[str] = set()  # sent, but no answer (connection dropped by the kill)
    other: list[tuple[str, int]] = []  # unexpected statuses
    lock = threading.Lock()
    killed = threading.Event()
    log = tmp_path / "server.log"

    with _server(database_url, log) as (process, base):
        local = threading.local()

        def worker(index: int) -> None:
            if killed.is_set():
                return  # never sent: retried below like the in-doubt ones
            if not hasattr(local, "client"):
                local.client = httpx.Client(timeout=10.0)
            key = keys[index]
            try:
                response = _submit(local.client, base, key, index)
            except httpx.TransportError:
                with lock:
                    in_doubt.add(key)
                return
            with lock:
                if response.status_code == 201:
                    acknowledged[key] = response.json()["public_id"]
                    if len(acknowledged) >= KILL_AFTER and not killed.is_set():
                        # SIGKILL while the other seven threads have requests in flight
                        process.send_signal(signal.SIGKILL)
                        killed.set()
                else:
                    other.append((key, response.status_code))

        with ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(worker, range(SUBMISSIONS)))
        assert killed.is_set(), "the server was never killed"
        process.wait(timeout=10)
        assert process.returncode == -signal.SIGKILL

    assert other == [], f"unexpected answers before the kill: {other[:5]}"
    assert len(acknowledged) >= KILL_AFTER
    assert len(acknowledged) < SUBMISSIONS, "the kill came too late to test anything"

    # 1. straight after the crash: every acknowledged report is stored, once
    with engine.connect() as connection:
        stored = [r.public_id for r in connection.execute(select(REPORTS.c.public_id))]
    assert len(stored) == len(set(stored))
    missing = set(acknowledged.values()) - set(stored)
    assert not missing, f"{len(missing)} acknowledged reports lost, e.g. {sorted(missing)[:3]}"
    # an in-flight request may or may not have committed; nothing else can be there
    assert len(stored) <= len(acknowledged) + len(in_doubt)

    # 2. restart on the same database; the clients retry whatever they did not get an answer
    # for (and some acknowledged keys, as a client that lost its receipt would)
    unanswered = [k for k in keys if k not in acknowledged]
    replayed = list(acknowledged)[:20]
    with _server(database_url, log) as (_process, base), httpx.Client(timeout=10.0) as client:
        answers: dict[str, str] = {}
        for key in unanswered + replayed:
            response = _submit(client, base, key, keys.index(key))
            assert response.status_code == 201, response.text
            answers[key] = response.json()["public_id"]

    for key in replayed:
        assert answers[key] == acknowledged[key], "a retry of an acknowledged key made a new one"
    final = {**acknowledged, **answers}
    assert len(final) == SUBMISSIONS
    with engine.connect() as connection:
        stored = [r.public_id for r in connection.execute(select(REPORTS.c.public_id))]
        submits = connection.execute(select(func.count()).select_from(AUDIT).where(
            AUDIT.c.action == "reports.submit")).scalar_one()
    # exactly one row per key: none lost, none duplicated, nothing extra
    assert len(stored) == len(set(stored)) == SUBMISSIONS
    assert set(stored) == set(final.values())
    assert submits == SUBMISSIONS
    chain = audit.verify(engine)
    assert chain["ok"], chain["problems"]
    engine.dispose()
