"""Run the Alembic migrations shipped inside the package (``urbansec db upgrade``)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError

from urbansec.errors import DatabaseError

SCRIPT_LOCATION = "urbansec.store:migrations"


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Bring the database to ``revision``; returns the revision it is at afterwards."""
    try:
        command.upgrade(alembic_config(engine), revision)
    except OperationalError as exc:
        raise DatabaseError(f"cannot migrate {engine.url.render_as_string()}: {exc.orig}") from exc
    return current_revision(engine)


def version_table_schema(connection: Connection) -> str | None:
    """Where the version table lives: the schema urbansec's tables go to (PostgreSQL).

    Reading "the first alembic_version on the search path" instead would mistake another
    schema's urbansec for this one and silently use its tables.
    """
    if connection.dialect.name == "postgresql":
        return connection.dialect.default_schema_name
    return None


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"version_table_schema": version_table_schema(connection)})
        return context.get_current_revision()


def head_revision(engine: Engine) -> str | None:
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def is_up_to_date(engine: Engine) -> bool:
    return current_revision(engine) == head_revision(engine)
