"""Analysis services over the store, on SQLite and PostgreSQL: the numbers a user gets from
the CLI, API or dashboard equal what the pure statistics give on the same incidents, read
independently from the bundled CSV."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine

from urbansec.analysis import hotspots as hotspot_analysis
from urbansec.analysis import weights as spatial_weights
from urbansec.domain.events import Events
from urbansec.domain.grid import SquareGrid
from urbansec.errors import NotFoundError, UsageError
from urbansec.ingest.generic import GenericMapping
from urbansec.services import cells
from urbansec.services.area_rates import area_rates, read_denominators
from urbansec.services.change import change
from urbansec.services.events import load_events
from urbansec.services.hotspots import GridOptions, emerging, hotspots
from urbansec.services.incidents import IncidentFilter, count_incidents
from urbansec.services.near_repeat import near_repeat
from urbansec.services.patterns import time_patterns

SAMPLE_INCIDENTS = (Path(__file__).resolve().parents[2] / "src" / "urbansec" / "samples"
                    / "chicago" / "crimes_2017_districts_01_18.csv.gz")


@pytest.fixture(scope="module")
def sample_frame() -> pd.DataFrame:
    frame = pd.read_csv(SAMPLE_INCIDENTS, usecols=["ID", "Date", "Primary Type", "District",
                                                   "Latitude", "Longitude"])
    frame["local"] = pd.to_datetime(frame["Date"], format="%m/%d/%Y %I:%M:%S %p")
    return frame


def _reference_counts(frame: pd.DataFrame, size: float) -> dict[str, float]:
    located = frame.dropna(subset=["Latitude", "Longitude"])
    events = Events.from_lonlat(located["Longitude"], located["Latitude"],
                                located["local"].to_numpy("datetime64[s]"))
    grid = SquareGrid(size=size, crs=events.crs)
    keys = grid.study_cells(events.x, events.y)
    return dict(zip(grid.cell_ids(keys), grid.counts(keys, events.x, events.y).tolist(),
                    strict=True))


def test_load_events_projects_and_keeps_unlocated(sample_db: Engine,
                                                  sample_frame: pd.DataFrame) -> None:
    events = load_events(sample_db, IncidentFilter.parse())
    assert len(events) == len(sample_frame)
    assert int(events.located.sum()) == int(sample_frame["Latitude"].notna().sum())
    assert events.crs == "EPSG:32616"
    assert events.timezone == "America/Chicago"
    # local wall-clock times round-trip through UTC storage exactly, DST included
    assert sorted(events.local_times().astype("datetime64[s]").tolist()) == sorted(
        sample_frame["local"].to_numpy("datetime64[s]").tolist())


def test_count_hotspots_equal_an_independent_count(sample_db: Engine,
                                                   sample_frame: pd.DataFrame,
                                                   tmp_path: Path) -> None:
    result = hotspots(sample_db, IncidentFilter.parse(), method="count",
                      options=GridOptions(cell=250))
    got = dict(zip(result.grid.cell_ids(result.keys), result.properties["count"].tolist(),
                   strict=True))
    assert got == _reference_counts(sample_frame, 250)
    assert result.summary["empty_cells"] > 0  # empty cells are in the study area
    path = cells.write_geojson(result, tmp_path / "cells.geojson")
    collection = json.loads(path.read_text())
    assert len(collection["features"]) == result.keys.size
    first = collection["features"][0]
    assert first["geometry"]["type"] == "Polygon"
    assert {"cell_id", "count"} <= set(first["properties"])
    assert sum(f["properties"]["count"] for f in collection["features"]) == \
        sample_frame["Latitude"].notna().sum()


def test_gi_star_service_equals_the_statistic_on_the_same_cells(sample_db: Engine) -> None:
    flt = IncidentFilter.parse(category="theft")
    result = hotspots(sample_db, flt, method="gi", options=GridOptions(cell=250),
                      permutations=199, seed=7)
    cols, rows = SquareGrid.col_row(result.keys)
    w = spatial_weights.square_contiguity(rows, cols, kind="queen")
    direct = hotspot_analysis.gi_star(result.properties["count"], w, permutations=199, seed=7)
    np.testing.assert_allclose(result.properties["z"], direct.z, atol=1e-12)
    np.testing.assert_array_equal(result.properties["class"], direct.classes)
    assert result.summary["classes"]["hot 99%"] > 0
    again = hotspots(sample_db, flt, method="gi", options=GridOptions(cell=250),
                     permutations=199, seed=7)
    np.testing.assert_array_equal(again.properties["p"], result.properties["p"])


def test_lisa_kde_and_hex_run_on_a_district(sample_db: Engine, tmp_path: Path) -> None:
    flt = IncidentFilter.parse(area="district:18")
    lisa = hotspots(sample_db, flt, method="lisa", options=GridOptions(cell=250),
                    permutations=99)
    assert set(lisa.summary["clusters"]) == {"HH", "LL", "HL", "LH", ""}
    assert lisa.summary["clusters"]["HH"] > 0
    kde = hotspots(sample_db, flt, method="kde", options=GridOptions(cell=100),
                   bandwidth=300, kernel="gaussian")
    density = kde.properties["density_km2"]
    assert (density >= 0).all() and density.max() > 0
    # the density surface holds (nearly) every event: the district is surrounded by cells
    # of other districts only on some sides, so mass leaks out of the study area
    mass = density.sum() * 0.01
    assert 0.7 * kde.summary["events"] < mass <= 1.001 * kde.summary["events"]
    hexes = hotspots(sample_db, flt, method="gi", options=GridOptions(hex_resolution=9),
                     permutations=0)
    assert hexes.summary["p_values"] == "analytical"
    assert len(hexes.grid.cell_ids(hexes.keys[:1])[0]) == 15
    png = cells.write_png(hexes, tmp_path / "hex.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_study_area_within_districts_has_empty_cells(sample_db: Engine) -> None:
    result = hotspots(sample_db, IncidentFilter.parse(), method="count",
                      options=GridOptions(cell=1000, within="district"))
    # the sample covers 2 of the city's districts: most of the city's cells are empty
    assert result.summary["empty_cells"] > result.summary["cells"] / 2


def test_empty_filter_is_an_empty_result_and_a_dataless_period_an_error(
        sample_db: Engine) -> None:
    empty = hotspots(sample_db, IncidentFilter.parse(category="0101", area="district:18",
                                                     start="2017-01-01", end="2017-01-02"),
                     method="gi")
    assert empty.keys.size == 0
    assert "no located incidents" in empty.summary["message"]
    with pytest.raises(UsageError, match="no incidents at all in the period"):
        hotspots(sample_db, IncidentFilter.parse(start="1999-01-01", end="1999-12-31"))
    with pytest.raises(UsageError, match="more than 10,000,000"):
        hotspots(sample_db, IncidentFilter.parse(), method="count",
                 options=GridOptions(cell=2))
    with pytest.raises(UsageError, match="--weights"):
        hotspots(sample_db, IncidentFilter.parse(), method="gi", weights="bishop")
    with pytest.raises(NotFoundError):
        hotspots(sample_db, IncidentFilter.parse(), options=GridOptions(within="ward"))


def test_emerging_monthly_cube(sample_db: Engine) -> None:
    result = emerging(sample_db, IncidentFilter.parse(area="district:1"), slice_by="month")
    assert result.summary["slices"] == 12
    assert sum(result.summary["categories"].values()) == result.keys.size
    assert result.properties["count"].sum() == result.summary["events"]
    with pytest.raises(UsageError, match="at least 4"):
        emerging(sample_db, IncidentFilter.parse(start="2017-06-01", end="2017-06-30"),
                 slice_by="month")


def test_time_patterns_are_in_local_time(sample_db: Engine, sample_frame: pd.DataFrame
                                         ) -> None:
    result = time_patterns(sample_db, IncidentFilter.parse())
    counts = np.array(result["hour_weekday"]["counts"])
    local = sample_frame["local"]
    expected = np.zeros((7, 24), dtype=int)
    np.add.at(expected, (local.dt.day_of_week.to_numpy(), local.dt.hour.to_numpy()), 1)
    np.testing.assert_array_equal(counts, expected)
    night = ((local.dt.hour >= 22) | (local.dt.hour < 6)).sum()
    assert result["night"]["count"] == night
    assert sum(result["monthly"]["counts"]) == len(sample_frame)
    # the year 2017 in Chicago: the spring-forward Sunday has no 02:00, so that slot occurred
    # 52 times in the year, not 53 (2017 has 53 Sundays)
    exposure = np.array(result["hour_weekday"]["exposure_hours"])
    assert exposure[6, 2] == 52 and exposure[6, 3] == 53


def test_patterns_of_an_empty_filter(sample_db: Engine) -> None:
    result = time_patterns(sample_db, IncidentFilter.parse(category="0101",
                                                           start="2017-01-01",
                                                           end="2017-01-01"))
    assert result["events"] == 0 and "message" in result


def test_near_repeat_on_burglaries(sample_db: Engine) -> None:
    result = near_repeat(sample_db, IncidentFilter.parse(category="burglary"),
                         space_bands=[100, 200, 400], time_bands=[7, 14, 28],
                         permutations=99, seed=1)
    group = result["results"][0]
    assert group["events"] == result["events"] > 100
    observed = np.array(group["observed"])
    assert observed.shape == (len(group["space_labels"]), len(group["time_labels"]))
    n = group["events"]
    assert observed.sum() == n * (n - 1) // 2


def test_change_by_beat_against_the_previous_period(sample_db: Engine) -> None:
    flt = IncidentFilter.parse(start="2017-07-01", end="2017-09-30")
    result = change(sample_db, flt, baseline="previous", by="beat")
    current = count_incidents(sample_db, flt)["total"]
    baseline = count_incidents(sample_db, IncidentFilter.parse(
        start="2017-03-31", end="2017-06-30"))["total"]  # 92 days, like the current
    assert result["current"]["count"] == current
    assert result["baseline_period"]["count"] == baseline
    assert sum(u["current"] for u in result["units"]) + result["unassigned"] >= current
    for unit in result["units"]:
        if unit["significant"]:
            assert unit["p"] < 0.05
    # the sample holds 2017 only: a 2016 baseline would count its missing days as zeros
    with pytest.raises(UsageError, match=r"baseline \(2016-07-01 to .*starts before the "
                                         r"stored data \(2017-01-01\).*use the previous baseline"):
        change(sample_db, flt, baseline="last-year", by="district")
    # the first day of data starts at local midnight, hours after UTC midnight: still covered
    # ("to" is a whole day: 2 January against 1 January)
    first_days = change(sample_db, IncidentFilter.parse(start="2017-01-02", end="2017-01-02"),
                        baseline="previous", by="district")
    assert first_days["baseline_period"]["count"] == count_incidents(
        sample_db, IncidentFilter.parse(start="2017-01-01", end="2017-01-01"))["total"] > 0


def test_area_rates_with_denominators(sample_db: Engine, tmp_path: Path,
                                      sample_frame: pd.DataFrame) -> None:
    csv_path = tmp_path / "population.csv"
    csv_path.write_text("district,population\n1,80000\n18,120000\n")
    result = area_rates(sample_db, IncidentFilter.parse(), kind="district",
                        denominators=read_denominators(csv_path), per=1000)
    by_code = {a["code"]: a for a in result["areas"]}
    expected = sample_frame["District"].value_counts()
    assert by_code["1"]["count"] == expected[1]
    assert by_code["1"]["rate"] == pytest.approx(expected[1] / 80, rel=1e-6)
    assert by_code["1"]["ci_low"] < by_code["1"]["rate"] < by_code["1"]["ci_high"]
    assert by_code["2"]["count"] == 0 and by_code["2"]["rate"] is None


UK_HEADER = ("Crime ID,Month,Reported by,Falls within,Longitude,Latitude,Location,LSOA code,"
             "LSOA name,Crime type,Last outcome category,Context")


def test_month_precision_incidents_stay_out_of_hour_patterns(db: Engine, tmp_path: Path
                                                             ) -> None:
    from urbansec.services.imports import import_incidents

    rows = [f"{i:064x},2023-0{1 + i % 3},Metropolitan Police Service,Metropolitan Police "
            f"Service,-0.14{i % 10},51.51{i % 7},On or near Oxford Street,E01004734,"
            "Westminster 018A,Burglary,Under investigation," for i in range(1, 31)]
    path = tmp_path / "2023-metropolitan-street.csv"
    path.write_text(UK_HEADER + "\n" + "\n".join(rows) + "\n")
    import_incidents(db, [path], "uk-police")
    result = time_patterns(db, IncidentFilter.parse())
    assert result["events"] == 30
    assert result["without_time_of_day"] == 30
    assert np.array(result["hour_weekday"]["counts"]).sum() == 0
    assert result["busiest_slot"] is None
    assert result["monthly"]["counts"] == [10, 10, 10]


def test_day_precision_incidents_stay_out_of_hour_patterns(db: Engine, tmp_path: Path
                                                           ) -> None:
    from urbansec.services.imports import import_incidents

    path = tmp_path / "days.csv"
    path.write_text("id,date,lat,lon,type\n" + "".join(
        f"d{i},2023-03-{1 + i:02d},41.88,-87.63,burglary\n" for i in range(10)))
    mapping = {"source": {"key": "daily-log", "timezone": "America/Chicago"},
               "columns": {"id": "id", "time": "date", "lat": "lat", "lon": "lon",
                           "category": "type", "time_format": "%Y-%m-%d"},
               "categories": {"map": {"burglary": "0501"}}}
    import_incidents(db, [path], "generic", mapping=GenericMapping.from_dict(mapping))
    result = time_patterns(db, IncidentFilter.parse())
    assert result["events"] == 10
    assert result["without_time_of_day"] == 10  # day only: no hour to place them in
    assert np.array(result["hour_weekday"]["counts"]).sum() == 0
    assert result["monthly"]["counts"] == [10]


def test_rates_from_published_berlin_counts(db: Engine) -> None:
    from urbansec.services.imports import import_area_counts

    berlin = (Path(__file__).resolve().parents[3] / "shared" / "data" / "berlin-crime-atlas"
              / "berlin_crimes_by_district.csv")
    if not berlin.exists():
        pytest.skip(f"{berlin} not found")
    import_area_counts(db, berlin, "berlin-atlas")
    frame = pd.read_csv(berlin)
    year = int(frame["Year"].max())
    result = area_rates(db, IncidentFilter.parse(category="burglary"),
                        kind="lor-district-region", source="area-counts", year=year)
    by_code = {a["code"]: a["count"] for a in result["areas"]}
    expected = frame[frame["Year"] == year]
    first = expected.iloc[0]
    code = str(first["Code"])  # stored as published (no leading zero)
    assert by_code[code] == int(first["Burglary"])
    assert result["total"] == int(expected["Burglary"].sum())
