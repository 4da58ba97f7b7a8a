"""The identify-and-assess commands end to end: flags, files written, JSON, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner, Result

from urbansec.cli import app

runner = CliRunner()


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def invoke(engine: Engine, *args: str) -> Result:
    return runner.invoke(app, ["--database", _url(engine), *args])


def test_hotspots_gi_writes_every_cell_as_geojson_csv_and_png(sample_db: Engine,
                                                             tmp_path: Path) -> None:
    out, png, csv_path = tmp_path / "gi.geojson", tmp_path / "gi.png", tmp_path / "gi.csv"
    result = invoke(sample_db, "hotspots", "--method", "gi", "--cell", "250",
                    "--category", "theft", "--permutations", "99", "--out", str(out),
                    "--png", str(png), "--csv", str(csv_path), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    collection = json.loads(out.read_text())
    features = collection["features"]
    assert len(features) == summary["cells"]
    props = features[0]["properties"]
    assert {"cell_id", "count", "z", "p", "class"} <= set(props)
    assert sum(f["properties"]["count"] for f in features) == summary["events"]
    assert any(f["properties"]["count"] == 0 for f in features)  # empty cells included
    assert collection["urbansec"]["weights"] == "queen"
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert csv_path.read_text().splitlines()[0].startswith("cell_id,lon,lat,count")
    assert summary["written"] == {"geojson": str(out), "csv": str(csv_path), "png": str(png)}


def test_hotspots_on_a_terminal_table(sample_db: Engine) -> None:
    result = invoke(sample_db, "hotspots", "--method", "count", "--area", "district:1",
                    "--cell", "500")
    assert result.exit_code == 0, result.output
    assert "busiest cells" in result.stdout
    assert "500 m squares" in result.stdout


@pytest.mark.parametrize("args, message", [
    (("--weights", "bishop"), "--weights"),
    (("--method", "voronoi"), "unknown method"),
    (("--cell", "1"), "more than 10,000,000"),
    (("--from", "1990-01-01", "--to", "1990-12-31"), "no incidents at all in the period"),
    (("--within", "ward"), "no 'ward' areas were imported"),
])
def test_hotspots_bad_requests_are_clear_errors(sample_db: Engine, args: tuple[str, ...],
                                                message: str) -> None:
    result = invoke(sample_db, "hotspots", *args, "--json")
    assert result.exit_code in (1, 2), result.output
    error = json.loads(result.stdout)["error"]
    assert message in error["message"]


def test_empty_filter_is_a_message_not_an_error(sample_db: Engine) -> None:
    result = invoke(sample_db, "hotspots", "--category", "0101", "--from", "2017-01-01",
                    "--to", "2017-01-01")
    assert result.exit_code == 0, result.output
    assert "no located incidents match this filter" in result.stdout


def test_emerging_by_month(sample_db: Engine, tmp_path: Path) -> None:
    out = tmp_path / "emerging.geojson"
    result = invoke(sample_db, "emerging", "--slice", "month", "--area", "district:18",
                    "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["slices"] == 12
    features = json.loads(out.read_text())["features"]
    assert {f["properties"]["category"] for f in features} <= {
        "no_pattern", *(f"{p}_{k}" for k in ("hot", "cold") for p in (
            "new", "consecutive", "intensifying", "persistent", "diminishing", "sporadic",
            "oscillating", "historical"))}


def test_patterns_prints_the_hour_weekday_table_and_draws_it(sample_db: Engine,
                                                             tmp_path: Path) -> None:
    png = tmp_path / "patterns.png"
    result = invoke(sample_db, "patterns", "--category", "theft", "--png", str(png))
    assert result.exit_code == 0, result.output
    assert "incidents by hour" in result.stdout and "America/Chicago" in result.stdout
    assert "night (22:00-06:00)" in result.stdout
    assert png.read_bytes()[:4] == b"\x89PNG"
    as_json = json.loads(invoke(sample_db, "patterns", "--category", "theft",
                                "--night", "20:00-04:00", "--json").stdout)
    assert as_json["night"]["window"] == "20:00-04:00"
    assert len(as_json["hour_weekday"]["counts"]) == 7


def test_near_repeat_command(sample_db: Engine) -> None:
    result = invoke(sample_db, "near-repeat", "--category", "burglary", "--space-bands",
                    "100,200", "--time-bands", "7,14", "--permutations", "99", "--json")
    assert result.exit_code == 0, result.output
    group = json.loads(result.stdout)["results"][0]
    assert len(group["ratio"]) == len(group["space_labels"])
    bad = invoke(sample_db, "near-repeat", "--space-bands", "200,100", "--json")
    assert bad.exit_code == 2
    assert "increasing" in json.loads(bad.stdout)["error"]["message"]


def test_change_and_areas_commands(sample_db: Engine, tmp_path: Path) -> None:
    result = invoke(sample_db, "change", "--from", "2017-07-01", "--to", "2017-09-30",
                    "--by", "district")
    assert result.exit_code == 0, result.output
    assert "significant at 0.05 (fdr)" in result.stdout
    population = tmp_path / "population.csv"
    population.write_text("code,population\n1,80000\n18,120000\n")
    areas = invoke(sample_db, "areas", "district", "--denominators", str(population),
                   "--json")
    assert areas.exit_code == 0, areas.output
    rows = {a["code"]: a for a in json.loads(areas.stdout)["areas"]}
    assert rows["18"]["rate"] is not None and rows["5"]["rate"] is None
    bad = tmp_path / "bad.csv"
    bad.write_text("code,population\n1,eighty\n")
    failed = invoke(sample_db, "areas", "district", "--denominators", str(bad), "--json")
    assert failed.exit_code == 1
    assert "line 2" in json.loads(failed.stdout)["error"]["message"]
