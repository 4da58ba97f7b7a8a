"""Static PNG renderings for the command line: maps of grid/area results and simple charts.

Presentation code, not analysis: callers pass finished results (values or class labels per cell,
an hour x weekday matrix, a labelled series) plus a title that already names the period and the
filter. Nothing here reads the database or computes statistics.

Everything is drawn on a private :class:`matplotlib.figure.Figure` with an Agg canvas, so no
pyplot state, no backend switch and no ``savefig.*`` rc settings of the user can change the output
(a user's ``savefig.bbox: tight`` would otherwise shift every pixel). No tiles, no network.

Maps take WGS84 lon/lat geometry (shapely), are drawn in plain lon/lat with the aspect corrected
for latitude (1 / cos(mean latitude)), which is exact enough at city scale, and carry a scale bar.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import shapely
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.colors import LogNorm, Normalize, to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator

from urbansec.errors import UsageError

__all__ = [
    "EMERGING_CLASSES",
    "GI_CLASSES",
    "LISA_CLASSES",
    "CellMap",
    "LegendEntry",
    "MapKind",
    "build_cell_map",
    "legend_entries",
    "render_bar_series",
    "render_cell_map",
    "render_hour_weekday",
]

MapKind = Literal["sequential", "gi", "lisa", "emerging"]

# Class palettes: key -> (label, colour), in legend order (hot first, then cold, neutral in the
# middle for Gi*, last for the others).
# Gi* follows the ArcGIS "Hot Spot Analysis" renderer so maps look familiar to analysts.
GI_CLASSES: dict[int, tuple[str, str]] = {
    3: ("Hot spot 99% confidence", "#d62f27"),
    2: ("Hot spot 95% confidence", "#ed7551"),
    1: ("Hot spot 90% confidence", "#fab984"),
    0: ("Not significant", "#f7f7f7"),
    -1: ("Cold spot 90% confidence", "#c0ccbe"),
    -2: ("Cold spot 95% confidence", "#849eba"),
    -3: ("Cold spot 99% confidence", "#4575b5"),
}
# LISA follows GeoDa's cluster map colours.
LISA_CLASSES: dict[str, tuple[str, str]] = {
    "HH": ("High-High (hot spot)", "#e41a1c"),
    "HL": ("High-Low (outlier)", "#f4a3a3"),
    "LH": ("Low-High (outlier)", "#a6b8f0"),
    "LL": ("Low-Low (cold spot)", "#2c4fd1"),
    "": ("Not significant", "#eeeeee"),
}
# Emerging hot spot categories (ArcGIS names). ArcGIS marks some with hatching; a flat
# qualitative palette is used instead: reds/oranges for hot, blues/greens for cold, darkest for
# the strongest trends so the eye goes there first.
EMERGING_CLASSES: dict[str, tuple[str, str]] = {
    "new_hot": ("New hot spot", "#ff3d8b"),
    "consecutive_hot": ("Consecutive hot spot", "#f46d43"),
    "intensifying_hot": ("Intensifying hot spot", "#7f0000"),
    "persistent_hot": ("Persistent hot spot", "#d7301f"),
    "diminishing_hot": ("Diminishing hot spot", "#fcae91"),
    "sporadic_hot": ("Sporadic hot spot", "#fdd166"),
    "oscillating_hot": ("Oscillating hot spot", "#b35806"),
    "historical_hot": ("Historical hot spot", "#d8c3a5"),
    "new_cold": ("New cold spot", "#8c6bb1"),
    "consecutive_cold": ("Consecutive cold spot", "#4393c3"),
    "intensifying_cold": ("Intensifying cold spot", "#08306b"),
    "persistent_cold": ("Persistent cold spot", "#2171b5"),
    "diminishing_cold": ("Diminishing cold spot", "#9ecae1"),
    "sporadic_cold": ("Sporadic cold spot", "#80cdc1"),
    "oscillating_cold": ("Oscillating cold spot", "#35978f"),
    "historical_cold": ("Historical cold spot", "#c7d3c0"),
    "no_pattern": ("No pattern detected", "#f2f2f2"),
}
_PALETTES: dict[str, dict[Any, tuple[str, str]]] = {
    "gi": GI_CLASSES,
    "lisa": LISA_CLASSES,
    "emerging": EMERGING_CLASSES,
}
_DEFAULT_LEGEND_TITLES = {
    "sequential": "",
    "gi": "Getis-Ord Gi*",
    "lisa": "Local Moran's I clusters",
    "emerging": "Emerging hot spots",
}

_DPI = 150
_ZERO_COLOUR = "#ececec"  # sequential maps: cells with value 0 (present but empty)
_NODATA_COLOUR = "#ffffff"  # sequential maps: NaN cells
_BOUNDARY_COLOUR = "#303030"
_TEXT_GREY = "#555555"
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
# Map layout, inches. The map box is sized to the data's aspect so the saved pixels follow the
# data transform exactly; minima keep titles and legends readable for very flat or tall areas.
_MAP_MAX_IN = 7.5
_MAP_MIN_IN = 4.0
_LEFT_IN = 0.3
_BOTTOM_IN = 0.3
_PANEL_IN = 3.1
_KM_PER_DEG_LAT = 111.32


@dataclass(frozen=True)
class LegendEntry:
    """One row of a categorical legend: the class key, its label and colour, and its count."""

    key: int | str
    label: str
    colour: str
    count: int

    @property
    def text(self) -> str:
        """Label as shown in the legend, with the number of cells in that class."""
        return f"{self.label} ({self.count:,})"


@dataclass(frozen=True)
class CellMap:
    """A map built but not yet written; exposes the data -> pixel mapping for checks.

    ``figure`` is a private Agg figure (no pyplot); ``ax`` the map axes in lon/lat degrees.
    """

    figure: Figure
    ax: Axes

    @property
    def size_px(self) -> tuple[int, int]:
        """(width, height) of the PNG :meth:`save` writes, in pixels."""
        # Same truncation as the Agg renderer, which sizes its buffer from int(bbox size).
        w, h = self.figure.bbox.size
        return int(w), int(h)

    def pixel(self, lon: float, lat: float) -> tuple[int, int]:
        """(column, row) in the saved PNG (origin top-left) of the point lon/lat (degrees)."""
        # The aspect is applied lazily at draw time; apply it now so the transform is final.
        self.ax.apply_aspect()
        x, y = self.ax.transData.transform((lon, lat))
        _, height = self.size_px
        return math.floor(x), math.floor(height - y)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the PNG to ``path`` (which must end in .png) and return it as a Path."""
        return _save(self.figure, path)


# --------------------------------------------------------------------------------------------
# public API


def legend_entries(kind: str, classes: Iterable[Any]) -> list[LegendEntry]:
    """Legend rows for the classes present in ``classes``, in palette order, with counts.

    ``kind`` is "gi" (ints -3..3), "lisa" ("HH", "HL", "LH", "LL", "" or None for not
    significant) or "emerging" (category strings such as "new_hot" or "no_pattern"). Classes that
    do not occur are left out so the legend only explains what is on the map. Raises UsageError on
    an unknown kind or class.
    """
    return _entries(kind, _class_keys(kind, classes))


def _entries(kind: str, keys: list[Any]) -> list[LegendEntry]:
    palette = _palette(kind)
    counts = Counter(keys)
    return [
        LegendEntry(key=key, label=label, colour=colour, count=counts[key])
        for key, (label, colour) in palette.items()
        if counts[key]
    ]


def build_cell_map(
    *,
    cells: Sequence[Any],
    values: Sequence[float] | np.ndarray | None = None,
    classes: Sequence[Any] | np.ndarray | None = None,
    boundaries: Iterable[Any] = (),
    title: str,
    subtitle: str = "",
    legend_title: str = "",
    kind: MapKind = "sequential",
    scale: Literal["linear", "log"] = "linear",
) -> CellMap:
    """Build (without writing) the map :func:`render_cell_map` writes; see there."""
    geoms = _as_geometry_array(cells, "cells")
    if len(geoms) == 0:
        raise UsageError("there are no cells to map: the selection is empty "
                         "(widen the period, area or category filter)")
    if kind not in _DEFAULT_LEGEND_TITLES:
        raise UsageError(f"unknown map kind {kind!r}; use one of "
                         f"{', '.join(_DEFAULT_LEGEND_TITLES)}")
    if (values is None) == (classes is None):
        raise UsageError("give either values (numeric map) or classes (categorical map), "
                         "not both or neither")
    if kind == "sequential" and values is None:
        raise UsageError("classes need kind='gi', 'lisa' or 'emerging'")
    if kind != "sequential" and classes is None:
        raise UsageError(f"kind={kind!r} needs classes, not values")
    types = shapely.get_type_id(geoms)
    polygonal = (types == shapely.GeometryType.POLYGON) | (
        types == shapely.GeometryType.MULTIPOLYGON)
    if not polygonal.all():
        bad = int(np.flatnonzero(~polygonal)[0])
        raise UsageError(f"cell {bad} is not a polygon (got {_type_name(geoms[bad])})")
    if shapely.is_empty(geoms).all():
        raise UsageError("all cells are empty polygons: nothing to map")

    verts, owner = _polygon_vertices(geoms)
    x0, y0, x1, y1 = _extent(geoms)
    lat0 = (y0 + y1) / 2.0
    aspect = 1.0 / math.cos(math.radians(lat0))

    legend_title = legend_title or _DEFAULT_LEGEND_TITLES[kind]
    ramp: dict[str, Any] = {}
    entries: list[LegendEntry] = []
    if classes is None:
        facecolours, ramp = _sequential_colours(values, len(geoms), scale)
        n_legend_rows = 4  # colour bar plus the zero / no-data swatches
    else:
        keys = _class_keys(kind, classes)
        if len(keys) != len(geoms):
            raise UsageError(f"got {len(keys)} classes for {len(geoms)} cells; "
                             "give one class per cell")
        lookup = {key: to_rgba(colour) for key, (_, colour) in _palette(kind).items()}
        facecolours = np.array([lookup[k] for k in keys], dtype=float).reshape(-1, 4)
        entries = _entries(kind, keys)
        n_legend_rows = len(entries)

    # Figure geometry: fit the data box (in display-equal units) into the maximum map size.
    w_units = x1 - x0
    h_units = (y1 - y0) * aspect
    s = _MAP_MAX_IN / max(w_units, h_units)
    map_w = max(w_units * s, _MAP_MIN_IN)
    map_h = max(h_units * s, _MAP_MIN_IN, 0.9 + 0.24 * n_legend_rows)
    fig_w = _LEFT_IN + map_w + _PANEL_IN
    header_lines, header_in = _header_layout(title, subtitle, fig_w)
    fig_h = header_in + map_h + _BOTTOM_IN

    fig = Figure(figsize=(fig_w, fig_h), dpi=_DPI, facecolor="white")
    FigureCanvasAgg(fig)
    _draw_header(fig, header_lines, _LEFT_IN / fig_w)
    ax = fig.add_axes((_LEFT_IN / fig_w, _BOTTOM_IN / fig_h, map_w / fig_w, map_h / fig_h))
    # When a minimum size made the box wider or taller than the data, show more area around the
    # data rather than distorting it: widen the limits to the box's shape ourselves, so the
    # aspect below holds without matplotlib moving the box (pixel positions stay predictable).
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half_w = map_w / s / 2
    half_h = map_h / s / aspect / 2
    ax.set_xlim(cx - half_w, cx + half_w)
    ax.set_ylim(cy - half_h, cy + half_h)
    ax.set_aspect(aspect, adjustable="box")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor("#bbbbbb")
        spine.set_linewidth(0.6)

    many = len(verts) > 3000
    cell_faces = facecolours[owner]
    collection = PolyCollection(
        verts,
        closed=True,
        facecolors=cell_faces,
        # Thousands of cells: paint edges in the face colour so antialiasing leaves no
        # hairline seams; few cells: thin white edges show the grid.
        edgecolors="face" if many else "white",
        linewidths=0.2 if many else 0.4,
        zorder=1,
    )
    ax.add_collection(collection, autolim=False)
    _draw_boundaries(ax, boundaries)
    _draw_scale_bar(ax, cx - half_w, cx + half_w, cy - half_h, cy + half_h, lat0)

    panel_left = (_LEFT_IN + map_w + 0.3) / fig_w
    if classes is None:
        _draw_colour_panel(fig, ramp, legend_title, panel_left, fig_w, fig_h, map_h)
    else:
        _draw_class_legend(fig, entries, legend_title, panel_left, fig_w, fig_h, map_h)
    return CellMap(figure=fig, ax=ax)


def render_cell_map(
    path: str | os.PathLike[str],
    *,
    cells: Sequence[Any],
    values: Sequence[float] | np.ndarray | None = None,
    classes: Sequence[Any] | np.ndarray | None = None,
    boundaries: Iterable[Any] = (),
    title: str,
    subtitle: str = "",
    legend_title: str = "",
    kind: MapKind = "sequential",
    scale: Literal["linear", "log"] = "linear",
) -> Path:
    """Write a PNG map of grid or area cells coloured by value or class; return its path.

    Args:
        path: output file, must end in ``.png``; its directory must exist.
        cells: n shapely Polygons (or MultiPolygons), WGS84 degrees with x=lon, y=lat (note
            h3.cell_to_boundary gives (lat, lng) pairs: swap them). Holes are not drawn
            (grid cells have none). The map extent is the cells' bounding box plus 2%.
        values: n numbers for ``kind="sequential"``, e.g. counts or risk. Non-negative values use
            a yellow-orange-red ramp from 0 with 0 cells drawn light grey; if any value is
            negative (a change map) a blue-red ramp symmetric around 0 is used instead. NaN cells
            are drawn white as "no data". ``scale="log"`` uses a log ramp for skewed counts.
        classes: n class keys for ``kind`` "gi" (ints -3..3), "lisa" ("HH", "HL", "LH", "LL",
            "" or None) or "emerging" ("new_hot", ..., "no_pattern"); see :data:`GI_CLASSES`,
            :data:`LISA_CLASSES`, :data:`EMERGING_CLASSES`. The legend lists only the classes
            present, with cell counts.
        boundaries: shapely Polygons/MultiPolygons (or lines), WGS84, drawn as outlines on top.
        title: first line; the caller states the period and filter here.
        subtitle: smaller second line (wrapped), e.g. parameters or the data source.
        legend_title: heading of the legend / colour bar (default depends on ``kind``).
        kind: "sequential", "gi", "lisa" or "emerging".

    Raises:
        UsageError: no cells, values and classes both or neither given, lengths that do not
            match, unknown classes, non-polygon cells, or an unwritable path.

    30 000 cells render in about a second: all cells go into one PolyCollection.
    """
    return build_cell_map(
        cells=cells,
        values=values,
        classes=classes,
        boundaries=boundaries,
        title=title,
        subtitle=subtitle,
        legend_title=legend_title,
        kind=kind,
        scale=scale,
    ).save(path)


def render_hour_weekday(
    path: str | os.PathLike[str],
    *,
    matrix: Sequence[Sequence[float]] | np.ndarray,
    title: str,
    value_label: str = "incidents",
    subtitle: str = "",
    row_totals: bool = True,
) -> Path:
    """Write a 7 x 24 heatmap (rows Monday..Sunday, columns hours 00..23) as PNG; return path.

    ``matrix`` has shape (7, 24), Monday first, hours of local wall-clock time. NaN cells are left
    blank; negative values (e.g. a difference between periods) switch to a blue-red ramp centred
    on 0. ``row_totals`` prints each weekday's total at the right end of its row.
    Raises UsageError on a wrong shape or an unwritable path.
    """
    m = _as_float_array(matrix, "matrix")
    if m.shape != (7, 24):
        raise UsageError(f"the hour x weekday matrix must have shape (7, 24), Monday first; "
                         f"got {m.shape}")
    fig_w, heat_h = 11.0, 3.6
    header_lines, header_in = _header_layout(title, subtitle, fig_w)
    bottom_in = 0.55
    fig_h = header_in + heat_h + bottom_in
    fig = Figure(figsize=(fig_w, fig_h), dpi=_DPI, facecolor="white")
    FigureCanvasAgg(fig)
    _draw_header(fig, header_lines, 0.7 / fig_w)

    left_in, right_in = 0.7, 2.0
    ax = fig.add_axes((left_in / fig_w, bottom_in / fig_h,
                       (fig_w - left_in - right_in) / fig_w, heat_h / fig_h))
    cmap, norm = _value_ramp(m, "linear")
    masked = np.ma.masked_invalid(m)
    ax.pcolormesh(np.arange(25), np.arange(8), masked, cmap=cmap, norm=norm,
                  edgecolors="white", linewidth=0.6)
    ax.set_xlim(0, 24)
    ax.set_ylim(7, 0)  # Monday on top, as in a calendar
    ax.set_xticks(np.arange(24) + 0.5, [f"{h:02d}" for h in range(24)], fontsize=8)
    ax.set_yticks(np.arange(7) + 0.5, _WEEKDAYS, fontsize=9)
    ax.tick_params(length=0)
    ax.set_xlabel("Hour of day (local time)", fontsize=9, color=_TEXT_GREY)
    for spine in ax.spines.values():
        spine.set_visible(False)

    if row_totals:
        totals = np.nansum(m, axis=1)
        ax.text(1.01, 1.02, "Total", transform=ax.transAxes, fontsize=8.5, fontweight="bold",
                ha="left", va="bottom", color=_TEXT_GREY)
        for row, total in enumerate(totals):
            # x in axes fraction, y in data rows: the label stays beside its row.
            ax.text(1.01, row + 0.5, _fmt(total), transform=ax.get_yaxis_transform(),
                    fontsize=8.5, ha="left", va="center")

    cax = fig.add_axes(((fig_w - right_in + 0.85) / fig_w, bottom_in / fig_h,
                        0.18 / fig_w, heat_h / fig_h))
    _colour_bar(fig, cax, cmap, norm, value_label)
    return _save(fig, path)


def render_bar_series(
    path: str | os.PathLike[str],
    *,
    labels: Sequence[str],
    values: Sequence[float] | np.ndarray,
    title: str,
    ylabel: str,
    subtitle: str = "",
) -> Path:
    """Write a bar chart of a labelled series (monthly counts, changes per area) as PNG.

    One bar per label, in the given order. All-non-negative series are drawn in one colour;
    a series with negative values (a change summary) draws increases red and decreases blue
    around a zero line. Bars are annotated with their value when there are at most 40; labels
    are slanted when long or many and thinned beyond 60 bars. NaN values leave a gap.
    Raises UsageError on an empty series, mismatched lengths or an unwritable path.
    """
    v = _as_float_array(values, "values").ravel()
    labels = [str(label) for label in labels]
    if len(labels) != len(v):
        raise UsageError(f"got {len(labels)} labels for {len(v)} values; give one per bar")
    if len(v) == 0:
        raise UsageError("the series is empty: nothing to chart (widen the period or filter)")
    n = len(v)
    fig_w = float(np.clip(2.0 + 0.38 * n, 6.5, 14.0))
    header_lines, header_in = _header_layout(title, subtitle, fig_w)
    longest = max(len(label) for label in labels)
    slanted = n > 12 or longest * n > 70
    bottom_in = 0.5 + (min(longest, 24) * 0.055 if slanted else 0.1)
    plot_h = 3.8
    fig_h = header_in + plot_h + bottom_in
    fig = Figure(figsize=(fig_w, fig_h), dpi=_DPI, facecolor="white")
    FigureCanvasAgg(fig)
    left_in = 0.95
    _draw_header(fig, header_lines, left_in / fig_w)
    ax = fig.add_axes((left_in / fig_w, bottom_in / fig_h,
                       (fig_w - left_in - 0.3) / fig_w, plot_h / fig_h))

    finite = np.isfinite(v)
    diverging = bool(finite.any() and np.nanmin(v) < 0)
    if diverging:
        colours = np.where(v >= 0, "#d6604d", "#4393c3")
        ax.axhline(0, color="#333333", linewidth=0.8)
    else:
        colours = np.full(n, "#4c72b0")
    x = np.arange(n)
    ax.bar(x[finite], v[finite], color=colours[finite], width=0.75, zorder=2)
    ax.set_xlim(-0.6, n - 0.4)
    if not finite.any():
        ax.set_ylim(0, 1)
    step = max(1, math.ceil(n / 60))
    ax.set_xticks(x[::step], labels[::step], fontsize=8.5,
                  rotation=45 if slanted else 0, ha="right" if slanted else "center",
                  rotation_mode="anchor")
    ax.set_ylabel(ylabel, fontsize=9.5)
    ax.yaxis.set_major_locator(MaxNLocator(nbins=6))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _pos: _fmt(value)))
    ax.tick_params(labelsize=8.5)
    ax.grid(axis="y", color="#e6e6e6", linewidth=0.8, zorder=0)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if n <= 40 and finite.any():
        span = float(np.nanmax(np.abs(v))) or 1.0
        ax.margins(y=0.12)
        for xi, vi in zip(x[finite], v[finite], strict=True):
            offset = 0.015 * span * (1 if vi >= 0 else -1)
            ax.text(xi, vi + offset, _fmt(vi), ha="center",
                    va="bottom" if vi >= 0 else "top", fontsize=7.5, color=_TEXT_GREY)
    return _save(fig, path)


def render_curves(
    path: str | os.PathLike[str],
    *,
    x: Sequence[float] | np.ndarray,
    series: dict[str, Sequence[float] | np.ndarray],
    title: str,
    xlabel: str,
    ylabel: str,
    subtitle: str = "",
    diagonal: bool = False,
    percent: bool = True,
) -> Path:
    """Write line curves sharing one x axis (e.g. hit rate against area flagged per model).

    ``diagonal`` draws the y = x line of a forecast no better than chance; ``percent`` labels
    both axes as percentages of shares in [0, 1]. Raises UsageError on empty or mismatched
    input.
    """
    xs = _as_float_array(x, "x").ravel()
    if xs.size == 0 or not series:
        raise UsageError("no curves to draw")
    fig_w, plot_h = 7.5, 4.6
    header_lines, header_in = _header_layout(title, subtitle, fig_w)
    fig_h = header_in + plot_h + 0.7
    fig = Figure(figsize=(fig_w, fig_h), dpi=_DPI, facecolor="white")
    FigureCanvasAgg(fig)
    left_in = 0.95
    _draw_header(fig, header_lines, left_in / fig_w)
    ax = fig.add_axes((left_in / fig_w, 0.6 / fig_h, (fig_w - left_in - 0.3) / fig_w,
                       plot_h / fig_h))
    for name, values in series.items():
        ys = _as_float_array(values, f"series {name!r}").ravel()
        if ys.size != xs.size:
            raise UsageError(f"series {name!r} has {ys.size} values for {xs.size} x values")
        ax.plot(xs, ys, linewidth=1.8, label=str(name), zorder=3)
    if diagonal:
        ax.plot([0, 1], [0, 1], linestyle="--", color="#999999", linewidth=1, label="chance")
    if percent:
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{100 * v:g}%"))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{100 * v:g}%"))
    ax.set_xlabel(xlabel, fontsize=9.5)
    ax.set_ylabel(ylabel, fontsize=9.5)
    ax.tick_params(labelsize=8.5)
    ax.grid(color="#e6e6e6", linewidth=0.8, zorder=0)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.legend(fontsize=8.5, frameon=False, loc="lower right")
    return _save(fig, path)


# --------------------------------------------------------------------------------------------
# helpers


def _palette(kind: str) -> dict[Any, tuple[str, str]]:
    try:
        return _PALETTES[kind]
    except KeyError:
        raise UsageError(f"unknown class kind {kind!r}; use one of "
                         f"{', '.join(_PALETTES)}") from None


def _class_keys(kind: str, classes: Iterable[Any]) -> list[Any]:
    """Normalise class values to palette keys (ints for gi, str for lisa/emerging)."""
    palette = _palette(kind)
    raw = list(np.asarray(classes, dtype=object).ravel()) if isinstance(
        classes, np.ndarray) else list(classes)
    keys: list[Any] = []
    for value in raw:
        key: Any
        if kind == "gi":
            try:
                as_float = float(value)
            except (TypeError, ValueError):
                as_float = math.nan
            key = int(as_float) if as_float.is_integer() else value
        elif kind == "lisa" and value is None:
            key = ""
        else:
            key = value if isinstance(value, str) else str(value)
        if key not in palette:
            allowed = ", ".join(repr(k) for k in palette)
            raise UsageError(f"unknown {kind} class {value!r}; expected one of {allowed}")
        keys.append(key)
    return keys


def _as_geometry_array(geoms: Iterable[Any], what: str) -> np.ndarray:
    if isinstance(geoms, shapely.Geometry):
        raise UsageError(f"{what} must be a sequence of geometries, not one geometry")
    items = list(geoms)
    arr = np.empty(len(items), dtype=object)
    arr[:] = items
    if len(arr) and not shapely.is_geometry(arr).all():
        bad = int(np.flatnonzero(~shapely.is_geometry(arr))[0])
        raise UsageError(f"{what}[{bad}] is not a shapely geometry "
                         f"(got {type(items[bad]).__name__})")
    return arr


def _type_name(geom: Any) -> str:
    return geom.geom_type if isinstance(geom, shapely.Geometry) else type(geom).__name__


def _polygon_vertices(geoms: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Exterior rings as (k, 2) vertex arrays, and the index of the cell owning each ring."""
    parts, owner = shapely.get_parts(geoms, return_index=True)
    keep = ~shapely.is_empty(parts)
    parts, owner = parts[keep], owner[keep]
    rings = shapely.get_exterior_ring(parts)
    coords, ring_idx = shapely.get_coordinates(rings, return_index=True)
    counts = np.bincount(ring_idx, minlength=len(rings))
    # One vectorised split instead of a Python loop over rings keeps 30k cells fast.
    verts = np.split(coords, np.cumsum(counts)[:-1])
    return verts, owner


def _extent(geoms: np.ndarray) -> tuple[float, float, float, float]:
    bounds = shapely.bounds(geoms)
    x0, y0 = np.nanmin(bounds[:, 0]), np.nanmin(bounds[:, 1])
    x1, y1 = np.nanmax(bounds[:, 2]), np.nanmax(bounds[:, 3])
    # Degenerate (zero-width) extents still need a drawable box.
    dx = max(x1 - x0, 1e-4)
    dy = max(y1 - y0, 1e-4)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    dx, dy = dx * 1.04, dy * 1.04
    return float(cx - dx / 2), float(cy - dy / 2), float(cx + dx / 2), float(cy + dy / 2)


def _as_float_array(values: Any, what: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise UsageError(f"{what} must be numbers") from None
    return arr


def _value_ramp(values: np.ndarray, scale: str) -> tuple[str, Normalize]:
    """Colour map name and normalisation for numeric values (NaN ignored)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return "YlOrRd", Normalize(0.0, 1.0)
    lo, hi = float(finite.min()), float(finite.max())
    if lo < 0:
        # Changes: symmetric around 0 so equal rises and falls look equally strong.
        m = max(abs(lo), abs(hi))
        return "RdBu_r", Normalize(-m, m)
    if scale == "log":
        positive = finite[finite > 0]
        if positive.size == 0:
            return "YlOrRd", Normalize(0.0, 1.0)
        plo, phi = float(positive.min()), float(positive.max())
        return "YlOrRd", LogNorm(plo, phi if phi > plo else plo * 10)
    return "YlOrRd", Normalize(0.0, hi if hi > 0 else 1.0)


def _sequential_colours(values: Any, n: int, scale: str) -> tuple[np.ndarray, dict[str, Any]]:
    if scale not in ("linear", "log"):
        raise UsageError(f"unknown scale {scale!r}; use 'linear' or 'log'")
    v = _as_float_array(values, "values").ravel()
    if len(v) != n:
        raise UsageError(f"got {len(v)} values for {n} cells; give one value per cell")
    cmap_name, norm = _value_ramp(v, scale)
    cmap = colormaps[cmap_name]
    nan = ~np.isfinite(v)
    diverging = cmap_name == "RdBu_r"
    # Zero cells stand apart only on a 0-based ramp; on a change ramp 0 is the neutral centre.
    zero = (v == 0) if not diverging else np.zeros(n, dtype=bool)
    faces = np.empty((n, 4))
    ok = ~nan & ~zero
    if ok.any():
        faces[ok] = cmap(norm(v[ok]))
    faces[zero] = to_rgba(_ZERO_COLOUR)
    faces[nan] = to_rgba(_NODATA_COLOUR)
    panel = {"cmap": cmap_name, "norm": norm, "zero": int(zero.sum()), "nan": int(nan.sum())}
    return faces, panel


def _header_layout(title: str, subtitle: str, fig_w: float) -> tuple[list[tuple[str, float,
                                                                                 str]], float]:
    """Wrapped title/subtitle lines (text, font size, weight) and the header height, inches."""
    if not isinstance(title, str) or not title.strip():
        raise UsageError("a title is required: name the period and filter shown")
    usable = max(fig_w - 0.6, 2.0)
    lines: list[tuple[str, float, str]] = []
    # ~0.55 em average glyph width for DejaVu Sans.
    for text, size, weight in ((title, 13.0, "bold"), (subtitle, 9.5, "normal")):
        if not text:
            continue
        width_chars = max(20, int(usable * 72 / (size * 0.6)))
        for line in textwrap.wrap(text, width_chars) or [""]:
            lines.append((line, size, weight))
    height = 0.25 + sum(size * 1.35 / 72 for _, size, _ in lines) + 0.15
    return lines, height


def _draw_header(fig: Figure, lines: list[tuple[str, float, str]], left: float) -> None:
    fig_h = fig.get_size_inches()[1]
    y_in = fig_h - 0.2
    for text, size, weight in lines:
        y_in -= size * 1.35 / 72
        fig.text(left, y_in / fig_h, text, fontsize=size, fontweight=weight,
                 color="black" if weight == "bold" else _TEXT_GREY, ha="left", va="baseline")


def _draw_boundaries(ax: Axes, boundaries: Iterable[Any]) -> None:
    geoms = _as_geometry_array(boundaries, "boundaries")
    if len(geoms) == 0:
        return
    types = shapely.get_type_id(geoms)
    polygonal = np.isin(types, (shapely.GeometryType.POLYGON, shapely.GeometryType.MULTIPOLYGON))
    linear = np.isin(types, (shapely.GeometryType.LINESTRING, shapely.GeometryType.LINEARRING,
                             shapely.GeometryType.MULTILINESTRING))
    if not (polygonal | linear).all():
        bad = int(np.flatnonzero(~(polygonal | linear))[0])
        raise UsageError(f"boundary {bad} is not a polygon or line "
                         f"(got {_type_name(geoms[bad])})")
    lines = geoms.copy()
    # Outlines of polygons include their holes: boundary() returns every ring.
    lines[polygonal] = shapely.boundary(geoms[polygonal])
    parts = shapely.get_parts(lines)
    parts = parts[~shapely.is_empty(parts)]
    if len(parts) == 0:
        return
    coords, idx = shapely.get_coordinates(parts, return_index=True)
    segments = np.split(coords, np.cumsum(np.bincount(idx, minlength=len(parts)))[:-1])
    ax.add_collection(LineCollection(segments, colors=_BOUNDARY_COLOUR, linewidths=0.9,
                                     zorder=3), autolim=False)


def _draw_scale_bar(ax: Axes, x0: float, x1: float, y0: float, y1: float, lat0: float) -> None:
    km_per_deg_lon = _KM_PER_DEG_LAT * math.cos(math.radians(lat0))
    width_km = (x1 - x0) * km_per_deg_lon
    target = width_km / 5
    nice = [10 ** e * m for e in range(-2, 5) for m in (1, 2, 5)]
    length_km = max([c for c in nice if c <= target], default=nice[0])
    bx = x0 + 0.04 * (x1 - x0)
    by = y0 + 0.04 * (y1 - y0)
    length_deg = length_km / km_per_deg_lon
    ax.plot([bx, bx + length_deg], [by, by], color="black", linewidth=2.2,
            solid_capstyle="butt", zorder=4)
    label = f"{length_km:g} km" if length_km >= 1 else f"{length_km * 1000:g} m"
    ax.text(bx + length_deg / 2, by + 0.012 * (y1 - y0), label, ha="center", va="bottom",
            fontsize=8, zorder=4,
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.7, "pad": 1})


def _colour_bar(fig: Figure, cax: Axes, cmap: str, norm: Normalize, label: str) -> None:
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), cax=cax)
    bar.outline.set_linewidth(0.5)
    cax.tick_params(labelsize=8)
    if label:
        bar.set_label(label, fontsize=9)


def _draw_colour_panel(fig: Figure, panel: dict[str, Any], legend_title: str, left: float,
                       fig_w: float, fig_h: float, map_h: float) -> None:
    top_in = _BOTTOM_IN + map_h
    title_lines = textwrap.wrap(legend_title, 32) if legend_title else []
    for i, line in enumerate(title_lines):
        fig.text(left, (top_in - 0.05 - 0.18 * i) / fig_h, line, fontsize=9.5,
                 fontweight="bold", va="top")
    bar_top = top_in - 0.15 - 0.18 * len(title_lines)
    bar_h = min(map_h * 0.55, 3.2)
    cax = fig.add_axes((left, (bar_top - bar_h) / fig_h, 0.22 / fig_w, bar_h / fig_h))
    _colour_bar(fig, cax, panel["cmap"], panel["norm"], "")
    handles = []
    if panel["zero"]:
        handles.append(Patch(facecolor=_ZERO_COLOUR, edgecolor="#999999",
                             label=f"0 ({panel['zero']:,} cells)"))
    if panel["nan"]:
        handles.append(Patch(facecolor=_NODATA_COLOUR, edgecolor="#999999",
                             label=f"no data ({panel['nan']:,} cells)"))
    if handles:
        lax = fig.add_axes((left, _BOTTOM_IN / fig_h, (_PANEL_IN - 0.4) / fig_w,
                            (bar_top - bar_h - 0.25 - _BOTTOM_IN) / fig_h))
        lax.set_axis_off()
        lax.legend(handles=handles, loc="upper left", frameon=False, fontsize=8.5,
                   borderaxespad=0, handlelength=1.4)


def _draw_class_legend(fig: Figure, entries: list[LegendEntry], legend_title: str, left: float,
                       fig_w: float, fig_h: float, map_h: float) -> None:
    lax = fig.add_axes((left, _BOTTOM_IN / fig_h, (_PANEL_IN - 0.4) / fig_w, map_h / fig_h))
    lax.set_axis_off()
    handles = [Patch(facecolor=e.colour, edgecolor="#999999", linewidth=0.5, label=e.text)
               for e in entries]
    legend = lax.legend(handles=handles, loc="upper left", frameon=False, fontsize=8.5,
                        title="\n".join(textwrap.wrap(legend_title, 32)) or None,
                        title_fontsize=9.5, borderaxespad=0, handlelength=1.4,
                        alignment="left")
    legend.get_title().set_fontweight("bold")


def _fmt(value: float) -> str:
    if not math.isfinite(value):
        return "–"
    if float(value).is_integer():
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    target = Path(path)
    if target.suffix.lower() != ".png":
        raise UsageError(f"{target}: the output file must end in .png")
    if target.is_dir():
        raise UsageError(f"{target} is a directory; give a file name ending in .png")
    if not target.parent.is_dir():
        raise UsageError(f"{target.parent} does not exist; create the directory first")
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    try:
        # print_png (not savefig) so the user's savefig.* rc settings cannot change the image.
        canvas.print_png(str(target), metadata={"Software": "urbansec"})
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc.strerror or exc}") from None
    return target
