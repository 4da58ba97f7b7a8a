"""Settings in one place, read from ``URBANSEC_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from platformdirs import user_data_dir
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_database_url() -> str:
    """SQLite file in the user's data directory (e.g. ``~/.local/share/urbansec/urbansec.db``)."""
    directory = Path(user_data_dir("urbansec", appauthor=False))
    return f"sqlite:///{directory / 'urbansec.db'}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="URBANSEC_", extra="ignore")

    database_url: str = Field(default_factory=default_database_url)
    # Rows handed to the database per round trip while importing; bounds memory, not correctness.
    import_chunk_rows: int = 20_000


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
