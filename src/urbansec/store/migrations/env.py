"""Alembic environment: the engine is handed in by ``urbansec.store.migrate``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from urbansec.config import get_settings
from urbansec.store import (
    alerts,  # noqa: F401 - registers its tables on Base
    collaboration,  # noqa: F401 - registers its tables on Base
    crowd,  # noqa: F401 - registers its tables on Base
    sensors,  # noqa: F401 - registers its tables on Base
)
from urbansec.store.engine import make_engine
from urbansec.store.migrate import version_table_schema
from urbansec.store.tables import Base

engine = context.config.attributes.get("engine")
if not isinstance(engine, Engine):
    engine = make_engine(get_settings().database_url)

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        # Keep the version table in the schema the tables go to (the first of search_path),
        # so a database holding urbansec in several schemas tracks each one separately.
        version_table_schema=version_table_schema(connection),
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
