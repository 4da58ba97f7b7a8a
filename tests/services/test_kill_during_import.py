"""Killing the process in the middle of an import leaves the database exactly as before."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, inspect, select, text

from urbansec.services.imports import import_incidents, list_imports
from urbansec.store.tables import Incident, RejectedRowRecord

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "src" / "urbansec" / "samples" / "chicago" / "crimes_2017_districts_01_18.csv.gz"
YEAR = ROOT.parent / "shared" / "data" / "chicago" / "crimes_2017.csv.gz"


def snapshot(engine: Engine) -> tuple[int, int, int, str, set[str]]:
    with engine.connect() as connection:
        incidents = connection.execute(select(func.count()).select_from(Incident)).scalar_one()
        rejected = connection.execute(
            select(func.count()).select_from(RejectedRowRecord)).scalar_one()
        checksum = connection.execute(select(
            func.coalesce(func.sum(func.length(Incident.row_hash)), 0),
            func.max(Incident.source_key))).one()
    batches = len(list_imports(engine))
    indexes = {i["name"] for i in inspect(engine).get_indexes("incidents")}
    return incidents, rejected, batches, f"{checksum[0]}:{checksum[1]}", indexes


@pytest.mark.slow
def test_sigkill_mid_import_changes_nothing(db: Engine, database_url: str) -> None:
    if not YEAR.exists():
        pytest.skip(f"{YEAR} not found: the shared data sets live in ../shared/data")
    import_incidents(db, [SAMPLE], "chicago")
    before = snapshot(db)
    db.dispose()

    process = subprocess.Popen(
        [sys.executable, "-m", "urbansec.cli", "--database", database_url,
         "import", "incidents", str(YEAR), "--preset", "chicago"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stderr is not None
    progressed = None
    deadline = time.monotonic() + 120
    for line in process.stderr:
        # wait until well into the file: rows are being written inside the transaction
        if "rows read" in line and int(line.split(": ")[1].split(" ")[0].replace(",", "")) \
                >= 100_000:
            progressed = line
            break
        assert time.monotonic() < deadline, "import never got going"
    assert progressed is not None, process.communicate()
    assert process.poll() is None, "the import finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL

    if db.dialect.name == "postgresql":
        # the server notices the dead client and rolls back; wait for that backend to go
        for _ in range(100):
            with db.connect() as connection:
                busy = connection.execute(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND state <> 'idle'")).scalar_one()
            if not busy:
                break
            time.sleep(0.1)
    else:
        with db.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
    assert snapshot(db) == before

    # and the database is fully usable: the same import now runs to the end
    report = import_incidents(db, [YEAR], "chicago")
    assert report.files[0].inserted == 267_792 - 30_438
    assert report.files[0].unchanged == 30_438
    assert snapshot(db)[4] == before[4]  # the deferred indexes are back
    unique = [set(u["column_names"]) for u in inspect(db).get_unique_constraints("incidents")]
    assert {"source_id", "source_key"} in unique  # deferred during the big load, back now


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as handle:
            return [int(child) for child in handle.read().split()]
    except OSError:
        return []


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has ended; only its parent's reaping is left


# The caller of read_chicago_columnar_in_child, as an import is: it takes a chunk, then gets
# killed while the child process has the next ones ready.
_CALLER = """
import sys, time
from pathlib import Path
from urbansec.ingest.columnar import read_chicago_columnar_in_child
from urbansec.ingest.presets import preset_for
chunks = read_chicago_columnar_in_child(Path(sys.argv[1]), preset_for("chicago", None),
                                        block_rows=2000)
next(chunks)
print("converting", flush=True)
time.sleep(120)
"""


def test_sigkill_of_the_importer_also_ends_its_conversion_process() -> None:
    """SQLite imports of big files convert in a child process: killing the import must not
    leave it running (it finds at its next chunk that nobody reads them any more)."""
    from urbansec.ingest.columnar import can_read_in_child

    if not can_read_in_child() or not Path("/proc/self/task").exists():
        pytest.skip("conversion in a child process is used on Linux only")
    process = subprocess.Popen([sys.executable, "-c", _CALLER, str(SAMPLE)],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "converting"
    converters = _children(process.pid)
    assert len(converters) == 1 and _running(converters[0])
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)

    deadline = time.monotonic() + 10
    try:
        while _running(converters[0]):
            assert time.monotonic() < deadline, "the conversion process outlived the import"
            time.sleep(0.05)
    finally:
        if _running(converters[0]):  # a failed test must not leave it behind either
            os.kill(converters[0], signal.SIGKILL)
