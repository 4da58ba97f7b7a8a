"""The OGC SensorThings API v1.1 face over HTTP: each query option with known answers, create
/ update / delete, errors as JSON 4xx, access; and FROST's Python client (frost-sta-client,
from PyPI, unchanged) against a real uvicorn serving the app."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from tests.sensors.support import datastream_body

from urbansec.api.app import create_app
from urbansec.config import Settings
from urbansec.services import identity

BASE = "/sensorthings/v1.1"


@pytest.fixture
def api(db: Engine) -> Iterator[tuple[TestClient, dict[str, str], Engine]]:
    org = identity.create_organisation(db, "city", "City", "city")
    _, key = identity.create_api_key(db, org, "sensor gateway", "partner")
    client = TestClient(create_app(Settings(), db), base_url="http://testserver")
    yield client, {"X-API-Key": key}, db


def thing(name: str, observations: list[tuple[str, Any]], lon: float = 174.77) -> dict[str, Any]:
    stream = datastream_body(f"{name} count")
    stream["Observations"] = [{"phenomenonTime": t, "result": r} for t, r in observations]
    return {"name": name, "description": f"{name} counter", "properties": {"zone": name[-1]},
            "Locations": [{"name": f"{name} place", "description": "",
                           "encodingType": "application/geo+json",
                           "location": {"type": "Point", "coordinates": [lon, -36.85]}}],
            "Datastreams": [stream]}


@pytest.fixture
def loaded(api: tuple[TestClient, dict[str, str], Engine]
           ) -> tuple[TestClient, dict[str, str]]:
    client, headers, _ = api
    for name, values in (("Gate A", [3, 8, 5]), ("Gate B", [10, 1]), ("Stairs C", [7])):
        observations = [(f"2025-03-01T10:0{i}:00Z", v) for i, v in enumerate(values)]
        response = client.post(f"{BASE}/Things", json=thing(name, observations),
                               headers=headers)
        assert response.status_code == 201, response.text
    return client, headers


def values(response: Any, key: str = "@iot.id") -> list[Any]:
    assert response.status_code == 200, response.text
    return [item[key] for item in response.json()["value"]]


def test_service_root_and_links(loaded: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = loaded
    root = client.get(f"{BASE}/", headers=headers).json()
    names = [v["name"] for v in root["value"]]
    assert names == ["Things", "Locations", "HistoricalLocations", "Sensors",
                     "ObservedProperties", "Datastreams", "FeaturesOfInterest", "Observations"]
    assert root["value"][0]["url"] == f"http://testserver{BASE}/Things"
    assert any("create-update-delete" in c for c in root["serverSettings"]["conformance"])
    one = client.get(f"{BASE}/Things(1)", headers=headers).json()
    assert one["@iot.id"] == 1 and one["name"] == "Gate A"
    assert one["@iot.selfLink"] == f"http://testserver{BASE}/Things(1)"
    assert one["Datastreams@iot.navigationLink"] == f"http://testserver{BASE}/Things(1)/" \
                                                    "Datastreams"
    assert values(client.get(f"{BASE}/Things(2)/Datastreams", headers=headers), "name") == \
        ["Gate B count"]
    assert values(client.get(f"{BASE}/Datastreams(1)/Observations", headers=headers),
                  "result") == [3, 8, 5]
    assert client.get(f"{BASE}/Observations(4)/Datastream/Thing/name/$value",
                      headers=headers).text == "Gate B"
    assert client.get(f"{BASE}/Things(3)/name", headers=headers).json() == {"name": "Stairs C"}
    ds = client.get(f"{BASE}/Datastreams(1)", headers=headers).json()
    assert ds["phenomenonTime"] == "2025-03-01T10:00:00.000Z/2025-03-01T10:02:00.000Z"
    # the Thing's Location was recorded as a HistoricalLocation; observations got a feature
    assert len(values(client.get(f"{BASE}/HistoricalLocations", headers=headers))) == 3
    foi = client.get(f"{BASE}/Observations(1)/FeatureOfInterest", headers=headers).json()
    assert foi["feature"] == {"type": "Point", "coordinates": [174.77, -36.85]}


@pytest.mark.parametrize(("query", "expected"), [
    ("$filter=result gt 4", [2, 3, 4, 6]),
    ("$filter=result ge 5 and result le 8", [2, 3, 6]),
    ("$filter=not (result lt 8)", [2, 4]),
    ("$filter=result eq 1 or result eq 3", [1, 5]),
    ("$filter=(result add 1) mul 2 eq 12", [3]),
    ("$filter=Datastream/id eq 2", [4, 5]),
    ("$filter=Datastream/Thing/name eq 'Stairs C'", [6]),
    ("$filter=startswith(Datastream/Thing/name, 'Gate')", [1, 2, 3, 4, 5]),
    ("$filter=substringof('B', Datastream/Thing/name)", [4, 5]),
    ("$filter=phenomenonTime ge 2025-03-01T10:01:00Z", [2, 3, 5]),
    ("$filter=phenomenonTime lt 2025-03-01T23:01:00%2B13:00", [1, 4, 6]),
    ("$filter=minute(phenomenonTime) eq 2", [3]),
    ("$filter=result ne 3&$orderby=result desc", [4, 2, 6, 3, 5]),
    ("$orderby=phenomenonTime desc,result asc", [3, 5, 2, 1, 6, 4]),
    ("$orderby=Datastream/id desc,id", [6, 4, 5, 1, 2, 3]),
    ("$top=2&$skip=3", [4, 5]),
    ("$top=0", []),
])
def test_observation_queries(loaded: tuple[TestClient, dict[str, str]], query: str,
                             expected: list[int]) -> None:
    client, headers = loaded
    assert values(client.get(f"{BASE}/Observations?{query}", headers=headers)) == expected


def test_count_top_nextlink_select_expand(loaded: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = loaded
    page = client.get(f"{BASE}/Observations?$top=4&$count=true&$filter=result gt 0",
                      headers=headers).json()
    assert page["@iot.count"] == 6 and len(page["value"]) == 4
    assert page["@iot.nextLink"].startswith(f"http://testserver{BASE}/Observations?")
    rest = client.get(page["@iot.nextLink"].removeprefix("http://testserver"),
                      headers=headers).json()
    assert [o["@iot.id"] for o in rest["value"]] == [5, 6] and "@iot.nextLink" not in rest
    selected = client.get(f"{BASE}/Things?$select=name,id", headers=headers).json()["value"]
    assert selected[0] == {"@iot.id": 1, "name": "Gate A"}
    expanded = client.get(
        f"{BASE}/Things(1)?$select=name&$expand=Datastreams($select=name;"
        f"$expand=Observations($select=result;$orderby=result desc;$top=2;$count=true)),"
        f"Locations($select=name)", headers=headers).json()
    assert expanded["Locations"] == [{"name": "Gate A place"}]
    stream = expanded["Datastreams"][0]
    assert stream["name"] == "Gate A count"
    assert stream["Observations"] == [{"result": 8}, {"result": 5}]
    assert stream["Observations@iot.count"] == 3
    assert stream["Observations@iot.nextLink"].endswith("Datastreams(1)/Observations?$top=2"
                                                        "&$skip=2")
    path_style = client.get(f"{BASE}/Observations(6)?$expand=Datastream/Thing",
                            headers=headers).json()
    assert path_style["Datastream"]["Thing"]["name"] == "Stairs C"
    things = client.get(f"{BASE}/Things?$filter=properties/zone eq 'B'&$select=name",
                        headers=headers)
    assert values(things, "name") == ["Gate B"]
    refs = client.get(f"{BASE}/Things/$ref?$top=1", headers=headers).json()
    assert refs["value"] == [{"@iot.selfLink": f"http://testserver{BASE}/Things(1)"}]


def test_create_update_delete(loaded: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = loaded
    posted = client.post(f"{BASE}/Datastreams(1)/Observations", headers=headers,
                         json={"phenomenonTime": "2025-03-01T10:05:00Z", "result": 4})
    assert posted.status_code == 201
    assert posted.headers["location"] == f"http://testserver{BASE}/Observations(7)"
    again = client.post(f"{BASE}/Observations", headers=headers,
                        json={"phenomenonTime": "2025-03-01T10:05:00Z", "result": 4,
                              "Datastream": {"@iot.id": 1}})
    assert again.status_code == 201 and again.json()["@iot.id"] == 7  # stored once
    new_stream = client.post(f"{BASE}/Things(3)/Datastreams", headers=headers,
                             json={**datastream_body("Stairs C flow"),
                                   "Sensor": {"@iot.id": 1}})
    assert new_stream.status_code == 201 and new_stream.json()["@iot.id"] == 4
    patched = client.patch(f"{BASE}/Things(1)", headers=headers,
                           json={"name": "Gate A (north)", "properties": {"zone": "N"}})
    assert patched.status_code == 200 and patched.json()["name"] == "Gate A (north)"
    moved = client.patch(f"{BASE}/Things(1)", headers=headers, json={"Locations": [
        {"name": "New place", "description": "", "encodingType": "application/geo+json",
         "location": {"type": "Point", "coordinates": [174.8, -36.9]}}]})
    assert moved.status_code == 200
    assert values(client.get(f"{BASE}/Things(1)/Locations", headers=headers), "name") == \
        ["New place"]
    assert len(values(client.get(f"{BASE}/Things(1)/HistoricalLocations", headers=headers))) \
        == 2
    changed = client.patch(f"{BASE}/Observations(1)", headers=headers, json={"result": 30})
    assert changed.json()["result"] == 30
    created = client.post(f"{BASE}/CreateObservations", headers=headers, json=[{
        "Datastream": {"@iot.id": 2}, "components": ["phenomenonTime", "result"],
        "dataArray": [["2025-03-01T11:00:00Z", 2], ["not a time", 3],
                      ["2025-03-01T11:01:00Z", 4]]}])
    assert created.status_code == 201
    first, bad, last = created.json()
    assert bad == "error"  # the bad row, and only it, was refused
    # (ids are not contiguous on PostgreSQL: a refused duplicate uses up a sequence value)
    assert [client.get(link.removeprefix("http://testserver"), headers=headers).json()["result"]
            for link in (first, last)] == [2, 4]
    assert client.delete(f"{BASE}/Things(2)", headers=headers).status_code == 200
    assert client.get(f"{BASE}/Things(2)", headers=headers).status_code == 404
    # its Datastream and Observations went with it
    assert values(client.get(f"{BASE}/Observations?$filter=result eq 10",
                             headers=headers)) == []
    assert client.get(f"{BASE}/Datastreams(2)", headers=headers).status_code == 404


@pytest.mark.parametrize(("method", "path", "body", "status"), [
    ("GET", "/Things(99)", None, 404),
    ("GET", "/Things(99)/Datastreams", None, 404),
    ("GET", "/Nothing", None, 404),
    ("GET", "/Things?$filter=name eq", None, 400),
    ("GET", "/Things?$filter=nosuch eq 1", None, 400),
    ("GET", "/Things?$top=5000", None, 400),
    ("GET", "/Things?$select=nosuch", None, 400),
    ("GET", "/Things?$expand=Observations", None, 400),
    ("GET", "/Things?$orderby=name sideways", None, 400),
    ("POST", "/Things", {"description": "no name"}, 400),
    ("POST", "/Things", {"name": "x", "bogus": 1}, 400),
    ("POST", "/Datastreams", {**datastream_body("orphan")}, 400),
    ("POST", "/Datastreams(1)/Observations", {"result": -3}, 400),
    ("POST", "/Datastreams(1)/Observations", {"phenomenonTime": "soon", "result": 1}, 400),
    ("POST", "/Observations", {"result": 1, "Datastream": {"@iot.id": 99}}, 400),
    ("PATCH", "/Things(99)", {"name": "x"}, 404),
    ("PATCH", "/Datastreams(1)", {"phenomenonTime": "2025-01-01T00:00:00Z"}, 400),
    ("DELETE", "/Things", None, 400),
])
def test_errors_are_json_4xx(loaded: tuple[TestClient, dict[str, str]], method: str,
                             path: str, body: Any, status: int) -> None:
    client, headers = loaded
    response = client.request(method, BASE + path, headers=headers,
                              **({"json": body} if body is not None else {}))
    assert response.status_code == status, response.text
    assert set(response.json()["error"]) == {"code", "message", "details"}


def test_malformed_body(loaded: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = loaded
    response = client.post(f"{BASE}/Things", content=b"{oops",
                           headers={**headers, "content-type": "application/json"})
    assert response.status_code == 400


def test_access(api: tuple[TestClient, dict[str, str], Engine]) -> None:
    client, headers, db = api
    org = identity.create_organisation(db, "residents", "Residents", "partner")
    _, viewer_key = identity.create_api_key(db, org, "viewer", "viewer")
    assert client.get(f"{BASE}/Things").status_code == 401
    assert client.get(f"{BASE}/Things", headers={"X-API-Key": viewer_key}).status_code == 403
    assert client.post(f"{BASE}/Things", json={"name": "x"},
                       headers={"X-API-Key": viewer_key}).status_code == 403
    assert client.get(f"{BASE}/Things", auth=("gateway", headers["X-API-Key"])
                      ).status_code == 200
    assert client.get(f"{BASE}/Things", auth=("gateway", "wrong key")).status_code == 401


# --- FROST's client, unchanged, against a real server --------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(api: tuple[TestClient, dict[str, str], Engine]) -> Iterator[tuple[str, str]]:
    import uvicorn

    _, headers, db = api
    port = _free_port()
    config = uvicorn.Config(create_app(Settings(), db), host="127.0.0.1", port=port,
                            log_level="warning")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert uv.started
    yield f"http://127.0.0.1:{port}{BASE}", headers["X-API-Key"]
    uv.should_exit = True
    thread.join(10)


def test_frost_client_creates_and_reads_back(server: tuple[str, str]) -> None:
    import frost_sta_client as fsc
    from frost_sta_client.service.auth_handler import AuthHandler
    from geojson import Point

    url, key = server
    service = fsc.SensorThingsService(url, auth_handler=AuthHandler("gateway", key))
    location = fsc.Location(name="Queen Street", description="counter site",
                            encoding_type="application/geo+json",
                            location=Point((174.7656, -36.8485)))
    thing = fsc.Thing(name="Queen Street counter", description="people counter",
                      properties={"zone": "queen-st"}, locations=[location])
    service.create(thing)
    assert thing.id == 1
    datastream = fsc.Datastream(
        name="Pedestrians in", description="people entering",
        observation_type="http://www.opengis.net/def/observationType/OGC-OM/2.0/"
                         "OM_CountObservation",
        unit_of_measurement=fsc.UnitOfMeasurement(name="person", symbol="persons",
                                                  definition="ucum:1"),
        thing=thing,
        sensor=fsc.Sensor(name="counter", description="IR beam", encoding_type="text/html",
                          metadata="https://example.org"),
        observed_property=fsc.ObservedProperty(name="people", definition="https://ex.org/p",
                                               description="people"))
    service.create(datastream)
    for minute, count in enumerate([12, 15, 9]):
        observation = fsc.Observation(result=count,
                                      phenomenon_time=f"2025-03-01T10:0{minute}:00Z",
                                      datastream=datastream)
        service.create(observation)
    found = service.datastreams().find(datastream.id)
    assert found.name == "Pedestrians in"
    listed = service.observations().query().filter(
        f"Datastream/id eq {datastream.id} and result gt 10").orderby("result", "desc").list()
    assert [o.result for o in listed] == [15, 12]
    every = service.things().query().expand("Datastreams").list()
    assert [t.name for t in every] == ["Queen Street counter"]
    assert [d.name for d in every.entities[0].datastreams] == ["Pedestrians in"]
    service.delete(found)
    assert service.observations().query().list().entities == []
