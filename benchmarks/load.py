"""Load benchmark of the REST API: citizens submitting reports while analysts query hot spots.

A real uvicorn server (``--workers`` processes) serves ``create_app()`` on a free 127.0.0.1
port, over a fresh SQLite file and a fresh PostgreSQL schema holding the bundled Chicago sample
(2017, districts 1 and 18). An asyncio + httpx client then runs

* ``--reporters`` (200) concurrent anonymous reporters submitting ``--reports`` (20,000)
  reports in total with ``POST /api/v1/reports``, each with its own ``client_key``; on a
  connection error or timeout a reporter retries the same key, as a real client would;
* ``--analysts`` (20) analysts looping ``GET /api/v1/hotspots?method=gi&cell=250&
  permutations=99`` with an ``X-API-Key`` until the reporters are done.

It measures p50/p95/p99 latency per operation (per attempt, queueing in the server included),
throughput, answers by status, and afterwards checks the database holds exactly the reports
acknowledged (distinct public_ids answered 201 == rows in ``reports``: none lost, none
duplicated). Goals: p95 < 150 ms for submission on PostgreSQL, zero 5xx, zero lost.

Everything runs on one machine (2 CPUs here): the client, the server workers and the database
share them, so the figures are a floor for a real deployment, not a ceiling.

    .venv/bin/python benchmarks/load.py                 # 20,000 reports; PostgreSQL if the
    .venv/bin/python benchmarks/load.py --quick         # URL is set; 2,000 reports
    .venv/bin/python benchmarks/load.py --postgres postgresql://user@host:5432/db --workers 2

Results: ``benchmarks/results/load.json``. The anonymous rate limit
(``URBANSEC_REPORT_RATE_LIMIT``) is lifted for the server under test: every reporter here
comes from 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "src" / "urbansec" / "samples" / "chicago" / "crimes_2017_districts_01_18.csv.gz"
RESULTS = ROOT / "benchmarks" / "results" / "load.json"
HOTSPOT_QUERY = {"method": "gi", "cell": "250", "permutations": "99"}
SUBMIT_GOAL_P95_MS = 150.0
MAX_ATTEMPTS = 10  # per report, before the reporter gives up on it (counted as failed)
REQUEST_TIMEOUT_S = 30.0


# --------------------------------------------------------------------------------------------
# database and server
# --------------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _database(kind: str, postgres: str | None, workdir: Path) -> Iterator[str]:
    """A migrated database URL with the sample imported: a new SQLite file, or a new schema
    in the PostgreSQL database (dropped afterwards)."""
    from sqlalchemy import create_engine, text

    from urbansec.services.imports import import_incidents
    from urbansec.store.engine import make_engine, normalise_url
    from urbansec.store.migrate import upgrade

    schema = None
    if kind == "sqlite":
        url = f"sqlite:///{workdir / 'load.db'}"
    else:
        assert postgres
        schema = f"load_{uuid.uuid4().hex[:10]}"
        admin = create_engine(normalise_url(postgres))
        with admin.begin() as connection:
            connection.execute(text(f"CREATE SCHEMA {schema}"))
        separator = "&" if "?" in postgres else "?"
        url = f"{postgres}{separator}options=-csearch_path%3D{schema},public"
    engine = make_engine(url)
    try:
        upgrade(engine)
        import_incidents(engine, [SAMPLE], "chicago")
        engine.dispose()
        yield url
    finally:
        engine.dispose()
        if schema is not None:
            with admin.begin() as connection:
                connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            admin.dispose()


def _api_key(url: str) -> str:
    from urbansec.services.identity import create_api_key, create_organisation
    from urbansec.store.engine import make_engine

    engine = make_engine(url)
    try:
        org = create_organisation(engine, "load-analysts", "Load-test analysts")
        return create_api_key(engine, org, "load benchmark", "analyst")[1]
    finally:
        engine.dispose()


@contextmanager
def _server(url: str, workers: int, log: Path) -> Iterator[str]:
    port = _free_port()
    env = {**os.environ, "URBANSEC_DATABASE_URL": url,
           "URBANSEC_REPORT_RATE_LIMIT": "100000000", "URBANSEC_REPORT_RATE_WINDOW_SECONDS": "60",
           "PYTHONPATH": str(ROOT / "src")}
    command = [sys.executable, "-m", "uvicorn", "--factory", "urbansec.api.app:create_app",
               "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
               "--no-access-log", "--backlog", "2048"]
    if workers > 1:
        command += ["--workers", str(workers)]
    with log.open("ab") as handle:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=handle,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited: {log.read_text(errors='replace')[-2000:]}")
            try:
                if httpx.get(f"{base}/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.2)
        yield base
    finally:
        # the whole process group: uvicorn's supervisor and its workers
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _stored_public_ids(url: str) -> list[str]:
    from sqlalchemy import select

    from urbansec.store.collaboration import Report
    from urbansec.store.engine import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            table = Report.__table__
            return [r[0] for r in connection.execute(select(table.c.public_id))]
    finally:
        engine.dispose()


# --------------------------------------------------------------------------------------------
# load
# --------------------------------------------------------------------------------------------

class Tally:
    """Latencies (seconds, successful attempts) and answers by status of one operation."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.statuses: Counter[str] = Counter()

    def row(self, elapsed: float) -> dict[str, Any]:
        ms = np.asarray(self.latencies) * 1000.0
        pct = np.percentile(ms, [50, 95, 99]) if ms.size else [float("nan")] * 3
        errors = {k: v for k, v in sorted(self.statuses.items()) if k not in ("200", "201")}
        return {"n": int(ms.size), "p50_ms": round(float(pct[0]), 1),
                "p95_ms": round(float(pct[1]), 1), "p99_ms": round(float(pct[2]), 1),
                "throughput_per_s": round(ms.size / elapsed, 1) if elapsed > 0 else None,
                "statuses": dict(sorted(self.statuses.items())), "errors": errors,
                "server_errors": sum(v for k, v in self.statuses.items() if k.startswith("5"))}


def _body(key: str, i: int, rng: np.random.Generator) -> dict[str, Any]:
    return {"service_code": "poor-lighting",
            "description": f"The street light at the corner has been out for days ({i}).",
            "lat": float(41.80 + rng.random() * 0.15), "lon": float(-87.70 + rng.random() * 0.10),
            "client_key": key}


async def _load(base: str, api_key: str, reports: int, reporters: int, analysts: int,
                seed: int, rate: float | None = None) -> dict[str, Any]:
    submit, hotspot = Tally(), Tally()
    acknowledged: dict[str, str] = {}
    failed: list[str] = []
    keys = [f"load-{seed}-{uuid.UUID(int=i + 1).hex}" for i in range(reports)]
    next_index = iter(range(reports))
    done = asyncio.Event()
    late = [0]
    limits = httpx.Limits(max_connections=reporters + analysts,
                          max_keepalive_connections=reporters + analysts)
    timeout = httpx.Timeout(REQUEST_TIMEOUT_S)

    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=timeout) as client:

        async def reporter(worker: int) -> None:
            rng = np.random.default_rng([seed, worker])
            for i in next_index:  # a shared iterator: the reporters split the work
                if rate is not None:
                    # open loop: report i is due at i / rate seconds; a reporter still busy
                    # when it falls due starts it late (counted, so saturation shows)
                    delay = started + i / rate - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    elif delay < -0.01:
                        late[0] += 1
                key = keys[i]
                body = _body(key, i, rng)
                for _attempt in range(MAX_ATTEMPTS):
                    start = time.perf_counter()
                    try:
                        response = await client.post("/api/v1/reports", json=body)
                    except (httpx.TransportError, httpx.TimeoutException) as exc:
                        submit.statuses[type(exc).__name__] += 1
                        continue  # retry with the same client_key
                    elapsed = time.perf_counter() - start
                    submit.statuses[str(response.status_code)] += 1
                    if response.status_code == 201:
                        submit.latencies.append(elapsed)
                        acknowledged[key] = response.json()["public_id"]
                        break
                    if response.status_code == 429 or response.status_code >= 500:
                        await asyncio.sleep(0.05)
                        continue
                    break  # a 4xx other than 429 will not get better by retrying
                else:
                    failed.append(key)

        async def analyst() -> None:
            headers = {"X-API-Key": api_key}
            while not done.is_set():
                start = time.perf_counter()
                try:
                    response = await client.get("/api/v1/hotspots", params=HOTSPOT_QUERY,
                                                headers=headers)
                except (httpx.TransportError, httpx.TimeoutException) as exc:
                    hotspot.statuses[type(exc).__name__] += 1
                    continue
                hotspot.statuses[str(response.status_code)] += 1
                if response.status_code == 200:
                    hotspot.latencies.append(time.perf_counter() - start)

        started = time.perf_counter()
        analyst_tasks = [asyncio.create_task(analyst()) for _ in range(analysts)]
        await asyncio.gather(*(reporter(w) for w in range(reporters)))
        elapsed = time.perf_counter() - started
        done.set()
        await asyncio.gather(*analyst_tasks)
    return {"elapsed_s": elapsed, "late_starts": late[0], "submit": submit.row(elapsed),
            "hotspots": hotspot.row(elapsed), "acknowledged": acknowledged, "failed": failed}


def run_one(kind: str, postgres: str | None, *, reports: int, reporters: int, analysts: int,
            workers: int, rate: float | None = None, seed: int = 0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="urbansec-load-") as tmp, \
            _database(kind, postgres, Path(tmp)) as url:
        api_key = _api_key(url)
        with _server(url, workers, Path(tmp) / "server.log") as base:
            # one warm-up query per worker process (imports, first connections), not measured
            with httpx.Client(base_url=base, timeout=60) as warm:
                for _ in range(workers):
                    warm.get("/api/v1/hotspots", params=HOTSPOT_QUERY,
                             headers={"X-API-Key": api_key})
            result = asyncio.run(_load(base, api_key, reports, reporters, analysts, seed,
                                       rate))
        stored = _stored_public_ids(url)
        log_tail = (Path(tmp) / "server.log").read_text(errors="replace")[-1500:]
    acknowledged = set(result["acknowledged"].values())
    stored_set = set(stored)
    integrity = {
        "acknowledged": len(acknowledged), "rows": len(stored),
        "duplicated_rows": len(stored) - len(stored_set),
        "lost": len(acknowledged - stored_set),
        "unacknowledged_rows": len(stored_set - acknowledged),
        "failed_submissions": len(result["failed"]),
        "ok": acknowledged == stored_set and len(stored) == len(stored_set),
    }
    return {"database": kind, "workers": workers, "reports": reports, "reporters": reporters,
            "analysts": analysts, "rate": rate, "late_starts": result["late_starts"],
            "elapsed_s": round(result["elapsed_s"], 2),
            "submit": result["submit"], "hotspots": result["hotspots"], "integrity": integrity,
            "server_log_tail": log_tail if (result["submit"]["server_errors"]
                                            or result["hotspots"]["server_errors"]) else ""}


# --------------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------------

def _table(runs: list[dict[str, Any]]) -> str:
    header = (f"{'database':<10} {'operation':<9} {'n':>7} {'p50 ms':>8} {'p95 ms':>8} "
              f"{'p99 ms':>8} {'per s':>7}  errors")
    lines = [header, "-" * len(header)]
    for run in runs:
        mode = (f"open loop {run['rate']:g}/s, {run['late_starts']} late starts"
                if run["rate"] else "closed loop")
        lines.append(f"{run['database']}: {run['reports']} reports, {run['reporters']} "
                     f"reporters, {run['analysts']} analysts, {run['workers']} worker(s), "
                     f"{mode}, {run['elapsed_s']} s")
        for op in ("submit", "hotspots"):
            row = run[op]
            errors = ", ".join(f"{k}: {v}" for k, v in row["errors"].items()) or "none"
            lines.append(f"{run['database']:<10} {op:<9} {row['n']:>7} {row['p50_ms']:>8.1f} "
                         f"{row['p95_ms']:>8.1f} {row['p99_ms']:>8.1f} "
                         f"{row['throughput_per_s'] or 0:>7.1f}  {errors}")
        i = run["integrity"]
        goal = ""
        if run["database"] == "postgres":
            p95 = run["submit"]["p95_ms"]
            goal = (f"; submit p95 goal < {SUBMIT_GOAL_P95_MS:.0f} ms: "
                    f"{'met' if p95 < SUBMIT_GOAL_P95_MS else 'MISSED'}")
        lines.append(f"{'':<10} integrity: {i['acknowledged']} acknowledged, {i['rows']} rows, "
                     f"{i['lost']} lost, {i['duplicated_rows']} duplicated, "
                     f"{i['failed_submissions']} given up -> {'OK' if i['ok'] else 'FAILED'}"
                     f"{goal}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 reports instead of 20,000")
    parser.add_argument("--reports", type=int, default=None)
    parser.add_argument("--reporters", type=int, default=200)
    parser.add_argument("--analysts", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--rate", type=float, default=None,
                        help="open loop: submit this many reports per second in total "
                             "(default: closed loop, each reporter submits back to back)")
    parser.add_argument("--postgres", default=os.environ.get("URBANSEC_TEST_POSTGRES_URL"),
                        help="PostgreSQL URL (default: $URBANSEC_TEST_POSTGRES_URL)")
    parser.add_argument("--only", choices=("sqlite", "postgres"), default=None)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    reports = args.reports or (2_000 if args.quick else 20_000)
    kinds = [k for k in ("sqlite", "postgres") if args.only in (None, k)]
    runs = []
    for kind in kinds:
        if kind == "postgres" and not args.postgres:
            print("postgres: skipped (set URBANSEC_TEST_POSTGRES_URL or give --postgres)")
            continue
        print(f"{kind}: running...", flush=True)
        runs.append(run_one(kind, args.postgres, reports=reports, reporters=args.reporters,
                            analysts=args.analysts, workers=args.workers, rate=args.rate))
    print(_table(runs))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({
        "settings": {"reports": reports, "reporters": args.reporters, "rate": args.rate,
                     "analysts": args.analysts, "workers": args.workers,
                     "hotspot_query": HOTSPOT_QUERY, "cpus": os.cpu_count(),
                     "rate_limit": "URBANSEC_REPORT_RATE_LIMIT=100000000 (lifted)"},
        "runs": runs}, indent=2) + "\n")
    ok = all(r["integrity"]["ok"] and r["submit"]["server_errors"] == 0
             and r["hotspots"]["server_errors"] == 0 for r in runs)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
