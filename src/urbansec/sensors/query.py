"""The OGC SensorThings API v1.1 request language, parsed: resource paths (``Things(1)/
Datastreams``) and the query options ``$filter``, ``$expand``, ``$select``, ``$orderby``,
``$top``, ``$skip`` and ``$count`` (OData 4 syntax as the standard restricts it).

Pure: text in, small immutable trees out; the service compiles them to SQL. Every mistake is a
:class:`urbansec.errors.UsageError` naming where it happened (the API answers 400).

``$filter`` grammar (precedence from loose to tight)::

    or  ->  and  ->  not  ->  eq ne gt ge lt le  ->  add sub  ->  mul div mod  ->  -x  ->  primary
    primary: ( expr ) | literal | function(args) | path
    literal: 'text' ('' escapes a quote) | 12 | 1.5e3 | true | false | null
             | 2024-03-01T06:00:00Z (ISO 8601 with a zone) | 2024-03-01 (a date)
    path:    name(/name)*, e.g. result, Datastream/id, Datastream/Thing/name
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from urbansec.errors import UsageError

MAX_TOP = 1000
DEFAULT_TOP = 100
MAX_EXPAND_DEPTH = 4

COMPARISONS = ("eq", "ne", "gt", "ge", "lt", "le")
ARITHMETIC = ("add", "sub", "mul", "div", "mod")
#: function name -> number of arguments
FUNCTIONS: dict[str, int] = {
    "substringof": 2, "startswith": 2, "endswith": 2, "length": 1, "indexof": 2,
    "tolower": 1, "toupper": 1, "trim": 1, "concat": 2,
    "year": 1, "month": 1, "day": 1, "hour": 1, "minute": 1, "second": 1,
    "round": 1, "floor": 1, "ceiling": 1, "now": 0,
}


# --- the trees ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Literal:
    value: str | int | float | bool | datetime | None


@dataclass(frozen=True)
class Path:
    parts: tuple[str, ...]


@dataclass(frozen=True)
class Unary:
    op: str  # not | neg
    operand: Node


@dataclass(frozen=True)
class Binary:
    op: str  # and | or | eq ... | add ...
    left: Node
    right: Node


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Node, ...]


Node = Literal | Path | Unary | Binary | Call


@dataclass(frozen=True)
class OrderKey:
    expression: Node
    descending: bool = False


@dataclass(frozen=True)
class Expand:
    navigation: str
    options: QueryOptions


@dataclass(frozen=True)
class QueryOptions:
    filter: Node | None = None
    orderby: tuple[OrderKey, ...] = ()
    top: int | None = None
    skip: int = 0
    count: bool = False
    select: tuple[str, ...] | None = None
    expand: tuple[Expand, ...] = ()


@dataclass(frozen=True)
class Segment:
    name: str
    id: int | None = None


@dataclass(frozen=True)
class ResourcePath:
    """``Things(1)/Datastreams`` -> segments; ``/name``, ``/name/$value`` and ``/$ref``
    endings are kept apart."""

    segments: tuple[Segment, ...]
    property: str | None = None
    raw_value: bool = False
    ref: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


# --- $filter ------------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<string>'(?:[^']|'')*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2})
  | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_@$][A-Za-z0-9_.@]*)
  | (?P<punct>[(),/-])
""", re.VERBOSE)


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    position: int


def _tokens(text: str) -> list[_Token]:
    found: list[_Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise UsageError(f"$filter: cannot read {text[position:position + 20]!r} at "
                             f"character {position + 1}")
        kind = match.lastgroup or ""
        if kind != "space":
            found.append(_Token(kind, match.group(), position))
        position = match.end()
    return found


def parse_time(text: str) -> datetime:
    """An ISO 8601 instant with a zone (``Z`` or an offset), as an aware UTC datetime."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise UsageError(f"not an ISO 8601 time: {text!r}") from exc
    if value.tzinfo is None:
        raise UsageError(f"time {text!r} has no zone: add Z or an offset such as +13:00")
    return value.astimezone(UTC)


class _FilterParser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.index = 0

    def fail(self, message: str) -> UsageError:
        token = self.peek()
        where = f"at character {token.position + 1}" if token else "at the end"
        return UsageError(f"$filter: {message} {where}", details={"filter": self.text})

    def peek(self) -> _Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def keyword(self, *words: str) -> str | None:
        token = self.peek()
        if token and token.kind == "name" and token.text in words:
            self.index += 1
            return token.text
        return None

    def punct(self, char: str) -> bool:
        token = self.peek()
        if token and token.kind == "punct" and token.text == char:
            self.index += 1
            return True
        return False

    def parse(self) -> Node:
        if not self.tokens:
            raise UsageError("$filter is empty")
        node = self.or_expr()
        if self.peek() is not None:
            raise self.fail(f"unexpected {self.peek().text!r}")  # type: ignore[union-attr]
        return node

    def or_expr(self) -> Node:
        node = self.and_expr()
        while self.keyword("or"):
            node = Binary("or", node, self.and_expr())
        return node

    def and_expr(self) -> Node:
        node = self.not_expr()
        while self.keyword("and"):
            node = Binary("and", node, self.not_expr())
        return node

    def not_expr(self) -> Node:
        if self.keyword("not"):
            return Unary("not", self.not_expr())
        return self.comparison()

    def comparison(self) -> Node:
        node = self.additive()
        op = self.keyword(*COMPARISONS)
        if op:
            node = Binary(op, node, self.additive())
        return node

    def additive(self) -> Node:
        node = self.multiplicative()
        while (op := self.keyword("add", "sub")):
            node = Binary(op, node, self.multiplicative())
        return node

    def multiplicative(self) -> Node:
        node = self.unary()
        while (op := self.keyword("mul", "div", "mod")):
            node = Binary(op, node, self.unary())
        return node

    def unary(self) -> Node:
        if self.punct("-"):
            operand = self.unary()
            if isinstance(operand, Literal) and isinstance(operand.value, int | float) \
                    and not isinstance(operand.value, bool):
                return Literal(-operand.value)
            return Unary("neg", operand)
        return self.primary()

    def primary(self) -> Node:
        token = self.peek()
        if token is None:
            raise self.fail("expected a value")
        if self.punct("("):
            node = self.or_expr()
            if not self.punct(")"):
                raise self.fail("expected ')'")
            return node
        self.index += 1
        if token.kind == "string":
            return Literal(token.text[1:-1].replace("''", "'"))
        if token.kind == "number":
            is_float = any(c in token.text for c in ".eE")
            return Literal(float(token.text) if is_float else int(token.text))
        if token.kind == "datetime":
            return Literal(parse_time(token.text))
        if token.kind == "date":
            day = date.fromisoformat(token.text)
            return Literal(datetime(day.year, day.month, day.day, tzinfo=UTC))
        if token.kind == "name":
            lowered = token.text
            if lowered in ("true", "false"):
                return Literal(lowered == "true")
            if lowered == "null":
                return Literal(None)
            if self.punct("("):
                return self.call(token)
            parts = [token.text]
            while self.punct("/"):
                part = self.peek()
                if part is None or part.kind != "name":
                    raise self.fail("expected a property name after '/'")
                self.index += 1
                parts.append(part.text)
            return Path(tuple(parts))
        self.index -= 1
        raise self.fail(f"unexpected {token.text!r}")

    def call(self, name: _Token) -> Node:
        if name.text not in FUNCTIONS:
            self.index -= 1
            raise self.fail(f"unknown function {name.text!r} (known: "
                            f"{', '.join(sorted(FUNCTIONS))})")
        args: list[Node] = []
        if not self.punct(")"):
            args.append(self.or_expr())
            while self.punct(","):
                args.append(self.or_expr())
            if not self.punct(")"):
                raise self.fail("expected ')' after the arguments")
        if len(args) != FUNCTIONS[name.text]:
            raise UsageError(f"$filter: {name.text}() takes {FUNCTIONS[name.text]} argument(s),"
                             f" got {len(args)}")
        return Call(name.text, tuple(args))


def parse_filter(text: str) -> Node:
    return _FilterParser(text).parse()


# --- the other options --------------------------------------------------------------------

def _split_top_level(text: str, separator: str) -> list[str]:
    """Split on ``separator`` outside parentheses and quotes."""
    parts, depth, start, quoted = [], 0, 0, False
    for i, char in enumerate(text):
        if char == "'":
            quoted = not quoted
        elif quoted:
            continue
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise UsageError(f"unbalanced ')' in {text!r}")
        elif char == separator and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth != 0 or quoted:
        raise UsageError(f"unbalanced parentheses or quotes in {text!r}")
    parts.append(text[start:])
    return [p.strip() for p in parts]


def _integer(name: str, text: str, minimum: int) -> int:
    if not re.fullmatch(r"\d+", text.strip()):
        raise UsageError(f"{name} must be a whole number, not {text!r}")
    value = int(text)
    if value < minimum:
        raise UsageError(f"{name} must be at least {minimum}")
    return value


def parse_orderby(text: str) -> tuple[OrderKey, ...]:
    keys = []
    for part in _split_top_level(text, ","):
        if not part:
            raise UsageError("$orderby has an empty key")
        words = part.rsplit(None, 1)
        descending = False
        if len(words) == 2 and words[1].lower() in ("asc", "desc"):
            descending = words[1].lower() == "desc"
            part = words[0]
        keys.append(OrderKey(parse_filter(part), descending))
    return tuple(keys)


def parse_select(text: str) -> tuple[str, ...]:
    names = tuple(p for p in _split_top_level(text, ","))
    if not names or any(not re.fullmatch(r"[A-Za-z@][A-Za-z0-9_.@]*", n) for n in names):
        raise UsageError(f"$select must be a comma-separated list of property names, not "
                         f"{text!r}")
    return tuple("id" if n == "@iot.id" else n for n in names)


def parse_expand(text: str, depth: int = 0) -> tuple[Expand, ...]:
    if depth >= MAX_EXPAND_DEPTH:
        raise UsageError(f"$expand is nested more than {MAX_EXPAND_DEPTH} levels deep")
    items = []
    for part in _split_top_level(text, ","):
        match = re.fullmatch(r"([A-Za-z/]+)\s*(?:\((.*)\))?", part, re.DOTALL)
        if match is None:
            raise UsageError(f"$expand: cannot read {part!r}")
        path, inner = match.group(1), match.group(2)
        options = QueryOptions()
        if inner is not None:
            options = parse_options(_inner_options(inner), depth=depth + 1, nested=True)
        names = path.split("/")
        if any(not n for n in names):
            raise UsageError(f"$expand: empty name in {path!r}")
        # Datastreams/Observations is Datastreams($expand=Observations)
        for name in reversed(names[1:]):
            options = QueryOptions(expand=(Expand(name, options),))
        items.append(Expand(names[0], options))
    return tuple(_merge_expands(items))


def _merge_expands(items: list[Expand]) -> list[Expand]:
    """``Datastreams/Sensor,Datastreams/Thing`` -> one Datastreams with both expanded."""
    merged: dict[str, Expand] = {}
    for item in items:
        if item.navigation in merged:
            old = merged[item.navigation]
            options = QueryOptions(**{**old.options.__dict__,
                                      "expand": tuple(_merge_expands(
                                          [*old.options.expand, *item.options.expand]))})
            merged[item.navigation] = Expand(item.navigation, options)
        else:
            merged[item.navigation] = item
    return list(merged.values())


def _inner_options(text: str) -> dict[str, str]:
    options: dict[str, str] = {}
    for part in _split_top_level(text, ";"):
        if not part:
            continue
        name, equals, value = part.partition("=")
        if not equals:
            raise UsageError(f"$expand: expected $option=value, not {part!r}")
        options[name.strip()] = value.strip()
    return options


KNOWN_OPTIONS = ("$filter", "$expand", "$select", "$orderby", "$top", "$skip", "$count",
                 "$resultFormat")


def parse_options(raw: dict[str, str], *, depth: int = 0, nested: bool = False,
                  default_top: int = DEFAULT_TOP) -> QueryOptions:
    """The query options of a request (or of one ``$expand`` item when ``nested``)."""
    unknown = [k for k in raw if k.startswith("$") and k not in KNOWN_OPTIONS]
    if unknown:
        raise UsageError(f"unknown query option {unknown[0]} (known: "
                         f"{', '.join(KNOWN_OPTIONS)})")
    top = raw.get("$top")
    top_value = _integer("$top", top, 0) if top is not None else (None if nested
                                                                  else default_top)
    if top_value is not None and top_value > MAX_TOP:
        raise UsageError(f"$top is at most {MAX_TOP}")
    count = raw.get("$count", "false").strip().lower()
    if count not in ("true", "false"):
        raise UsageError("$count must be true or false")
    return QueryOptions(
        filter=parse_filter(raw["$filter"]) if raw.get("$filter") is not None else None,
        orderby=parse_orderby(raw["$orderby"]) if raw.get("$orderby") else (),
        top=top_value,
        skip=_integer("$skip", raw["$skip"], 0) if raw.get("$skip") is not None else 0,
        count=count == "true",
        select=parse_select(raw["$select"]) if raw.get("$select") else None,
        expand=parse_expand(raw["$expand"], depth) if raw.get("$expand") else (),
    )


_SEGMENT = re.compile(r"([A-Za-z]+)(?:\((?:'?(\d+)'?)\))?$")


def parse_resource_path(path: str) -> ResourcePath:
    """``Things(1)/Datastreams``, ``Datastreams(2)/Observations``, ``Things(1)/name/$value``,
    ``Things/$ref``: the entity and navigation segments, and what follows them."""
    parts = [p for p in path.strip("/").split("/") if p]
    if not parts:
        raise UsageError("empty resource path")
    segments: list[Segment] = []
    prop: str | None = None
    raw_value = ref = False
    for index, part in enumerate(parts):
        if part == "$ref" and index == len(parts) - 1 and segments:
            ref = True
            continue
        if part == "$value" and index == len(parts) - 1 and prop is not None:
            raw_value = True
            continue
        if prop is not None:
            raise UsageError(f"nothing may follow the property {prop!r} but $value")
        match = _SEGMENT.match(part)
        if match is None:
            raise UsageError(f"not a SensorThings path segment: {part!r} (entity ids are "
                             f"whole numbers: Things(1))")
        name, key = match.group(1), match.group(2)
        if segments and key is None and name[0].islower():
            prop = name
            continue
        segments.append(Segment(name, int(key) if key is not None else None))
    return ResourcePath(tuple(segments), prop, raw_value, ref)
