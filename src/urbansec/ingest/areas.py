"""Read area polygons (police districts, beats, LOR regions, ...) from boundary files.

Supported inputs, recognised by content rather than by file extension:

* KML (``<kml>`` XML): one area per ``Placemark`` that holds at least one ``Polygon`` (also inside
  ``MultiGeometry``). KML is WGS84 lon/lat by definition.
* KMZ / ZIP: a zip archive holding either a ``.kml`` (``doc.kml`` preferred, else the first one,
  as the KMZ spec says), or an ESRI shapefile set (``.shp`` + ``.dbf`` [+ ``.shx``, ``.prj``,
  ``.cpg``]), or a GeoJSON file. Chicago's ``police-districts.kmz`` and ``police-beats.kmz``
  are in fact zipped shapefiles in NAD83 / Illinois East (US survey feet), not KML.
* ESRI shapefile (``.shp`` with its sibling files next to it). The CRS comes from the ``.prj``
  WKT; without a ``.prj`` the coordinates are assumed to be WGS84 lon/lat (and rejected if they
  cannot be). Text attributes are decoded with the ``.cpg`` code page, else UTF-8.
* GeoJSON (``FeatureCollection`` or a single ``Feature``). The CRS is the legacy ``crs`` member
  when present, else WGS84 lon/lat as RFC 7946 says.

Every geometry is returned in WGS84 (EPSG:4326) lon/lat degrees, 2D, as a valid shapely
``Polygon`` or ``MultiPolygon``.
"""

from __future__ import annotations

import codecs
import io
import json
import logging
import math
import re
import struct
import xml.etree.ElementTree as ET
import zipfile
import zlib
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import shapefile
import shapely
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError, ProjError
from shapely.errors import GEOSException
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.geometry.base import BaseGeometry

from urbansec.errors import InputFormatError, UsageError
from urbansec.ingest.records import AreaRecord

__all__ = ["normalize_area_code", "read_areas"]

logger = logging.getLogger(__name__)

_WGS84 = CRS.from_epsg(4326)
_SHP_MAGIC = b"\x00\x00\x27\x0a"  # big-endian file code 9994 that opens every .shp
_POLYGON_SHAPE_TYPES = {shapefile.POLYGON, shapefile.POLYGONZ, shapefile.POLYGONM}
_MERGED_KEY = "merged_feature_count"
_NUMBER_SUFFIXES = ("num", "number", "nummer", "nr")

# Bookkeeping columns GIS tools add: unique but meaningless, so never guessed as the area code.
_NOT_CODES = {
    "objectid", "fid", "oid", "gid", "ogc_fid", "shape_area", "shape_len", "shape_leng",
    "shape_length", "area", "perimeter",
}  # fmt: skip


@dataclass(slots=True)
class _RawFeature:
    """A feature as read, geometry still in the source CRS and possibly invalid."""

    geometry: BaseGeometry
    attributes: dict[str, Any]
    label: str  # where it is in the file, for error messages


def normalize_area_code(value: object) -> str:
    """Return the canonical text of an area code.

    Whitespace is stripped, and an all-digit code loses its leading zeros ("001" -> "1", but
    "000" -> "0") so that boundary files and incident rows agree: Chicago's district shapefile
    says "1" where its incident rows say "001". Integral floats (dbf numeric fields) lose their
    ".0". ``None`` gives "".
    """
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    # isascii() too: str.isdigit() accepts e.g. superscript digits, which are not codes.
    if text.isascii() and text.isdigit():
        text = text.lstrip("0") or "0"
    return text


def read_areas(
    path: Path, *, code_field: str | None = None, name_field: str | None = None
) -> list[AreaRecord]:
    """Read the area polygons of a KML, KMZ, zipped shapefile, shapefile or GeoJSON file.

    Args:
        path: the boundary file; its format is detected from its content.
        code_field: attribute holding the area code (case-insensitive). When omitted it is
            guessed: among attributes named like a code (``*code``, ``*cd``, ``*num*``,
            ``*number``, ``nr``, ``no``, ``*id``, ``*key``; GIS bookkeeping columns such as
            ``OBJECTID`` excluded) the one with the most filled-in, then most distinct values;
            failing that, the name attribute (for KML, the Placemark ``<name>``).
        name_field: attribute holding the display name (case-insensitive). When omitted it is
            guessed from ``name``, ``*name*``, ``*nm``, ``*label*``, ``*title*``; else None.

    Returns:
        One ``AreaRecord`` per distinct normalised code (see :func:`normalize_area_code`), in
        order of first appearance, with the geometry in WGS84 lon/lat degrees, valid and 2D.
        ``attributes`` holds the file's attribute values (made JSON-safe: str/int/float/bool/
        None; dates become ISO strings, nested values JSON text). For KML they are the
        ExtendedData ``Data``/``SimpleData`` values plus the Placemark ``name`` and
        ``description``; for GeoJSON the properties plus the feature ``id``.

    Several features with the same code (Chicago's district 31 and beat 3100 are each three
    separate polygons) are merged into one area: the geometries are unioned, the name and
    attributes are those of the first feature, and ``attributes["merged_feature_count"]`` says
    how many features were merged. Invalid geometries are repaired with ``shapely.make_valid``
    and only their polygonal parts kept; a feature left with no area at all is dropped (logged).
    Non-polygon features (points, lines) are skipped.

    Raises:
        InputFormatError: the file is missing or unreadable, of no supported format, holds no
            polygons or malformed ones, has a CRS that cannot be used, names an unknown
            ``code_field``/``name_field`` (the message lists the available fields), or a feature
            has no code.
        UsageError: ``code_field`` or ``name_field`` is given but blank.
    """
    path = Path(path)
    for arg, value in (("code_field", code_field), ("name_field", name_field)):
        if value is not None and not value.strip():
            raise UsageError(f"{arg} must not be blank")

    features, crs, source = _load(path)
    if not features:
        raise InputFormatError(f"{source}: no polygon features found")

    geometries = _to_wgs84(np.array([f.geometry for f in features], dtype=object), crs, source)
    geometries = _repair(geometries)
    kept: list[tuple[_RawFeature, BaseGeometry]] = []
    for feature, geometry in zip(features, geometries, strict=True):
        if geometry is None:
            logger.warning("%s: %s has no area once repaired; dropped", source, feature.label)
        else:
            kept.append((feature, geometry))
    if not kept:
        raise InputFormatError(f"{source}: no polygon has a non-zero area")

    code_key, name_key = _choose_fields([f for f, _ in kept], code_field, name_field, source)
    return _build_records(kept, code_key, name_key, source)


# --- loading ---------------------------------------------------------------------------------


def _load(path: Path) -> tuple[list[_RawFeature], CRS | None, str]:
    """Dispatch on content; return features, their CRS (None = unknown) and a source label."""
    source = str(path)
    if not path.exists():
        raise InputFormatError(f"{source}: file not found")
    if not path.is_file():
        raise InputFormatError(f"{source}: not a regular file")
    try:
        with path.open("rb") as fh:
            head = fh.read(512)
    except OSError as exc:
        raise InputFormatError(f"{source}: cannot read the file ({exc.strerror})") from exc

    if zipfile.is_zipfile(path):
        return _load_zip(path)
    suffix = path.suffix.lower()
    if suffix in {".kmz", ".zip"}:
        raise InputFormatError(f"{source}: a {suffix} file must be a zip archive, but this is not")
    if head.startswith(_SHP_MAGIC):
        return _load_shapefile_on_disk(path)
    text_head = head.removeprefix(codecs.BOM_UTF8).lstrip()
    if text_head.startswith(b"<"):
        return _parse_kml(_read_bytes(path), source), None, source
    if text_head.startswith(b"{"):
        features, crs = _parse_geojson(_read_bytes(path), source)
        return features, crs, source
    raise InputFormatError(
        f"{source}: not a KML, KMZ, zipped shapefile, shapefile or GeoJSON file "
        "(content not recognised)"
    )


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputFormatError(f"{path}: cannot read the file ({exc.strerror})") from exc


def _load_zip(path: Path) -> tuple[list[_RawFeature], CRS | None, str]:
    try:
        with zipfile.ZipFile(path) as archive:
            members = [
                name
                for name in archive.namelist()
                # Skip folders and the resource-fork litter macOS adds to zips it creates.
                if not name.endswith("/")
                and not name.startswith("__MACOSX/")
                and not PurePosixPath(name).name.startswith("._")
            ]
            by_lower = {name.lower(): name for name in members}
            kmls = [name for name in members if name.lower().endswith(".kml")]
            shps = [name for name in members if name.lower().endswith(".shp")]
            geojsons = [name for name in members if name.lower().endswith((".geojson", ".json"))]
            if kmls:
                main = by_lower.get("doc.kml", kmls[0])
                source = f"{path}[{main}]"
                return _parse_kml(archive.read(main), source), None, source
            if shps:
                if len(shps) > 1:
                    raise InputFormatError(
                        f"{path}: the archive holds several shapefiles ({', '.join(shps)}); "
                        "extract the one to import"
                    )
                stem = shps[0][:-4]
                source = f"{path}[{shps[0]}]"

                def member(ext: str) -> bytes | None:
                    name = by_lower.get((stem + ext).lower())
                    return archive.read(name) if name is not None else None

                parts = {ext: member(ext) for ext in (".shp", ".shx", ".dbf", ".prj", ".cpg")}
                features, crs = _parse_shapefile(parts, source)
                return features, crs, source
            if geojsons:
                source = f"{path}[{geojsons[0]}]"
                features, crs = _parse_geojson(archive.read(geojsons[0]), source)
                return features, crs, source
            listing = ", ".join(members[:20]) + (" ..." if len(members) > 20 else "")
            raise InputFormatError(
                f"{path}: the zip archive holds neither a .kml, a .shp nor a GeoJSON file "
                f"(members: {listing or 'none'})"
            )
    except (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError, OSError) as exc:
        # RuntimeError: encrypted member; NotImplementedError: unsupported compression.
        raise InputFormatError(f"{path}: cannot read the zip archive ({exc})") from exc


def _load_shapefile_on_disk(path: Path) -> tuple[list[_RawFeature], CRS | None, str]:
    parts: dict[str, bytes | None] = {}
    for ext in (".shp", ".shx", ".dbf", ".prj", ".cpg"):
        parts[ext] = None
        for candidate in (path.with_suffix(ext), path.with_suffix(ext.upper())):
            if candidate.is_file():
                parts[ext] = _read_bytes(candidate)
                break
    features, crs = _parse_shapefile(parts, str(path))
    return features, crs, str(path)


# --- shapefile -------------------------------------------------------------------------------


def _parse_shapefile(
    parts: dict[str, bytes | None], source: str
) -> tuple[list[_RawFeature], CRS | None]:
    """Read a shapefile set given as {".shp": bytes, ".dbf": bytes, ...} (missing = None)."""
    shp, dbf = parts.get(".shp"), parts.get(".dbf")
    if shp is None:
        raise InputFormatError(f"{source}: the .shp file is missing")
    if dbf is None:
        # Without the .dbf there are no attributes, hence no area codes.
        raise InputFormatError(f"{source}: the .dbf file with the attributes is missing")
    crs = _crs_from_prj(parts[".prj"], source) if parts.get(".prj") else None
    encoding = _cpg_encoding(parts.get(".cpg"))
    shx = parts.get(".shx")

    features: list[_RawFeature] = []
    try:
        with shapefile.Reader(
            shp=io.BytesIO(shp),
            shx=io.BytesIO(shx) if shx is not None else None,
            dbf=io.BytesIO(dbf),
            encoding=encoding,
            encodingErrors="replace",
        ) as reader:
            if reader.shapeType not in _POLYGON_SHAPE_TYPES:
                raise InputFormatError(
                    f"{source}: the shapefile holds {reader.shapeTypeName} shapes, not polygons"
                )
            for index, item in enumerate(reader.iterShapeRecords(), start=1):
                if item.shape.shapeType == shapefile.NULL:
                    continue
                label = f"record {index}"
                try:
                    geometry = shape(item.shape.__geo_interface__)
                except (ValueError, TypeError, GEOSException) as exc:
                    raise InputFormatError(
                        f"{source}: {label} has a malformed polygon ({exc})"
                    ) from exc
                attributes = {k: _json_safe(v) for k, v in item.record.as_dict().items()}
                features.append(_RawFeature(geometry, attributes, label))
    except (shapefile.ShapefileException, struct.error, ValueError, IndexError, OSError) as exc:
        raise InputFormatError(f"{source}: cannot read the shapefile ({exc})") from exc
    return features, crs


def _crs_from_prj(prj: bytes, source: str) -> CRS:
    text = prj.decode("utf-8", errors="replace").strip()
    try:
        return CRS.from_user_input(text)
    except CRSError as exc:
        raise InputFormatError(
            f"{source}: the .prj does not describe a usable CRS ({exc})"
        ) from exc


def _cpg_encoding(cpg: bytes | None) -> str:
    """Python codec named by a .cpg file; UTF-8 when absent or unknown."""
    if not cpg:
        return "utf-8"
    name = cpg.decode("ascii", errors="ignore").strip()
    # ESRI writes bare Windows code page numbers ("1252") or "ANSI 1252".
    match = re.fullmatch(r"(?:ANSI\s*)?(\d+)", name, flags=re.IGNORECASE)
    if match:
        name = f"cp{match.group(1)}"
    try:
        return codecs.lookup(name).name
    except LookupError:
        return "utf-8"


# --- KML -------------------------------------------------------------------------------------


def _local(tag: object) -> str:
    """Element name without namespace: KML 2.0/2.1/2.2 and namespace-less files all occur."""
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    return [child for child in element if _local(child.tag) == name]


def _parse_kml(data: bytes, source: str) -> list[_RawFeature]:
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise InputFormatError(f"{source}: not well-formed XML ({exc})") from exc
    if _local(root.tag) != "kml":
        raise InputFormatError(f"{source}: XML root element is <{_local(root.tag)}>, not <kml>")

    features: list[_RawFeature] = []
    placemarks = 0
    for element in root.iter():
        if _local(element.tag) != "Placemark":
            continue
        placemarks += 1
        attributes: dict[str, Any] = {}
        for child in element:
            if _local(child.tag) in {"name", "description"} and child.text is not None:
                attributes[_local(child.tag)] = child.text.strip()
        for extended in _children(element, "ExtendedData"):
            for item in extended.iter():
                key = item.get("name")
                if not key:
                    continue
                if _local(item.tag) == "Data":
                    values = _children(item, "value")
                    text = values[0].text if values else None
                elif _local(item.tag) == "SimpleData":
                    text = item.text
                else:
                    continue
                attributes[key] = text.strip() if text is not None else None
        label = f"Placemark {placemarks}"
        if attributes.get("name"):
            label += f" ({attributes['name']!r})"

        # iter() also finds the Polygons nested (to any depth) in MultiGeometry.
        polygons = [
            _kml_polygon(poly, source, label)
            for poly in element.iter()
            if _local(poly.tag) == "Polygon"
        ]
        if not polygons:
            continue
        geometry = polygons[0] if len(polygons) == 1 else MultiPolygon(polygons)
        features.append(_RawFeature(geometry, attributes, label))

    if not features:
        raise InputFormatError(
            f"{source}: no Placemark holds a Polygon"
            + (f" ({placemarks} Placemarks found)" if placemarks else " (no Placemarks found)")
        )
    return features


def _kml_polygon(polygon: ET.Element, source: str, label: str) -> Polygon:
    def rings(boundary: str) -> list[np.ndarray]:
        return [
            _kml_coordinates(coords.text or "", source, label)
            for b in _children(polygon, boundary)
            for ring in _children(b, "LinearRing")
            for coords in _children(ring, "coordinates")
        ]

    outer = rings("outerBoundaryIs")
    if len(outer) != 1:
        raise InputFormatError(
            f"{source}: {label} has a Polygon with {len(outer)} outer boundaries instead of 1"
        )
    try:
        return Polygon(outer[0], rings("innerBoundaryIs"))
    except (ValueError, GEOSException) as exc:
        raise InputFormatError(f"{source}: {label} has a malformed Polygon ({exc})") from exc


def _kml_coordinates(text: str, source: str, label: str) -> np.ndarray:
    """Parse a KML ``lon,lat[,alt]`` tuple list into an (n, 2) float array."""
    # Some writers put blanks after the commas, which would otherwise split the tuples.
    tuples = re.sub(r"\s*,\s*", ",", text.strip()).split()
    if not tuples:
        return np.empty((0, 2))
    try:
        widths = {t.count(",") for t in tuples}
        if len(widths) == 1:
            # One numpy conversion for the whole ring rather than one float() per number.
            flat = np.array(",".join(tuples).split(","), dtype=float)
            return flat.reshape(len(tuples), -1)[:, :2]
        # Mixed 2D/3D tuples are rare enough to afford the per-tuple path.
        return np.array([t.split(",")[:2] for t in tuples], dtype=float)
    except ValueError as exc:
        raise InputFormatError(f"{source}: {label} has unreadable coordinates ({exc})") from exc


# --- GeoJSON ---------------------------------------------------------------------------------


def _parse_geojson(data: bytes, source: str) -> tuple[list[_RawFeature], CRS | None]:
    try:
        document = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFormatError(f"{source}: not valid UTF-8 JSON ({exc})") from exc
    if not isinstance(document, dict):
        raise InputFormatError(f"{source}: GeoJSON must be a JSON object")
    kind = document.get("type")
    if kind == "FeatureCollection":
        items = document.get("features")
        if not isinstance(items, list):
            raise InputFormatError(f"{source}: the FeatureCollection has no 'features' list")
    elif kind == "Feature":
        items = [document]
    else:
        raise InputFormatError(
            f"{source}: expected a GeoJSON FeatureCollection or Feature, got type {kind!r}"
        )
    crs = _geojson_crs(document.get("crs"), source)

    features: list[_RawFeature] = []
    for index, item in enumerate(items, start=1):
        label = f"feature {index}"
        if not isinstance(item, dict):
            raise InputFormatError(f"{source}: {label} is not a JSON object")
        geometry = item.get("geometry")
        if not isinstance(geometry, dict) or geometry.get("type") not in {
            "Polygon",
            "MultiPolygon",
            "GeometryCollection",
        }:
            continue
        try:
            parsed = shape(geometry)
        except (ValueError, TypeError, KeyError, AttributeError, GEOSException) as exc:
            raise InputFormatError(f"{source}: {label} has a malformed geometry ({exc})") from exc
        properties = item.get("properties")
        attributes = (
            {str(k): _json_safe(v) for k, v in properties.items()}
            if isinstance(properties, dict)
            else {}
        )
        if "id" in item and not any(k.lower() == "id" for k in attributes):
            attributes["id"] = _json_safe(item["id"])
        features.append(_RawFeature(parsed, attributes, label))
    return features, crs


def _geojson_crs(member: object, source: str) -> CRS | None:
    """CRS of the legacy (GeoJSON 2008) ``crs`` member; None when absent (= WGS84 lon/lat)."""
    if member is None:
        return None
    spec: object = None
    if isinstance(member, dict) and isinstance(member.get("properties"), dict):
        props = member["properties"]
        if member.get("type") == "name":
            spec = props.get("name")
        elif member.get("type") == "EPSG" and props.get("code") is not None:
            spec = f"EPSG:{props['code']}"
    if not isinstance(spec, str):
        raise InputFormatError(
            f"{source}: unsupported 'crs' member {json.dumps(member)[:200]}; "
            'expected {"type": "name", "properties": {"name": "EPSG:..."}}'
        )
    try:
        return CRS.from_user_input(spec)
    except CRSError as exc:
        raise InputFormatError(f"{source}: unknown CRS {spec!r} in the 'crs' member") from exc


# --- geometry --------------------------------------------------------------------------------


def _to_wgs84(geometries: np.ndarray, crs: CRS | None, source: str) -> np.ndarray:
    """Project 2D copies of the geometries from ``crs`` (None = WGS84) to lon/lat degrees."""
    geometries = shapely.force_2d(geometries)
    if crs is not None and not crs.equals(_WGS84, ignore_axis_order=True):
        try:
            transformer = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
        except (CRSError, ProjError) as exc:
            raise InputFormatError(f"{source}: cannot project from {crs.name} ({exc})") from exc

        def project(xy: np.ndarray) -> np.ndarray:
            lon, lat = transformer.transform(xy[:, 0], xy[:, 1])
            return np.column_stack([lon, lat])

        # One call over every vertex of every geometry: PROJ does the loop, not Python.
        geometries = shapely.transform(geometries, project)

    coords = shapely.get_coordinates(geometries)
    lon, lat = coords[:, 0], coords[:, 1]
    if not (np.isfinite(coords).all() and (np.abs(lon) <= 180).all() and (np.abs(lat) <= 90).all()):
        where = f"from {crs.name}" if crs is not None else "with no CRS given (assumed WGS84)"
        raise InputFormatError(
            f"{source}: coordinates {where} do not map to valid longitude/latitude; "
            "the CRS (.prj or 'crs' member) is probably missing or wrong"
        )
    return geometries


def _repair(geometries: np.ndarray) -> list[BaseGeometry | None]:
    """Valid Polygon/MultiPolygon per geometry, or None when nothing polygonal remains."""
    invalid = ~shapely.is_valid(geometries)
    if invalid.any():
        geometries = geometries.copy()
        geometries[invalid] = shapely.make_valid(geometries[invalid])
    return [_polygonal(g) for g in geometries]


def _polygon_parts(geometry: BaseGeometry) -> list[Polygon]:
    if isinstance(geometry, Polygon):
        return [] if geometry.is_empty else [geometry]
    if isinstance(geometry, MultiPolygon):
        return [p for p in geometry.geoms if not p.is_empty]
    if hasattr(geometry, "geoms"):  # GeometryCollection, e.g. from make_valid
        return [p for part in geometry.geoms for p in _polygon_parts(part)]
    return []


def _polygonal(geometry: BaseGeometry) -> BaseGeometry | None:
    parts = _polygon_parts(geometry)
    if isinstance(geometry, Polygon | MultiPolygon) and geometry.is_valid and parts:
        return geometry
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    # Union rather than MultiPolygon(parts): parts sharing an edge would make it invalid.
    merged = shapely.union_all(parts)
    remaining = _polygon_parts(merged)
    if not remaining:
        return None
    return remaining[0] if len(remaining) == 1 else MultiPolygon(remaining)


# --- code and name ---------------------------------------------------------------------------


def _field_names(features: list[_RawFeature]) -> dict[str, str]:
    """Lower-cased attribute name -> its first spelling, in order of first appearance."""
    names: dict[str, str] = {}
    for feature in features:
        for key in feature.attributes:
            names.setdefault(key.lower(), key)
    return names


def _value(attributes: dict[str, Any], lower_key: str) -> Any:
    for key, value in attributes.items():
        if key.lower() == lower_key:
            return value
    return None


def _code_rank(field: str) -> int | None:
    """How code-like an attribute name is (0 best), None when not code-like."""
    low = field.lower()
    if low in _NOT_CODES:
        return None
    ranks = []
    for token in re.split(r"[^0-9a-z]+", low):
        if token.endswith(("code", "cd")):
            ranks.append(0)
        elif token == "no" or token.startswith("num") or token.endswith(_NUMBER_SUFFIXES):
            ranks.append(1)
        elif token.endswith("id"):
            ranks.append(2)
        elif token.endswith(("key", "schluessel")):
            ranks.append(3)
    return min(ranks) if ranks else None


def _name_rank(field: str) -> int | None:
    low = field.lower()
    if low == "name":
        return 0
    if "name" in low:
        return 1
    if any(token.endswith("nm") for token in re.split(r"[^0-9a-z]+", low) if token):
        return 2
    if "label" in low:
        return 3
    if "title" in low or "titel" in low:
        return 4
    return None


def _choose_fields(
    features: list[_RawFeature],
    code_field: str | None,
    name_field: str | None,
    source: str,
) -> tuple[str, str | None]:
    """Lower-cased attribute keys for the code and the name (name may be None)."""
    fields = _field_names(features)
    available = ", ".join(fields.values()) or "(none)"

    def resolve(requested: str, role: str) -> str:
        key = requested.strip().lower()
        if key not in fields:
            raise InputFormatError(
                f"{source}: no attribute {requested!r} for the area {role}; "
                f"available fields: {available}"
            )
        return key

    def filled(key: str) -> list[str]:
        return [text for f in features if (text := normalize_area_code(_value(f.attributes, key)))]

    name_key = resolve(name_field, "name") if name_field is not None else None
    if code_field is not None:
        code_key = resolve(code_field, "code")
    else:
        scored = []
        for order, key in enumerate(fields):
            rank = _code_rank(fields[key])
            if rank is None:
                continue
            values = filled(key)
            # Prefer codes present on every feature, then the most discriminating ones.
            scored.append(((len(values), len(set(values)), -rank, -order), key))
        scored = [item for item in scored if item[0][0] > 0]
        code_key = max(scored)[1] if scored else None

    if name_key is None:
        candidates = [
            (rank, -len(filled(key)), order, key)
            for order, key in enumerate(fields)
            if key != code_key and (rank := _name_rank(fields[key])) is not None
        ]
        candidates = [c for c in candidates if c[1] < 0]
        name_key = min(candidates)[3] if candidates else None

    if code_key is None:
        if name_key is None:
            raise InputFormatError(
                f"{source}: cannot tell which attribute holds the area code; "
                f"pass code_field, one of: {available}"
            )
        # No code-like attribute (typically KML with only Placemark names): the name is the code.
        code_key = name_key
    return code_key, name_key


def _build_records(
    kept: list[tuple[_RawFeature, BaseGeometry]],
    code_key: str,
    name_key: str | None,
    source: str,
) -> list[AreaRecord]:
    groups: dict[str, list[tuple[_RawFeature, BaseGeometry]]] = {}
    for feature, geometry in kept:
        code = normalize_area_code(_value(feature.attributes, code_key))
        if not code:
            raise InputFormatError(
                f"{source}: {feature.label} has no value in the code attribute {code_key!r}"
            )
        groups.setdefault(code, []).append((feature, geometry))

    records: list[AreaRecord] = []
    for code, members in groups.items():
        names = []
        if name_key is not None:
            for feature, _ in members:
                value = _value(feature.attributes, name_key)
                if value is not None and str(value).strip():
                    names.append(str(value).strip())
        attributes = dict(members[0][0].attributes)
        if len(members) == 1:
            geometry = members[0][1]
        else:
            geometry = _polygonal(shapely.union_all([g for _, g in members]))
            attributes[_MERGED_KEY] = len(members)
            if geometry is None:  # cannot happen for non-empty valid polygons; be explicit
                raise InputFormatError(f"{source}: the polygons of area {code!r} cannot be merged")
        records.append(AreaRecord(code, names[0] if names else None, geometry, attributes))
    return records


def _json_safe(value: Any) -> str | int | float | bool | None:
    """Attribute value as a JSON scalar (the store keeps attributes as JSON)."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float | Decimal):
        number = float(value)
        if not math.isfinite(number):
            return None
        return int(number) if isinstance(value, Decimal) and number.is_integer() else number
    if isinstance(value, date | datetime | time):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)
