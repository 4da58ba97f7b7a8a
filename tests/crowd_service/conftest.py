"""An API client over a migrated database (SQLite and PostgreSQL) with a partner and a viewer
API key, and helpers to give zones their sensors and observations."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from tests.sensors.support import make_thing

from urbansec.api.app import create_app
from urbansec.config import Settings
from urbansec.services import identity, sensors

API = "/api/v1/crowd"


@dataclass
class Api:
    client: TestClient
    engine: Engine
    partner: dict[str, str]
    viewer: dict[str, str]

    def get(self, path: str, **params: Any) -> Any:
        return self.client.get(f"{API}{path}", params=params, headers=self.partner)

    def zone(self, key: str, zone_type: str, area_m2: float, **extra: Any) -> dict[str, Any]:
        response = self.client.post(f"{API}/zones", headers=self.partner, json={
            "key": key, "name": key.title(), "zone_type": zone_type, "area_m2": area_m2,
            **extra})
        assert response.status_code == 201, response.text
        return response.json()

    def streams(self, zone: str, roles: Sequence[str], kind: str = "count") -> list[int]:
        """A Thing with one datastream per role, each assigned to ``zone`` in that role."""
        ids = make_thing(self.engine, f"{zone} sensors {'+'.join(roles)} {kind}",
                         tuple(roles), kind)
        for datastream_id, role in zip(ids, roles, strict=True):
            sensors.assign_datastream(self.engine, datastream_id, zone, role)
        return ids

    def observe(self, datastream_id: int, observations: Sequence[tuple[datetime, Any]]) -> None:
        """Post observations through the SensorThings CreateObservations extension."""
        response = self.client.post(
            "/sensorthings/v1.1/CreateObservations", headers=self.partner, json=[{
                "Datastream": {"@iot.id": datastream_id},
                "components": ["phenomenonTime", "result"],
                "dataArray": [[iso(t), r] for t, r in observations]}])
        assert response.status_code == 201, response.text
        assert "error" not in response.json(), response.text


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def minutes(start: datetime, values: Sequence[Any]) -> list[tuple[datetime, Any]]:
    """Value ``i`` at the instant ending minute ``i`` (``start + i + 1`` minutes)."""
    return [(start + timedelta(minutes=i + 1), v) for i, v in enumerate(values)]


@pytest.fixture
def api(db: Engine) -> Iterator[Api]:
    org = identity.create_organisation(db, "city", "City", "city")
    _, partner = identity.create_api_key(db, org, "event control", "partner")
    _, viewer = identity.create_api_key(db, org, "resident app", "viewer")
    client = TestClient(create_app(Settings(), db))
    yield Api(client, db, {"X-API-Key": partner}, {"X-API-Key": viewer})
