"""The main job on the bundled real sample: import it, summarise it, write a hotspot-ready file.

Later issues grow this into the dashboard; for now it proves the chain from a real police
export to an analyst's first questions (what, where, how well located) in one command.
"""

from __future__ import annotations

from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from urbansec.services import imports as import_service
from urbansec.services.imports import ImportProgress
from urbansec.services.incidents import (
    IncidentFilter,
    count_by_area,
    count_incidents,
    export_incidents,
)
from urbansec.store.migrate import upgrade

SAMPLE = "chicago"
SAMPLE_INCIDENTS = "crimes_2017_districts_01_18.csv.gz"


def sample_path(name: str) -> Any:
    return files("urbansec.samples").joinpath(SAMPLE, name)


def _assess(engine: Engine, everything: IncidentFilter, out_dir: Path) -> dict[str, Any]:
    """The analyst's first look: Gi* hot spots and when incidents happen, as files."""
    import numpy as np

    from urbansec.render import png
    from urbansec.services import cells
    from urbansec.services.hotspots import GridOptions, hotspots
    from urbansec.services.patterns import time_patterns

    options = GridOptions(cell=250, within="district:1,18", boundaries="beat")
    gi = hotspots(engine, everything, method="gi", options=options, permutations=999, seed=0)
    cells.write_geojson(gi, out_dir / "hotspots-gi.geojson")
    cells.write_png(gi, out_dir / "hotspots-gi.png")
    patterns = time_patterns(engine, everything)
    png.render_hour_weekday(out_dir / "hour-weekday.png",
                            matrix=np.array(patterns["hour_weekday"]["counts"]),
                            title=f"Incidents by hour and weekday ({patterns['timezone']})")
    return {
        "hotspots": {**gi.summary, "geojson": str(out_dir / "hotspots-gi.geojson"),
                     "png": str(out_dir / "hotspots-gi.png")},
        "patterns": {"night": patterns["night"], "busiest_slot": patterns["busiest_slot"],
                     "png": str(out_dir / "hour-weekday.png")},
    }


def run_demo(engine: Engine, out_dir: Path, *, progress: ImportProgress | None = None
             ) -> dict[str, Any]:
    upgrade(engine)
    with as_file(sample_path(SAMPLE_INCIDENTS)) as incidents, \
            as_file(sample_path("police-districts.kmz")) as districts, \
            as_file(sample_path("police-beats.kmz")) as beats:
        areas = [import_service.import_areas(engine, districts, "district").as_dict(),
                 import_service.import_areas(engine, beats, "beat").as_dict()]
        report = import_service.import_incidents(engine, [incidents], "chicago",
                                                 progress=progress)
    everything = IncidentFilter.parse(source="chicago-pd")
    summary = count_incidents(engine, everything)
    export = export_incidents(engine, everything, "geojson", out_dir / "incidents.geojson",
                              located_only=True)
    return {
        **_assess(engine, everything, out_dir),
        "imports": [report.as_dict(), *areas],
        "summary": summary,
        "by_district": count_by_area(engine, everything, "district", limit=5),
        "by_beat": count_by_area(engine, everything, "beat", limit=10),
        "export": export,
    }
