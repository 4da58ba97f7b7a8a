"""Renderings for the faces (CLI, reports): presentation only, no analysis, no database.

``png`` draws static PNG maps and charts with matplotlib's Agg canvas (no pyplot state).
"""

from __future__ import annotations

from urbansec.render.png import (
    EMERGING_CLASSES,
    GI_CLASSES,
    LISA_CLASSES,
    CellMap,
    LegendEntry,
    build_cell_map,
    legend_entries,
    render_bar_series,
    render_cell_map,
    render_curves,
    render_hour_weekday,
)

__all__ = [
    "EMERGING_CLASSES",
    "GI_CLASSES",
    "LISA_CLASSES",
    "CellMap",
    "LegendEntry",
    "build_cell_map",
    "legend_entries",
    "render_bar_series",
    "render_cell_map",
    "render_curves",
    "render_hour_weekday",
]
