"""``urbansec crowd ...`` end to end: events, state, series and errors, as JSON and as tables,
with the same answers the API gives."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from tests.crowd_service.conftest import Api, iso, minutes
from typer.testing import CliRunner, Result

from urbansec.cli import app

runner = CliRunner()
T0 = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)


def invoke(engine: Engine, *args: str) -> Result:
    return runner.invoke(app, ["--database", engine.url.render_as_string(hide_password=False),
                               "crowd", *args])


def test_crowd_commands(api: Api) -> None:
    api.zone("gate", "walkway", 200, width_m=5)
    inflow, outflow = api.streams("gate", ("in_counter", "out_counter"))
    api.observe(inflow, minutes(T0, [12] * 10))
    api.observe(outflow, minutes(T0, [2] * 10))

    added = invoke(api.engine, "events", "add", "Market day", "--start", iso(T0),
                   "--end", iso(T0 + timedelta(hours=8)), "--zone", "gate", "--expected",
                   "5000", "--json")
    assert added.exit_code == 0, added.output
    event = json.loads(added.output)
    assert event["zones"] == ["gate"] and event["created_by"] == "system:cli"
    shown = invoke(api.engine, "events", "list")
    assert shown.exit_code == 0 and "Market day" in shown.output and "5,000" in shown.output

    at = iso(T0 + timedelta(minutes=10))
    state = invoke(api.engine, "state", "--at", at, "--event", str(event["id"]), "--json")
    assert state.exit_code == 0, state.output
    assert json.loads(state.output) == api.get("/state", at=at, event=event["id"]).json()
    assert json.loads(state.output)["zones"][0]["occupancy"] == 100
    table = invoke(api.engine, "state", "--at", at)
    assert table.exit_code == 0 and "gate" in table.output and "100" in table.output

    series = invoke(api.engine, "series", "gate", "--from", iso(T0), "--to", at, "--json")
    assert series.exit_code == 0, series.output
    assert json.loads(series.output)["occupancy"] == [10.0 * (i + 1) for i in range(10)]

    missing = invoke(api.engine, "series", "nowhere", "--json")
    assert missing.exit_code == 1
    assert json.loads(missing.output)["error"]["code"] == "not_found"
    backwards = invoke(api.engine, "series", "gate", "--from", at, "--to", iso(T0))
    assert backwards.exit_code == 2 and "must end after it starts" in backwards.output

    assert invoke(api.engine, "events", "delete", str(event["id"])).exit_code == 0
    assert invoke(api.engine, "events", "show", str(event["id"])).exit_code == 1
