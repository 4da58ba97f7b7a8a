"""Open311 GeoReport v2 documents: building them from our data and rendering JSON or XML.

Pure functions (no HTTP, no database), so the exact shape of every document the
specification defines (https://wiki.open311.org/GeoReport_v2) is tested in one place:

- JSON: the document as a list (services, service requests, errors) or an object
  (service definition, discovery); absent values are ``null``, never left out, because the
  specification's examples list every field.
- XML: ``<?xml version="1.0" encoding="utf-8"?>`` then the specification's root element
  (``<services>``, ``<service_definition>``, ``<service_requests>``, ``<discovery>``,
  ``<errors>``); list items are named as in the specification (``<service>``, ``<request>``,
  ``<attribute>``, ``<value>``, ``<endpoint>``, ``<format>``, ``<error>``); booleans are
  ``true``/``false`` and absent values empty elements (``<account_id/>``).
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from urbansec.domain.report_categories import ReportCategory

JSON_MEDIA_TYPE = "application/json"
XML_MEDIA_TYPE = "application/xml"
FORMATS = ("json", "xml")
SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"

#: element name of one item of each list, as the specification's XML examples name them
ITEM_NAMES = {
    "services": "service",
    "service_requests": "request",
    "errors": "error",
    "attributes": "attribute",
    "values": "value",
    "endpoints": "endpoint",
    "formats": "format",
}

#: the fields of a service request (GET requests) in the specification's order
REQUEST_FIELDS = (
    "service_request_id", "status", "status_notes", "service_name", "service_code",
    "description", "agency_responsible", "service_notice", "requested_datetime",
    "updated_datetime", "expected_datetime", "address", "address_id", "zipcode", "lat",
    "long", "media_url",
)

# XML 1.0 cannot carry most control characters at all (not even escaped); a reporter's text
# may contain them, so they are dropped rather than producing a document no parser reads.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


# --- documents -----------------------------------------------------------------------------

def w3c_datetime(value: datetime | str | None) -> str | None:
    """A W3C/ISO 8601 date-time with its offset (``2010-04-14T06:37:38Z``); naive values
    are taken as UTC (the store keeps UTC)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    text = value.replace(microsecond=0).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def service(cat: ReportCategory) -> dict[str, Any]:
    """One entry of GET services."""
    return {
        "service_code": cat.code,
        "service_name": cat.name,
        "description": cat.description,
        "metadata": bool(cat.attributes),
        "type": "realtime",
        "keywords": ", ".join(cat.keywords),
        "group": cat.group,
    }


def service_definition(cat: ReportCategory) -> dict[str, Any]:
    """GET services/{service_code}: the attributes a request of this service may carry."""
    attributes = []
    for attribute in sorted(cat.attributes, key=lambda a: a.get("order", 0)):
        attributes.append({
            "variable": bool(attribute.get("variable", True)),
            "code": attribute["code"],
            "datatype": attribute["datatype"],
            "required": bool(attribute.get("required", False)),
            "datatype_description": attribute.get("datatype_description") or None,
            "order": int(attribute.get("order", 0)),
            "description": attribute.get("description", ""),
            "values": [{"key": v["key"], "name": v["name"]}
                       for v in attribute.get("values", ())],
        })
    return {"service_code": cat.code, "attributes": attributes}


def service_request(report: Mapping[str, Any]) -> dict[str, Any]:
    """One entry of GET requests from a report as ``urbansec.services.reports`` gives it to
    the public (description already redacted, location already generalised)."""
    return {
        "service_request_id": report["public_id"],
        "status": report["open311_status"],
        "status_notes": report.get("status_notes"),
        "service_name": report.get("service_name"),
        "service_code": report["service_code"],
        "description": report.get("public_description", report.get("description")),
        "agency_responsible": report.get("agency_responsible"),
        "service_notice": None,
        "requested_datetime": w3c_datetime(report.get("submitted_at")),
        "updated_datetime": w3c_datetime(report.get("updated_at")),
        "expected_datetime": None,
        "address": report.get("address"),
        "address_id": None,
        "zipcode": None,
        "lat": report.get("lat"),
        "long": report.get("lon"),
        "media_url": None,
    }


def created_request(public_id: str, token: str, notice: str | None) -> dict[str, Any]:
    """One entry of the POST requests answer: the id at once (we create in real time) and
    the token that GET tokens/{token} resolves."""
    return {"service_request_id": public_id, "token": token, "service_notice": notice,
            "account_id": None}


def discovery(url: str, changeset: str, contact: str, key_service: str) -> dict[str, Any]:
    """The Service Discovery document (http://wiki.open311.org/Service_Discovery)."""
    return {
        "changeset": changeset,
        "contact": contact,
        "key_service": key_service,
        "endpoints": [{
            "specification": SPECIFICATION,
            "url": url,
            "changeset": changeset,
            "type": "production",
            "formats": ["text/xml", XML_MEDIA_TYPE, JSON_MEDIA_TYPE],
        }],
    }


def errors(status: int, description: str) -> list[dict[str, Any]]:
    return [{"code": status, "description": description}]


# --- rendering -----------------------------------------------------------------------------

def render(document: Any, root: str, fmt: str) -> tuple[bytes, str]:
    """``(body, media type)`` of ``document`` in ``fmt`` ("json" or "xml"); ``root`` is the
    XML root element (a list document's items are named by ``ITEM_NAMES[root]``)."""
    if fmt == "json":
        body = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
        return body.encode("utf-8"), JSON_MEDIA_TYPE
    if fmt == "xml":
        return to_xml(document, root), XML_MEDIA_TYPE
    raise ValueError(f"unknown format {fmt!r}")


def to_xml(document: Any, root: str) -> bytes:
    element = ET.Element(root)
    _fill(element, root, document)
    body = ET.tostring(element, encoding="unicode", short_empty_elements=True)
    return ('<?xml version="1.0" encoding="utf-8"?>\n' + body).encode("utf-8")


def _fill(element: ET.Element, name: str, value: Any) -> None:
    if isinstance(value, Mapping):
        for key, child in value.items():
            _fill(ET.SubElement(element, key), key, child)
    elif isinstance(value, list | tuple):
        item = ITEM_NAMES.get(name, "item")
        for child in value:
            _fill(ET.SubElement(element, item), item, child)
    else:
        element.text = _text(value)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return _XML_INVALID.sub("", str(value))

