"""Open311 GeoReport v2 through HTTP, checked against the specification's example documents.

The ``SPEC_*`` documents below reproduce the structure (field and element names, nesting,
order) of the examples on https://wiki.open311.org/GeoReport_v2 and
https://wiki.open311.org/Service_Discovery; our answers must have the same structure, in
JSON and XML, so that an existing Open311 client works unchanged.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from urbansec.api.app import create_app
from urbansec.config import Settings
from urbansec.domain.report_categories import CATEGORIES
from urbansec.services import identity, reports
from urbansec.services.access import SYSTEM

BASE = "/open311/v2"
JURISDICTION = "city.example"
LAT, LON = 41.8781, -87.6298  # Chicago Loop

SPEC_SERVICES_XML = """<?xml version="1.0" encoding="utf-8"?>
<services>
  <service>
    <service_code>001</service_code>
    <service_name>Cans left out 24x7</service_name>
    <description>Garbage or recycling cans that have been left out.</description>
    <metadata>true</metadata>
    <type>realtime</type>
    <keywords>lorem, ipsum, dolor</keywords>
    <group>sanitation</group>
  </service>
</services>"""
SPEC_SERVICES_JSON = [{"service_code": "001", "service_name": "Cans left out 24x7",
                       "description": "Garbage or recycling cans that have been left out.",
                       "metadata": True, "type": "realtime",
                       "keywords": "lorem, ipsum, dolor", "group": "sanitation"}]

SPEC_DEFINITION_XML = """<?xml version="1.0" encoding="utf-8"?>
<service_definition>
  <service_code>DMV66</service_code>
  <attributes>
    <attribute>
      <variable>true</variable>
      <code>WHISHETN</code>
      <datatype>singlevaluelist</datatype>
      <required>true</required>
      <datatype_description></datatype_description>
      <order>1</order>
      <description>What is the ticket/tag/DL number?</description>
      <values>
        <value><key>123</key><name>Ford</name></value>
        <value><key>124</key><name>Chrysler</name></value>
      </values>
    </attribute>
  </attributes>
</service_definition>"""
SPEC_DEFINITION_JSON = {"service_code": "DMV66", "attributes": [{
    "variable": True, "code": "WHISHETN", "datatype": "singlevaluelist", "required": True,
    "datatype_description": None, "order": 1, "description": "What is the ticket number?",
    "values": [{"key": 123, "name": "Ford"}, {"key": 124, "name": "Chrysler"}]}]}

SPEC_POST_XML = """<?xml version="1.0" encoding="utf-8"?>
<service_requests>
  <request>
    <service_request_id>293944</service_request_id>
    <service_notice>The City will inspect within 24 hours.</service_notice>
    <account_id/>
  </request>
</service_requests>"""
SPEC_POST_JSON = [{"service_request_id": 293944, "service_notice": "The City will inspect "
                   "within 24 hours.", "account_id": None}]

SPEC_TOKEN_XML = """<?xml version="1.0" encoding="utf-8"?>
<service_requests>
  <request>
    <service_request_id>638344</service_request_id>
    <token>12345</token>
  </request>
</service_requests>"""
SPEC_TOKEN_JSON = [{"service_request_id": 638344, "token": 12345}]

SPEC_REQUESTS_XML = """<?xml version="1.0" encoding="utf-8"?>
<service_requests>
  <request>
    <service_request_id>638344</service_request_id>
    <status>closed</status>
    <status_notes>Duplicate request.</status_notes>
    <service_name>Sidewalk and Curb Issues</service_name>
    <service_code>006</service_code>
    <description></description>
    <agency_responsible></agency_responsible>
    <service_notice></service_notice>
    <requested_datetime>2010-04-14T06:37:38-08:00</requested_datetime>
    <updated_datetime>2010-04-14T06:37:38-08:00</updated_datetime>
    <expected_datetime>2010-04-15T06:37:38-08:00</expected_datetime>
    <address>8TH AVE and JUDAH ST</address>
    <address_id>545483</address_id>
    <zipcode>94122</zipcode>
    <lat>37.762221815</lat>
    <long>-122.4651145</long>
    <media_url>http://city.gov.s3.amazonaws.com/requests/media/638344.jpg</media_url>
  </request>
</service_requests>"""
SPEC_REQUESTS_JSON = [{
    "service_request_id": 638344, "status": "closed", "status_notes": "Duplicate request.",
    "service_name": "Sidewalk and Curb Issues", "service_code": "006", "description": None,
    "agency_responsible": None, "service_notice": None,
    "requested_datetime": "2010-04-14T06:37:38-08:00",
    "updated_datetime": "2010-04-14T06:37:38-08:00",
    "expected_datetime": "2010-04-15T06:37:38-08:00", "address": "8TH AVE and JUDAH ST",
    "address_id": 545483, "zipcode": 94122, "lat": 37.762221815, "long": -122.4651145,
    "media_url": "http://city.gov.s3.amazonaws.com/requests/media/638344.jpg"}]

SPEC_ERRORS_XML = """<?xml version="1.0" encoding="utf-8"?>
<errors>
  <error>
    <code>403</code>
    <description>Invalid api_key received -- can't proceed with create_request.</description>
  </error>
</errors>"""
SPEC_ERRORS_JSON = [{"code": 403, "description": "Invalid api_key received -- can't proceed "
                     "with create_request."}]

SPEC_DISCOVERY_XML = """<?xml version="1.0" encoding="utf-8"?>
<discovery>
  <changeset>2011-04-05T17:48:34Z</changeset>
  <contact>Please email or call for assistance.</contact>
  <key_service>To get an API_KEY please visit this website.</key_service>
  <endpoints>
    <endpoint>
      <specification>http://wiki.open311.org/GeoReport_v2</specification>
      <url>https://open311.example.org/v2</url>
      <changeset>2011-04-20T17:48:34Z</changeset>
      <type>production</type>
      <formats>
        <format>text/xml</format>
        <format>application/json</format>
      </formats>
    </endpoint>
  </endpoints>
</discovery>"""
SPEC_DISCOVERY_JSON = {
    "changeset": "2011-04-05T17:48:34Z", "contact": "Please email or call for assistance.",
    "key_service": "To get an API_KEY please visit this website.",
    "endpoints": [{"specification": "http://wiki.open311.org/GeoReport_v2",
                   "url": "https://open311.example.org/v2",
                   "changeset": "2011-04-20T17:48:34Z", "type": "production",
                   "formats": ["text/xml", "application/json"]}]}


# --- structure comparison ------------------------------------------------------------------

def xml_shape(element: ET.Element) -> Any:
    """(tag, children's shapes) with repeated items reduced to the first: the structure."""
    children = list(element)
    if not children:
        return element.tag
    if len({c.tag for c in children}) == 1 and len(children) > 1:
        children = children[:1]
    return (element.tag, [xml_shape(c) for c in children])


def json_shape(value: Any) -> Any:
    """Keys (in order) and nesting; lists reduced to their first item."""
    if isinstance(value, dict):
        return [(k, json_shape(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [json_shape(value[0])] if value else []
    return "scalar"


def parse_xml(response: Any) -> ET.Element:
    assert response.headers["content-type"].startswith("application/xml")
    assert "charset=utf-8" in response.headers["content-type"]
    assert response.content.startswith(b'<?xml version="1.0" encoding="utf-8"?>')
    return ET.fromstring(response.content)


def same_xml_structure(ours: ET.Element, spec_text: str) -> None:
    spec = ET.fromstring(spec_text.encode())
    assert xml_shape(ours) == xml_shape(spec)


def same_json_structure(ours: Any, spec: Any) -> None:
    assert json_shape(ours) == json_shape(spec)


# --- fixtures ------------------------------------------------------------------------------

def make_client(db: Engine, **overrides: Any) -> TestClient:
    settings = Settings(database_url="sqlite://", open311_jurisdiction_id=JURISDICTION,
                        **overrides)
    return TestClient(create_app(settings, db))


@pytest.fixture
def client(db: Engine) -> TestClient:
    return make_client(db)


def post(client: TestClient, fmt: str = "json", **fields: Any) -> Any:
    form = {"service_code": "poor-lighting", "lat": str(LAT), "long": str(LON),
            "description": "The lamp at the corner is out. Call me on +1 312 555 0100.",
            "email": "resident@example.org", "first_name": "Ada", "last_name": "Lovelace",
            "attribute[time_of_day]": "night"}
    form.update({k: v for k, v in fields.items() if v is not None})
    for key in [k for k, v in fields.items() if v is None]:
        form.pop(key, None)
    return client.post(f"{BASE}/requests.{fmt}", data=form)


def approve(db: Engine, public_id: str) -> None:
    reports.moderate(db, SYSTEM, public_id, "approve")


def errors_of(response: Any, fmt: str) -> list[dict[str, Any]]:
    """The spec's error document, in either format, as [{code, description}]."""
    if fmt == "json":
        assert response.headers["content-type"].startswith("application/json")
        body = response.json()
        same_json_structure(body, SPEC_ERRORS_JSON)
        return body
    root = parse_xml(response)
    same_xml_structure(root, SPEC_ERRORS_XML)
    return [{"code": int(e.findtext("code")), "description": e.findtext("description")}
            for e in root]


# --- discovery and services ----------------------------------------------------------------

def test_discovery_matches_the_specification(client: TestClient) -> None:
    body = client.get(f"{BASE}/discovery.json").json()
    same_json_structure(body, SPEC_DISCOVERY_JSON)
    endpoint = body["endpoints"][0]
    assert endpoint["url"] == "http://testserver/open311/v2"
    assert endpoint["specification"] == "http://wiki.open311.org/GeoReport_v2"
    assert {"text/xml", "application/json"} <= set(endpoint["formats"])
    datetime.fromisoformat(body["changeset"].replace("Z", "+00:00"))
    root = parse_xml(client.get(f"{BASE}/discovery.xml"))
    same_xml_structure(root, SPEC_DISCOVERY_XML)
    assert [f.text for f in root.find("endpoints/endpoint/formats")] == endpoint["formats"]


def test_services_match_the_specification(client: TestClient) -> None:
    response = client.get(f"{BASE}/services.json")
    assert response.status_code == 200
    body = response.json()
    same_json_structure(body, SPEC_SERVICES_JSON)
    assert [s["service_code"] for s in body] == [c.code for c in CATEGORIES]
    lighting = next(s for s in body if s["service_code"] == "poor-lighting")
    assert lighting == {"service_code": "poor-lighting", "service_name": "Poor lighting",
                        "description": CATEGORIES[2].description, "metadata": True,
                        "type": "realtime", "keywords": "light, dark, lamp",
                        "group": "environment"}
    assert next(s for s in body if s["service_code"] == "online-fraud")["metadata"] is False

    root = parse_xml(client.get(f"{BASE}/services.xml"))
    same_xml_structure(root, SPEC_SERVICES_XML)
    assert len(root.findall("service")) == len(CATEGORIES)
    xml_lighting = next(s for s in root if s.findtext("service_code") == "poor-lighting")
    assert xml_lighting.findtext("metadata") == "true"
    assert xml_lighting.findtext("keywords") == "light, dark, lamp"


def test_service_definition_matches_the_specification(client: TestClient) -> None:
    body = client.get(f"{BASE}/services/harassment.json").json()
    same_json_structure(body, SPEC_DEFINITION_JSON)
    assert body["service_code"] == "harassment"
    assert [a["code"] for a in body["attributes"]] == ["time_of_day", "repeated"]
    first = body["attributes"][0]
    assert first["variable"] is True and first["required"] is False
    assert first["datatype"] == "singlevaluelist" and first["order"] == 1
    assert [v["key"] for v in first["values"]] == ["day", "evening", "night"]

    root = parse_xml(client.get(f"{BASE}/services/harassment.xml"))
    same_xml_structure(root, SPEC_DEFINITION_XML)
    assert root.findtext("attributes/attribute/values/value/name") == "During the day"
    assert root.findtext("attributes/attribute/required") == "false"

    # a service without attributes: an empty list / empty element, still the same root
    assert client.get(f"{BASE}/services/online-fraud.json").json() == {
        "service_code": "online-fraud", "attributes": []}


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_unknown_service_code_is_a_404_in_the_spec_error_format(client: TestClient,
                                                                 fmt: str) -> None:
    response = client.get(f"{BASE}/services/potholes.{fmt}")
    assert response.status_code == 404
    (error,) = errors_of(response, fmt)
    assert error["code"] == 404 and "potholes" in error["description"]


def test_unknown_format_is_a_404(client: TestClient) -> None:
    response = client.get(f"{BASE}/services.html")
    assert response.status_code == 404
    assert response.json()[0]["code"] == 404


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_jurisdiction_is_checked(client: TestClient, fmt: str) -> None:
    assert client.get(f"{BASE}/services.{fmt}",
                      params={"jurisdiction_id": JURISDICTION}).status_code == 200
    for path in ("services", "services/harassment", "requests"):
        response = client.get(f"{BASE}/{path}.{fmt}", params={"jurisdiction_id": "sf.gov"})
        assert response.status_code == 404
        (error,) = errors_of(response, fmt)
        assert "sf.gov" in error["description"] and JURISDICTION in error["description"]
    response = post(client, fmt, jurisdiction_id="sf.gov")
    assert response.status_code == 404
    assert errors_of(response, fmt)[0]["code"] == 404
    assert post(client, fmt, jurisdiction_id=JURISDICTION).status_code == 200


# --- service requests ----------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_post_then_get_round_trip(client: TestClient, db: Engine, fmt: str) -> None:
    response = post(client, fmt)
    assert response.status_code == 200
    if fmt == "json":
        (created,) = response.json()
        assert set(created) == {"service_request_id", "token", "service_notice",
                                "account_id"}
        # the spec's example keys, in the spec's order, plus the token
        same_json_structure({k: v for k, v in created.items() if k != "token"},
                            SPEC_POST_JSON[0])
        public_id, token = created["service_request_id"], created["token"]
        assert created["account_id"] is None and created["service_notice"]
    else:
        root = parse_xml(response)
        request = root.find("request")
        assert [c.tag for c in request] == ["service_request_id", "token", "service_notice",
                                            "account_id"]
        spec = ET.fromstring(SPEC_POST_XML.encode())
        assert root.tag == spec.tag == "service_requests"
        assert request.find("account_id").text is None  # <account_id/> as in the spec
        public_id, token = request.findtext("service_request_id"), request.findtext("token")

    # the token resolves at once, as GET tokens/{token}
    tokens = client.get(f"{BASE}/tokens/{token}.{fmt}")
    assert tokens.status_code == 200
    if fmt == "json":
        same_json_structure(tokens.json(), SPEC_TOKEN_JSON)
        assert tokens.json() == [{"service_request_id": public_id, "token": token}]
    else:
        root = parse_xml(tokens)
        same_xml_structure(root, SPEC_TOKEN_XML)
        assert root.findtext("request/service_request_id") == public_id

    # pending reports are not published ...
    assert client.get(f"{BASE}/requests/{public_id}.{fmt}").status_code == 404
    assert public_id not in client.get(f"{BASE}/requests.json").text
    # ... the reporter's own view has everything they sent, via the open311 channel
    own = reports.get_report_by_token(db, token)
    assert own["channel"] == "open311" and own["contact_name"] == "Ada Lovelace"
    assert own["contact_email"] == "resident@example.org"
    assert own["attributes"] == {"time_of_day": "night"}

    approve(db, public_id)
    response = client.get(f"{BASE}/requests/{public_id}.{fmt}")
    assert response.status_code == 200
    if fmt == "json":
        same_json_structure(response.json(), SPEC_REQUESTS_JSON)
        (request,) = response.json()
    else:
        root = parse_xml(response)
        same_xml_structure(root, SPEC_REQUESTS_XML)
        element = root.find("request")
        request = {c.tag: c.text for c in element}
        request["lat"], request["long"] = float(request["lat"]), float(request["long"])
    assert request["service_request_id"] == public_id
    assert request["status"] == "open"
    assert request["service_code"] == "poor-lighting"
    assert request["service_name"] == "Poor lighting"
    # the phone number never leaves the restricted view
    assert "555" not in request["description"] and "lamp at the corner" in request["description"]
    # location generalised to the public cell: moved, but by less than a cell diagonal
    moved = math.hypot((request["lat"] - LAT) * 111_320,
                       (request["long"] - LON) * 111_320 * math.cos(math.radians(LAT)))
    assert 0 < moved < 250 * math.sqrt(2)
    requested = datetime.fromisoformat(request["requested_datetime"].replace("Z", "+00:00"))
    assert requested.tzinfo is not None
    assert abs(datetime.now(UTC) - requested) < timedelta(minutes=5)


def test_get_requests_filters(client: TestClient, db: Engine) -> None:
    ids = {}
    for code in ("poor-lighting", "vandalism", "harassment"):
        attribute = {"attribute[time_of_day]": None} if code == "vandalism" else {}
        (created,) = post(client, service_code=code, **attribute).json()
        ids[code] = created["service_request_id"]
    approve(db, ids["poor-lighting"])
    approve(db, ids["vandalism"])
    reports.moderate(db, SYSTEM, ids["vandalism"], "close")
    # harassment stays pending

    def listed(**params: str) -> list[str]:
        response = client.get(f"{BASE}/requests.json", params=params)
        assert response.status_code == 200, response.text
        same_json_structure(response.json(), SPEC_REQUESTS_JSON if response.json() else [])
        return [r["service_request_id"] for r in response.json()]

    assert set(listed()) == {ids["poor-lighting"], ids["vandalism"]}
    assert listed(status="open") == [ids["poor-lighting"]]
    assert listed(status="closed") == [ids["vandalism"]]
    assert set(listed(status="open,closed")) == {ids["poor-lighting"], ids["vandalism"]}
    assert listed(service_code="vandalism") == [ids["vandalism"]]
    assert listed(service_code="harassment") == []
    both = f"{ids['vandalism']},{ids['harassment']},{ids['poor-lighting']}"
    assert listed(service_request_id=both) == [ids["vandalism"], ids["poor-lighting"]]
    now = datetime.now(UTC)
    assert len(listed(start_date=(now - timedelta(hours=1)).isoformat())) == 2
    assert listed(end_date=(now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")) == []
    assert listed(start_date=(now + timedelta(hours=1)).isoformat()) == []
    closed = client.get(f"{BASE}/requests.xml", params={"status": "closed"})
    assert [r.findtext("status") for r in parse_xml(closed)] == ["closed"]


@pytest.mark.parametrize(("params", "needle"), [
    ({"start_date": "yesterday"}, "start_date"),
    ({"end_date": "2017-01-01T10:00:00"}, "time zone"),
    ({"start_date": "2017-01-01T00:00:00Z", "end_date": "2017-06-01T00:00:00Z"}, "90 days"),
    ({"start_date": "2017-02-01T00:00:00Z", "end_date": "2017-01-01T00:00:00Z"}, "after"),
    ({"start_date": "0001-01-01T00:00:00Z"}, "1900"),
    ({"end_date": "9999-12-31T23:59:59+14:00"}, "2200"),
    ({"status": "pending"}, "status"),
    ({"service_code": "potholes"}, "potholes"),
])
def test_get_requests_rejects_bad_filters(client: TestClient, params: dict[str, str],
                                          needle: str) -> None:
    for fmt in ("json", "xml"):
        response = client.get(f"{BASE}/requests.{fmt}", params=params)
        assert response.status_code in (400, 404)
        (error,) = errors_of(response, fmt)
        assert error["code"] == response.status_code and needle in error["description"]


@pytest.mark.parametrize(("fields", "needle"), [
    ({"service_code": None}, "service_code"),
    ({"service_code": "potholes"}, "potholes"),
    ({"lat": None, "long": None}, "location"),
    ({"long": None}, "long"),
    ({"lat": "north"}, "lat"),
    ({"long": "200"}, "long"),
    ({"attribute[time_of_day]": "noon"}, "time_of_day"),
    ({"attribute[colour]": "red"}, "colour"),
    ({"email": "not-an-address"}, "e-mail"),
    ({"description": "x" * 5000}, "description"),
])
def test_post_rejects_bad_requests(client: TestClient, fields: dict[str, Any],
                                   needle: str) -> None:
    for fmt in ("json", "xml"):
        response = post(client, fmt, **fields)
        assert response.status_code in (400, 404), response.text
        (error,) = errors_of(response, fmt)
        assert error["code"] == response.status_code and needle in error["description"]


def test_post_with_an_address_only_and_without_description(client: TestClient,
                                                            db: Engine) -> None:
    response = post(client, lat=None, long=None, description=None,
                    address_string="State St and Madison St")
    assert response.status_code == 200, response.text
    own = reports.get_report_by_token(db, response.json()[0]["token"])
    assert own["address"] == "State St and Madison St" and own["lat"] is None
    assert own["description"] == "Poor lighting"  # the spec makes description optional


def test_xml_survives_control_characters(client: TestClient, db: Engine) -> None:
    (created,) = post(client, description="dark \x01 corner \x1f & <b>here</b>").json()
    approve(db, created["service_request_id"])
    root = parse_xml(client.get(f"{BASE}/requests/{created['service_request_id']}.xml"))
    assert root.findtext("request/description") == "dark  corner  & <b>here</b>"


def test_unknown_token_and_request_are_404(client: TestClient) -> None:
    for path in ("tokens/" + "x" * 43, "requests/r-000000000000"):
        for fmt in ("json", "xml"):
            response = client.get(f"{BASE}/{path}.{fmt}")
            assert response.status_code == 404
            assert errors_of(response, fmt)[0]["code"] == 404


# --- api_key -------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_api_key_required_when_configured(db: Engine, fmt: str) -> None:
    client = make_client(db, open311_require_api_key=True)
    response = post(client, fmt)
    assert response.status_code == 403
    (error,) = errors_of(response, fmt)
    assert error["code"] == 403 and "api_key" in error["description"]
    response = post(client, fmt, api_key="usk_0000_wrong")
    assert response.status_code == 403 and errors_of(response, fmt)[0]["code"] == 403

    organisation = identity.create_organisation(db, "app-maker", "A 311 app")
    _, key = identity.create_api_key(db, organisation, "mobile app", "viewer")
    assert post(client, fmt, api_key=key).status_code == 200
    # the header form of the same key works too
    form = {"service_code": "other", "address_string": "Somewhere", "description": "x"}
    assert client.post(f"{BASE}/requests.{fmt}", data=form,
                       headers={"X-API-Key": key}).status_code == 200
    # reading stays open to everyone
    assert client.get(f"{BASE}/services.{fmt}").status_code == 200


def test_a_wrong_api_key_is_refused_even_when_not_required(client: TestClient) -> None:
    response = post(client, api_key="usk_0000_wrong")
    assert response.status_code == 403
    assert response.json()[0]["code"] == 403


# --- a client that knows only the specification --------------------------------------------

def test_client_style_flow(client: TestClient, db: Engine) -> None:
    """Discover, list services, read a definition, submit with its attributes, resolve the
    token, then (after moderation) find the request: spec field names only."""
    discovery = client.get(f"{BASE}/discovery.json").json()
    endpoint = next(e for e in discovery["endpoints"] if e["type"] == "production"
                    and "application/json" in e["formats"])
    base = endpoint["url"].replace("http://testserver", "")
    services = client.get(f"{base}/services.json",
                          params={"jurisdiction_id": JURISDICTION}).json()
    chosen = next(s for s in services if s["metadata"] and s["group"] == "personal safety")
    definition = client.get(f"{base}/services/{chosen['service_code']}.json",
                            params={"jurisdiction_id": JURISDICTION}).json()
    form: dict[str, str] = {"jurisdiction_id": JURISDICTION,
                            "service_code": chosen["service_code"], "lat": str(LAT),
                            "long": str(LON), "description": "Someone follows people here.",
                            "device_id": "device-1", "account_id": "42",
                            "media_url": "http://example.org/photo.jpg"}
    for attribute in sorted(definition["attributes"], key=lambda a: a["order"]):
        if attribute["variable"] and attribute["datatype"] == "singlevaluelist":
            form[f"attribute[{attribute['code']}]"] = attribute["values"][-1]["key"]
    (created,) = client.post(f"{base}/requests.json", data=form).json()
    token = created.get("token")
    (resolved,) = client.get(f"{base}/tokens/{token}.json").json()
    assert resolved["service_request_id"] == created["service_request_id"]

    approve(db, resolved["service_request_id"])
    found = client.get(f"{base}/requests.json", params={
        "jurisdiction_id": JURISDICTION, "service_code": chosen["service_code"],
        "status": "open"}).json()
    assert [r["service_request_id"] for r in found] == [created["service_request_id"]]
    assert found[0]["service_name"] == chosen["service_name"]
    own = reports.get_report_by_token(db, token)
    assert own["attributes"] == {"time_of_day": "night", "repeated": "repeated"}


def test_openapi_documents_every_open311_route(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    paths = {p: m for p, m in schema["paths"].items() if p.startswith(BASE)}
    assert set(paths) == {f"{BASE}/discovery.{{fmt}}", f"{BASE}/services.{{fmt}}",
                          f"{BASE}/services/{{service_code}}.{{fmt}}",
                          f"{BASE}/requests.{{fmt}}",
                          f"{BASE}/requests/{{service_request_id}}.{{fmt}}",
                          f"{BASE}/tokens/{{token}}.{{fmt}}"}
    post_op = paths[f"{BASE}/requests.{{fmt}}"]["post"]
    assert "application/x-www-form-urlencoded" in post_op["requestBody"]["content"]
    for methods in paths.values():
        for operation in methods.values():
            content = operation["responses"]["200"]["content"]
            assert {"application/json", "application/xml"} <= set(content)
    assert json.dumps(schema)  # serialisable
