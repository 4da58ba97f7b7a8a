"""The main job on the bundled real sample: import it, summarise it, write a hotspot-ready file,
and make the demo accounts that sign in to the dashboard.

It proves the chain from a real police export to an analyst's first questions (what, where,
how well located) in one command; ``urbansec demo`` then serves the dashboard over the result.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import asdict, dataclass
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from urbansec.errors import ConflictError, NotFoundError
from urbansec.services import identity
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


@dataclass(frozen=True)
class DemoAccount:
    email: str
    name: str
    role: str
    # published on purpose: these accounts exist only in a demo database on 127.0.0.1
    password: str


#: the organisation of the demo accounts (``identity.create_organisation`` arguments)
DEMO_ORGANISATION = {"key": "demo-city", "name": "Demo city", "kind": "city"}
#: the demo logins printed by ``make demo``; the browser tests sign in with the same
DEMO_ACCOUNTS = (
    DemoAccount("analyst@demo.urbansec.invalid", "Demo analyst", "analyst", "demo-analyst-2017"),
    DemoAccount("admin@demo.urbansec.invalid", "Demo admin", "admin", "demo-admin-2017"),
    DemoAccount("partner@demo.urbansec.invalid", "Demo partner", "partner", "demo-partner-2017"),
)


def ensure_demo_accounts(engine: Engine) -> dict[str, Any]:
    """The demo organisation and its three users, created when missing (idempotent).

    An account that already exists is left as it is (its password too, should someone have
    changed it). Returns the organisation and, per account, its login and whether it was new.
    """
    try:
        organisation = identity.organisation_by_key(engine, DEMO_ORGANISATION["key"])
    except NotFoundError:
        # ConflictError: created meanwhile by a concurrent run; use that one
        with suppress(ConflictError):
            identity.create_organisation(engine, **DEMO_ORGANISATION)
        organisation = identity.organisation_by_key(engine, DEMO_ORGANISATION["key"])
    existing = {user["email"] for user in identity.list_users(engine)}
    accounts = []
    for account in DEMO_ACCOUNTS:
        created = False
        if account.email not in existing:
            try:
                identity.create_user(engine, organisation["id"], account.email, account.name,
                                     account.password, account.role)
                created = True
            except ConflictError:
                pass  # created meanwhile by a concurrent run
        accounts.append({**asdict(account), "created": created})
    return {"organisation": {"id": organisation["id"], "key": organisation["key"],
                             "name": organisation["name"]},
            "accounts": accounts}


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
        "demo_accounts": ensure_demo_accounts(engine),
    }
