"""Storage: SQLAlchemy tables, repositories and Alembic migrations. Knows no HTTP, no analysis."""
