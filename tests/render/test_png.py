"""PNG renderings: valid files, legends, colours where they belong, speed, user errors."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import shapely
from matplotlib import colormaps
from matplotlib.colors import to_rgb
from PIL import Image
from shapely.geometry import LineString, MultiPolygon, Point, Polygon, box

from urbansec.errors import UsageError
from urbansec.render import (
    EMERGING_CLASSES,
    GI_CLASSES,
    LISA_CLASSES,
    LegendEntry,
    build_cell_map,
    legend_entries,
    render_bar_series,
    render_cell_map,
    render_hour_weekday,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LAT0 = 41.85  # Chicago
LON0 = -87.68


def grid(nx: int, ny: int, size: float = 0.01, lon0: float = LON0,
         lat0: float = LAT0) -> list[Polygon]:
    """nx * ny square-degree cells, row by row from the south-west corner."""
    return [box(lon0 + i * size, lat0 + j * size, lon0 + (i + 1) * size, lat0 + (j + 1) * size)
            for j in range(ny) for i in range(nx)]


def rgb_at(image: Image.Image, px: tuple[int, int]) -> np.ndarray:
    return np.asarray(image.convert("RGB").getpixel(px), dtype=float)


def assert_colour(image: Image.Image, px: tuple[int, int], colour: str | tuple) -> None:
    want = np.asarray(to_rgb(colour)) * 255 if isinstance(colour, str) else np.asarray(colour)
    got = rgb_at(image, px)
    assert np.abs(got - want).max() <= 3, f"pixel {px} is {got}, expected {want}"


def assert_png(path: Path, min_px: int = 400, max_px: int = 3000) -> Image.Image:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = Image.open(path)
    image.load()
    assert image.format == "PNG"
    w, h = image.size
    assert min_px <= w <= max_px and min_px <= h <= max_px, image.size
    return image


# --------------------------------------------------------------------------------- legends


def test_legend_lists_only_present_gi_classes_in_palette_order_with_counts() -> None:
    entries = legend_entries("gi", [0, 3, 3, -2, 0, 0, np.int64(3), 2.0])
    assert [e.key for e in entries] == [3, 2, 0, -2]
    assert [e.count for e in entries] == [3, 1, 3, 1]
    assert entries[0] == LegendEntry(3, "Hot spot 99% confidence", GI_CLASSES[3][1], 3)
    assert entries[0].text == "Hot spot 99% confidence (3)"


def test_legend_lisa_treats_none_as_not_significant_and_formats_thousands() -> None:
    entries = legend_entries("lisa", ["HH"] * 1500 + [None, "", "LL"])
    assert [(e.key, e.count) for e in entries] == [("HH", 1500), ("LL", 1), ("", 2)]
    assert entries[0].text == "High-High (hot spot) (1,500)"
    assert entries[-1].label == "Not significant"


def test_legend_emerging_accepts_numpy_strings_and_skips_absent_categories() -> None:
    classes = np.array(["no_pattern", "new_hot", "persistent_cold", "new_hot"])
    entries = legend_entries("emerging", classes)
    assert [(e.key, e.count) for e in entries] == [
        ("new_hot", 2), ("persistent_cold", 1), ("no_pattern", 1)]
    assert all(e.colour == EMERGING_CLASSES[e.key][1] for e in entries)


def test_legend_is_empty_for_no_classes() -> None:
    assert legend_entries("gi", []) == []


@pytest.mark.parametrize(("kind", "classes"), [
    ("gi", [4]), ("gi", [1.5]), ("gi", ["hot"]), ("lisa", ["HX"]), ("emerging", ["new_hott"]),
    ("moran", ["HH"]),
])
def test_unknown_classes_or_kind_are_usage_errors(kind: str, classes: list) -> None:
    with pytest.raises(UsageError):
        legend_entries(kind, classes)


def test_palettes_have_distinct_colours() -> None:
    for palette in (GI_CLASSES, LISA_CLASSES, EMERGING_CLASSES):
        colours = [to_rgb(colour) for _, colour in palette.values()]
        assert len(set(colours)) == len(colours)


# --------------------------------------------------------------------------------- cell maps


def test_cell_map_writes_a_png_and_returns_its_path(tmp_path: Path) -> None:
    out = tmp_path / "gi.png"
    cells = grid(5, 4)
    district = box(LON0 + 0.005, LAT0 + 0.005, LON0 + 0.035, LAT0 + 0.025)
    result = render_cell_map(out, cells=cells, classes=[3, 0, 0, -3, 1] * 4, kind="gi",
                             boundaries=[district], title="Gi* hot spots, 2017, burglary",
                             subtitle="200 m grid, 999 permutations")
    assert result == out
    assert_png(out)


def test_hot_and_cold_cells_are_drawn_in_their_palette_colours(tmp_path: Path) -> None:
    cells = grid(3, 3)
    classes = [0] * 9
    classes[4] = 3  # centre
    classes[0] = -3  # south-west corner
    cell_map = build_cell_map(cells=cells, classes=classes, kind="gi", title="t")
    image = Image.open(cell_map.save(tmp_path / "m.png"))
    assert image.size == cell_map.size_px
    centre = cells[4].centroid
    assert_colour(image, cell_map.pixel(centre.x, centre.y), GI_CLASSES[3][1])
    sw = cells[0].centroid
    assert_colour(image, cell_map.pixel(sw.x, sw.y), GI_CLASSES[-3][1])
    ne = cells[8].centroid
    assert_colour(image, cell_map.pixel(ne.x, ne.y), GI_CLASSES[0][1])


def test_one_huge_lisa_cell_dominates_the_image_in_its_colour(tmp_path: Path) -> None:
    out = render_cell_map(tmp_path / "l.png", cells=[box(10, 50, 11, 51)], classes=["HH"],
                          kind="lisa", title="LISA")
    rgb = np.asarray(Image.open(out).convert("RGB")).reshape(-1, 3).astype(np.int64)
    packed = rgb[:, 0] << 16 | rgb[:, 1] << 8 | rgb[:, 2]
    colours, counts = np.unique(packed, return_counts=True)
    by_count = colours[np.argsort(counts)[::-1]]
    # White background first (margins and legend panel), then the cell.
    r, g, b = (round(c * 255) for c in to_rgb(LISA_CLASSES["HH"][1]))
    assert by_count[1] == r << 16 | g << 8 | b


def test_sequential_colours_zero_grey_max_darkest_nan_white(tmp_path: Path) -> None:
    cells = grid(4, 1)
    values = [0.0, 5.0, 10.0, math.nan]
    cell_map = build_cell_map(cells=cells, values=values, title="counts")
    image = Image.open(cell_map.save(tmp_path / "s.png"))
    ramp = colormaps["YlOrRd"]
    px = [cell_map.pixel(c.centroid.x, c.centroid.y) for c in cells]
    assert_colour(image, px[0], "#ececec")
    assert_colour(image, px[1], tuple(np.asarray(ramp(0.5)[:3]) * 255))
    assert_colour(image, px[2], tuple(np.asarray(ramp(1.0)[:3]) * 255))
    assert_colour(image, px[3], "white")


def test_negative_values_switch_to_a_ramp_centred_on_zero(tmp_path: Path) -> None:
    cells = grid(3, 1)
    cell_map = build_cell_map(cells=cells, values=[-4.0, 0.0, 2.0], title="change")
    image = Image.open(cell_map.save(tmp_path / "c.png"))
    ramp = colormaps["RdBu_r"]
    for cell, fraction in zip(cells, [0.0, 0.5, 0.75], strict=True):
        want = tuple(np.asarray(ramp(fraction)[:3]) * 255)
        assert_colour(image, cell_map.pixel(cell.centroid.x, cell.centroid.y), want)


def test_log_scale_maps_the_geometric_middle_to_the_ramp_middle(tmp_path: Path) -> None:
    cells = grid(3, 1)
    cell_map = build_cell_map(cells=cells, values=[1.0, 10.0, 100.0], title="t", scale="log")
    image = Image.open(cell_map.save(tmp_path / "log.png"))
    want = tuple(np.asarray(colormaps["YlOrRd"](0.5)[:3]) * 255)
    assert_colour(image, cell_map.pixel(cells[1].centroid.x, cells[1].centroid.y), want)


def test_multipolygon_cells_draw_every_part(tmp_path: Path) -> None:
    a, b = box(0, 40, 1, 41), box(3, 40, 4, 41)
    cell_map = build_cell_map(cells=[MultiPolygon([a, b])], classes=[3], kind="gi", title="t")
    image = Image.open(cell_map.save(tmp_path / "mp.png"))
    for part in (a, b):
        assert_colour(image, cell_map.pixel(part.centroid.x, part.centroid.y), GI_CLASSES[3][1])
    assert_colour(image, cell_map.pixel(2.0, 40.5), "white")  # the gap between the parts


def test_boundaries_are_drawn_on_top_of_the_cells(tmp_path: Path) -> None:
    cells = grid(2, 2, size=0.02)
    # A vertical boundary line through the middle of the left column of cells.
    x = LON0 + 0.01
    outline = box(x, LAT0 + 0.005, LON0 + 0.03, LAT0 + 0.035)
    cell_map = build_cell_map(cells=cells, classes=[3] * 4, kind="gi", boundaries=[outline],
                              title="t")
    image = Image.open(cell_map.save(tmp_path / "b.png"))
    col, row = cell_map.pixel(x, LAT0 + 0.015)
    darkest = min(rgb_at(image, (c, row)).max() for c in range(col - 2, col + 3))
    assert darkest < 110
    # Away from the line the cell colour shows.
    col_far, _ = cell_map.pixel(LON0 + 0.003, LAT0 + 0.015)
    assert_colour(image, (col_far, row), GI_CLASSES[3][1])


def test_aspect_is_corrected_for_latitude(tmp_path: Path) -> None:
    # A square of 1 km x 1 km at 60 degrees north spans twice as many degrees of longitude as
    # of latitude; on the map it must still be square.
    lat = 60.0
    dlat = 1.0 / 111.32
    dlon = dlat / math.cos(math.radians(lat))
    cell = box(10.0, lat, 10.0 + dlon, lat + dlat)
    cell_map = build_cell_map(cells=[cell], values=[1.0], title="t")
    x0, y0 = cell_map.pixel(10.0, lat)
    x1, y1 = cell_map.pixel(10.0 + dlon, lat + dlat)
    width, height = x1 - x0, y0 - y1
    assert width > 300
    assert abs(width - height) <= 2


def test_thirty_thousand_cells_render_fast(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    cells = grid(200, 150, size=0.0025)
    classes = rng.integers(-3, 4, size=len(cells))
    start = time.perf_counter()
    out = render_cell_map(tmp_path / "big.png", cells=cells, classes=classes, kind="gi",
                          title="30k cells")
    elapsed = time.perf_counter() - start
    assert elapsed < 10.0, f"{elapsed:.1f} s"
    assert_png(out)


def test_thirty_thousand_shapely_array_cells_with_values(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    i, j = np.meshgrid(np.arange(200), np.arange(150))
    x0 = LON0 + i.ravel() * 0.0025
    y0 = LAT0 + j.ravel() * 0.0025
    cells = shapely.box(x0, y0, x0 + 0.0025, y0 + 0.0025)  # a numpy array of polygons
    start = time.perf_counter()
    out = render_cell_map(tmp_path / "big.png", cells=cells, values=rng.poisson(1.0, len(cells)),
                          title="30k cells", legend_title="incidents")
    assert time.perf_counter() - start < 10.0
    assert_png(out)


def test_empty_cells_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no cells"):
        render_cell_map(tmp_path / "e.png", cells=[], values=[], title="t")
    assert not (tmp_path / "e.png").exists()


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"values": [1.0], "classes": [1], "kind": "gi"}, "either values"),
    ({}, "either values"),
    ({"classes": [1]}, "classes need kind"),
    ({"values": [1.0], "kind": "gi"}, "needs classes"),
    ({"values": [1.0, 2.0]}, "2 values for 1 cells"),
    ({"classes": [1, 2], "kind": "gi"}, "2 classes for 1 cells"),
    ({"classes": [7], "kind": "gi"}, "unknown gi class"),
    ({"values": [1.0], "kind": "heat"}, "unknown map kind"),
    ({"values": [1.0], "scale": "sqrt"}, "unknown scale"),
    ({"values": ["many"]}, "must be numbers"),
])
def test_bad_map_arguments_are_usage_errors(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        render_cell_map(tmp_path / "x.png", cells=[box(0, 0, 1, 1)], title="t", **kwargs)


@pytest.mark.parametrize(("cells", "boundaries", "match"), [
    ([Point(0, 0)], (), "not a polygon"),
    (["POLYGON"], (), "not a shapely geometry"),
    (box(0, 0, 1, 1), (), "not one geometry"),
    ([box(0, 0, 1, 1)], [Point(0, 0)], "not a polygon or line"),
])
def test_bad_geometries_are_usage_errors(tmp_path: Path, cells: object, boundaries: object,
                                         match: str) -> None:
    with pytest.raises(UsageError, match=match):
        render_cell_map(tmp_path / "x.png", cells=cells, values=[1.0], boundaries=boundaries,
                        title="t")


def test_line_boundaries_are_accepted(tmp_path: Path) -> None:
    out = render_cell_map(tmp_path / "x.png", cells=[box(0, 0, 1, 1)], values=[1.0],
                          boundaries=[LineString([(0, 0), (1, 1)])], title="t")
    assert_png(out)


@pytest.mark.parametrize("name", ["map.jpg", "missing/map.png", "."])
def test_bad_output_paths_are_usage_errors(tmp_path: Path, name: str) -> None:
    with pytest.raises(UsageError):
        render_cell_map(tmp_path / name, cells=[box(0, 0, 1, 1)], values=[1.0], title="t")


def test_title_is_required() -> None:
    with pytest.raises(UsageError, match="title"):
        build_cell_map(cells=[box(0, 0, 1, 1)], values=[1.0], title="  ")


def test_output_ignores_savefig_rc_settings(tmp_path: Path) -> None:
    kwargs = {"cells": grid(2, 2), "values": [1.0, 2.0, 3.0, 4.0], "title": "t"}
    plain = Image.open(render_cell_map(tmp_path / "a.png", **kwargs)).size
    with matplotlib.rc_context({"savefig.bbox": "tight", "savefig.dpi": 40}):
        tight = Image.open(render_cell_map(tmp_path / "b.png", **kwargs)).size
    assert plain == tight


def test_rendering_does_not_load_pyplot(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from shapely.geometry import box\n"
        "from urbansec.render import render_cell_map, render_hour_weekday\n"
        f"render_cell_map({str(tmp_path / 'a.png')!r}, cells=[box(0, 0, 1, 1)], values=[1.0],"
        " title='t')\n"
        f"render_hour_weekday({str(tmp_path / 'b.png')!r}, matrix=[[1] * 24] * 7, title='t')\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --------------------------------------------------------------------------------- charts


def test_hour_weekday_heatmap_puts_monday_midnight_top_left(tmp_path: Path) -> None:
    matrix = np.ones((7, 24))
    matrix[0, 0] = 50.0  # Monday 00:00-00:59
    out = render_hour_weekday(tmp_path / "hw.png", matrix=matrix, title="Thefts 2017")
    image = assert_png(out)
    rgb = np.asarray(image.convert("RGB")).astype(int)
    darkest = np.asarray(to_rgb(colormaps["YlOrRd"](1.0))) * 255
    hits = np.argwhere(np.abs(rgb - darkest).max(axis=2) <= 3)
    # Ignore the colour bar on the right: the heat cell must be in the upper-left part.
    w, h = image.size
    cell_hits = hits[hits[:, 1] < w * 0.6]
    assert len(cell_hits) > 500
    rows, cols = cell_hits[:, 0], cell_hits[:, 1]
    assert cols.max() < w * 0.15
    assert rows.max() < h * 0.35


def test_hour_weekday_accepts_nan_and_negative_differences(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    matrix = rng.normal(0, 10, (7, 24))
    matrix[3, 5] = np.nan
    assert_png(render_hour_weekday(tmp_path / "d.png", matrix=matrix, title="Change",
                                   value_label="change", row_totals=False))


@pytest.mark.parametrize("shape", [(24, 7), (7, 23), (168,)])
def test_hour_weekday_wrong_shape_is_a_usage_error(tmp_path: Path, shape: tuple) -> None:
    with pytest.raises(UsageError, match=r"\(7, 24\)"):
        render_hour_weekday(tmp_path / "x.png", matrix=np.zeros(shape), title="t")


def test_bar_series_monthly(tmp_path: Path) -> None:
    labels = [f"2017-{m:02d}" for m in range(1, 13)]
    values = np.random.default_rng(1).poisson(20_000, 12)
    image = assert_png(render_bar_series(tmp_path / "m.png", labels=labels, values=values,
                                         title="Monthly incidents 2017", ylabel="incidents"))
    rgb = np.asarray(image.convert("RGB")).reshape(-1, 3).astype(int)
    bar = np.asarray(to_rgb("#4c72b0")) * 255
    assert (np.abs(rgb - bar).max(axis=1) <= 2).sum() > 5000


def test_bar_series_change_colours_rises_red_and_falls_blue(tmp_path: Path) -> None:
    out = render_bar_series(tmp_path / "c.png", labels=["A", "B", "C"], values=[30, -10, np.nan],
                            title="Change 2016 to 2017", ylabel="change")
    rgb = np.asarray(Image.open(out).convert("RGB")).reshape(-1, 3).astype(int)
    for colour in ("#d6604d", "#4393c3"):
        want = np.asarray(to_rgb(colour)) * 255
        assert (np.abs(rgb - want).max(axis=1) <= 2).sum() > 2000


def test_bar_series_many_bars(tmp_path: Path) -> None:
    n = 150
    labels = [f"Beat {i:04d}" for i in range(n)]
    assert_png(render_bar_series(tmp_path / "many.png", labels=labels,
                                 values=np.arange(n, dtype=float), title="t", ylabel="y"))


@pytest.mark.parametrize(("labels", "values", "match"), [
    ([], [], "empty"),
    (["a", "b"], [1.0], "2 labels for 1 values"),
])
def test_bad_bar_series_are_usage_errors(tmp_path: Path, labels: list, values: list,
                                         match: str) -> None:
    with pytest.raises(UsageError, match=match):
        render_bar_series(tmp_path / "x.png", labels=labels, values=values, title="t",
                          ylabel="y")


def test_render_curves_writes_a_png_and_checks_lengths(tmp_path: Path) -> None:
    from urbansec.render.png import render_curves

    x = np.linspace(0, 1, 11)
    path = render_curves(tmp_path / "curves.png", x=x, series={"a": x**0.5, "b": x},
                         title="hit rate", xlabel="area", ylabel="hits", diagonal=True)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(UsageError, match="3 values for 11"):
        render_curves(tmp_path / "bad.png", x=x, series={"a": [1, 2, 3]}, title="t",
                      xlabel="x", ylabel="y")
    with pytest.raises(UsageError):
        render_curves(tmp_path / "none.png", x=x, series={}, title="t", xlabel="x",
                      ylabel="y")
