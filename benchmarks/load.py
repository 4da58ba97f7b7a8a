"""Load benchmark of the REST API: citizens submitting reports while analysts query hot spots.

``urbansec serve --workers N`` (the deployment as shipped) serves the API on a free 127.0.0.1
port, over a fresh SQLite file and a fresh PostgreSQL schema holding the bundled Chicago sample
(2017, districts 1 and 18). An asyncio client then runs

* ``--reporters`` (200) anonymous reporters, each with its own connection, submitting
  ``--reports`` (20,000) reports in total with ``POST /api/v1/reports``, each with its own
  ``client_key``; on a dropped connection or a timeout a reporter retries the same key, as a
  real client would;
* ``--analysts`` (20) analysts looping ``GET /api/v1/hotspots?method=gi&cell=250&
  permutations=99`` with an ``X-API-Key`` until the reporters are done.

Each load in ``--loads`` is run on each database:

* ``think1`` (the default reading of "200 concurrent reporters"): every reporter is a person
  who, after an answer, spends a random time (exponential, mean 1 s here: far less than filling
  in a form takes) before the next report; 200 of them offer about 200 reports/s;
* ``closed`` (every reporter submits back to back, no pause at all: the server's capacity; by
  Little's law the latency is then reporters / throughput, so 200 back-to-back reporters can
  never see 150 ms unless the server takes 1,300+ reports/s);
* a rate such as ``100`` (open loop: report i falls due at i / rate seconds, whatever the
  answers; a reporter still busy when its next report falls due starts it late, counted).

It measures p50/p95/p99 latency per operation (per attempt, queueing in the server included),
throughput, answers by status, the client's own CPU time, the machine's load averages before
and after (other work on the machine shows there), and afterwards checks the database holds
exactly the reports acknowledged (distinct public_ids answered 201 == rows in ``reports``: none
lost, none duplicated), one ``reports.submit`` audit entry per report and an intact audit
chain. Goals: p95 < 150 ms for submission on PostgreSQL, zero 5xx, zero lost.

The client speaks HTTP/1.1 over asyncio streams itself: it shares the machine's CPUs with the
server, and httpx costs about 2.5 ms of CPU per request here against about 0.1 ms for these
few lines (measured with 200 connections on this 2-CPU machine), which would otherwise be taken
from the server under test.

    .venv/bin/python benchmarks/load.py          # 20,000 reports: think1, closed, 100/s,
                                                 # PostgreSQL too if the URL is set
    .venv/bin/python benchmarks/load.py --quick  # 2,000 reports
    .venv/bin/python benchmarks/load.py --loads closed --only postgres --workers 2

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
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import numpy as np

from _events import write_results

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
    from urbansec.services.imports import import_incidents
    from urbansec.store.engine import make_engine, scratch_schema
    from urbansec.store.migrate import upgrade

    with ExitStack() as stack:
        if kind == "sqlite":
            url = f"sqlite:///{workdir / 'load.db'}"
        else:
            assert postgres
            url = stack.enter_context(scratch_schema(postgres, "load"))
        engine = make_engine(url)
        try:
            upgrade(engine)
            import_incidents(engine, [SAMPLE], "chicago")
        finally:
            engine.dispose()
        yield url


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
def _server(url: str, workers: int, log: Path) -> Iterator[tuple[str, int]]:
    """``urbansec serve`` on a free port; yields (host, port)."""
    host, port = "127.0.0.1", _free_port()
    env = {**os.environ, "URBANSEC_DATABASE_URL": url,
           "URBANSEC_REPORT_RATE_LIMIT": "100000000", "URBANSEC_REPORT_RATE_WINDOW_SECONDS": "60",
           "PYTHONPATH": str(ROOT / "src")}
    command = [sys.executable, "-m", "urbansec.cli", "serve", "--host", host,
               "--port", str(port), "--workers", str(workers), "--log-level", "warning"]
    with log.open("ab") as handle:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=handle,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://{host}:{port}"
    try:
        deadline = time.monotonic() + 90
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
        yield host, port
    finally:
        # the whole process group: the supervisor, its workers and their analysis processes
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _check_database(url: str) -> dict[str, Any]:
    """The stored reports' public ids, and the audit trail's submissions and chain."""
    from sqlalchemy import func, select

    from urbansec.services import audit
    from urbansec.store.collaboration import AuditEntry, Report
    from urbansec.store.engine import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            reports, entries = Report.__table__, AuditEntry.__table__
            public_ids = [r[0] for r in connection.execute(select(reports.c.public_id))]
            audited = connection.execute(
                select(entries.c.target_id, func.count())
                .where(entries.c.action == "reports.submit").group_by(entries.c.target_id)
            ).all()
        chain = audit.verify(engine)
    finally:
        engine.dispose()
    return {"public_ids": public_ids, "audited": {r[0]: r[1] for r in audited},
            "audit_chain_ok": chain["ok"], "audit_entries": chain["entries"]}


# --------------------------------------------------------------------------------------------
# a lean HTTP/1.1 client
# --------------------------------------------------------------------------------------------

class TransportError(Exception):
    """The connection failed, was closed under a request, or the answer did not come in time."""


class Connection:
    """One keep-alive HTTP/1.1 connection, as one person's browser or app holds it.

    Just what this benchmark needs (Content-Length or chunked bodies, reconnect when the
    server closed the connection): cheap enough that the client does not eat the CPU the
    server under test needs."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def request(self, method: str, target: str, body: bytes | None = None,
                      headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        message = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")
        try:
            return await asyncio.wait_for(self._exchange(message), REQUEST_TIMEOUT_S)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                TimeoutError, ValueError) as exc:
            self.close()
            raise TransportError(type(exc).__name__) from exc

    async def _exchange(self, message: bytes) -> tuple[int, bytes]:
        if self._reader is None or self._writer is None or self._reader.at_eof():
            self.close()  # the server closed an idle keep-alive connection: open a new one
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._reader, self._writer
        writer.write(message)
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(head[0].split(" ", 2)[1])
        fields = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name:
                fields[name.strip().lower()] = value.strip().lower()
        if "content-length" in fields:
            payload = await reader.readexactly(int(fields["content-length"]))
        elif fields.get("transfer-encoding") == "chunked":
            chunks = []
            while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                chunks.append((await reader.readexactly(size + 2))[:-2])
            await reader.readuntil(b"\r\n")  # the empty trailer
            payload = b"".join(chunks)
        else:
            payload = await reader.read()  # until the server closes
            self.close()
        if fields.get("connection") == "close":
            self.close()
        return status, payload


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


def _body(key: str, i: int, rng: np.random.Generator) -> bytes:
    return json.dumps({
        "service_code": "poor-lighting",
        "description": f"The street light at the corner has been out for days ({i}).",
        "lat": float(41.80 + rng.random() * 0.15), "lon": float(-87.70 + rng.random() * 0.10),
        "client_key": key}).encode()


async def _load(host: str, port: int, api_key: str, reports: int, reporters: int,
                analysts: int, seed: int, rate: float | None = None,
                think: float | None = None) -> dict[str, Any]:
    submit, hotspot = Tally(), Tally()
    acknowledged: dict[str, str] = {}
    failed: list[str] = []
    keys = [f"load-{seed}-{uuid.UUID(int=i + 1).hex}" for i in range(reports)]
    next_index = iter(range(reports))
    done = asyncio.Event()
    late = [0]
    hotspot_target = "/api/v1/hotspots?" + urlencode(HOTSPOT_QUERY)

    async def reporter(worker: int) -> None:
        rng = np.random.default_rng([seed, worker])
        connection = Connection(host, port)
        if think:
            # the first report comes after the same exponential pause as every other, so the
            # load is stationary from the start (memoryless: at any instant a reporter's
            # remaining pause is exponential too); a uniform first pause would send the first
            # reports of all 200 on top of the second reports of the early ones: a burst at
            # 1.5-2x the steady rate that no real crowd of reporters makes
            await asyncio.sleep(float(rng.exponential(think)))
        first = True
        for i in next_index:  # a shared iterator: the reporters split the work
            if think and not first:
                await asyncio.sleep(float(rng.exponential(think)))
            first = False
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
                    status, payload = await connection.request("POST", "/api/v1/reports", body)
                except TransportError as exc:
                    submit.statuses[str(exc)] += 1
                    continue  # retry with the same client_key
                elapsed = time.perf_counter() - start
                submit.statuses[str(status)] += 1
                if status == 201:
                    submit.latencies.append(elapsed)
                    acknowledged[key] = json.loads(payload)["public_id"]
                    break
                if status == 429 or status >= 500:
                    await asyncio.sleep(0.05)
                    continue
                break  # a 4xx other than 429 will not get better by retrying
            else:
                failed.append(key)
        connection.close()

    async def analyst() -> None:
        connection = Connection(host, port)
        headers = {"X-API-Key": api_key}
        while not done.is_set():
            start = time.perf_counter()
            try:
                status, _ = await connection.request("GET", hotspot_target, headers=headers)
            except TransportError as exc:
                hotspot.statuses[str(exc)] += 1
                continue
            hotspot.statuses[str(status)] += 1
            if status == 200:
                hotspot.latencies.append(time.perf_counter() - start)
        connection.close()

    cpu_before = os.times()
    started = time.perf_counter()
    analyst_tasks = [asyncio.create_task(analyst()) for _ in range(analysts)]
    await asyncio.gather(*(reporter(w) for w in range(reporters)))
    elapsed = time.perf_counter() - started
    done.set()
    await asyncio.gather(*analyst_tasks)
    cpu_after = os.times()
    client_cpu = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
    return {"elapsed_s": elapsed, "late_starts": late[0], "submit": submit.row(elapsed),
            "hotspots": hotspot.row(elapsed), "acknowledged": acknowledged, "failed": failed,
            "client_cpu_s": client_cpu}


def run_one(kind: str, postgres: str | None, *, reports: int, reporters: int, analysts: int,
            workers: int, rate: float | None = None, think: float | None = None,
            seed: int = 0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="urbansec-load-") as tmp, \
            _database(kind, postgres, Path(tmp)) as url:
        api_key = _api_key(url)
        with _server(url, workers, Path(tmp) / "server.log") as (host, port):
            # warm-up, not measured: imports, first connections, the analysis processes (at
            # once, each on its own connection, so that every worker process gets some)
            def warm(_: int) -> None:
                httpx.get(f"http://{host}:{port}/api/v1/hotspots", params=HOTSPOT_QUERY,
                          headers={"X-API-Key": api_key}, timeout=120)

            with ThreadPoolExecutor(4 * workers) as pool:
                list(pool.map(warm, range(4 * workers)))
            load_before = os.getloadavg()
            result = asyncio.run(_load(host, port, api_key, reports, reporters, analysts, seed,
                                       rate, think))
            load_after = os.getloadavg()
        stored = _check_database(url)
        log_tail = (Path(tmp) / "server.log").read_text(errors="replace")[-1500:]
    acknowledged = set(result["acknowledged"].values())
    stored_ids = stored["public_ids"]
    stored_set = set(stored_ids)
    audited = stored["audited"]
    integrity = {
        "acknowledged": len(acknowledged), "rows": len(stored_ids),
        "duplicated_rows": len(stored_ids) - len(stored_set),
        "lost": len(acknowledged - stored_set),
        "unacknowledged_rows": len(stored_set - acknowledged),
        "failed_submissions": len(result["failed"]),
        "audit_submit_entries": sum(audited.values()),
        "reports_without_one_audit_entry": sum(1 for p in stored_set if audited.get(p) != 1),
        "audit_chain_ok": stored["audit_chain_ok"],
    }
    integrity["ok"] = (acknowledged == stored_set and len(stored_ids) == len(stored_set)
                       and integrity["reports_without_one_audit_entry"] == 0
                       and integrity["audit_submit_entries"] == len(stored_set)
                       and stored["audit_chain_ok"])
    requests = result["submit"]["n"] + result["hotspots"]["n"]
    return {"database": kind, "workers": workers, "reports": reports, "reporters": reporters,
            "analysts": analysts, "rate": rate, "think_s": think,
            "late_starts": result["late_starts"],
            "elapsed_s": round(result["elapsed_s"], 2),
            "load_average_before": [round(v, 2) for v in load_before],
            "load_average_after": [round(v, 2) for v in load_after],
            "client_cpu_s": round(result["client_cpu_s"], 1),
            "client_cpu_ms_per_request": round(1000 * result["client_cpu_s"] / max(requests, 1),
                                               2),
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
        mode = _mode(run)
        lines.append(f"{run['database']}: {run['reports']} reports, {run['reporters']} "
                     f"reporters, {run['analysts']} analysts, {run['workers']} worker(s), "
                     f"{mode}, {run['elapsed_s']} s; load average "
                     f"{run['load_average_before'][0]:.2f} -> {run['load_average_after'][0]:.2f}"
                     f"; client CPU {run['client_cpu_ms_per_request']:.2f} ms/request")
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
                     f"{i['failed_submissions']} given up, {i['audit_submit_entries']} audit "
                     f"entries (chain {'intact' if i['audit_chain_ok'] else 'BROKEN'}) -> "
                     f"{'OK' if i['ok'] else 'FAILED'}{goal}")
    return "\n".join(lines)


def _mode(run: dict[str, Any]) -> str:
    if run["rate"]:
        return f"open loop {run['rate']:g}/s, {run['late_starts']} late starts"
    if run.get("think_s"):
        return f"closed loop, {run['think_s']:g} s mean pause between a reporter's reports"
    return "closed loop, back to back"


def _load_name(load: tuple[str, float | None]) -> str:
    mode, value = load
    if mode == "closed" or value is None:
        return "closed"
    return f"think{value:g}" if mode == "think" else f"{value:g}/s"


def _loads(text: str) -> list[tuple[str, float | None]]:
    """``closed``, ``think<seconds>`` or an open-loop rate, comma-separated."""
    loads: list[tuple[str, float | None]] = []
    for part in text.split(","):
        part = part.strip()
        if part == "closed":
            loads.append(("closed", None))
            continue
        mode = "think" if part.startswith("think") else "open"
        try:
            value = float(part.removeprefix("think"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a load: {part!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{part!r}: the number must be positive")
        loads.append((mode, value))
    return loads


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 reports instead of 20,000")
    parser.add_argument("--reports", type=int, default=None)
    parser.add_argument("--reporters", type=int, default=200)
    parser.add_argument("--analysts", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--loads", type=_loads,
                        default=[("think", 1.0), ("closed", None), ("open", 100.0)],
                        help="comma-separated: 'think<s>' (each reporter pauses a random "
                             "time, mean <s>, between reports), 'closed' (back to back) and/or "
                             "open-loop rates in reports per second, e.g. think1,closed,100")
    parser.add_argument("--postgres", default=os.environ.get("URBANSEC_TEST_POSTGRES_URL"),
                        help="PostgreSQL URL (default: $URBANSEC_TEST_POSTGRES_URL)")
    parser.add_argument("--only", choices=("sqlite", "postgres"), default=None)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    reports = args.reports or (2_000 if args.quick else 20_000)
    kinds = [k for k in ("sqlite", "postgres") if args.only in (None, k)]
    started = time.perf_counter()
    runs = []
    for kind in kinds:
        if kind == "postgres" and not args.postgres:
            print("postgres: skipped (set URBANSEC_TEST_POSTGRES_URL or give --postgres)")
            continue
        for load in args.loads:
            print(f"{kind}, {_load_name(load)}: running...", flush=True)
            mode, value = load
            runs.append(run_one(kind, args.postgres, reports=reports,
                                reporters=args.reporters, analysts=args.analysts,
                                workers=args.workers, rate=value if mode == "open" else None,
                                think=value if mode == "think" else None))
    print(_table(runs))
    write_results(args.output, "load", started, runs,
                  settings={"reports": reports, "reporters": args.reporters,
                            "loads": [_load_name(load) for load in args.loads],
                            "analysts": args.analysts, "workers": args.workers,
                            "hotspot_query": HOTSPOT_QUERY,
                            "rate_limit": "URBANSEC_REPORT_RATE_LIMIT=100000000 (lifted)"})
    ok = all(r["integrity"]["ok"] and r["submit"]["server_errors"] == 0
             and r["hotspots"]["server_errors"] == 0 for r in runs)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
