"""Sensor data as the OGC SensorThings API v1.1 sees it: reads with the standard's query
options, creates (deep insert), updates and deletes; plus crowd zones and a datastream's or a
zone's series for the crowd state.

The API face (``urbansec.api.sensorthings``) parses a request into a
:class:`~urbansec.sensors.query.ResourcePath` and :class:`~urbansec.sensors.query.QueryOptions`
and calls one function here; everything the standard decides about the answer (links, counts,
paging, expansion) is decided here, so the CLI could serve the same documents.

Decisions worth knowing:

- Entity ids are integers (``Things(1)``). Collections are ordered by id unless ``$orderby``
  says otherwise (then by id after the given keys, so pages never overlap). ``$top`` defaults
  to 100 and is at most 1000; a page that has more after it carries ``@iot.nextLink``, also
  inside an expanded collection.
- ``phenomenonTime`` of an Observation may be an interval ``start/end``; comparisons in
  ``$filter`` and ``$orderby`` use its start. A Datastream's ``phenomenonTime`` is computed from
  its observations (first start / last end); ``resultTime`` of a Datastream is not kept (null).
- ``result`` compares as a number against a number, as text against text, as JSON against
  ``true``/``false``/``null``.
- An Observation posted without a FeatureOfInterest gets one made from its Thing's Location
  (one feature per location, reused), as the standard requires.
- Posting an Observation that is stored already (same datastream, phenomenon time and result)
  answers with the stored one: a client retrying after a lost response never doubles a count.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import numpy as np
from sqlalchemy import (
    Boolean,
    Connection,
    Engine,
    Float,
    Integer,
    Table,
    and_,
    case,
    cast,
    delete,
    func,
    insert,
    literal,
    not_,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.sql.elements import ColumnElement

from urbansec.errors import ConflictError, NotFoundError, UsageError
from urbansec.sensors import query as q
from urbansec.sensors.payloads import (
    DatastreamRule,
    Rejected,
    check_result,
    observation_from_json,
    parse_instant,
)
from urbansec.services.sensor_ingest import (
    existing_observation_id,
    insert_observations,
    observation_row,
)
from urbansec.store.engine import write_transaction
from urbansec.store.sensors import (
    DATASTREAM_ROLES,
    Datastream,
    FeatureOfInterest,
    HistoricalLocation,
    HistoricalLocationLocation,
    Location,
    Observation,
    ObservedProperty,
    Sensor,
    Thing,
    ThingLocation,
    TopicMapping,
    Zone,
)
from urbansec.store.types import UTCDateTime

things = Thing.__table__
locations = Location.__table__
thing_locations = ThingLocation.__table__
historical_locations = HistoricalLocation.__table__
hl_locations = HistoricalLocationLocation.__table__
sensors = Sensor.__table__
observed_properties = ObservedProperty.__table__
datastreams = Datastream.__table__
features = FeatureOfInterest.__table__
observations = Observation.__table__
zones = Zone.__table__
topic_mappings = TopicMapping.__table__


# --- the entity model -----------------------------------------------------------------------

@dataclass(frozen=True)
class Prop:
    """A property of an entity: its JSON name, column and kind.

    kinds: text, json (any JSON), time (an instant), interval (start column + ``end`` column),
    result (an Observation's result), computed (read-only, from observations)."""

    name: str
    column: str | None
    kind: str = "text"
    required: bool = False
    end: str | None = None
    default: Any = None


@dataclass(frozen=True)
class Nav:
    """A navigation property: to one (``fk`` on this table), to many (``remote_fk`` on the
    target's table) or many-to-many through ``link`` (``link_own`` -> this, ``link_target``
    -> the target)."""

    name: str
    target: str
    many: bool
    fk: str | None = None
    remote_fk: str | None = None
    link: Table | None = None
    link_own: str = ""
    link_target: str = ""
    required: bool = False


@dataclass(frozen=True)
class EntityType:
    name: str
    plural: str
    table: Table
    props: tuple[Prop, ...]
    navs: tuple[Nav, ...]

    def prop(self, name: str) -> Prop | None:
        return next((p for p in self.props if p.name == name), None)

    def nav(self, name: str) -> Nav | None:
        return next((n for n in self.navs if n.name == name), None)


_NAME = Prop("name", "name", required=True)
_DESCRIPTION = Prop("description", "description", default="")
_PROPERTIES = Prop("properties", "properties", "json")
_ENCODING = Prop("encodingType", "encoding_type", required=True)

TYPES: dict[str, EntityType] = {t.plural: t for t in (
    EntityType("Thing", "Things", things, (_NAME, _DESCRIPTION, _PROPERTIES), (
        Nav("Locations", "Locations", True, link=thing_locations, link_own="thing_id",
            link_target="location_id"),
        Nav("HistoricalLocations", "HistoricalLocations", True, remote_fk="thing_id"),
        Nav("Datastreams", "Datastreams", True, remote_fk="thing_id"),
    )),
    EntityType("Location", "Locations", locations, (
        _NAME, _DESCRIPTION, _ENCODING, Prop("location", "location", "json", required=True),
        _PROPERTIES), (
        Nav("Things", "Things", True, link=thing_locations, link_own="location_id",
            link_target="thing_id"),
        Nav("HistoricalLocations", "HistoricalLocations", True, link=hl_locations,
            link_own="location_id", link_target="historical_location_id"),
    )),
    EntityType("HistoricalLocation", "HistoricalLocations", historical_locations, (
        Prop("time", "time", "time", required=True),), (
        Nav("Thing", "Things", False, fk="thing_id", required=True),
        Nav("Locations", "Locations", True, link=hl_locations,
            link_own="historical_location_id", link_target="location_id"),
    )),
    EntityType("Sensor", "Sensors", sensors, (
        _NAME, _DESCRIPTION, _ENCODING, Prop("metadata", "metadata", required=True),
        _PROPERTIES), (
        Nav("Datastreams", "Datastreams", True, remote_fk="sensor_id"),)),
    EntityType("ObservedProperty", "ObservedProperties", observed_properties, (
        _NAME, Prop("definition", "definition", required=True), _DESCRIPTION, _PROPERTIES), (
        Nav("Datastreams", "Datastreams", True, remote_fk="observed_property_id"),)),
    EntityType("Datastream", "Datastreams", datastreams, (
        _NAME, _DESCRIPTION,
        Prop("unitOfMeasurement", "unit_of_measurement", "json", required=True),
        Prop("observationType", "observation_type", required=True),
        Prop("observedArea", "observed_area", "json"),
        Prop("phenomenonTime", None, "computed"),
        Prop("resultTime", None, "computed"),
        _PROPERTIES), (
        Nav("Thing", "Things", False, fk="thing_id", required=True),
        Nav("Sensor", "Sensors", False, fk="sensor_id", required=True),
        Nav("ObservedProperty", "ObservedProperties", False, fk="observed_property_id",
            required=True),
        Nav("Observations", "Observations", True, remote_fk="datastream_id"),
    )),
    EntityType("FeatureOfInterest", "FeaturesOfInterest", features, (
        _NAME, _DESCRIPTION, _ENCODING, Prop("feature", "feature", "json", required=True),
        _PROPERTIES), (
        Nav("Observations", "Observations", True, remote_fk="feature_of_interest_id"),)),
    EntityType("Observation", "Observations", observations, (
        Prop("phenomenonTime", "phenomenon_time", "interval", end="phenomenon_time_end"),
        Prop("resultTime", "result_time", "time"),
        Prop("result", "result", "result", required=True),
        Prop("resultQuality", "result_quality", "json"),
        Prop("validTime", "valid_time_start", "interval", end="valid_time_end"),
        Prop("parameters", "parameters", "json")), (
        Nav("Datastream", "Datastreams", False, fk="datastream_id", required=True),
        Nav("FeatureOfInterest", "FeaturesOfInterest", False, fk="feature_of_interest_id"),
    )),
)}
BY_SINGULAR = {t.name: t for t in TYPES.values()}


def entity_type(plural: str) -> EntityType:
    found = TYPES.get(plural)
    if found is None:
        raise NotFoundError(f"no entity set {plural!r} (known: {', '.join(TYPES)})")
    return found


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    text = value.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def _interval(start: datetime | None, end: datetime | None) -> str | None:
    if start is None:
        return None
    return iso(start) if end is None or end == start else f"{iso(start)}/{iso(end)}"


# --- $filter and $orderby, compiled to SQL ---------------------------------------------------

@dataclass
class _Compiled:
    expr: Any
    kind: str  # number | text | time | bool | json | result | null | any
    json_column: Any = None


class FilterCompiler:
    """Compiles a filter tree against one entity type (``table`` may be an alias)."""

    def __init__(self, entity: EntityType, table: Any, dialect: str) -> None:
        self.entity, self.table, self.dialect = entity, table, dialect

    def compile(self, node: q.Node) -> ColumnElement[Any]:
        compiled = self._node(node)
        if compiled.kind == "bool":
            return compiled.expr
        raise UsageError("$filter must be a condition (a comparison, a function such as "
                         "substringof, or a combination with and/or/not)")

    # values
    def _node(self, node: q.Node) -> _Compiled:
        if isinstance(node, q.Literal):
            return self._literal(node.value)
        if isinstance(node, q.Path):
            return self._path(self.entity, self.table, node.parts)
        if isinstance(node, q.Unary):
            operand = self._node(node.operand)
            if node.op == "not":
                return _Compiled(not_(self._bool(operand)), "bool")
            return _Compiled(-self._number(operand), "number")
        if isinstance(node, q.Binary):
            return self._binary(node)
        return self._call(node)

    def _literal(self, value: Any) -> _Compiled:
        if value is None:
            return _Compiled(null(), "null")
        if isinstance(value, bool):
            return _Compiled(literal(value, Boolean()), "bool_literal")
        if isinstance(value, int | float):
            return _Compiled(literal(value, Float() if isinstance(value, float) else Integer()),
                             "number")
        if isinstance(value, datetime):
            return _Compiled(literal(value, UTCDateTime()), "time")
        return _Compiled(literal(value), "text")

    def _path(self, entity: EntityType, table: Any, parts: tuple[str, ...]) -> _Compiled:
        head, rest = parts[0], parts[1:]
        if head in ("id", "@iot.id"):
            if rest:
                raise UsageError(f"$filter: nothing follows {head}")
            return _Compiled(table.c.id, "number")
        nav = entity.nav(head)
        if nav is not None:
            if nav.many or nav.fk is None:
                raise UsageError(f"$filter: {entity.name}/{head} is a collection; filter on "
                                 f"a path to one entity (e.g. Datastream/id)")
            if not rest:
                raise UsageError(f"$filter: name a property of {head} (e.g. {head}/id)")
            target = TYPES[nav.target]
            alias = target.table.alias()
            inner = self._path(target, alias, rest)
            subquery = select(inner.expr).where(alias.c.id == table.c[nav.fk]) \
                .scalar_subquery()
            return _Compiled(subquery, inner.kind if inner.kind != "result" else "number")
        prop = entity.prop(head)
        if prop is None:
            raise UsageError(f"$filter: {entity.name} has no property {head!r}")
        if prop.kind == "computed":
            if entity.name == "Datastream" and head == "phenomenonTime":
                return _Compiled(_first_observation_time(table), "time")
            raise UsageError(f"$filter: {entity.name}/{head} cannot be filtered on")
        column = table.c[prop.column]
        if prop.kind == "json":
            if not rest:
                return _Compiled(column, "json")
            return _Compiled(column[tuple(rest)], "json_path", column[tuple(rest)])
        if rest:
            raise UsageError(f"$filter: {head} has no members")
        if prop.kind in ("time", "interval"):
            return _Compiled(column, "time")
        if prop.kind == "result":
            return _Compiled(table.c.result_number, "result", table)
        return _Compiled(column, "text")

    def _bool(self, compiled: _Compiled) -> Any:
        if compiled.kind in ("bool", "bool_literal"):
            return compiled.expr
        raise UsageError("$filter: expected a condition")

    def _number(self, compiled: _Compiled) -> Any:
        if compiled.kind == "result":
            return compiled.expr
        if compiled.kind == "json_path":
            return compiled.json_column.as_float()
        if compiled.kind in ("number", "any"):
            return compiled.expr
        raise UsageError("$filter: expected a number")

    def _text(self, compiled: _Compiled) -> Any:
        if compiled.kind == "json_path":
            return compiled.json_column.as_string()
        if compiled.kind == "result":
            return self._result_text(compiled.json_column)
        if compiled.kind in ("text", "any", "number"):
            return compiled.expr
        raise UsageError("$filter: expected text")

    def _result_text(self, table: Any) -> Any:
        if self.dialect == "postgresql":
            return table.c.result.op("#>>")(literal("{}"))
        return func.json_extract(table.c.result, "$")

    def _binary(self, node: q.Binary) -> _Compiled:
        if node.op in ("and", "or"):
            left, right = self._bool(self._node(node.left)), self._bool(self._node(node.right))
            return _Compiled(and_(left, right) if node.op == "and" else or_(left, right),
                             "bool")
        left, right = self._node(node.left), self._node(node.right)
        if node.op in q.ARITHMETIC:
            a, b = self._number(left), self._number(right)
            expr = {"add": lambda: a + b, "sub": lambda: a - b, "mul": lambda: a * b,
                    "div": lambda: cast(a, Float()) / b, "mod": lambda: a % b}[node.op]()
            return _Compiled(expr, "number")
        return _Compiled(self._compare(node.op, left, right), "bool")

    def _compare(self, op: str, left: _Compiled, right: _Compiled) -> Any:
        if right.kind == "null" or left.kind == "null":
            other = left if right.kind == "null" else right
            column = other.expr
            if other.kind == "result":
                column = other.json_column.c.result_key
            if op == "eq":
                return column.is_(None) if other.kind != "result" else column == "null"
            if op == "ne":
                return column.is_not(None) if other.kind != "result" else column != "null"
            raise UsageError("$filter: null compares only with eq or ne")
        a, b = self._operands(left, right)
        return {"eq": lambda: a == b, "ne": lambda: a != b, "gt": lambda: a > b,
                "ge": lambda: a >= b, "lt": lambda: a < b, "le": lambda: a <= b}[op]()

    def _operands(self, left: _Compiled, right: _Compiled) -> tuple[Any, Any]:
        kinds = {left.kind, right.kind}
        if "time" in kinds:
            return self._time(left), self._time(right)
        if "bool_literal" in kinds:
            other = right if left.kind == "bool_literal" else left
            value = (left if left.kind == "bool_literal" else right).expr.value
            if other.kind == "result":
                return other.json_column.c.result_key, literal("true" if value else "false")
            if other.kind == "json_path":
                return other.json_column.as_boolean(), literal(value, Boolean())
            if other.kind == "bool":
                return other.expr, literal(value, Boolean())
            raise UsageError("$filter: true/false compares only with a condition or JSON")
        if "number" in kinds or kinds <= {"result", "json_path"}:
            return self._number(left), self._number(right)
        return self._text(left), self._text(right)

    def _time(self, compiled: _Compiled) -> Any:
        if compiled.kind == "time":
            return compiled.expr
        if compiled.kind == "text" and hasattr(compiled.expr, "value"):
            return literal(parse_instant_or_usage(compiled.expr.value), UTCDateTime())
        raise UsageError("$filter: a time compares only with a time "
                         "(e.g. 2024-03-01T06:00:00Z)")

    def _call(self, node: q.Call) -> _Compiled:
        args = [self._node(a) for a in node.args]
        name = node.name
        if name == "substringof":
            needle, haystack = self._text(args[0]), self._text(args[1])
            return _Compiled(self._position(haystack, needle) > 0, "bool")
        if name == "startswith":
            text, prefix = self._text(args[0]), self._text(args[1])
            return _Compiled(func.substr(text, 1, func.length(prefix)) == prefix, "bool")
        if name == "endswith":
            text, suffix = self._text(args[0]), self._text(args[1])
            return _Compiled(func.substr(text, func.length(text) - func.length(suffix) + 1)
                             == suffix, "bool")
        if name == "length":
            return _Compiled(func.length(self._text(args[0])), "number")
        if name == "indexof":
            return _Compiled(self._position(self._text(args[0]), self._text(args[1])) - 1,
                             "number")
        if name in ("tolower", "toupper", "trim"):
            function = {"tolower": func.lower, "toupper": func.upper, "trim": func.trim}[name]
            return _Compiled(function(self._text(args[0])), "text")
        if name == "concat":
            return _Compiled(self._text(args[0]).concat(self._text(args[1])), "text")
        if name in ("year", "month", "day", "hour", "minute", "second"):
            return _Compiled(self._time_part(name, self._time(args[0])), "number")
        if name == "now":
            return _Compiled(literal(datetime.now(UTC), UTCDateTime()), "time")
        value = self._number(args[0])
        if name == "round":
            return _Compiled(func.round(value), "number")
        truncated = cast(value, Integer())
        if name == "floor":
            return _Compiled(truncated - case((value < truncated, 1), else_=0), "number")
        return _Compiled(truncated + case((value > truncated, 1), else_=0), "number")

    def _position(self, haystack: Any, needle: Any) -> Any:
        if self.dialect == "postgresql":
            return func.strpos(haystack, needle)
        return func.instr(haystack, needle)

    def _time_part(self, part: str, value: Any) -> Any:
        if self.dialect == "postgresql":
            return cast(func.extract(part, func.timezone("UTC", value)), Integer())
        pattern = {"year": "%Y", "month": "%m", "day": "%d", "hour": "%H", "minute": "%M",
                   "second": "%S"}[part]
        return cast(func.strftime(pattern, value), Integer())

    def order(self, key: q.OrderKey) -> Any:
        compiled = self._node(key.expression)
        if compiled.kind == "json_path":
            expr = compiled.json_column.as_string()
        elif compiled.kind in ("bool", "bool_literal", "null", "json"):
            raise UsageError("$orderby: order by a property, not a condition or an object")
        else:
            expr = compiled.expr
        return expr.desc() if key.descending else expr.asc()


def parse_instant_or_usage(value: Any) -> datetime:
    try:
        return parse_instant(value)
    except Rejected as exc:
        raise UsageError(f"$filter: {exc.detail}") from None


def _first_observation_time(table: Any) -> Any:
    return (select(observations.c.phenomenon_time)
            .where(observations.c.datastream_id == table.c.id)
            .order_by(observations.c.phenomenon_time.asc()).limit(1).scalar_subquery())


def _last_observation_end(table: Any) -> Any:
    return (select(func.coalesce(observations.c.phenomenon_time_end,
                                 observations.c.phenomenon_time))
            .where(observations.c.datastream_id == table.c.id)
            .order_by(observations.c.phenomenon_time.desc()).limit(1).scalar_subquery())


# --- reads -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Links:
    """How to write links: the service root URL (``http://host/sensorthings/v1.1``)."""

    base: str

    def entity(self, entity: EntityType, id: int) -> str:
        return f"{self.base}/{entity.plural}({id})"


def _columns(entity: EntityType, table: Any) -> list[Any]:
    columns = list(table.c)
    if entity.name == "Datastream":
        columns += [_first_observation_time(table).label("_pt_start"),
                    _last_observation_end(table).label("_pt_end")]
    return columns


def _serialise(entity: EntityType, row: Mapping[str, Any], select_: tuple[str, ...] | None,
               links: Links) -> dict[str, Any]:
    id = row["id"]
    wanted = set(select_) if select_ is not None else None
    out: dict[str, Any] = {}
    if wanted is None or "id" in wanted:
        out["@iot.id"] = id
    if wanted is None or "selfLink" in wanted or "@iot.selfLink" in wanted:
        out["@iot.selfLink"] = links.entity(entity, id)
    for prop in entity.props:
        if wanted is not None and prop.name not in wanted:
            continue
        out[prop.name] = _value(entity, prop, row)
    for nav in entity.navs:
        if wanted is None or nav.name in wanted:
            out[f"{nav.name}@iot.navigationLink"] = f"{links.entity(entity, id)}/{nav.name}"
    return out


def _value(entity: EntityType, prop: Prop, row: Mapping[str, Any]) -> Any:
    if prop.kind == "computed":
        if prop.name == "phenomenonTime":
            return _interval(row.get("_pt_start"), row.get("_pt_end") or row.get("_pt_start")
                             ) if row.get("_pt_start") else None
        return None
    value = row[prop.column]
    if prop.kind == "time":
        return iso(value)
    if prop.kind == "interval":
        return _interval(value, row[prop.end])
    return value


def _check_select(entity: EntityType, select_: tuple[str, ...] | None) -> None:
    if select_ is None:
        return
    known = {"id", "selfLink", "@iot.selfLink"} | {p.name for p in entity.props} \
        | {n.name for n in entity.navs}
    unknown = [s for s in select_ if s not in known]
    if unknown:
        raise UsageError(f"$select: {entity.name} has no property {unknown[0]!r}")


def _check_expand(entity: EntityType, expand: Sequence[q.Expand]) -> None:
    for item in expand:
        nav = entity.nav(item.navigation)
        if nav is None:
            raise UsageError(f"$expand: {entity.name} has no navigation property "
                             f"{item.navigation!r} (it has "
                             f"{', '.join(n.name for n in entity.navs)})")
        target = TYPES[nav.target]
        _check_select(target, item.options.select)
        _check_expand(target, item.options.expand)


@dataclass
class _Selection:
    """The rows a resource path names: an entity type and conditions on its table."""

    entity: EntityType
    conditions: list[Any] = field(default_factory=list)
    single: bool = False
    parent: tuple[EntityType, int, Nav] | None = None  # for POST to a navigation collection


def _ids(selection: _Selection) -> Any:
    return select(selection.entity.table.c.id).where(*selection.conditions)


def resolve_path(connection: Connection, path: q.ResourcePath) -> _Selection:
    first = path.segments[0]
    selection = _Selection(entity_type(first.name))
    if first.id is not None:
        selection.conditions.append(selection.entity.table.c.id == first.id)
        selection.single = True
        _must_exist(connection, selection.entity, first.id)
    for segment in path.segments[1:]:
        nav = selection.entity.nav(segment.name)
        if nav is None:
            raise NotFoundError(f"{selection.entity.name} has no navigation property "
                                f"{segment.name!r}")
        target = TYPES[nav.target]
        ids = _ids(selection)
        parent_id = first_id(connection, selection) if selection.single else None
        if selection.single and parent_id is None:
            raise NotFoundError(f"no {selection.entity.name} at this path")
        if nav.fk is not None:
            condition = target.table.c.id.in_(
                select(selection.entity.table.c[nav.fk]).where(*selection.conditions))
        elif nav.remote_fk is not None:
            condition = target.table.c[nav.remote_fk].in_(ids)
        else:
            assert nav.link is not None
            condition = target.table.c.id.in_(select(nav.link.c[nav.link_target])
                                              .where(nav.link.c[nav.link_own].in_(ids)))
        previous = selection
        selection = _Selection(target, [condition], single=not nav.many)
        if parent_id is not None and previous.single:
            selection.parent = (previous.entity, parent_id, nav)
        if segment.id is not None:
            selection.conditions.append(target.table.c.id == segment.id)
            selection.single = True
    return selection


def first_id(connection: Connection, selection: _Selection) -> int | None:
    return connection.execute(_ids(selection).limit(1)).scalar()


def _must_exist(connection: Connection, entity: EntityType, id: int) -> None:
    found = connection.execute(select(entity.table.c.id).where(entity.table.c.id == id)
                               ).scalar()
    if found is None:
        raise NotFoundError(f"{entity.plural}({id}) does not exist")


def _query(connection: Connection, entity: EntityType, table: Any, conditions: list[Any],
           options: q.QueryOptions) -> tuple[Any, list[Any]]:
    compiler = FilterCompiler(entity, table, connection.dialect.name)
    where = list(conditions)
    if options.filter is not None:
        where.append(compiler.compile(options.filter))
    order = [compiler.order(k) for k in options.orderby] + [table.c.id.asc()]
    return where, order


def read(engine: Engine, path: q.ResourcePath, options: q.QueryOptions, links: Links,
         query_string: str = "") -> Any:
    """The document for a GET: an entity, a collection, a property or a ``$ref`` list."""
    with engine.connect() as connection:
        selection = resolve_path(connection, path)
        entity = selection.entity
        _check_select(entity, options.select)
        _check_expand(entity, options.expand)
        if path.property is not None and entity.prop(path.property) is None:
            raise NotFoundError(f"{entity.name} has no property {path.property!r}")
        table = entity.table
        if selection.single:
            row = connection.execute(select(*_columns(entity, table))
                                     .where(*selection.conditions).limit(1)).mappings().first()
            if row is None:
                raise NotFoundError(f"no {entity.name} at this path")
            if path.property is not None:
                prop = entity.prop(path.property)
                assert prop is not None
                value = _value(entity, prop, row)
                return {"__raw__": value} if path.raw_value else {path.property: value}
            document = _serialise(entity, row, options.select, links)
            if path.ref:
                return {"@iot.selfLink": links.entity(entity, row["id"])}
            _expand(connection, entity, [document], [row], options.expand, links)
            return document
        if path.property is not None:
            raise UsageError("a property can only be read from one entity (e.g. Things(1)/name)")
        where, order = _query(connection, entity, table, selection.conditions, options)
        document: dict[str, Any] = {}
        if options.count:
            document["@iot.count"] = connection.execute(
                select(func.count()).select_from(table).where(*where)).scalar_one()
        top = q.DEFAULT_TOP if options.top is None else options.top
        rows = list(connection.execute(
            select(*_columns(entity, table)).where(*where).order_by(*order)
            .offset(options.skip).limit(top + 1)).mappings())
        more = len(rows) > top
        rows = rows[:top]
        if more:
            document["@iot.nextLink"] = _next_link(links, path, query_string,
                                                   options.skip + top, top)
        if path.ref:
            document["value"] = [{"@iot.selfLink": links.entity(entity, r["id"])} for r in rows]
            return document
        values = [_serialise(entity, r, options.select, links) for r in rows]
        _expand(connection, entity, values, rows, options.expand, links)
        document["value"] = values
        return document


def _path_text(path: q.ResourcePath) -> str:
    text = "/".join(f"{s.name}({s.id})" if s.id is not None else s.name for s in path.segments)
    return text + ("/$ref" if path.ref else "")


def _next_link(links: Links, path: q.ResourcePath, query_string: str, skip: int,
               top: int) -> str:
    from urllib.parse import parse_qsl, urlencode

    params = [(k, v) for k, v in parse_qsl(query_string, keep_blank_values=True)
              if k not in ("$skip", "$top")]
    params += [("$top", str(top)), ("$skip", str(skip))]
    return f"{links.base}/{_path_text(path)}?{urlencode(params, quote_via=quote, safe='$(),/')}"


def _expand(connection: Connection, entity: EntityType, documents: list[dict[str, Any]],
            rows: Sequence[Mapping[str, Any]], expand: Sequence[q.Expand], links: Links
            ) -> None:
    """Fill ``documents`` (one per row) with the expanded navigation properties: one query
    per expanded property for all parents together, never one per parent."""
    if not documents:
        return
    for item in expand:
        nav = entity.nav(item.navigation)
        assert nav is not None
        target = TYPES[nav.target]
        table = target.table.alias()
        options = item.options
        compiler = FilterCompiler(target, table, connection.dialect.name)
        conditions = [compiler.compile(options.filter)] if options.filter is not None else []
        order = [compiler.order(k) for k in options.orderby] + [table.c.id.asc()]
        columns = _columns(target, table)
        if nav.fk is not None:
            keys = {r[nav.fk] for r in rows if r[nav.fk] is not None}
            query = select(table.c.id.label("_parent"), *columns).where(
                table.c.id.in_(keys), *conditions)
            by_parent = {}
            for found in connection.execute(query).mappings():
                by_parent[found["_parent"]] = found
            found_rows = []
            for document, row in zip(documents, rows, strict=True):
                child = by_parent.get(row[nav.fk])
                document.pop(f"{nav.name}@iot.navigationLink", None)
                document[nav.name] = _serialise(target, child, options.select, links) \
                    if child is not None else None
                found_rows.append((document[nav.name], child))
            pairs = [(d, r) for d, r in found_rows if r is not None]
            _expand(connection, target, [d for d, _ in pairs], [r for _, r in pairs],
                    options.expand, links)
            continue
        parent_ids = [r["id"] for r in rows]
        if nav.remote_fk is not None:
            parent = table.c[nav.remote_fk]
            base = select(parent.label("_parent"), *columns).where(parent.in_(parent_ids))
        else:
            assert nav.link is not None
            link = nav.link
            parent = link.c[nav.link_own]
            base = (select(parent.label("_parent"), *columns)
                    .select_from(table.join(link, link.c[nav.link_target] == table.c.id))
                    .where(parent.in_(parent_ids)))
        top = q.DEFAULT_TOP if options.top is None else options.top
        numbered = base.where(*conditions).add_columns(
            func.row_number().over(partition_by=parent, order_by=order).label("_n")).subquery()
        query = select(numbered).where(numbered.c["_n"] > options.skip,
                                       numbered.c["_n"] <= options.skip + top + 1) \
            .order_by(numbered.c["_parent"], numbered.c["_n"])
        grouped: dict[int, list[Mapping[str, Any]]] = {}
        for found in connection.execute(query).mappings():
            grouped.setdefault(found["_parent"], []).append(found)
        counts = _expand_counts(connection, base, conditions) if options.count else {}
        child_documents, child_rows = [], []
        for document, row in zip(documents, rows, strict=True):
            children = grouped.get(row["id"], [])
            more = len(children) > top
            children = children[:top]
            document.pop(f"{nav.name}@iot.navigationLink", None)
            serialised = [_serialise(target, c, options.select, links) for c in children]
            if options.count:
                document[f"{nav.name}@iot.count"] = counts.get(row["id"], 0)
            document[nav.name] = serialised
            if more:
                document[f"{nav.name}@iot.nextLink"] = (
                    f"{links.entity(entity, row['id'])}/{nav.name}?$top={top}"
                    f"&$skip={options.skip + top}")
            child_documents += serialised
            child_rows += children
        _expand(connection, target, child_documents, child_rows, options.expand, links)


def _expand_counts(connection: Connection, base: Any, conditions: list[Any]) -> dict[int, int]:
    sub = base.where(*conditions).subquery()
    return {int(k): int(n) for k, n in connection.execute(
        select(sub.c["_parent"], func.count()).group_by(sub.c["_parent"]))}


# --- writes ----------------------------------------------------------------------------------

ANNOTATIONS = ("@iot.id", "@iot.selfLink")


def _now() -> datetime:
    return datetime.now(UTC)


class _Writer:
    """Creates, updates and deletes within one transaction."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    # --- create ---------------------------------------------------------------------------
    def create(self, entity: EntityType, body: Any, preset: dict[str, int] | None = None
               ) -> int:
        """Create ``body`` (or link to it when it is only ``{"@iot.id": n}``); ``preset``
        fixes foreign keys that the URL already gave (``Datastreams(3)/Observations``)."""
        if not isinstance(body, dict):
            raise UsageError(f"a {entity.name} must be a JSON object")
        if "@iot.id" in body:
            # a link to an existing entity; clients (FROST's among them) send the whole
            # entity they linked, whose other members change nothing here
            return self.link(entity, body["@iot.id"])
        preset = dict(preset or {})
        known = {p.name for p in entity.props} | {n.name for n in entity.navs}
        unknown = [k for k in body if k not in known and not k.startswith("@iot.")
                   and "@iot." not in k]
        if unknown:
            raise UsageError(f"{entity.name} has no property {unknown[0]!r}")
        if entity.name == "Observation":
            return self._create_observation(body, preset)
        values: dict[str, Any] = {}
        for prop in entity.props:
            if prop.kind == "computed":
                continue
            if prop.name not in body or body[prop.name] is None:
                if prop.required:
                    raise UsageError(f"{entity.name} needs {prop.name}")
                if prop.default is not None:
                    values[prop.column] = prop.default  # type: ignore[index]
                continue
            values.update(self._column_values(entity, prop, body[prop.name]))
        for nav in entity.navs:
            if nav.fk is None:
                continue
            if nav.fk in preset:
                if nav.name in body:
                    raise UsageError(f"{entity.name}: {nav.name} is given by the URL already")
                values[nav.fk] = preset[nav.fk]
            elif body.get(nav.name) is not None:
                values[nav.fk] = self.create(TYPES[nav.target], body[nav.name])
            elif nav.required:
                raise UsageError(f"{entity.name} needs {nav.name} (a link "
                                 f"{{\"@iot.id\": n}} or a new {TYPES[nav.target].name})")
        if entity.name == "Datastream":
            _check_observation_type(values.get("observation_type"))
        new_id = int(self.connection.execute(
            insert(entity.table).values(**values).returning(entity.table.c.id)).scalar_one())
        self._create_children(entity, new_id, body)
        return new_id

    def _create_children(self, entity: EntityType, new_id: int, body: dict[str, Any]) -> None:
        linked_locations: list[int] = []
        for nav in entity.navs:
            if not nav.many or body.get(nav.name) is None:
                continue
            items = body[nav.name]
            if not isinstance(items, list):
                raise UsageError(f"{entity.name}: {nav.name} must be a list")
            target = TYPES[nav.target]
            for item in items:
                if nav.remote_fk is not None:
                    self.create(target, item, {nav.remote_fk: new_id})
                else:
                    assert nav.link is not None
                    child = self.create(target, item)
                    self.connection.execute(insert(nav.link).values(
                        **{nav.link_own: new_id, nav.link_target: child}))
                    if nav.name == "Locations" and entity.name == "Thing":
                        linked_locations.append(child)
                    if nav.name == "Things" and entity.name == "Location":
                        self._history(child, [new_id])
        if linked_locations:
            self._history(new_id, linked_locations)

    def _history(self, thing_id: int, location_ids: list[int]) -> None:
        """A Thing's Locations changed: record a HistoricalLocation, as the standard says."""
        historical_id = self.connection.execute(
            insert(historical_locations).values(thing_id=thing_id, time=_now())
            .returning(historical_locations.c.id)).scalar_one()
        for location_id in location_ids:
            self.connection.execute(insert(hl_locations).values(
                historical_location_id=historical_id, location_id=location_id))

    def link(self, entity: EntityType, id: Any) -> int:
        if isinstance(id, bool) or not isinstance(id, int):
            raise UsageError(f"{entity.name} @iot.id must be a whole number")
        found = self.connection.execute(select(entity.table.c.id)
                                        .where(entity.table.c.id == id)).scalar()
        if found is None:
            raise UsageError(f"{entity.plural}({id}) does not exist",
                             details={"entity": entity.plural, "id": id})
        return int(found)

    def _column_values(self, entity: EntityType, prop: Prop, value: Any) -> dict[str, Any]:
        if prop.kind == "time":
            return {prop.column: _instant(value, f"{entity.name}/{prop.name}")}
        if prop.kind in ("text",):
            if not isinstance(value, str):
                raise UsageError(f"{entity.name}/{prop.name} must be text")
            return {prop.column: value}
        if prop.name == "properties" and not isinstance(value, dict):
            raise UsageError(f"{entity.name}/properties must be a JSON object")
        if prop.name == "unitOfMeasurement" and not isinstance(value, dict):
            raise UsageError("Datastream/unitOfMeasurement must be a JSON object "
                             "({\"name\", \"symbol\", \"definition\"})")
        return {prop.column: value}

    def _create_observation(self, body: dict[str, Any], preset: dict[str, int]) -> int:
        datastream = body.get("Datastream")
        if "datastream_id" in preset:
            if datastream is not None:
                raise UsageError("Observation: Datastream is given by the URL already")
            datastream_id = preset["datastream_id"]
        elif isinstance(datastream, dict):
            datastream_id = self.create(TYPES["Datastreams"], datastream)
        else:
            raise UsageError("an Observation needs its Datastream ({\"@iot.id\": n}) or must be "
                             "posted to Datastreams(n)/Observations")
        rule = self.connection.execute(select(
            datastreams.c.observation_type, datastreams.c.role, datastreams.c.thing_id)
            .where(datastreams.c.id == datastream_id)).first()
        if rule is None:
            raise UsageError(f"Datastreams({datastream_id}) does not exist")
        foi_body = body.get("FeatureOfInterest")
        try:
            observation = observation_from_json(
                {k: v for k, v in body.items() if k != "FeatureOfInterest"}, datastream_id,
                _now())
            check_result(observation.result, DatastreamRule(datastream_id, rule[0], rule[1]))
        except Rejected as exc:
            raise UsageError(f"Observation: {exc.detail}", details={"reason": exc.reason}) \
                from None
        if isinstance(foi_body, dict):
            foi_id = self.create(TYPES["FeaturesOfInterest"], foi_body)
        elif foi_body is not None:
            raise UsageError("Observation/FeatureOfInterest must be a JSON object")
        else:
            foi_id = feature_for_thing(self.connection, rule[2])
        row = observation_row(observation)
        row["feature_of_interest_id"] = foi_id
        stored = insert_observations(self.connection, [row])
        if stored:
            return stored[0].id
        existing = existing_observation_id(self.connection, observation)
        assert existing is not None
        return existing

    # --- update ---------------------------------------------------------------------------
    def update(self, entity: EntityType, id: int, body: Any) -> None:
        if not isinstance(body, dict):
            raise UsageError(f"PATCH a {entity.name} with a JSON object")
        _must_exist(self.connection, entity, id)
        values: dict[str, Any] = {}
        for key, value in body.items():
            if key in ANNOTATIONS:
                if key == "@iot.id" and value != id:
                    raise UsageError("@iot.id cannot be changed")
                continue
            prop, nav = entity.prop(key), entity.nav(key)
            if prop is not None:
                if prop.kind == "computed":
                    raise UsageError(f"{entity.name}/{key} is computed by the server")
                if value is None and prop.required:
                    raise UsageError(f"{entity.name}/{key} cannot be null")
                if entity.name == "Observation":
                    values.update(self._observation_values(id, key, value))
                elif value is None:
                    values[prop.column] = None
                else:
                    values.update(self._column_values(entity, prop, value))
            elif nav is not None and nav.fk is not None:
                if value is None and nav.required:
                    raise UsageError(f"{entity.name}/{key} cannot be removed")
                values[nav.fk] = None if value is None else \
                    self.create(TYPES[nav.target], value)
            elif nav is not None and nav.link is not None and entity.name == "Thing" \
                    and key == "Locations":
                self._replace_locations(id, value)
            elif nav is not None:
                raise UsageError(f"{entity.name}/{key} cannot be changed with PATCH")
            else:
                raise UsageError(f"{entity.name} has no property {key!r}")
        if "observation_type" in values:
            _check_observation_type(values["observation_type"])
        if values:
            self.connection.execute(update(entity.table).where(entity.table.c.id == id)
                                    .values(**values))

    def _replace_locations(self, thing_id: int, value: Any) -> None:
        if not isinstance(value, list):
            raise UsageError("Thing/Locations must be a list")
        new = [self.create(TYPES["Locations"], item) for item in value]
        self.connection.execute(delete(thing_locations)
                                .where(thing_locations.c.thing_id == thing_id))
        for location_id in dict.fromkeys(new):
            self.connection.execute(insert(thing_locations).values(
                thing_id=thing_id, location_id=location_id))
        if new:
            self._history(thing_id, list(dict.fromkeys(new)))

    def _observation_values(self, id: int, key: str, value: Any) -> dict[str, Any]:
        current = self.connection.execute(select(observations).where(observations.c.id == id)
                                          ).mappings().one()
        merged = {"phenomenonTime": _interval(current["phenomenon_time"],
                                              current["phenomenon_time_end"]),
                  "result": current["result"], key: value}
        try:
            observation = observation_from_json(merged, current["datastream_id"], _now())
        except Rejected as exc:
            raise UsageError(f"Observation: {exc.detail}") from None
        if key == "phenomenonTime":
            return {"phenomenon_time": observation.phenomenon_time,
                    "phenomenon_time_end": observation.phenomenon_time_end}
        if key == "result":
            row = observation_row(observation)
            return {k: row[k] for k in ("result", "result_number", "result_key")}
        if key == "resultTime":
            return {"result_time": None if value is None else _instant(value, key)}
        if key == "validTime":
            if value is None:
                return {"valid_time_start": None, "valid_time_end": None}
            return {"valid_time_start": observation.valid_time_start,
                    "valid_time_end": observation.valid_time_end}
        return {{"resultQuality": "result_quality", "parameters": "parameters"}[key]: value}


def _instant(value: Any, what: str) -> datetime:
    try:
        return parse_instant(value, what)
    except Rejected as exc:
        raise UsageError(exc.detail) from None


def _check_observation_type(value: Any) -> None:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise UsageError("Datastream/observationType must be an observation type URI, e.g. "
                         "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement")


def feature_for_thing(connection: Connection, thing_id: int) -> int | None:
    """The FeatureOfInterest made from the Thing's (first) Location, created on first use."""
    location = connection.execute(
        select(locations).join(thing_locations, thing_locations.c.location_id == locations.c.id)
        .where(thing_locations.c.thing_id == thing_id).order_by(locations.c.id).limit(1)
    ).mappings().first()
    if location is None:
        return None
    found = connection.execute(select(features.c.id)
                               .where(features.c.location_id == location["id"])).scalar()
    if found is not None:
        return int(found)
    return int(connection.execute(insert(features).values(
        name=location["name"], description=location["description"],
        encoding_type=location["encoding_type"], feature=location["location"],
        properties=location["properties"], location_id=location["id"])
        .returning(features.c.id)).scalar_one())


def _handle_integrity(exc: Exception) -> None:
    raise ConflictError(f"the change clashes with stored data: {exc}") from exc


def create(engine: Engine, path: q.ResourcePath, body: Any) -> tuple[EntityType, int]:
    """POST to an entity set (``Things``) or a navigation collection (``Things(1)/
    Datastreams``); returns the new entity's type and id."""
    from sqlalchemy.exc import IntegrityError

    if path.property is not None or path.ref:
        raise UsageError("POST to an entity set such as Things or Datastreams(1)/Observations")
    try:
        with write_transaction(engine) as connection:
            selection = resolve_path(connection, path)
            if selection.single:
                raise UsageError("POST to a collection (Things), not to one entity "
                                 "(use PATCH to change it)")
            writer = _Writer(connection)
            entity = selection.entity
            preset: dict[str, int] = {}
            link_after: tuple[Nav, int] | None = None
            if len(path.segments) > 1:
                if selection.parent is None:
                    raise UsageError("POST to a collection of one entity, e.g. "
                                     "Datastreams(1)/Observations")
                _, parent_id, nav = selection.parent
                if nav.remote_fk is not None:
                    preset[nav.remote_fk] = parent_id
                else:
                    link_after = (nav, parent_id)
            new_id = writer.create(entity, body, preset)
            if link_after is not None:
                nav, parent_id = link_after
                assert nav.link is not None
                connection.execute(insert(nav.link).values(
                    **{nav.link_own: parent_id, nav.link_target: new_id}))
                if nav.name == "Locations":
                    writer._history(parent_id, [new_id])
            return entity, new_id
    except IntegrityError as exc:
        _handle_integrity(exc)
        raise


def update_entity(engine: Engine, path: q.ResourcePath, body: Any) -> tuple[EntityType, int]:
    from sqlalchemy.exc import IntegrityError

    try:
        with write_transaction(engine) as connection:
            selection = resolve_path(connection, path)
            if not selection.single or path.property is not None:
                raise UsageError("PATCH one entity, e.g. Things(1)")
            id = first_id(connection, selection)
            if id is None:
                raise NotFoundError("no entity at this path")
            _Writer(connection).update(selection.entity, id, body)
            return selection.entity, id
    except IntegrityError as exc:
        _handle_integrity(exc)
        raise


def delete_entity(engine: Engine, path: q.ResourcePath) -> None:
    """DELETE one entity; what belongs to it goes too (a Thing's Datastreams and their
    Observations, as the standard says)."""
    with write_transaction(engine) as connection:
        selection = resolve_path(connection, path)
        if not selection.single or path.property is not None:
            raise UsageError("DELETE one entity, e.g. Things(1)")
        id = first_id(connection, selection)
        if id is None:
            raise NotFoundError("no entity at this path")
        table = selection.entity.table
        connection.execute(delete(table).where(table.c.id == id))


def create_observations(engine: Engine, body: Any, links: Links) -> list[str]:
    """The ``CreateObservations`` extension (dataArray): one selfLink, or ``"error"``, per
    row, in order. Rows are stored in one transaction; a bad row is an ``error`` entry and
    never stops the others."""
    if not isinstance(body, list):
        raise UsageError("CreateObservations takes a list of {Datastream, components, "
                         "dataArray}")
    answers: list[str] = []
    entity = TYPES["Observations"]
    with write_transaction(engine) as connection:
        writer = _Writer(connection)
        for group in body:
            if not isinstance(group, dict) or not isinstance(group.get("components"), list) \
                    or not isinstance(group.get("dataArray"), list):
                raise UsageError("each CreateObservations item needs Datastream, components "
                                 "and dataArray")
            datastream = group.get("Datastream")
            if not isinstance(datastream, dict) or "@iot.id" not in datastream:
                raise UsageError("CreateObservations: Datastream must be {\"@iot.id\": n}")
            datastream_id = writer.link(TYPES["Datastreams"], datastream["@iot.id"])
            components = group["components"]
            for values in group["dataArray"]:
                if not isinstance(values, list) or len(values) != len(components):
                    answers.append("error")
                    continue
                item: dict[str, Any] = {}
                for name, value in zip(components, values, strict=True):
                    if name in ("FeatureOfInterest/id", "FeatureOfInterest/@iot.id"):
                        item["FeatureOfInterest"] = {"@iot.id": value}
                    else:
                        item[name] = value
                try:
                    with connection.begin_nested():
                        new_id = writer.create(entity, item, {"datastream_id": datastream_id})
                    answers.append(links.entity(entity, new_id))
                except UsageError:
                    answers.append("error")
    return answers


# --- the service root --------------------------------------------------------------------

CONFORMANCE = (
    "http://www.opengis.net/spec/iot_sensing/1.1/req/datamodel",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/resource-path/resource-path-to-entities",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/request-data",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/create-update-delete",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/data-array/data-array",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/create-observations-via-mqtt/observations-creation",
)


def service_root(links: Links, mqtt_endpoints: Sequence[str] = ()) -> dict[str, Any]:
    conformance = list(CONFORMANCE) if mqtt_endpoints else list(CONFORMANCE[:-1])
    settings: dict[str, Any] = {"conformance": conformance}
    if mqtt_endpoints:
        settings["http://www.opengis.net/spec/iot_sensing/1.1/req/create-observations-via-mqtt"
                 "/observations-creation"] = {"endpoints": list(mqtt_endpoints)}
    return {"value": [{"name": t.plural, "url": f"{links.base}/{t.plural}"}
                      for t in TYPES.values()],
            "serverSettings": settings}


# --- zones and series for the crowd state ---------------------------------------------------

def create_zone(engine: Engine, key: str, name: str, zone_type: str, *,
                area_m2: float | None = None, geometry: dict[str, Any] | None = None,
                usable_fraction: float = 1.0, width_m: float | None = None,
                capacity: int | None = None, properties: dict[str, Any] | None = None) -> int:
    """A zone from its usable area, or from a WGS84 GeoJSON polygon (geodesic area x
    ``usable_fraction``); checked by :class:`urbansec.crowd.zones.Zone`."""
    from shapely.geometry import shape

    from urbansec.crowd.zones import Zone as CrowdZone

    polygon = None
    if geometry is not None:
        try:
            polygon = shape(geometry)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UsageError(f"zone {key!r}: not a GeoJSON polygon ({exc})") from None
        if polygon.geom_type not in ("Polygon", "MultiPolygon") or not polygon.is_valid:
            raise UsageError(f"zone {key!r}: the geometry must be a valid polygon")
        zone = CrowdZone.from_polygon(key, zone_type, polygon, usable_fraction=usable_fraction,
                                      width_m=width_m, capacity=capacity, name=name)
    elif area_m2 is not None:
        zone = CrowdZone(key, zone_type, area_m2, width_m=width_m, capacity=capacity, name=name)
    else:
        raise UsageError(f"zone {key!r}: give its usable area (m²) or its polygon")
    with write_transaction(engine) as connection:
        if connection.execute(select(zones.c.id).where(zones.c.key == key)).scalar():
            raise ConflictError(f"zone {key!r} exists already")
        return int(connection.execute(insert(zones).values(
            key=key, name=name, zone_type=str(zone.zone_type),
            geometry=json.dumps(geometry) if geometry is not None else None,
            area_m2=zone.area_m2, width_m=width_m, capacity=capacity,
            properties=properties or {}, created_at=_now()).returning(zones.c.id)).scalar_one())


def list_zones(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        zone_rows = [dict(r) for r in connection.execute(select(zones).order_by(zones.c.id))
                     .mappings()]
        members = connection.execute(select(datastreams.c.id, datastreams.c.zone_id,
                                            datastreams.c.role)
                                     .where(datastreams.c.zone_id.is_not(None))).all()
    for zone in zone_rows:
        zone["geometry"] = json.loads(zone["geometry"]) if zone["geometry"] else None
        zone["datastreams"] = [{"id": d, "role": r} for d, z, r in members if z == zone["id"]]
    return zone_rows


def assign_datastream(engine: Engine, datastream_id: int, zone_key: str | None,
                      role: str | None) -> None:
    """Tie a datastream to a zone in a role (in/out counter, area count, beacon devices,
    lighting status); ``zone_key`` None unties it."""
    if role is not None and role not in DATASTREAM_ROLES:
        raise UsageError(f"unknown role {role!r} (known: {', '.join(DATASTREAM_ROLES)})")
    with write_transaction(engine) as connection:
        zone_id = None
        if zone_key is not None:
            zone_id = connection.execute(select(zones.c.id).where(zones.c.key == zone_key)
                                         ).scalar()
            if zone_id is None:
                raise NotFoundError(f"no zone {zone_key!r}")
        changed = connection.execute(update(datastreams).where(datastreams.c.id == datastream_id)
                                     .values(zone_id=zone_id, role=role)).rowcount
        if not changed:
            raise NotFoundError(f"Datastreams({datastream_id}) does not exist")


def map_topic(engine: Engine, topic: str, member: str, datastream_id: int,
              time_field: str = "ts") -> int:
    """Feed ``datastream_id`` from member ``member`` of plain JSON messages on ``topic``."""
    if not topic or any(c in topic for c in "+#") or topic.startswith("v1.1/"):
        raise UsageError("map an exact topic (no + or # wildcards, not a v1.1/ SensorThings "
                         "topic)")
    with write_transaction(engine) as connection:
        if connection.execute(select(datastreams.c.id)
                              .where(datastreams.c.id == datastream_id)).scalar() is None:
            raise NotFoundError(f"Datastreams({datastream_id}) does not exist")
        existing = connection.execute(select(topic_mappings.c.id).where(
            topic_mappings.c.topic == topic, topic_mappings.c.field == member)).scalar()
        if existing is not None:
            connection.execute(update(topic_mappings).where(topic_mappings.c.id == existing)
                               .values(datastream_id=datastream_id, time_field=time_field))
            return int(existing)
        return int(connection.execute(insert(topic_mappings).values(
            topic=topic, field=member, datastream_id=datastream_id, time_field=time_field)
            .returning(topic_mappings.c.id)).scalar_one())


def list_topic_mappings(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        return [dict(r) for r in connection.execute(
            select(topic_mappings).order_by(topic_mappings.c.topic, topic_mappings.c.field))
            .mappings()]


@dataclass(frozen=True)
class Series:
    """One datastream's numeric results over a time range: ``t`` datetime64[ms] UTC (the
    phenomenon time's start), ``value`` float64 (NaN for non-numeric results)."""

    datastream_id: int
    role: str | None
    t: np.ndarray
    value: np.ndarray


def datastream_series(engine: Engine, datastream_ids: Sequence[int], start: datetime,
                      end: datetime) -> dict[int, Series]:
    """Results of each datastream in ``[start, end)``, oldest first: one index range scan per
    datastream (the observations' unique key starts with datastream and time)."""
    if end <= start:
        raise UsageError("the end of the period must come after its start")
    found: dict[int, Series] = {}
    with engine.connect() as connection:
        roles = dict(connection.execute(select(datastreams.c.id, datastreams.c.role)
                                        .where(datastreams.c.id.in_(list(datastream_ids)))).all())
        for datastream_id in datastream_ids:
            if datastream_id not in roles:
                raise NotFoundError(f"Datastreams({datastream_id}) does not exist")
            rows = connection.execute(
                select(observations.c.phenomenon_time, observations.c.result_number)
                .where(observations.c.datastream_id == datastream_id,
                       observations.c.phenomenon_time >= start,
                       observations.c.phenomenon_time < end)
                .order_by(observations.c.phenomenon_time)).all()
            t = np.array([r[0].replace(tzinfo=None) for r in rows], dtype="datetime64[ms]")
            value = np.array([math.nan if r[1] is None else r[1] for r in rows], dtype=float)
            found[datastream_id] = Series(datastream_id, roles[datastream_id], t, value)
    return found


def zone_series(engine: Engine, zone_key: str, start: datetime, end: datetime
                ) -> dict[int, Series]:
    """Every datastream of a zone (with its role) over ``[start, end)``."""
    with engine.connect() as connection:
        zone_id = connection.execute(select(zones.c.id).where(zones.c.key == zone_key)).scalar()
        if zone_id is None:
            raise NotFoundError(f"no zone {zone_key!r}")
        ids = list(connection.execute(select(datastreams.c.id)
                                      .where(datastreams.c.zone_id == zone_id)
                                      .order_by(datastreams.c.id)).scalars())
    return datastream_series(engine, ids, start, end) if ids else {}


def count_entities(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return {t.plural: int(connection.execute(select(func.count()).select_from(t.table))
                              .scalar_one()) for t in TYPES.values()}

