"""Shared fixtures: every store/service test runs on SQLite and on the real PostgreSQL server.

``make test`` starts PostgreSQL+PostGIS and sets ``URBANSEC_TEST_POSTGRES_URL``; each test gets
its own schema there (created and dropped around the test), so tests never see each other's
rows. Without the variable the PostgreSQL half is skipped, unless ``URBANSEC_REQUIRE_POSTGRES``
is set (as ``make test`` does), in which case a missing server is an error, not a skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from urbansec.privacy.ratelimit import reset_all
from urbansec.store.engine import make_engine, scratch_schema
from urbansec.store.migrate import upgrade

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
CHICAGO = SHARED_DATA / "chicago"
SAMPLES = ROOT / "src" / "urbansec" / "samples" / "chicago"
SAMPLE_INCIDENTS = SAMPLES / "crimes_2017_districts_01_18.csv.gz"


def postgres_url() -> str | None:
    url = os.environ.get("URBANSEC_TEST_POSTGRES_URL")
    if not url and os.environ.get("URBANSEC_REQUIRE_POSTGRES"):
        raise RuntimeError("URBANSEC_REQUIRE_POSTGRES is set but URBANSEC_TEST_POSTGRES_URL "
                           "is not: start the server with scripts/test-services.sh")
    return url


def needs_shared_data(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"{path} not found: the shared data sets live in ../shared/data")


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> None:
    """Rate limiters are per process and keyed by the database URL, which PostgreSQL tests
    share: each test starts with no failed sign-ins or submissions counted."""
    reset_all()


@pytest.fixture(autouse=True, scope="session")
def _cube_files_in_a_temporary_directory(tmp_path_factory: pytest.TempPathFactory
                                         ) -> Iterator[None]:
    """Saved dashboard cubes go to a directory of this test session (servers started by the
    e2e tests inherit it), never to the user's cache."""
    from urbansec.config import get_settings

    previous = os.environ.get("URBANSEC_CUBE_CACHE_DIR")
    os.environ["URBANSEC_CUBE_CACHE_DIR"] = str(tmp_path_factory.mktemp("cubes"))
    get_settings.cache_clear()
    yield
    if previous is None:
        os.environ.pop("URBANSEC_CUBE_CACHE_DIR", None)
    else:
        os.environ["URBANSEC_CUBE_CACHE_DIR"] = previous
    get_settings.cache_clear()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL to an empty database of each kind (not migrated)."""
    yield from empty_database_url(request.param, tmp_path)


def empty_database_url(kind: str, tmp_path: Path) -> Iterator[str]:
    """Yields the URL of an empty database: a SQLite file in ``tmp_path``, or a schema of its
    own on the PostgreSQL test server (skipped without one unless required), dropped after."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'urbansec.db'}"
        return
    base = postgres_url()
    if not base:
        pytest.skip("no PostgreSQL server (set URBANSEC_TEST_POSTGRES_URL; make test does)")
    with scratch_schema(base, "t") as url:
        yield url


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def sample_db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[Engine]:
    """The bundled Chicago sample (2017, districts 1 and 18) with district and beat
    boundaries, imported once per database kind. Read-only: tests must not change it."""
    from urbansec.services.imports import import_areas, import_incidents

    for url in empty_database_url(request.param, tmp_path_factory.mktemp("sample")):
        engine = make_engine(url)
        upgrade(engine)
        import_incidents(engine, [SAMPLE_INCIDENTS], "chicago")
        import_areas(engine, SAMPLES / "police-districts.kmz", "district")
        import_areas(engine, SAMPLES / "police-beats.kmz", "beat")
        yield engine
        engine.dispose()


@pytest.fixture
def db(database_url: str) -> Iterator[Engine]:
    """A migrated, empty database engine on SQLite and on PostgreSQL+PostGIS."""
    engine = make_engine(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def chicago_header() -> str:
    import gzip

    with gzip.open(SAMPLE_INCIDENTS, "rt", encoding="utf-8") as handle:
        return handle.readline().rstrip("\r\n")


@pytest.fixture
def chicago_lines() -> list[str]:
    """The first 200 real data lines of the bundled sample (exact text)."""
    import gzip

    with gzip.open(SAMPLE_INCIDENTS, "rt", encoding="utf-8", newline="") as handle:
        handle.readline()
        return [handle.readline().rstrip("\r\n") for _ in range(200)]
