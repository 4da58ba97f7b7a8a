"""Level-of-service boundaries on Fruin's and the standing-crowd scales; robust trend and the
minutes until a threshold."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import theilslopes

from urbansec.crowd.los import (
    FRUIN_QUEUING,
    FRUIN_STAIRS,
    FRUIN_WALKWAY,
    STANDING_CROWD,
    LosConfig,
    LosScale,
)
from urbansec.crowd.trend import minutes_to_threshold, theil_sen
from urbansec.crowd.zones import ZoneType
from urbansec.errors import UsageError

FT2 = 0.09290304


@pytest.mark.parametrize(("space_ft2", "letter"), [
    (40, "A"), (35, "A"), (34.9, "B"), (25, "B"), (20, "C"), (15, "C"), (12, "D"), (10, "D"),
    (7, "E"), (5, "E"), (4.9, "F"), (1, "F")])
def test_fruin_walkway_space_boundaries(space_ft2: float, letter: str) -> None:
    # a boundary value belongs to the better level: 35 ft² or more is A
    level = FRUIN_WALKWAY.density_level(1.0 / (space_ft2 * FT2))
    assert FRUIN_WALKWAY.letters(level) == letter


def test_fruin_walkway_in_metric_units_by_hand() -> None:
    # 100 persons on 325 m² is 3.25 m² per person = 34.98 ft², just under Fruin's 35 ft²:
    # B; 90 persons on 325 m² (3.61 m² = 38.9 ft²) is A
    assert FRUIN_WALKWAY.letters(FRUIN_WALKWAY.density_level(100 / 325)) == "B"
    assert FRUIN_WALKWAY.letters(FRUIN_WALKWAY.density_level(90 / 325)) == "A"
    # 2 persons/m² = 0.5 m² each = 5.38 ft²: E; 2.2/m² = 0.4545 m² = 4.89 ft²: F
    assert FRUIN_WALKWAY.letters(FRUIN_WALKWAY.density_level([2.0, 2.2])).tolist() == ["E", "F"]


@pytest.mark.parametrize(("ppfm", "letter"), [(5, "A"), (7, "A"), (8, "B"), (10, "B"),
                                              (12, "C"), (18, "D"), (25, "E"), (26, "F")])
def test_fruin_walkway_flow_boundaries(ppfm: float, letter: str) -> None:
    flow = ppfm / 0.3048  # persons/ft/min -> persons/m/min
    assert FRUIN_WALKWAY.letters(FRUIN_WALKWAY.flow_level(flow)) == letter


def test_combined_level_is_the_worse_of_density_and_flow() -> None:
    # roomy (A by space) but 60 persons/m/min (18.3 ppfm, D by flow) -> D
    assert FRUIN_WALKWAY.level(0.1, 60.0) == 3
    # crowded (E by space) with little flow -> E; no flow measured -> density alone
    assert FRUIN_WALKWAY.level(1.5, 5.0) == 4
    assert FRUIN_WALKWAY.level(1.5, np.nan) == 4
    assert FRUIN_WALKWAY.level(np.nan) == -1
    assert FRUIN_WALKWAY.letters([-1]).tolist() == [""]


@pytest.mark.parametrize(("scale", "space_ft2", "letter"), [
    (FRUIN_QUEUING, 13, "A"), (FRUIN_QUEUING, 12, "B"), (FRUIN_QUEUING, 7, "C"),
    (FRUIN_QUEUING, 5, "D"), (FRUIN_QUEUING, 2.5, "E"), (FRUIN_QUEUING, 1.5, "F"),
    (FRUIN_STAIRS, 20, "A"), (FRUIN_STAIRS, 16, "B"), (FRUIN_STAIRS, 11, "C"),
    (FRUIN_STAIRS, 8, "D"), (FRUIN_STAIRS, 4, "E"), (FRUIN_STAIRS, 3.9, "F")])
def test_queuing_and_stair_scales(scale: LosScale, space_ft2: float, letter: str) -> None:
    assert scale.letters(scale.density_level(1.0 / (space_ft2 * FT2))) == letter


def test_standing_crowd_thresholds_and_capacity_density() -> None:
    levels = STANDING_CROWD.density_level([0.5, 1.0, 1.5, 2.5, 3.5, 4.7, 5.0, 5.01, 8.0])
    assert STANDING_CROWD.letters(levels).tolist() == ["A", "A", "B", "C", "D", "E", "E",
                                                        "F", "F"]
    assert STANDING_CROWD.capacity_density == 4.7
    assert STANDING_CROWD.flow_level([100.0]).tolist() == [-1]  # flow does not grade it


def test_config_per_zone_type_and_override() -> None:
    config = LosConfig()
    assert config.scale_for("walkway") is FRUIN_WALKWAY
    assert config.scale_for(ZoneType.EXIT) is FRUIN_WALKWAY
    assert config.scale_for("queue") is FRUIN_QUEUING
    assert config.level("standing", 4.2) == 4
    strict = LosScale("strict-standing", (0.5, 1.0, 1.5, 2.0, 3.0), None, 2.0, "event plan")
    custom = config.with_scale("standing", strict)
    assert custom.level("standing", 4.2) == 5
    assert config.level("standing", 4.2) == 4  # the original is unchanged
    with pytest.raises(UsageError):
        LosScale("bad", (1.0, 0.5, 2.0, 3.0, 4.0), None, 1.0)
    with pytest.raises(UsageError):
        LosConfig({}).scale_for("walkway")


def test_theil_sen_matches_scipy_and_ignores_an_outlier() -> None:
    y = np.array([1.0, 1.2, 1.4, 9.0, 1.8, 2.0, 2.2])
    slope, intercept = theil_sen(y)
    ref = theilslopes(y, np.arange(7))
    assert slope == pytest.approx(ref.slope) and intercept == pytest.approx(ref.intercept)
    assert slope == pytest.approx(0.2)


def test_minutes_to_threshold_by_hand() -> None:
    # density rising 0.1 /m² per minute, now at 3.0: reaches 4.0 in 10 minutes
    rising = 2.1 + 0.1 * np.arange(10)
    # already above -> 0; flat -> inf; falling -> inf; too few measurements -> NaN
    series = np.vstack([rising, np.full(10, 4.5), np.full(10, 2.0), rising[::-1],
                        np.r_[np.full(7, np.nan), 1.0, 2.0, 3.0]])
    result = minutes_to_threshold(series, 4.0, window=10, min_points=5)
    assert result.eta_minutes[0] == pytest.approx(10.0)
    assert result.level[0] == pytest.approx(3.0)
    assert result.slope[0] == pytest.approx(0.1)
    assert result.eta_minutes[1] == 0.0
    assert np.isinf(result.eta_minutes[2]) and np.isinf(result.eta_minutes[3])
    assert np.isnan(result.eta_minutes[4])


def test_trend_uses_only_the_window_and_skips_missing_minutes() -> None:
    old = np.full(20, 9.0)  # ancient history outside the window must not matter
    recent = 1.0 + 0.5 * np.arange(10)
    recent[4] = np.nan
    result = minutes_to_threshold(np.r_[old, recent], 10.0, window=10)
    # level now 5.5, 0.5 per minute: 9 minutes to 10
    assert float(result.eta_minutes) == pytest.approx(9.0)
    with pytest.raises(UsageError):
        minutes_to_threshold(recent, 1.0, window=1)
