"""The shared risk register through HTTP, on SQLite and PostgreSQL: scoring, validation,
sharing visibility per role and organisation, history, audit entries and permissions."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from urbansec.api.app import create_app
from urbansec.config import Settings
from urbansec.services import audit, identity
from urbansec.services import risks as service

PASSWORD = "correct-horse-battery"


@dataclass
class World:
    client: TestClient
    engine: Engine
    headers: dict[str, dict[str, str]]
    orgs: dict[str, int]
    users: dict[str, int]

    def as_(self, who: str) -> dict[str, str]:
        return self.headers[who]


@pytest.fixture
def world(db: Engine) -> Iterator[World]:
    orgs = {"city": identity.create_organisation(db, "city", "City", "city"),
            "police": identity.create_organisation(db, "police", "Police", "police"),
            "ngo": identity.create_organisation(db, "ngo", "Street NGO", "partner")}
    # two people sign in (argon2 is slow on purpose); the other roles come as API keys,
    # which the service treats exactly like users of the same role and organisation
    users: dict[str, int] = {}
    headers: dict[str, dict[str, str]] = {"anon": {}}
    for who, org, role in (("analyst", "city", "analyst"), ("police", "police", "partner")):
        email = f"{who}@example.org"
        users[who] = identity.create_user(db, orgs[org], email, who.title(), PASSWORD, role)
        token = identity.issue_tokens(db, email, PASSWORD)["access_token"]
        headers[who] = {"Authorization": f"Bearer {token}"}
    for who, org, role in (("admin", "ngo", "admin"), ("viewer", "city", "viewer"),
                           ("ngo", "ngo", "partner"), ("police_key", "police", "partner")):
        _, key = identity.create_api_key(db, orgs[org], who, role)
        headers[who] = {"X-API-Key": key}
    with TestClient(create_app(Settings(), db), raise_server_exceptions=False) as client:
        yield World(client, db, headers, orgs, users)


def _risk(**overrides: Any) -> dict[str, Any]:
    return {"title": "Knife crime near station", "threat_type": "violence", "likelihood": 3,
            "impact": 4, "description": "Seen in reports R-1..R-9",
            "evidence": [{"type": "report", "ref": "R-1", "note": "first"}], **overrides}


def _create(world: World, who: str = "analyst", **overrides: Any) -> dict[str, Any]:
    response = world.client.post("/api/v1/risks", json=_risk(**overrides),
                                 headers=world.as_(who))
    assert response.status_code == 201, response.text
    return response.json()


SCORES = [(1, 4, 4, "low"), (1, 5, 5, "medium"), (3, 3, 9, "medium"), (2, 5, 10, "high"),
          (4, 4, 16, "high"), (4, 5, 20, "critical"), (5, 5, 25, "critical")]


def test_score_and_level(world: World) -> None:
    # one signed-in world for all cases: each world costs several argon2 hashes
    for likelihood, impact, score, level in SCORES:
        _check_score(world, likelihood, impact, score, level)


def _check_score(world: World, likelihood: int, impact: int, score: int, level: str) -> None:
    risk = _create(world, likelihood=likelihood, impact=impact)
    assert (risk["score"], risk["level"]) == (score, level)
    assert risk["view"] == "full" and risk["owner_organisation_id"] == world.orgs["city"]
    assert risk["actions"] == [] and risk["comments"] == []
    # score follows an update of impact
    patched = world.client.patch(f"/api/v1/risks/{risk['id']}", json={"impact": 1},
                                 headers=world.as_("analyst")).json()
    assert (patched["score"], patched["level"]) == (likelihood, service.level_for(likelihood))


INVALID = [
    ({"likelihood": 0}, 422), ({"impact": 6}, 422), ({"threat_type": "aliens"}, 422),
    ({"title": ""}, 422), ({"title": "x" * 301}, 422), ({"title": "a\u0000b"}, 422),
    ({"sharing": "everyone"}, 422), ({"colour": "red"}, 422),
    ({"area": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}},
     400),  # self-intersecting
    ({"area": {"type": "Polygon", "coordinates": [[[200, 0], [1, 1], [1, 0], [200, 0]]]}},
     422),  # longitude out of range
    ({"area": {"kind": "district"}}, 422),
    ({"evidence": [{"type": "url", "ref": "javascript:alert(1)"}]}, 400),
    ({"evidence": [{"type": "tweet", "ref": "x"}]}, 422),
    ({"owner_organisation_id": 2**40}, 422), ({"review_date": "soon"}, 422),
]


def test_validation(world: World) -> None:
    for overrides, status in INVALID:
        response = world.client.post("/api/v1/risks", json=_risk(**overrides),
                                     headers=world.as_("analyst"))
        assert response.status_code == status, (overrides, response.text)
        assert set(response.json()["error"]) == {"code", "message", "details"}
    risk = _create(world)
    for change in ({"likelihood": 9}, {"area": {"type": "Point", "coordinates": [0, 0]}},
                   {"evidence": [{"type": "url", "ref": "file:///etc/passwd"}]}):
        response = world.client.patch(f"/api/v1/risks/{risk['id']}", json=change,
                                      headers=world.as_("analyst"))
        assert response.status_code in (400, 422), (change, response.text)
    # nothing was stored by the refused requests
    assert world.client.get("/api/v1/risks", headers=world.as_("admin")).json()["total"] == 1


def test_malformed_ids_and_filters(world: World) -> None:
    analyst = world.as_("analyst")
    for path in ("/api/v1/risks/0", "/api/v1/risks/99999999999", "/api/v1/risks/abc",
                 "/api/v1/risks?limit=0", "/api/v1/risks?level=severe",
                 "/api/v1/risks?area=nocolon", "/api/v1/risks?owner=a%20b"):
        assert world.client.get(path, headers=analyst).status_code == 422, path
    assert world.client.get("/api/v1/risks/12345", headers=analyst).status_code == 404


def test_sharing_visibility(world: World) -> None:
    org_only = _create(world, title="org only")
    partners = _create(world, title="partners", sharing="partners")
    public = _create(world, title="public", sharing="public",
                     area={"kind": "district", "code": "018"})
    full_for = {"analyst": {org_only["id"], partners["id"], public["id"]},
                "admin": {org_only["id"], partners["id"], public["id"]},
                "police": {partners["id"], public["id"]},
                "police_key": {partners["id"], public["id"]},
                "ngo": {partners["id"], public["id"]},
                "viewer": set(), "anon": set()}
    summary_for = {"viewer": {org_only["id"], partners["id"], public["id"]},
                   "anon": {public["id"]}}
    for who, full in full_for.items():
        summary = summary_for.get(who, set())
        listed = world.client.get("/api/v1/risks", headers=world.as_(who))
        assert listed.status_code == 200, (who, listed.text)
        items = listed.json()["items"]
        assert {i["id"] for i in items if i["view"] == "full"} == full, who
        assert {i["id"] for i in items if i["view"] == "summary"} == summary, who
        for risk in (org_only, partners, public):
            one = world.client.get(f"/api/v1/risks/{risk['id']}", headers=world.as_(who))
            if risk["id"] in full:
                assert one.status_code == 200 and one.json()["view"] == "full", who
                assert one.json()["description"] == "Seen in reports R-1..R-9"
            elif risk["id"] in summary:
                body = one.json()
                assert body["view"] == "summary", who
                # the summary never carries details
                assert set(body) == {"view", "id", "title", "threat_type", "level", "status",
                                     "area"}
            else:
                assert one.status_code == 404, who  # existence is not leaked
    anon_public = world.client.get(f"/api/v1/risks/{public['id']}").json()
    assert anon_public["area"] == {"kind": "district", "code": "018", "bbox": None}
    assert anon_public["level"] == "high"
    # summaries refuse the history
    assert world.client.get(f"/api/v1/risks/{public['id']}/history").status_code == 401
    assert world.client.get(f"/api/v1/risks/{public['id']}/history",
                            headers=world.as_("viewer")).status_code == 403


def test_write_permissions(world: World) -> None:
    risk = _create(world, sharing="partners")
    rid = risk["id"]
    client = world.client
    assert client.post("/api/v1/risks", json=_risk()).status_code == 401
    assert client.post("/api/v1/risks", json=_risk(), headers=world.as_("viewer")
                       ).status_code == 403
    # a partner may not create risks for another organisation; an admin may
    assert client.post("/api/v1/risks", json=_risk(owner_organisation_id=world.orgs["city"]),
                       headers=world.as_("police")).status_code == 403
    by_admin = client.post("/api/v1/risks", json=_risk(owner_organisation_id=world.orgs["city"]),
                           headers=world.as_("admin"))
    assert by_admin.status_code == 201 and by_admin.json()["owner_organisation_id"] == \
        world.orgs["city"]
    # only the owner organisation (or an admin) changes a risk
    assert client.patch(f"/api/v1/risks/{rid}", json={"status": "closed"},
                        headers=world.as_("police")).status_code == 403
    assert client.patch(f"/api/v1/risks/{rid}", json={"status": "mitigating"},
                        headers=world.as_("admin")).status_code == 200
    assert client.post(f"/api/v1/risks/{rid}/actions", json={"title": "Patrol"},
                       headers=world.as_("police")).status_code == 403
    # the city hands an action to the police, who may then update it; the NGO may not
    action = client.post(f"/api/v1/risks/{rid}/actions", json={
        "title": "Extra patrols Fri/Sat", "owner_organisation_id": world.orgs["police"],
        "owner_user_id": world.users["police"], "due_date": "2030-06-30"},
        headers=world.as_("analyst"))
    assert action.status_code == 201, action.text
    aid = action.json()["id"]
    assert client.patch(f"/api/v1/risks/{rid}/actions/{aid}", json={"status": "done"},
                        headers=world.as_("police_key")).json()["status"] == "done"
    assert client.patch(f"/api/v1/risks/{rid}/actions/{aid}", json={"status": "cancelled"},
                        headers=world.as_("ngo")).status_code == 403
    assert client.patch(f"/api/v1/risks/{rid}/actions/999", json={"status": "done"},
                        headers=world.as_("analyst")).status_code == 404
    # partners of any organisation comment on a risk shared with them; viewers cannot
    comment = client.post(f"/api/v1/risks/{rid}/comments", json={"body": "We can help"},
                          headers=world.as_("police"))
    assert comment.status_code == 201 and comment.json()["author"] == "Police"
    assert client.post(f"/api/v1/risks/{rid}/comments", json={"body": "So can we"},
                       headers=world.as_("ngo")).status_code == 201
    assert client.post(f"/api/v1/risks/{rid}/comments", json={"body": "hi"},
                       headers=world.as_("viewer")).status_code == 403
    private = _create(world)
    assert client.post(f"/api/v1/risks/{private['id']}/comments", json={"body": "hi"},
                       headers=world.as_("ngo")).status_code == 404
    detail = client.get(f"/api/v1/risks/{rid}", headers=world.as_("police")).json()
    assert [a["status"] for a in detail["actions"]] == ["done"]
    assert [c["body"] for c in detail["comments"]] == ["We can help", "So can we"]


def test_history_and_audit(world: World) -> None:
    client = world.client
    risk = _create(world, sharing="partners", review_date="2030-01-01")
    rid = risk["id"]
    client.patch(f"/api/v1/risks/{rid}", json={"likelihood": 5, "review_date": None,
                                               "area": {"kind": "beat", "code": "1834"}},
                 headers=world.as_("analyst"))
    aid = client.post(f"/api/v1/risks/{rid}/actions", json={"title": "Lighting"},
                      headers=world.as_("analyst")).json()["id"]
    client.patch(f"/api/v1/risks/{rid}/actions/{aid}", json={"status": "in_progress"},
                 headers=world.as_("analyst"))
    client.post(f"/api/v1/risks/{rid}/comments", json={"body": "noted"},
                headers=world.as_("police_key"))
    history = client.get(f"/api/v1/risks/{rid}/history", headers=world.as_("police"))
    assert history.status_code == 200
    entries = history.json()
    assert [e["event"] for e in entries] == ["created", "updated", "action_added",
                                            "action_updated", "comment_added"]
    assert entries[1]["user_id"] == world.users["analyst"]
    assert entries[1]["fields"] == {
        "likelihood": {"before": 3, "after": 5}, "score": {"before": 12, "after": 20},
        "level": {"before": "high", "after": "critical"},
        "review_date": {"before": "2030-01-01", "after": None},
        "area": {"before": None, "after": {"kind": "beat", "code": "1834"}}}
    assert entries[4]["user_id"] is None and entries[4]["actor"].startswith("apikey:")
    logged = [e for e in audit.entries(world.engine, limit=50)
              if e["action"].startswith("risk.")]
    assert [e["action"] for e in reversed(logged)] == [
        "risk.create", "risk.update", "risk.action.create", "risk.action.update",
        "risk.comment.create"]
    assert logged[-1]["actor"] == f"user:{world.users['analyst']}"
    assert audit.verify(world.engine)["ok"]
    # a refused write leaves no trace
    before = len(audit.entries(world.engine, limit=500))
    client.patch(f"/api/v1/risks/{rid}", json={"title": "x"}, headers=world.as_("ngo"))
    assert len(audit.entries(world.engine, limit=500)) == before


def test_filters_and_matrix(world: World) -> None:
    _create(world, likelihood=5, impact=5, threat_type="cyber_attack_city_services",
            sharing="public")
    _create(world, likelihood=5, impact=5, status="closed", sharing="partners")
    _create(world, who="police", likelihood=1, impact=2, threat_type="drugs",
            review_date="2020-01-01")
    get = world.client.get
    analyst, police = world.as_("analyst"), world.as_("police")
    assert get("/api/v1/risks?level=critical", headers=analyst).json()["total"] == 2
    assert get("/api/v1/risks?status=closed", headers=analyst).json()["total"] == 1
    assert get("/api/v1/risks?threat_type=drugs", headers=police).json()["total"] == 1
    assert get("/api/v1/risks?owner=police", headers=police).json()["total"] == 1
    assert get(f"/api/v1/risks?owner={world.orgs['city']}", headers=police).json()["total"] == 2
    assert get("/api/v1/risks?overdue=true", headers=police).json()["total"] == 1
    page = get("/api/v1/risks?limit=1&offset=1", headers=world.as_("admin")).json()
    assert page["total"] == 3 and len(page["items"]) == 1

    def cells(who: str) -> dict[tuple[int, int], int]:
        body = get("/api/v1/risks/matrix", headers=world.as_(who)).json()
        assert len(body["cells"]) == 25
        return {(c["likelihood"], c["impact"]): c["count"] for c in body["cells"]
                if c["count"]}

    assert cells("admin") == {(5, 5): 2, (1, 2): 1}
    assert cells("analyst") == {(5, 5): 2}  # the police's own risk is organisation-only
    assert cells("police") == {(5, 5): 2, (1, 2): 1}
    assert cells("anon") == {(5, 5): 1}
    body = get("/api/v1/risks/matrix?status=open", headers=world.as_("admin")).json()
    assert body["levels"] == {"low": 1, "medium": 0, "high": 0, "critical": 1}
    assert body["total"] == 2


def test_openapi_lists_risk_routes(world: World) -> None:
    paths = world.client.get("/openapi.json").json()["paths"]
    assert set(paths["/api/v1/risks/{risk_id}"]) == {"get", "patch"}
    assert "/api/v1/risks/matrix" in paths
    enum = paths["/api/v1/risks"]["get"]["parameters"]
    threat = next(p for p in enum if p["name"] == "threat_type")
    assert set(threat["schema"]["anyOf"][0]["enum"]) == set(service.THREAT_TYPES)
