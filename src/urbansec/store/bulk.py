"""Deferring secondary indexes and foreign-key checks during big loads.

Maintaining five indexes and two foreign keys row by row costs more than the load itself;
building each index once, sorted, afterwards is several times cheaper. Done inside the
import's transaction, so a failed load restores the indexes with everything else.

On PostgreSQL the unique ``(source_id, source_key)`` constraint is deferred too: the writer
already routes every id to exactly one row (it reads the stored ids first, and the exclusive
lock taken by dropping the constraint keeps other writers out until commit), and re-adding the
constraint checks the whole table again, so a duplicate could only fail the import, never
enter the table. So is the primary key (its index costs the COPY an eighth of its time; the
ids come from the table's sequence and are checked again when it is re-added). SQLite cannot
drop a constraint declared with its table; there they stay.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress

from sqlalchemy import Connection, func, select

from urbansec.store.tables import Incident

INCIDENTS = Incident.__table__
_PG_GEOM_INDEX = "CREATE INDEX ix_incidents_geom ON incidents USING gist (geom)"
_PG_PRIMARY = ("pk_incidents", "PRIMARY KEY (id)")
_PG_UNIQUE = ("uq_incidents_source_id_source_key", "UNIQUE (source_id, source_key)")
_PG_FOREIGN_KEYS = {
    "fk_incidents_source_id_sources": "FOREIGN KEY (source_id) REFERENCES sources (id)",
    "fk_incidents_batch_id_import_batches":
        "FOREIGN KEY (batch_id) REFERENCES import_batches (id)",
}
# What services/incidents.py filters and groups on.
_PG_ANALYZED = ("source_id", "category", "occurred_at", "lon", "lat")
_PG_STATS_TARGET = 30  # ANALYZE samples 300 rows per unit; PostgreSQL's default is 100
_SQLITE_LOAD_CACHE_KIB = 16_384
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
    if connection.dialect.name == "sqlite":
        with _smaller_sqlite_cache(connection):
            yield from _deferred(connection, postgres=False)
    else:
        yield from _deferred(connection, postgres=True)


@contextmanager
def _smaller_sqlite_cache(connection: Connection) -> Iterator[None]:
    """A big load appends rows and sorts indexes once: a large page cache only holds dirty
    pages that are written out anyway. 16 MB instead of the connection's 64 MB keeps a 3-year
    import (with its conversion process) well under 500 MB, for ~2% more CPU (measured)."""
    previous = connection.exec_driver_sql("PRAGMA cache_size").scalar()
    connection.exec_driver_sql(f"PRAGMA cache_size=-{_SQLITE_LOAD_CACHE_KIB}")
    try:
        yield
    finally:
        with suppress(Exception):  # a broken connection is discarded by the pool anyway
            connection.exec_driver_sql(f"PRAGMA cache_size={int(previous)}")


def _deferred(connection: Connection, *, postgres: bool) -> Iterator[None]:
    indexes = sorted((index for index in INCIDENTS.indexes if index.name),
                     key=lambda index: str(index.name))
    constraints = (_PG_PRIMARY, _PG_UNIQUE, *_PG_FOREIGN_KEYS.items()) if postgres else ()
    for index in indexes:
        connection.exec_driver_sql(f"DROP INDEX IF EXISTS {index.name}")
    if postgres:
        connection.exec_driver_sql("DROP INDEX IF EXISTS ix_incidents_geom")
    for name, _ in constraints:
        connection.exec_driver_sql(f"ALTER TABLE incidents DROP CONSTRAINT IF EXISTS {name}")
    yield
    for index in indexes:
        index.create(connection)
    if postgres:
        connection.exec_driver_sql(_PG_GEOM_INDEX)
    for name, definition in constraints:
        # re-adding validates every row in one pass: integrity is checked, just later
        connection.exec_driver_sql(f"ALTER TABLE incidents ADD CONSTRAINT {name} {definition}")
    if postgres:
        # After a big load the planner's statistics are stale or missing: refresh them now
        # rather than leave the first queries to guess, but only for the columns queries
        # filter and group on (the JSON and free-text columns were most of ANALYZE's time),
        # from a smaller sample (9,000 rows instead of 30,000: a third of the time). These
        # stats only need to carry the first queries: autovacuum analyzes every column with
        # the server's settings soon after the commit (the inserted rows count as changes
        # made after this ANALYZE). SET LOCAL: the setting ends with the transaction.
        connection.exec_driver_sql(f"SET LOCAL default_statistics_target = {_PG_STATS_TARGET}")
        connection.exec_driver_sql(f"ANALYZE incidents ({', '.join(_PG_ANALYZED)})")
    else:
        # SQLite's ANALYZE looks at the indexes only; the limit samples them (cheap)
        connection.exec_driver_sql("PRAGMA analysis_limit=2000")
        connection.exec_driver_sql("ANALYZE incidents")
