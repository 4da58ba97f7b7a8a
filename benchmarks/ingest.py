"""Ingest benchmark: urbansec's importer against the pandas baseline, and query growth.

What is measured, all in one run on this machine, each measurement in its own child process
(this same script with ``--one``) so that peak memory and warm caches of one measurement do not
leak into the next:

1. One year (``../shared/data/chicago/crimes_2017.csv.gz``, 267,792 rows) imported
   - by urbansec: ``upgrade(engine)`` then ``import_incidents(engine, [path], "chicago")``
     (parsing, validation, category mapping, de-duplication, indexes; the migration is not
     timed), and
   - by the baseline most analysts use: ``pandas.read_csv(path)`` then
     ``df.to_sql("crimes", engine, index=False)`` with a plain SQLAlchemy engine (no
     validation, no indexes; both steps are timed),
   each into a fresh SQLite file and a fresh PostgreSQL schema. The ratio row is
   urbansec rows/s divided by baseline rows/s (goals: >= 1.0 on SQLite, >= 3.0 on PostgreSQL).
2. All three years (2015-2017, ~800k rows) in one ``import_incidents`` call, on SQLite and
   PostgreSQL (goal: peak RSS < 500 MB).
3. Queries on the 1-year and the 3-year urbansec databases, right after their import:
   ``count_incidents`` with no filter (totals and counts by category) and a GeoJSON export of
   a bounding box in the Loop over summer 2017 (the same rows in both databases). Seconds are
   the median of three runs in one process; the growth rows divide the 3-year figure by the
   1-year one (rows grow ~3x; a query that uses its indexes well grows less than that).

How to read the table: "Seconds" is wall-clock time, "Rows/s" rows read (imports) or rows
exported (exports) per second, "Peak RSS" the child process's maximum resident memory
(``ru_maxrss``) including the interpreter and its imports (some 85-125 MB of it is there
before any work; the JSON has that figure as ``rss_at_start_mb``). On PostgreSQL, RSS is the
client only: the server's memory is not counted, for urbansec or for the baseline. On SQLite
urbansec converts big files in a forked child process: its peak RSS is reported beside
(``child_peak_rss_mb``), and so is the peak memory of both processes together
(``peak_pss_all_mb``: PSS sampled every 50 ms, which counts the pages they share once; adding
their RSS would count those twice). The 3-year memory goal is checked against the larger of
the import process's RSS and that combined figure.

PostgreSQL comes from ``--postgres URL`` or ``URBANSEC_TEST_POSTGRES_URL`` (``make bench``
starts a server and sets it); every measurement gets its own schema ``bench_<random>``, dropped
afterwards. Without a URL the PostgreSQL rows are skipped with a note.

Run: ``python benchmarks/ingest.py`` (everything, a few minutes) or ``--quick`` (2017 only,
no 3-year import or growth). The table is printed at the end; the results are also written as
JSON to ``benchmarks/results/ingest.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CHICAGO = ROOT.parent / "shared" / "data" / "chicago"
YEARS = (2015, 2016, 2017)
RESULTS = ROOT / "benchmarks" / "results" / "ingest.json"

EXPORT_BBOX = "-87.65,41.87,-87.60,41.90"
EXPORT_START = "2017-06-01"
EXPORT_END = "2017-08-31"
QUERY_REPEATS = 3

SQLITE_GOAL = 1.0
POSTGRES_GOAL = 3.0
RSS_GOAL_MB = 500.0


def data_path(year: int) -> Path:
    return CHICAGO / f"crimes_{year}.csv.gz"


# --------------------------------------------------------------------------------------------
# Child side: one measurement, printed as one JSON line on stdout
# --------------------------------------------------------------------------------------------


def _peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    # KiB on Linux (bytes on macOS, where this benchmark is not calibrated)
    return round(resource.getrusage(who).ru_maxrss / 1024, 1)


class _PssSampler:
    """Peak memory of this process and its children together, sampled every 50 ms while it
    has children (alone, ``ru_maxrss`` says it exactly).

    The SQLite import converts big files in a forked child process. RSS figures of the two
    cannot be added up (the child shares most of its pages with the parent, and RSS counts a
    shared page in full in each); PSS (proportional set size) counts every page once, split
    among the processes sharing it, so the sum over the processes is the memory they use
    together. Linux only (reads /proc); elsewhere, or with no child, ``peak_mb`` stays None.
    """

    def __init__(self) -> None:
        import threading

        self.peak_mb: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        if Path("/proc/self/smaps_rollup").exists():
            self._thread.start()

    @staticmethod
    def _pss_kib(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as handle:
                for line in handle:
                    if line.startswith("Pss:"):
                        return int(line.split()[1])
        except OSError:  # the child has just ended
            pass
        return 0

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.wait(0.05):
            try:
                children = Path(f"/proc/{me}/task/{me}/children").read_text().split()
            except OSError:
                children = []
            if children:  # (reading smaps costs the kernel a walk of the process's pages)
                total = self._pss_kib(me) + sum(self._pss_kib(int(pid)) for pid in children)
                self.peak_mb = max(self.peak_mb or 0.0, round(total / 1024, 1))

    def stop(self) -> float | None:
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join()
        return self.peak_mb


def _urbansec_import(url: str, paths: list[Path]) -> dict[str, Any]:
    from sqlalchemy import text

    from urbansec.services.imports import import_incidents
    from urbansec.store.engine import make_engine
    from urbansec.store.migrate import upgrade

    start_rss = _peak_rss_mb()
    engine = make_engine(url)
    started = time.perf_counter()
    upgrade(engine)
    migrate_seconds = time.perf_counter() - started
    sampler = _PssSampler()
    started = time.perf_counter()
    report = import_incidents(engine, paths, "chicago")
    seconds = time.perf_counter() - started
    peak_pss = sampler.stop()
    peak = _peak_rss_mb()
    child_peak = _peak_rss_mb(resource.RUSAGE_CHILDREN)
    with engine.connect() as connection:
        stored = connection.execute(text("SELECT count(*) FROM incidents")).scalar_one()
    engine.dispose()
    return {
        "rows": sum(f.rows_read for f in report.files),
        "inserted": sum(f.inserted for f in report.files),
        "rejected": sum(f.rejected for f in report.files),
        "stored": stored, "status": report.status,
        "seconds": round(seconds, 3), "migrate_seconds": round(migrate_seconds, 3),
        "peak_rss_mb": peak, "rss_at_start_mb": start_rss,
        "child_peak_rss_mb": child_peak or None, "peak_pss_all_mb": peak_pss,
    }


def _pandas_import(url: str, paths: list[Path]) -> dict[str, Any]:
    import warnings

    import pandas as pd
    from sqlalchemy import create_engine, text

    from urbansec.store.engine import normalise_url  # only to pick the installed psycopg 3

    warnings.simplefilter("ignore", pd.errors.DtypeWarning)  # mixed-type columns, as usual
    start_rss = _peak_rss_mb()
    engine = create_engine(normalise_url(url))
    started = time.perf_counter()
    frames = [pd.read_csv(path) for path in paths]
    df = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    read_seconds = time.perf_counter() - started
    df.to_sql("crimes", engine, index=False)
    seconds = time.perf_counter() - started
    peak = _peak_rss_mb()
    with engine.connect() as connection:
        stored = connection.execute(text("SELECT count(*) FROM crimes")).scalar_one()
    engine.dispose()
    return {
        "rows": len(df), "stored": stored, "seconds": round(seconds, 3),
        "read_csv_seconds": round(read_seconds, 3),
        "to_sql_seconds": round(seconds - read_seconds, 3),
        "peak_rss_mb": peak, "rss_at_start_mb": start_rss,
    }


def _queries(url: str) -> dict[str, Any]:
    from urbansec.services.incidents import IncidentFilter, count_incidents, export_incidents
    from urbansec.store.engine import make_engine

    engine = make_engine(url)
    count_times: list[float] = []
    counted: dict[str, Any] = {}
    for _ in range(QUERY_REPEATS):
        started = time.perf_counter()
        counted = count_incidents(engine, IncidentFilter.parse())
        count_times.append(time.perf_counter() - started)
    export_times: list[float] = []
    exported: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="urbansec-bench-export-") as tmp:
        out = Path(tmp) / "export.geojson"
        for _ in range(QUERY_REPEATS):
            flt = IncidentFilter.parse(bbox=EXPORT_BBOX, start=EXPORT_START, end=EXPORT_END)
            started = time.perf_counter()
            exported = export_incidents(engine, flt, "geojson", out)
            export_times.append(time.perf_counter() - started)
        export_bytes = out.stat().st_size
    engine.dispose()
    return {
        "count": {"total": counted["total"], "categories": len(counted["by_category"]),
                  "seconds": round(statistics.median(count_times), 3),
                  "runs": [round(t, 3) for t in count_times]},
        "export": {"rows": exported["rows"], "bytes": export_bytes,
                   "seconds": round(statistics.median(export_times), 3),
                   "runs": [round(t, 3) for t in export_times]},
        "peak_rss_mb": _peak_rss_mb(),
    }


def run_one(kind: str, url: str, paths: list[Path]) -> dict[str, Any]:
    if kind == "urbansec-import":
        return _urbansec_import(url, paths)
    if kind == "pandas-import":
        return _pandas_import(url, paths)
    if kind == "queries":
        return _queries(url)
    raise SystemExit(f"unknown measurement {kind!r}")


# --------------------------------------------------------------------------------------------
# Parent side: fresh databases, one child per measurement, the table
# --------------------------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[ingest] {message}", file=sys.stderr, flush=True)


def child(kind: str, url: str, paths: Sequence[Path] = ()) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--one", kind, "--url", url]
    for path in paths:
        command += ["--path", str(path)]
    started = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    wall = time.perf_counter() - started
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"error": f"exit code {done.returncode}", "process_seconds": round(wall, 1)}
    result = json.loads(lines[-1])
    result["process_seconds"] = round(wall, 1)
    return result


@contextmanager
def sqlite_database(tmp: Path, name: str) -> Iterator[str]:
    path = tmp / f"{name}.db"
    try:
        yield f"sqlite:///{path}"
    finally:
        for leftover in tmp.glob(f"{name}.db*"):
            leftover.unlink()


def postgres_database(base: str) -> AbstractContextManager[str]:
    """A fresh schema, dropped afterwards."""
    from urbansec.store.engine import scratch_schema

    return scratch_schema(base, "bench")


def machine_info(postgres: str | None) -> dict[str, Any]:
    import sqlite3

    import pandas
    import sqlalchemy

    info: dict[str, Any] = {
        "platform": platform.platform(), "cpus": os.cpu_count(),
        "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
        "pandas": pandas.__version__, "sqlalchemy": sqlalchemy.__version__,
    }
    if postgres:
        from sqlalchemy import create_engine, text

        from urbansec.store.engine import normalise_url

        engine = create_engine(normalise_url(postgres))
        with engine.connect() as connection:
            info["postgresql"] = connection.execute(text("SHOW server_version")).scalar_one()
            info["postgis"] = connection.execute(
                text("SELECT extversion FROM pg_extension WHERE extname = 'postgis'")).scalar()
        engine.dispose()
    return info


def measure(postgres: str | None, quick: bool) -> dict[str, Any]:
    databases: list[tuple[str, str]] = [("sqlite", "SQLite")]
    if postgres:
        databases.append(("postgres", "PostgreSQL"))
    one_year = [data_path(2017)]
    three_years = [data_path(year) for year in YEARS]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="urbansec-bench-") as tmp_name:
        tmp = Path(tmp_name)

        @contextmanager
        def fresh(db: str, name: str) -> Iterator[str]:
            if db == "sqlite":
                with sqlite_database(tmp, name) as url:
                    yield url
            else:
                assert postgres is not None
                with postgres_database(postgres) as url:
                    yield url

        for db, label in databases:
            plans = [("1y", one_year)] if quick else [("1y", one_year), ("3y", three_years)]
            for span, paths in plans:
                with fresh(db, f"urbansec_{span}") as url:
                    log(f"{label}: urbansec import, {len(paths)} file(s) ...")
                    imported = child("urbansec-import", url, paths)
                    results[f"{db}/urbansec/{span}"] = imported
                    log(f"{label}: urbansec import {span}: {_brief(imported)}")
                    if "error" not in imported:
                        log(f"{label}: queries on the {span} database ...")
                        queried = child("queries", url)
                        results[f"{db}/queries/{span}"] = queried
                        log(f"{label}: queries {span}: {_brief(queried)}")
                if span == "1y":
                    with fresh(db, "pandas_1y") as url:
                        log(f"{label}: pandas read_csv + to_sql, 1 file ...")
                        baseline = child("pandas-import", url, one_year)
                        results[f"{db}/pandas/1y"] = baseline
                        log(f"{label}: pandas 1y: {_brief(baseline)}")
    return results


def _brief(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"FAILED ({result['error']})"
    if "count" in result:
        return (f"count {result['count']['seconds']} s, "
                f"export {result['export']['rows']} rows {result['export']['seconds']} s")
    return f"{result['rows']:,} rows in {result['seconds']} s, peak RSS {result['peak_rss_mb']} MB"


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------


def _rate(rows: float, seconds: float) -> float | None:
    return rows / seconds if seconds else None


def summarise(results: dict[str, Any], postgres: str | None, quick: bool) -> dict[str, Any]:
    """Ratios, goals and growth factors derived from the raw measurements."""
    summary: dict[str, Any] = {}
    for db, goal in (("sqlite", SQLITE_GOAL), ("postgres", POSTGRES_GOAL)):
        ours, theirs = results.get(f"{db}/urbansec/1y"), results.get(f"{db}/pandas/1y")
        if ours and theirs and "error" not in ours and "error" not in theirs:
            ratio = theirs["seconds"] / ours["seconds"]
            summary[f"{db}/ratio"] = {"value": round(ratio, 2), "goal": goal,
                                      "met": ratio >= goal}
        three = results.get(f"{db}/urbansec/3y")
        if three and "error" not in three:
            # the import process's own peak RSS, and, where a conversion process ran beside
            # it, the peak of their memory together (PSS, see _PssSampler)
            together = three.get("peak_pss_all_mb") if three.get("child_peak_rss_mb") else None
            value = max(three["peak_rss_mb"], together or 0.0)
            summary[f"{db}/rss_3y"] = {"value": value, "goal": RSS_GOAL_MB,
                                       "met": value < RSS_GOAL_MB,
                                       "import_process_rss": three["peak_rss_mb"],
                                       "with_conversion_process_pss": together}
        q1, q3 = results.get(f"{db}/queries/1y"), results.get(f"{db}/queries/3y")
        if q1 and q3 and "error" not in q1 and "error" not in q3:
            for name, rows_key in (("count", "total"), ("export", "rows")):
                a, b = q1[name], q3[name]
                summary[f"{db}/growth/{name}"] = {
                    "rows": round(b[rows_key] / a[rows_key], 2) if a[rows_key] else None,
                    "seconds": round(b["seconds"] / a["seconds"], 2) if a["seconds"] else None,
                }
    summary["postgres_skipped"] = postgres is None
    summary["quick"] = quick
    return summary


def render(results: dict[str, Any], summary: dict[str, Any], postgres: str | None,
           quick: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="urbansec ingest benchmark (Chicago crimes; one run, this machine)",
                  title_justify="left")
    for name, justify in (("Measurement", "left"), ("DB", "left"), ("Rows", "right"),
                          ("Seconds", "right"), ("Rows/s", "right"),
                          ("Peak RSS MB", "right"), ("Goal / note", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]

    def num(value: float | None, digits: int = 0) -> str:
        return "-" if value is None else f"{value:,.{digits}f}"

    def verdict(item: dict[str, Any], text: str) -> str:
        return f"{text}: {'[green]met[/]' if item['met'] else '[red]NOT met[/]'}"

    dbs = [("sqlite", "SQLite"), ("postgres", "PostgreSQL")]
    skip_note = "skipped: no PostgreSQL (set URBANSEC_TEST_POSTGRES_URL or --postgres)"

    def import_row(what: str, db: str, label: str, key: str, note: str = "") -> None:
        if db == "postgres" and postgres is None:
            table.add_row(what, label, "", "", "", "", skip_note)
            return
        result = results.get(key)
        if result is None or "error" in result:
            table.add_row(what, label, "", "", "", "",
                          f"[red]failed: {(result or {}).get('error', 'not run')}[/]")
            return
        table.add_row(what, label, num(result["rows"]), num(result["seconds"], 1),
                      num(_rate(result["rows"], result["seconds"])),
                      num(result["peak_rss_mb"]), note)

    def child_note(key: str) -> str:
        result = results.get(key) or {}
        if not result.get("child_peak_rss_mb") or result.get("peak_pss_all_mb") is None:
            return ""
        return (f"+ conversion process {result['child_peak_rss_mb']:.0f} MB RSS; "
                f"both together {result['peak_pss_all_mb']:.0f} MB PSS")

    for db, label in dbs:
        import_row("urbansec import_incidents, 2017", db, label, f"{db}/urbansec/1y",
                   child_note(f"{db}/urbansec/1y"))
        pandas = results.get(f"{db}/pandas/1y") or {}
        note = (f"read_csv {pandas['read_csv_seconds']:.1f} s + to_sql "
                f"{pandas['to_sql_seconds']:.1f} s" if "read_csv_seconds" in pandas else "")
        import_row("pandas read_csv + to_sql, 2017", db, label, f"{db}/pandas/1y", note)
        ratio = summary.get(f"{db}/ratio")
        if ratio is not None:
            goal = f"goal >= {ratio['goal']:.1f}"
            table.add_row("  ratio urbansec / pandas (rows/s)", label, "", "",
                          f"x{ratio['value']:.2f}", "", verdict(ratio, goal))
    table.add_section()
    if quick:
        table.add_row("urbansec import_incidents, 2015-2017", "", "", "", "", "",
                      "skipped (--quick)")
    else:
        for db, label in dbs:
            rss = summary.get(f"{db}/rss_3y")
            note = verdict(rss, f"goal RSS < {RSS_GOAL_MB:.0f} MB") if rss else ""
            if child_note(f"{db}/urbansec/3y"):
                note = f"{child_note(f'{db}/urbansec/3y')}; {note}"
            import_row("urbansec import_incidents, 2015-2017 (one call)", db, label,
                       f"{db}/urbansec/3y", note)
    table.add_section()
    spans = [("1y", "1 year")] if quick else [("1y", "1 year"), ("3y", "3 years")]
    for db, label in dbs:
        if db == "postgres" and postgres is None:
            table.add_row("queries", label, "", "", "", "", skip_note)
            continue
        for name, what in (("count", "count_incidents, no filter"),
                           ("export", "export geojson, bbox + Jun-Aug 2017")):
            for span, span_label in spans:
                result = results.get(f"{db}/queries/{span}")
                if result is None or "error" in result:
                    table.add_row(f"{what}, {span_label} DB", label, "", "", "", "",
                                  f"[red]failed: {(result or {}).get('error', 'not run')}[/]")
                    continue
                item = result[name]
                rows = item["total"] if name == "count" else item["rows"]
                rate = num(_rate(rows, item["seconds"])) if name == "export" else ""
                note = (f"{item['categories']} categories" if name == "count"
                        else f"{item['bytes'] / 1e6:.1f} MB")
                table.add_row(f"{what}, {span_label} DB", label, num(rows),
                              num(item["seconds"], 3), rate, num(result["peak_rss_mb"]),
                              f"median of {QUERY_REPEATS}; {note}")
            growth = summary.get(f"{db}/growth/{name}")
            if growth is not None:
                table.add_row("  growth 1 -> 3 years", label,
                              f"x{growth['rows']:.2f}" if growth["rows"] else "-",
                              f"x{growth['seconds']:.2f}" if growth["seconds"] else "-",
                              "", "", "time growth / row growth")
    width = None if sys.stdout.isatty() else 160
    Console(width=width).print(table)
    print(f"JSON: {RESULTS.relative_to(ROOT)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true",
                        help="only 2017: no 3-year import, no growth factors")
    parser.add_argument("--postgres", metavar="URL",
                        help="PostgreSQL+PostGIS server (default: $URBANSEC_TEST_POSTGRES_URL)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # child: run one measurement
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--path", action="append", type=Path, default=[], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.one:
        print(json.dumps(run_one(args.one, args.url, args.path)))
        return 0

    missing = [p for p in (data_path(y) for y in YEARS) if not p.exists()]
    if missing:
        print(f"ingest benchmark skipped: {', '.join(map(str, missing))} not found "
              "(the shared data sets live in ../shared/data)")
        return 0
    postgres = args.postgres or os.environ.get("URBANSEC_TEST_POSTGRES_URL") or None
    if not postgres and os.environ.get("URBANSEC_REQUIRE_POSTGRES"):
        print("URBANSEC_REQUIRE_POSTGRES is set but no PostgreSQL URL was given", file=sys.stderr)
        return 2
    if not postgres:
        log("no PostgreSQL URL (--postgres or URBANSEC_TEST_POSTGRES_URL): SQLite only")

    started = time.perf_counter()
    results = measure(postgres, args.quick)
    summary = summarise(results, postgres, args.quick)
    document = {
        "benchmark": "ingest", "mode": "quick" if args.quick else "full",
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "total_seconds": round(time.perf_counter() - started, 1),
        "machine": machine_info(postgres),
        "export_filter": {"bbox": EXPORT_BBOX, "start": EXPORT_START, "end": EXPORT_END},
        "results": results, "summary": summary,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    render(results, summary, postgres, args.quick)
    failed = [key for key, value in results.items() if "error" in value]
    if failed:
        print(f"failed measurements: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
