"""Events over HTTP: create, read, change, delete, who may do it, and how an event bounds the
state and series of its zones (flows start from an empty zone at its start)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.crowd_service.conftest import Api, iso, minutes

from urbansec.services import audit

T0 = datetime(2025, 3, 1, 18, 0, tzinfo=UTC)


def _concert(api: Api) -> dict[str, object]:
    api.zone("north", "standing", 100)
    api.zone("south", "standing", 80)
    response = api.client.post("/api/v1/crowd/events", headers=api.partner, json={
        "name": "Harbour concert", "starts_at": iso(T0 + timedelta(minutes=5)),
        "ends_at": iso(T0 + timedelta(hours=3)), "zones": ["north"],
        "expected_attendance": 12000, "description": "Open air, one stage"})
    assert response.status_code == 201, response.text
    return response.json()


def test_event_crud(api: Api) -> None:
    event = _concert(api)
    assert event["name"] == "Harbour concert" and event["zones"] == ["north"]
    assert event["starts_at"] == "2025-03-01T18:05:00Z"
    assert event["expected_attendance"] == 12000
    assert event["created_by"].startswith("apikey:")
    path = f"/api/v1/crowd/events/{event['id']}"
    assert api.client.get(path, headers=api.partner).json() == event

    changed = api.client.patch(path, headers=api.partner, json={
        "zones": ["north", "south"], "expected_attendance": 15000})
    assert changed.status_code == 200, changed.text
    assert changed.json()["zones"] == ["north", "south"]
    assert changed.json()["expected_attendance"] == 15000
    assert changed.json()["name"] == "Harbour concert"

    listed = api.client.get("/api/v1/crowd/events", headers=api.partner).json()["events"]
    assert [e["id"] for e in listed] == [event["id"]]
    running = api.client.get("/api/v1/crowd/events", headers=api.partner,
                             params={"active_at": iso(T0 + timedelta(hours=1))}).json()
    assert len(running["events"]) == 1
    later = api.client.get("/api/v1/crowd/events", headers=api.partner,
                           params={"active_at": iso(T0 + timedelta(hours=3))}).json()
    assert later["events"] == []  # the end is excluded

    assert api.client.delete(path, headers=api.partner).status_code == 204
    gone = api.client.get(path, headers=api.partner)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"
    # the zones stay; every write is in the audit trail
    assert len(api.get("/zones").json()["zones"]) == 2
    actions = [e["action"] for e in audit.entries(api.engine, limit=20)
               if e["action"].startswith("crowd_event.")]
    assert sorted(actions) == ["crowd_event.created", "crowd_event.deleted",
                               "crowd_event.updated"]


def test_event_writes_need_a_partner(api: Api) -> None:
    event = _concert(api)
    path = f"/api/v1/crowd/events/{event['id']}"
    body = {"name": "x", "starts_at": iso(T0), "ends_at": iso(T0 + timedelta(hours=1))}
    for headers, status in (({}, 401), (api.viewer, 403)):
        assert api.client.get("/api/v1/crowd/events", headers=headers).status_code == status
        assert api.client.get(path, headers=headers).status_code == status
        assert api.client.post("/api/v1/crowd/events", headers=headers,
                               json=body).status_code == status
        assert api.client.patch(path, headers=headers,
                                json={"name": "y"}).status_code == status
        assert api.client.delete(path, headers=headers).status_code == status
        assert api.client.get("/api/v1/crowd/state", headers=headers).status_code == status
        assert api.client.post("/api/v1/crowd/zones", headers=headers, json={
            "key": "z", "name": "Z", "zone_type": "exit", "area_m2": 5}).status_code == status
        refused = api.client.get("/api/v1/crowd/zones", headers=headers)
        assert refused.status_code == status and "error" in refused.json()
    assert api.client.get(path, headers=api.partner).json()["name"] == "Harbour concert"


def test_bad_event_bodies_are_422(api: Api) -> None:
    event = _concert(api)
    post = lambda body: api.client.post("/api/v1/crowd/events",  # noqa: E731
                                        headers=api.partner, json=body)
    start, end = iso(T0), iso(T0 + timedelta(hours=1))
    for body in ({"name": "x", "starts_at": end, "ends_at": start},
                 {"name": "x", "starts_at": start, "ends_at": end, "zones": ["atlantis"]},
                 {"name": "x", "starts_at": "2025-03-01T18:00:00", "ends_at": end},
                 {"name": "", "starts_at": start, "ends_at": end},
                 {"name": "x", "starts_at": start, "ends_at": end, "expected_attendance": -1},
                 {"name": "x", "starts_at": start, "ends_at": end, "colour": "red"},
                 {}):
        response = post(body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["message"]
    path = f"/api/v1/crowd/events/{event['id']}"
    for body in ({"ends_at": iso(T0)}, {"name": None}, {"zones": ["atlantis"]}):
        response = api.client.patch(path, headers=api.partner, json=body)
        assert response.status_code == 422, (body, response.text)
    assert api.client.patch("/api/v1/crowd/events/999", headers=api.partner,
                            json={"name": "y"}).status_code == 404
    assert api.client.get(path, headers=api.partner).json() == event


def test_event_bounds_state_and_series_and_resets_flows(api: Api) -> None:
    event = _concert(api)
    inflow, outflow = api.streams("north", ("in_counter", "out_counter"))
    # people arrive before the doors officially open; the event counts from its start
    api.observe(inflow, minutes(T0, [20] * 12))
    api.observe(outflow, minutes(T0, [5] * 12))
    at = iso(T0 + timedelta(minutes=12))
    everything = api.get("/state", at=at).json()
    assert {z["key"]: z["occupancy"] for z in everything["zones"]} == {"north": 180,
                                                                       "south": None}
    during = api.get("/state", at=at, event=event["id"]).json()
    assert during["event"]["id"] == event["id"]
    (north,) = during["zones"]  # only the event's zones
    assert north["key"] == "north" and north["occupancy"] == 7 * 15
    series = api.get("/zones/north/series", event=event["id"], **{
        "from": iso(T0), "to": at}).json()
    assert series["from"] == "2025-03-01T18:05:00Z"
    assert series["occupancy"] == [15.0 * (i + 1) for i in range(7)]
    outside = api.get("/zones/south/series", event=event["id"])
    assert outside.status_code == 422
    before = api.get("/state", at=iso(T0), event=event["id"]).json()["zones"][0]
    assert before["occupancy"] is None and "the event has not started" in before["warnings"]
