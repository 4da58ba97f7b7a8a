"""Deferring secondary indexes and foreign-key checks during big loads.

Maintaining five indexes and two foreign keys row by row costs more than the load itself;
building each index once, sorted, afterwards is several times cheaper. Done inside the
import's transaction, so a failed load restores the indexes with everything else.

On PostgreSQL the unique ``(source_id, source_key)`` constraint is deferred too: the writer
already routes every id to exactly one row (it reads the stored ids first, and the exclusive
lock taken by dropping the constraint keeps other writers out until commit), and re-adding the
constraint checks the whole table again, so a duplicate could only fail the import, never
enter the table. SQLite cannot drop a constraint declared with its table; there it stays.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, func, select

from urbansec.store.tables import Incident

INCIDENTS = Incident.__table__
_PG_GEOM_INDEX = "CREATE INDEX ix_incidents_geom ON incidents USING gist (geom)"
_PG_UNIQUE = ("uq_incidents_source_id_source_key", "UNIQUE (source_id, source_key)")
_PG_FOREIGN_KEYS = {
    "fk_incidents_source_id_sources": "FOREIGN KEY (source_id) REFERENCES sources (id)",
    "fk_incidents_batch_id_import_batches":
        "FOREIGN KEY (batch_id) REFERENCES import_batches (id)",
}
# Loading at least this many rows, and at least as many as the table holds, is "big".
BIG_LOAD_ROWS = 50_000


def is_big_load(connection: Connection, expected_rows: int) -> bool:
    if expected_rows < BIG_LOAD_ROWS:
        return False
    stored = connection.execute(select(func.count()).select_from(INCIDENTS)).scalar_one()
    return expected_rows >= stored


@contextmanager
def deferred_incident_indexes(connection: Connection, enabled: bool = True) -> Iterator[None]:
    if not enabled:
        yield
        return
    postgres = connection.dialect.name == "postgresql"
    indexes = [index for index in INCIDENTS.indexes if index.name]
    for index in indexes:
        connection.exec_driver_sql(f"DROP INDEX IF EXISTS {index.name}")
    if postgres:
        connection.exec_driver_sql("DROP INDEX IF EXISTS ix_incidents_geom")
        for name in (*_PG_FOREIGN_KEYS, _PG_UNIQUE[0]):
            connection.exec_driver_sql(f"ALTER TABLE incidents DROP CONSTRAINT IF EXISTS {name}")
    yield
    for index in indexes:
        index.create(connection)
    if postgres:
        connection.exec_driver_sql(_PG_GEOM_INDEX)
        for name, definition in (_PG_UNIQUE, *_PG_FOREIGN_KEYS.items()):
            # re-adding validates every row in one pass: integrity is checked, just later
            connection.exec_driver_sql(f"ALTER TABLE incidents ADD CONSTRAINT {name} {definition}")
    else:
        connection.exec_driver_sql("PRAGMA analysis_limit=2000")
    # After a big load the planner's statistics are stale or missing: refresh them now
    # rather than leave the first queries to guess (sampled, so cheap).
    connection.exec_driver_sql("ANALYZE incidents")
