"""The SensorThings request language: paths and query options parsed to known trees."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from urbansec.errors import UsageError
from urbansec.sensors import query as q


def test_filter_precedence_and_literals() -> None:
    tree = q.parse_filter("not (result gt 10) or Datastream/id eq 3 and name eq 'O''Brien'")
    assert tree == q.Binary(
        "or",
        q.Unary("not", q.Binary("gt", q.Path(("result",)), q.Literal(10))),
        q.Binary("and", q.Binary("eq", q.Path(("Datastream", "id")), q.Literal(3)),
                 q.Binary("eq", q.Path(("name",)), q.Literal("O'Brien"))))


def test_filter_times_numbers_and_functions() -> None:
    tree = q.parse_filter("phenomenonTime ge 2024-03-01T06:00:00+13:00 and "
                          "substringof('Queen', name) and result le -2.5e1")
    left = tree.left.left  # type: ignore[union-attr]
    assert left == q.Binary("ge", q.Path(("phenomenonTime",)),
                            q.Literal(datetime(2024, 2, 29, 17, tzinfo=UTC)))
    assert tree.left.right == q.Call("substringof",  # type: ignore[union-attr]
                                     (q.Literal("Queen"), q.Path(("name",))))
    assert tree.right == q.Binary("le", q.Path(("result",)), q.Literal(-25.0))  # type: ignore


@pytest.mark.parametrize("bad", ["", "name eq", "name eq 'x", "nosuch(name)",
                                 "startswith(name)", "(result gt 1", "result gt 1 1",
                                 "phenomenonTime gt 2024-01-01T00:00:00"])
def test_filter_errors_are_usage_errors(bad: str) -> None:
    with pytest.raises(UsageError):
        q.parse_filter(bad)


def test_expand_nested_options_and_paths() -> None:
    options = q.parse_options({"$expand": "Datastreams($select=name;$top=2;"
                                          "$expand=Observations($orderby=result desc)),"
                                          "Locations,Datastreams/Sensor"})
    datastreams, locations = options.expand
    assert datastreams.navigation == "Datastreams" and locations.navigation == "Locations"
    assert datastreams.options.select == ("name",) and datastreams.options.top == 2
    names = [e.navigation for e in datastreams.options.expand]
    assert names == ["Observations", "Sensor"]
    assert datastreams.options.expand[0].options.orderby == (
        q.OrderKey(q.Path(("result",)), True),)


def test_top_skip_count_select_orderby() -> None:
    options = q.parse_options({"$top": "5", "$skip": "10", "$count": "true",
                               "$select": "@iot.id,name",
                               "$orderby": "phenomenonTime desc, id"})
    assert (options.top, options.skip, options.count, options.select) == \
        (5, 10, True, ("id", "name"))
    assert [k.descending for k in options.orderby] == [True, False]
    assert q.parse_options({}).top == q.DEFAULT_TOP
    for bad in ({"$top": "1001"}, {"$top": "-1"}, {"$skip": "x"}, {"$count": "yes"},
                {"$foo": "1"}, {"$expand": "Datastreams($top=1"}):
        with pytest.raises(UsageError):
            q.parse_options(bad)


def test_resource_paths() -> None:
    path = q.parse_resource_path("Things(1)/Datastreams")
    assert path.segments == (q.Segment("Things", 1), q.Segment("Datastreams"))
    value = q.parse_resource_path("Datastreams(7)/Thing/name/$value")
    assert value.property == "name" and value.raw_value
    assert q.parse_resource_path("Things/$ref").ref
    assert q.parse_resource_path("Things('12')").segments == (q.Segment("Things", 12),)
    for bad in ("Things(x)", "Things(1)/name/other", "1"):
        with pytest.raises(UsageError):
            q.parse_resource_path(bad)
