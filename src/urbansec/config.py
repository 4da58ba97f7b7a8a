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

    # --- API server (urbansec serve) -------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 8000
    cors_origins: list[str] = Field(default_factory=list)  # e.g. ["https://city.example"]
    max_body_bytes: int = 6 * 1024 * 1024  # whole request, photo included
    max_photo_bytes: int = 5 * 1024 * 1024
    access_token_minutes: int = 30
    refresh_token_days: int = 14
    # anonymous report submissions allowed per client (IP) per window
    report_rate_limit: int = 30
    report_rate_window_seconds: int = 60
    # failed sign-ins allowed per account, and per client address, in a window: beyond them
    # sign-in is refused (429) until the window has slid, so passwords cannot be guessed
    login_failure_limit: int = 10
    login_failure_address_limit: int = 50
    login_failure_window_seconds: int = 900

    # --- privacy -----------------------------------------------------------------------------
    # aggregates below this count are suppressed in anything a viewer or the public sees
    k_anonymity: int = 5
    # cell size (metres) to which public locations are generalised, at least
    public_cell_m: float = 250.0
    # reporters' contact details are erased this many days after the report
    contact_retention_days: int = 180

    # --- night-time view: local whole hours HH:MM-HH:MM, crossing midnight allowed --------
    night_window: str = "22:00-06:00"

    # --- Open311 GeoReport v2 ----------------------------------------------------------------
    open311_jurisdiction_id: str = "urbansec.local"
    # POST /requests needs an api_key when true (as the deployment configures)
    open311_require_api_key: bool = False

    # --- web dashboard -------------------------------------------------------------------------
    dashboard_title: str = "urbansec"
    # map background tiles, e.g. "https://tiles.example/{z}/{x}/{y}.png" (none: boundaries only)
    tile_url: str | None = None
    tile_attribution: str | None = None
    # saved event cubes (a restarted server loads the cube instead of reading every incident):
    # unset: the user's cache directory (e.g. ~/.cache/urbansec); empty: no files
    cube_cache_dir: str | None = None

    # --- live alerts (issue 8) -------------------------------------------------------------
    # the MQTT broker linking the alert engine (in the ingester) to every API process; unset:
    # the API has no live source and the alert stream only replays stored changes
    mqtt_url: str | None = None
    alert_topic: str = "urbansec/alerts"
    # "now" for the rules: wall, data (newest phenomenon time: replays), or auto (data when
    # the feed lags the wall clock by more than an hour)
    alert_clock: str = "auto"
    # full evaluations (silent sensors, dwell, rule changes) every this many seconds
    alert_tick_seconds: float = 5.0
    # send webhook deliveries from the API processes too (the ingester always does)
    alert_webhooks_in_api: bool = True
    webhook_max_attempts: int = 8


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
