"""Schemathesis against the live OpenAPI schema: no 5xx, responses conform to the schema.

Runs on SQLite only, on a database of its own seeded with the bundled Chicago sample (the
session ``sample_db`` is read-only and the fuzzer writes: reports, risks). Every operation
is exercised with valid (positive) and malformed (negative) requests, as an admin API key
(so authenticated routes run their logic) — bounded examples, no deadline. Failures are
collected per operation and reported together.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from sqlalchemy import Engine

from urbansec.store.engine import make_engine
from urbansec.store.migrate import upgrade

schemathesis = pytest.importorskip("schemathesis")

SAMPLES = Path(__file__).resolve().parents[2] / "src" / "urbansec" / "samples" / "chicago"
SAMPLE_INCIDENTS = SAMPLES / "crimes_2017_districts_01_18.csv.gz"
REQUEST_TIMEOUT_S = 60
MAX_EXAMPLES = int(os.environ.get("URBANSEC_FUZZ_EXAMPLES", "20"))


@pytest.fixture(scope="module")
def fuzz_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    from urbansec.services.imports import import_areas, import_incidents

    path = tmp_path_factory.mktemp("fuzz") / "urbansec.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    import_incidents(engine, [SAMPLE_INCIDENTS], "chicago")
    import_areas(engine, SAMPLES / "police-districts.kmz", "district")
    yield engine
    engine.dispose()


@pytest.mark.timeout(900)
def test_fuzz_openapi(fuzz_engine: Engine) -> None:
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import response_schema_conformance

    from urbansec.api.app import create_app
    from urbansec.config import Settings
    from urbansec.services import identity

    org = identity.create_organisation(fuzz_engine, "fuzz", "Fuzz")
    _key_id, key = identity.create_api_key(fuzz_engine, org, "fuzz admin", "admin")
    headers = {"X-API-Key": key}
    app = create_app(Settings(report_rate_limit=1_000_000), fuzz_engine)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: dict[str, str] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations
    for operation in operations:
        label = f"{operation.method.upper()} {operation.path}"
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(generation_mode=mode)

            # model fitting is slow by nature: fewer forecast examples keep the run ~3 minutes
            examples = max(MAX_EXAMPLES // 4, 1) if operation.path.endswith("/forecast") \
                else MAX_EXAMPLES

            @settings(max_examples=examples, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(case=strategy)
            def run(case: schemathesis.Case) -> None:
                # a credential the fuzzer generated would only ever be a 401
                merged = {**(case.headers or {}), **headers}
                case.headers = {k: v for k, v in merged.items()
                                if k.lower() != "authorization"}
                # a SEPP forecast on the whole sample takes 10-25 s on a busy machine
                case.call_and_validate(checks=[not_a_server_error,
                                               response_schema_conformance],
                                       timeout=REQUEST_TIMEOUT_S)

            try:
                run()
            except Unsatisfiable:
                pass  # nothing to make malformed (an operation without parameters)
            except Exception as exc:  # collect every operation's failure, then report
                failures[f"{label} [{mode.value}]"] = str(exc)[:1500]
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())

