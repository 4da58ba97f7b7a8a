"""Small repository functions over the tables, shared by the services."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from urbansec.ingest.records import RejectedRow
from urbansec.store.tables import ImportBatch, RejectedRowRecord, Source

batches = ImportBatch.__table__
sources = Source.__table__
rejected_rows = RejectedRowRecord.__table__


def now() -> datetime:
    return datetime.now(UTC)


def ensure_source(
    connection: Connection, key: str, name: str, timezone: str | None = None,
    url: str | None = None, licence: str | None = None,
) -> int:
    found = connection.execute(select(sources.c.id).where(sources.c.key == key)).scalar()
    if found is not None:
        return int(found)
    return int(connection.execute(
        insert(sources).values(key=key, name=name, timezone=timezone, url=url, licence=licence,
                               created_at=now()).returning(sources.c.id)
    ).scalar_one())


def start_batch(
    connection: Connection, *, kind: str, preset: str, source_id: int | None, file_name: str,
    sha256: str, started_at: datetime,
) -> int:
    return int(connection.execute(
        insert(batches).values(
            kind=kind, preset=preset, source_id=source_id, file_name=file_name, sha256=sha256,
            status="running", started_at=started_at, summary={},
            rows_read=0, rows_inserted=0, rows_updated=0, rows_unchanged=0, rows_rejected=0,
            rows_unlocated=0,
        ).returning(batches.c.id)
    ).scalar_one())


def finish_batch(connection: Connection, batch_id: int, **values: Any) -> None:
    connection.execute(
        update(batches).where(batches.c.id == batch_id).values(finished_at=now(), **values)
    )


def add_rejected(connection: Connection, batch_id: int, rows: Iterable[RejectedRow]) -> None:
    payload = [
        {"batch_id": batch_id, "line_number": r.line_number, "reason": r.reason,
         "raw_line": r.raw_line}
        for r in rows
    ]
    if payload:
        connection.execute(insert(rejected_rows), payload)


def earlier_identical_batch(connection: Connection, sha256: str, kind: str) -> int | None:
    return connection.execute(
        select(batches.c.id)
        .where(batches.c.sha256 == sha256, batches.c.kind == kind,
               batches.c.status == "succeeded")
        .order_by(batches.c.id).limit(1)
    ).scalar()


def batch_rows(connection: Connection, limit: int = 50) -> list[Mapping[str, Any]]:
    query = (
        select(batches, sources.c.key.label("source_key"))
        .select_from(batches.outerjoin(sources, sources.c.id == batches.c.source_id))
        .order_by(batches.c.id.desc()).limit(limit)
    )
    return [dict(row._mapping) for row in connection.execute(query)]


def rejected_for_batch(
    connection: Connection, batch_id: int, limit: int = 100
) -> list[Mapping[str, Any]]:
    query = (
        select(rejected_rows.c.line_number, rejected_rows.c.reason, rejected_rows.c.raw_line)
        .where(rejected_rows.c.batch_id == batch_id)
        .order_by(rejected_rows.c.line_number).limit(limit)
    )
    return [dict(row._mapping) for row in connection.execute(query)]
