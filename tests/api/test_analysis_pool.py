"""Analyses run in a bounded pool of worker processes, at a lower CPU priority, and their
errors reach the caller as the same domain errors (so the API still answers 4xx JSON)."""

from __future__ import annotations

import asyncio
import gzip
import itertools
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import StaticPool

from urbansec.api.analysis_pool import (
    ANALYSIS_NICENESS,
    AnalysisPool,
    AnalysisUnavailableError,
    engine_of,
    shareable_url,
)
from urbansec.api.app import create_app
from urbansec.config import Settings
from urbansec.errors import NotFoundError, UsageError
from urbansec.services import identity
from urbansec.services.imports import import_incidents
from urbansec.store.engine import make_engine

# ---- functions the pool runs (module level: a worker process imports them by name) ----


def where_and_how(database: Engine | str, *, pause: float = 0.0) -> dict[str, Any]:
    started = time.monotonic()
    time.sleep(pause)
    with engine_of(database).connect() as connection:
        answer = connection.execute(text("SELECT 41 + 1")).scalar()
    return {"pid": os.getpid(), "nice": os.nice(0), "got_url": isinstance(database, str),
            "answer": answer, "started": started, "ended": time.monotonic()}


def refuse(database: Engine | str, *, message: str) -> None:
    raise UsageError(message, details={"field": "cell"})


def die(database: Engine | str) -> None:
    os._exit(3)  # as an out-of-memory kill would: no exception, no cleanup


# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pool() -> Iterator[AnalysisPool]:
    pool = AnalysisPool(1)
    yield pool
    pool.shutdown()


@pytest.fixture
def file_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'pool.db'}")
    yield engine
    engine.dispose()


def test_runs_in_another_process_at_lower_priority(pool: AnalysisPool,
                                                   file_engine: Engine) -> None:
    out = asyncio.run(pool.run(file_engine, where_and_how))
    assert out["pid"] != os.getpid()
    assert out["got_url"] and out["answer"] == 42
    assert out["nice"] == min(os.nice(0) + ANALYSIS_NICENESS, 19)


def test_at_most_processes_at_a_time(pool: AnalysisPool, file_engine: Engine) -> None:
    async def three() -> list[dict[str, Any]]:
        return await asyncio.gather(*(pool.run(file_engine, where_and_how, pause=0.3)
                                      for _ in range(3)))

    runs = sorted(asyncio.run(three()), key=lambda r: r["started"])
    # one process: each analysis starts only after the previous one ended
    for before, after in itertools.pairwise(runs):
        assert after["started"] >= before["ended"]


def test_domain_errors_come_back_as_they_were_raised(pool: AnalysisPool,
                                                     file_engine: Engine) -> None:
    with pytest.raises(UsageError) as caught:
        asyncio.run(pool.run(file_engine, refuse, message="use larger cells"))
    assert caught.value.message == "use larger cells"
    assert caught.value.details == {"field": "cell"}


def test_a_dead_worker_is_a_503_and_the_pool_recovers(file_engine: Engine) -> None:
    pool = AnalysisPool(1)
    try:
        with pytest.raises(AnalysisUnavailableError) as caught:
            asyncio.run(pool.run(file_engine, die))
        assert caught.value.http_status == 503
        assert asyncio.run(pool.run(file_engine, where_and_how))["answer"] == 42
    finally:
        pool.shutdown()


def test_an_engine_in_memory_runs_here_one_at_a_time() -> None:
    engine = create_engine("sqlite://")
    assert shareable_url(engine) is None
    pool = AnalysisPool(1)

    async def two() -> list[dict[str, Any]]:
        return await asyncio.gather(*(pool.run(engine, where_and_how, pause=0.2)
                                      for _ in range(2)))

    first, second = sorted(asyncio.run(two()), key=lambda r: r["started"])
    assert first["pid"] == second["pid"] == os.getpid() and not first["got_url"]
    assert second["started"] >= first["ended"]


def test_shareable_urls_keep_what_the_other_process_needs() -> None:
    url = "postgresql+psycopg://u:s3cret@127.0.0.1:5432/db?options=-csearch_path%3Dx"
    assert shareable_url(create_engine(url)) == url
    in_memory = create_engine("sqlite:///file:x?mode=memory&uri=true", poolclass=StaticPool)
    assert shareable_url(in_memory) is None


def test_hotspot_errors_raised_in_the_worker_are_4xx_json(
        db: Engine, tmp_path: Path, chicago_header: str, chicago_lines: list[str]) -> None:
    sample = tmp_path / "chicago.csv.gz"
    with gzip.open(sample, "wt", encoding="utf-8", newline="") as handle:
        handle.write("\r\n".join([chicago_header, *chicago_lines]) + "\r\n")
    import_incidents(db, [sample], "chicago")
    org = identity.create_organisation(db, "pool-test", "Pool test", "city")
    _id, key = identity.create_api_key(db, org, "pool test", "analyst")
    client = TestClient(create_app(Settings(), db))
    headers = {"X-API-Key": key}
    # no ward was imported: found out inside the analysis process
    response = client.get("/api/v1/hotspots?method=count&within=ward:7", headers=headers)
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == NotFoundError.code
    assert "no 'ward' areas were imported" in response.json()["error"]["message"]
    ok = client.get("/api/v1/hotspots?method=count&cell=500", headers=headers)
    assert ok.status_code == 200 and ok.headers["content-type"] == "application/json"
    assert ok.json()["type"] == "FeatureCollection" and ok.json()["features"]
