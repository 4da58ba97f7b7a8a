"""Forecast and backtest services over the store (SQLite and PostgreSQL), and their CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from urbansec.cli import app
from urbansec.errors import UsageError
from urbansec.services import cells
from urbansec.services.forecast import backtest, forecast, parse_horizon
from urbansec.services.hotspots import GridOptions
from urbansec.services.incidents import IncidentFilter

runner = CliRunner()
ORIGIN = datetime(2017, 10, 1, 5, 0, tzinfo=UTC)  # local midnight in Chicago (CDT)


def test_forecast_scores_every_cell_and_flags_the_top(sample_db: Engine, tmp_path: Path
                                                      ) -> None:
    result = forecast(sample_db, IncidentFilter.parse(category="theft"), model="historical",
                      horizon="7d", origin=ORIGIN, train_days=180,
                      options=GridOptions(cell=250), top=0.05)
    risk = result.properties["risk"]
    assert risk.shape == result.keys.shape and (risk >= 0).all()
    assert result.summary["flagged_cells"] == round(0.05 * result.keys.size)
    # historical average: expected count = training count / 180 days * 7 days (the window
    # is measured from its first event, a few hours after its start: hence the tolerance)
    np.testing.assert_allclose(risk, result.properties["training_count"] * 7 / 180, rtol=5e-3)
    assert result.properties["rank"].min() == 1
    top = result.properties["flagged"]
    assert risk[top].min() >= risk[~top].max()
    path = cells.write_geojson(result, tmp_path / "risk.geojson")
    features = json.loads(path.read_text())["features"]
    assert {"risk", "rank", "flagged"} <= set(features[0]["properties"])


def test_the_learned_model_forecasts_through_the_service(sample_db: Engine) -> None:
    pytest.importorskip("sklearn")
    result = forecast(sample_db, IncidentFilter.parse(category="theft"), model="gbm",
                      horizon="7d", origin=ORIGIN, train_days=180,
                      options=GridOptions(cell=250), top=0.05)
    risk = result.properties["risk"]
    assert risk.shape == result.keys.shape and np.isfinite(risk).all() and (risk >= 0).all()
    # the factor is monotonic in the counts: the busiest training cells stay near the top
    busiest = np.argsort(result.properties["training_count"])[-10:]
    assert np.median(result.properties["rank"][busiest]) <= 0.1 * risk.size
    assert result.summary["flagged_cells"] == round(0.05 * result.keys.size)


def test_forecast_errors_are_clear(sample_db: Engine) -> None:
    with pytest.raises(UsageError, match=r"known models: .*historical"):
        forecast(sample_db, IncidentFilter.parse(), model="crystal-ball")
    with pytest.raises(UsageError, match="--horizon"):
        parse_horizon("soon")
    with pytest.raises(UsageError, match=r"at least \d+"):
        forecast(sample_db, IncidentFilter.parse(category="0101"), model="sepp",
                 origin=ORIGIN, train_days=30)


def test_backtest_rows_are_reproducible_and_compare_to_historical(sample_db: Engine) -> None:
    flt = IncidentFilter.parse(category="theft", start="2017-09-01", end="2017-10-31")
    kwargs = {"models": ["naive", "kde"], "horizon": "7d", "train_days": 120,
              "coverages": (0.01, 0.05), "options": GridOptions(cell=250), "seed": 3}
    result = backtest(sample_db, flt, **kwargs)
    assert result["models"] == ["historical", "naive", "kde"]
    assert result["folds"] == 8
    keys = {"model", "metric", "coverage", "mean", "low", "high", "diff_vs_historical",
            "folds"}
    assert all(keys <= set(row) for row in result["rows"])
    metrics = {row["metric"] for row in result["rows"]}
    assert {"hit_rate", "pai", "pei", "pei_star"} <= metrics
    pai = [r for r in result["rows"] if r["model"] == "historical" and r["metric"] == "pai"]
    assert [r["coverage"] for r in pai] == [1, 5]
    assert all(r["low"] <= r["mean"] <= r["high"] for r in pai)
    assert all(r["diff_vs_historical"] in (0, None) for r in pai)
    assert set(result["bias"]["models"]) == {"historical", "naive", "kde"}
    assert result["bias"]["by"] == "district"
    again = backtest(sample_db, flt, **kwargs)
    assert again["rows"] == result["rows"]


def test_backtest_needs_a_period_and_enough_data(sample_db: Engine) -> None:
    with pytest.raises(UsageError, match="--from"):
        backtest(sample_db, IncidentFilter.parse(), models=["naive"])
    with pytest.raises(UsageError):
        backtest(sample_db, IncidentFilter.parse(start="2017-12-01", end="2017-12-31"),
                 models=["naive"], horizon="60d")


def test_forecast_and_backtest_commands(sample_db: Engine, tmp_path: Path) -> None:
    url = sample_db.url.render_as_string(hide_password=False)
    out, png = tmp_path / "risk.geojson", tmp_path / "risk.png"
    result = runner.invoke(app, ["--database", url, "forecast", "--model", "kde",
                                 "--category", "theft", "--horizon", "7d", "--origin",
                                 "2017-10-01", "--out", str(out), "--png", str(png)])
    assert result.exit_code == 0, result.output
    assert "riskiest cells" in result.stdout
    assert png.read_bytes()[:4] == b"\x89PNG"
    curves = tmp_path / "curves.png"
    result = runner.invoke(app, ["--database", url, "backtest", "--models", "naive,historical",
                                 "--category", "theft", "--from", "2017-09-01", "--to",
                                 "2017-09-30", "--horizon", "7d", "--coverage", "1,5",
                                 "--train-days", "90", "--png", str(curves), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["rows"][0]["metric"] in ("hit_rate", "pai", "pei", "pei_star", "auc",
                                            "spearman")
    assert curves.read_bytes()[:4] == b"\x89PNG"
    bad = runner.invoke(app, ["--database", url, "backtest", "--models", "oracle", "--from",
                              "2017-09-01", "--to", "2017-09-30", "--json"])
    assert bad.exit_code == 2
    assert "known models" in json.loads(bad.stdout)["error"]["message"]
