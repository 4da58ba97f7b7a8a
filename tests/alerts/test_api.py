"""The alert API on SQLite and PostgreSQL: rules CRUD with permission checks, malformed
bodies as 4xx JSON, listing and acknowledging alerts, webhooks, and the stream without a live
source (it replays what is stored since Last-Event-ID and ends)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from tests.alerts.support import audit_actions, make_site, message, push

from urbansec.api.app import create_app
from urbansec.config import Settings
from urbansec.sensors.payloads import TimeBounds
from urbansec.services import identity
from urbansec.services.alert_engine import AlertEngine
from urbansec.services.sensor_ingest import IngestPipeline

PASSWORD = "alert api test password"
THRESHOLD = {"name": "north crowded", "kind": "threshold", "severity": "critical",
             "params": {"metric": "density", "threshold": 3.5, "hysteresis": 0.5},
             "zones": ["north"]}


@dataclass
class World:
    client: TestClient
    db: Engine
    headers: dict[str, dict[str, str]]
    tokens: dict[str, str]
    streams: dict[str, int]


@pytest.fixture
def world(db: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setattr(identity, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024,
                                                            parallelism=1))
    identity._dummy_hash.cache_clear()
    site = make_site(db)
    org = identity.create_organisation(db, "city", "City", "city")
    headers: dict[str, dict[str, str]] = {"anonymous": {}}
    tokens = {}
    for role in ("viewer", "partner", "analyst"):
        identity.create_user(db, org, f"{role}@example.org", role, PASSWORD, role)
        tokens[role] = identity.issue_tokens(db, f"{role}@example.org",
                                             PASSWORD)["access_token"]
        headers[role] = {"Authorization": f"Bearer {tokens[role]}"}
    with TestClient(create_app(Settings(), db), raise_server_exceptions=False) as client:
        yield World(client, db, headers, tokens, site.streams)


def _error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and {"code", "message", "details"} <= set(body["error"])
    if code is not None:
        assert body["error"]["code"] == code
    return body["error"]


def test_rules_crud_and_permissions(world: World) -> None:
    client, h = world.client, world.headers
    _error(client.post("/api/v1/alert-rules", json=THRESHOLD), 401, "unauthenticated")
    _error(client.post("/api/v1/alert-rules", json=THRESHOLD, headers=h["viewer"]), 403,
           "forbidden")
    _error(client.get("/api/v1/alert-rules", headers=h["viewer"]), 403)
    created = client.post("/api/v1/alert-rules", json=THRESHOLD, headers=h["partner"])
    assert created.status_code == 201, created.text
    rule = created.json()
    assert {k: rule[k] for k in ("name", "kind", "severity", "params", "zones", "enabled")} \
        == {**{k: v for k, v in THRESHOLD.items()}, "enabled": True}
    assert client.get("/api/v1/alert-rules", headers=h["partner"]).json()["rules"] == [rule]

    patched = client.patch(f"/api/v1/alert-rules/{rule['id']}", headers=h["analyst"],
                           json={"zones": None, "enabled": False})
    assert patched.status_code == 200, patched.text
    assert (patched.json()["zones"], patched.json()["enabled"]) == (None, False)
    assert patched.json()["params"] == THRESHOLD["params"]
    _error(client.patch(f"/api/v1/alert-rules/{rule['id']}", headers=h["viewer"],
                        json={"enabled": True}), 403)
    _error(client.patch(f"/api/v1/alert-rules/{rule['id']}", headers=h["partner"],
                        json={"params": {"metric": "density", "threshold": "lots"}}), 400,
           "usage_error")
    _error(client.patch(f"/api/v1/alert-rules/{rule['id']}", headers=h["partner"],
                        json={"name": None}), 400)
    _error(client.patch("/api/v1/alert-rules/999", headers=h["partner"],
                        json={"enabled": True}), 404, "not_found")

    _error(client.delete(f"/api/v1/alert-rules/{rule['id']}", headers=h["viewer"]), 403)
    assert client.delete(f"/api/v1/alert-rules/{rule['id']}",
                         headers=h["partner"]).status_code == 204
    _error(client.delete(f"/api/v1/alert-rules/{rule['id']}", headers=h["partner"]), 404)
    actions = audit_actions(world.db)
    assert {"alert_rule.created", "alert_rule.updated", "alert_rule.deleted"} <= set(actions)


@pytest.mark.parametrize(("body", "status"), [
    ({}, 422),
    ({**THRESHOLD, "kind": "magic"}, 422),
    ({**THRESHOLD, "severity": "apocalyptic"}, 422),
    ({**THRESHOLD, "zones": "north"}, 422),
    ({**THRESHOLD, "name": ""}, 422),
    ({**THRESHOLD, "extra": 1}, 422),
    ({**THRESHOLD, "params": []}, 422),
    ({**THRESHOLD, "params": {"metric": "density"}}, 400),
    ({**THRESHOLD, "zones": ["atlantis"]}, 400),
    ({"name": "fence", "kind": "geofence", "params": {"fence": "here", "trigger": "enter"}},
     400),
])
def test_malformed_rules_are_4xx_json(world: World, body: dict[str, Any], status: int) -> None:
    response = world.client.post("/api/v1/alert-rules", json=body,
                                 headers=world.headers["partner"])
    _error(response, status)


def test_malformed_requests_are_4xx_json(world: World) -> None:
    client, h = world.client, world.headers
    raw = client.post("/api/v1/alert-rules", content=b"{not json",
                      headers={**h["partner"], "content-type": "application/json"})
    _error(raw, 422, "invalid_request")
    infinite = client.post("/api/v1/alert-rules", headers={**h["partner"],
                                                           "content-type": "application/json"},
                           content=b'{"name": "n", "kind": "threshold", "params": '
                                   b'{"metric": "density", "threshold": 1e400}}')
    assert infinite.status_code in (400, 422)
    _error(infinite, infinite.status_code)
    _error(client.get("/api/v1/alerts?status=sideways", headers=h["partner"]), 422)
    _error(client.get("/api/v1/alerts?limit=0", headers=h["partner"]), 422)
    _error(client.post("/api/v1/alerts/0/ack", headers=h["partner"]), 422)
    _error(client.post("/api/v1/alerts/77/ack", headers=h["partner"]), 404, "not_found")
    _error(client.post("/api/v1/alerts/77/ack", json={"note": "x" * 3000},
                       headers=h["partner"]), 422)
    _error(client.get("/api/v1/alerts/stream", headers={**h["partner"],
                                                        "last-event-id": "yesterday"}), 400)
    _error(client.post("/api/v1/webhooks", json={"url": "ftp://example.org/x",
                                                 "secret": "s" * 20}, headers=h["partner"]),
           400)
    _error(client.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/x",
                                                 "secret": "short"}, headers=h["partner"]),
           422)
    _error(client.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/x",
                                                 "secret": "s" * 20, "events": ["born"]},
                       headers=h["partner"]), 422)
    _error(client.get("/api/v1/webhooks", headers=h["viewer"]), 403)


def _raise_one(world: World) -> int:
    client = world.client
    assert client.post("/api/v1/alert-rules", json=THRESHOLD,
                       headers=world.headers["partner"]).status_code == 201
    pipeline = IngestPipeline(world.db, bounds=TimeBounds(max_age=None))
    engine = AlertEngine(world.db, clock="wall", tick_seconds=0).load()
    pipeline.add_listener(engine)
    push(pipeline, message(world.streams["camera"], 400, datetime.now(UTC)))
    alerts = client.get("/api/v1/alerts", headers=world.headers["partner"]).json()["alerts"]
    assert len(alerts) == 1
    return int(alerts[0]["id"])


def test_list_acknowledge_and_stream_without_a_live_source(world: World) -> None:
    client, h = world.client, world.headers
    alert_id = _raise_one(world)
    _error(client.get("/api/v1/alerts", headers=h["viewer"]), 403)
    alert = client.get(f"/api/v1/alerts/{alert_id}", headers=h["partner"]).json()
    expected_keys = {"id", "key", "rule_id", "rule_name", "kind", "severity", "subject",
                     "zone", "message", "value", "threshold", "raised_at", "last_seen_at",
                     "cleared_at", "acknowledged_at", "acknowledged_by", "status"}
    assert expected_keys <= set(alert)
    assert (alert["kind"], alert["severity"], alert["value"]) == ("threshold:density",
                                                                  "critical", 4.0)

    _error(client.post(f"/api/v1/alerts/{alert_id}/ack", headers=h["viewer"]), 403)
    acked = client.post(f"/api/v1/alerts/{alert_id}/ack", headers=h["partner"])
    assert acked.status_code == 200 and acked.json()["status"] == "acknowledged"
    _error(client.post(f"/api/v1/alerts/{alert_id}/ack", headers=h["partner"]), 409,
           "conflict")
    listed = client.get("/api/v1/alerts?status=acknowledged", headers=h["partner"]).json()
    assert [a["id"] for a in listed["alerts"]] == [alert_id]
    assert client.get("/api/v1/alerts?status=cleared",
                      headers=h["partner"]).json() == {"alerts": []}

    # no broker and no engine here: the stream sends the stored changes and ends
    whole = client.get("/api/v1/alerts/stream",
                       params={"access_token": world.tokens["partner"], "last_event_id": 0})
    assert whole.status_code == 200
    assert whole.headers["content-type"].startswith("text/event-stream")
    text = whole.text
    assert text.startswith("retry: 2000\n")
    assert "event: update\n" in text and f'"id":{alert_id}' in text
    assert '"change":"acknowledged"' in text
    fresh = client.get("/api/v1/alerts/stream", headers=h["partner"]).text
    assert "data:" not in fresh and "\nid: " in fresh  # where to resume from, nothing else


def test_webhooks_crud(world: World) -> None:
    client, h = world.client, world.headers
    body = {"url": "http://127.0.0.1:9/hook", "secret": "a-long-enough-secret",
            "events": ["raised", "cleared"], "min_severity": "warning"}
    _error(client.post("/api/v1/webhooks", json=body, headers=h["viewer"]), 403)
    made = client.post("/api/v1/webhooks", json=body, headers=h["partner"])
    assert made.status_code == 201, made.text
    hook = made.json()
    assert "secret" not in hook and hook["events"] == ["raised", "cleared"]
    assert client.get("/api/v1/webhooks", headers=h["partner"]).json()["webhooks"] == [hook]
    assert client.get(f"/api/v1/webhooks/{hook['id']}/deliveries",
                      headers=h["partner"]).json() == {"deliveries": []}
    assert client.delete(f"/api/v1/webhooks/{hook['id']}",
                         headers=h["partner"]).status_code == 204
    _error(client.delete(f"/api/v1/webhooks/{hook['id']}", headers=h["partner"]), 404)
