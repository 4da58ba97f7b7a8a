"""The schema: the same tables on both databases, PostGIS extras on PostgreSQL, reversible."""

from __future__ import annotations

from sqlalchemy import Engine, inspect, text

from urbansec.store import collaboration  # noqa: F401 - its tables are on Base too
from urbansec.store.engine import make_engine
from urbansec.store.migrate import current_revision, head_revision, upgrade
from urbansec.store.tables import Base

TABLES = {"sources", "import_batches", "rejected_rows", "incidents", "areas", "area_counts"}


def test_upgrade_creates_every_table_at_head(db: Engine) -> None:
    names = set(inspect(db).get_table_names())
    assert names >= TABLES
    assert current_revision(db) == head_revision(db)
    for table in Base.metadata.sorted_tables:
        stored = {c["name"] for c in inspect(db).get_columns(table.name)}
        assert {c.name for c in table.columns} <= stored, table.name


def test_incident_identity_is_unique_per_source(db: Engine) -> None:
    unique = inspect(db).get_unique_constraints("incidents")
    assert {"source_id", "source_key"} in [set(u["column_names"]) for u in unique]
    indexes = {i["name"] for i in inspect(db).get_indexes("incidents")}
    assert {"ix_incidents_occurred_at", "ix_incidents_lon_lat"} <= indexes


def test_postgis_columns_and_gist_indexes(db: Engine) -> None:
    if db.dialect.name != "postgresql":
        columns = {c["name"] for c in inspect(db).get_columns("incidents")}
        assert "geom" not in columns  # SQLite keeps lon/lat only
        return
    with db.connect() as connection:
        kinds = dict(connection.execute(text(
            "SELECT c.relname, am.amname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_am am ON am.oid = c.relam WHERE c.relname IN "
            "('ix_incidents_geom', 'ix_areas_geom') AND c.relnamespace = "
            "(SELECT oid FROM pg_namespace WHERE nspname = current_schema())")).all())
        assert kinds == {"ix_incidents_geom": "gist", "ix_areas_geom": "gist"}
        connection.execute(text(
            "INSERT INTO sources (key, name, created_at) VALUES ('s', 'S', now())"))
        connection.execute(text(
            "INSERT INTO import_batches (kind, preset, file_name, sha256, status, rows_read, "
            "rows_inserted, rows_updated, rows_unchanged, rows_rejected, rows_unlocated, "
            "summary, started_at) VALUES ('incidents', 'x', 'f', 'h', 'succeeded', 0, 0, 0, 0, "
            "0, 0, '{}', now())"))
        connection.execute(text(
            "INSERT INTO incidents (source_id, source_key, occurred_at, time_precision, lon, lat,"
            " area_codes, attributes, row_hash, batch_id) VALUES (1, 'a', now(), 'second', "
            "-87.6, 41.9, '{}', '{}', 'h', 1), (1, 'b', now(), 'second', NULL, NULL, '{}', "
            "'{}', 'h', 1)"))
        geoms = connection.execute(text(
            "SELECT source_key, ST_AsText(geom), ST_SRID(geom) FROM incidents ORDER BY 1")).all()
        connection.rollback()
    assert [tuple(g) for g in geoms] == [("a", "POINT(-87.6 41.9)", 4326), ("b", None, None)]


def test_downgrade_and_upgrade_again(database_url: str) -> None:
    from alembic import command

    from urbansec.store.migrate import alembic_config

    engine = make_engine(database_url)
    upgrade(engine)
    command.downgrade(alembic_config(engine), "base")
    assert not (set(inspect(engine).get_table_names()) & TABLES)
    upgrade(engine)
    assert set(inspect(engine).get_table_names()) >= TABLES
    engine.dispose()
