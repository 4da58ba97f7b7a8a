"""The Auckland city-centre hourly pedestrian counts (Heart of the City Auckland, CC BY 4.0;
``../shared/data/auckland-pedestrians/``): reading them, and replaying them as a live feed.

The file's ``date`` is a **counting day that starts at 06:00**: its rows for hours 0-5 belong
to the next calendar day (the New Year's Eve peak sits at "2022-12-31, 0:00-0:59"). Each row
is placed at ``date + hour``, plus a day for hours 0-5, in Auckland wall-clock time
(Pacific/Auckland), then converted to UTC with the daylight-saving rules:

- a wall-clock hour that does not exist (the spring-forward hour) is refused;
- a wall-clock hour the file gives twice (DST changes, a garbled stretch in early January
  2025) is ambiguous: every copy is refused, with its line numbers;
- the autumn hour that exists twice in reality but once in the file is taken as its first
  occurrence (daylight time).

Empty cells are hours the counter did not report (nothing is stored); a cell that is not a
whole non-negative number is refused with its line number and counter.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from urbansec.errors import InputFormatError, UsageError

AUCKLAND = ZoneInfo("Pacific/Auckland")
DATA_DIR = Path(__file__).resolve().parents[3].parent / "shared" / "data" / \
    "auckland-pedestrians"
COUNTS_FILE = "hourly_counts.csv.gz"
LOCATIONS_FILE = "locations.csv"
DAY_STARTS_AT = 6
ATTRIBUTION = "Heart of the City Auckland pedestrian counts, CC BY 4.0"


@dataclass(frozen=True)
class CounterSite:
    name: str
    lat: float | None
    lon: float | None


@dataclass(frozen=True, slots=True)
class HourlyCount:
    counter: str
    start: datetime  # UTC
    end: datetime  # UTC, one hour later
    count: int
    line: int


@dataclass(frozen=True)
class BadRow:
    line: int
    reason: str
    raw: str


@dataclass
class AucklandCounts:
    """What :func:`read_counts` found: the counters (with locations when known), the hourly
    counts in file order, and the refused rows or cells."""

    counters: list[CounterSite]
    counts: list[HourlyCount] = field(default_factory=list)
    rejected: list[BadRow] = field(default_factory=list)
    rows_read: int = 0


def local_hour(counting_day: date, hour: int) -> datetime:
    """The naive Auckland wall-clock start of ``hour`` of a counting day."""
    start = datetime(counting_day.year, counting_day.month, counting_day.day, hour)
    return start + timedelta(days=1) if hour < DAY_STARTS_AT else start


def to_utc(local: datetime) -> datetime | None:
    """Auckland wall clock -> UTC; None when that wall-clock time does not exist."""
    aware = local.replace(tzinfo=AUCKLAND, fold=0)
    instant = aware.astimezone(UTC)
    if instant.astimezone(AUCKLAND).replace(tzinfo=None) != local:
        return None
    return instant


def _hour(text: str) -> int:
    start = text.split("-", 1)[0].strip()
    hour_text, _, minutes = start.partition(":")
    hour = int(hour_text)
    if not 0 <= hour <= 23 or minutes not in ("00", ""):
        raise ValueError(text)
    return hour


def read_locations(directory: Path = DATA_DIR) -> dict[str, tuple[float, float]]:
    path = directory / LOCATIONS_FILE
    if not path.exists():
        return {}
    with path.open(encoding="utf-8", newline="") as handle:
        found = {}
        for row in csv.DictReader(handle):
            try:
                found[row["Address"].strip()] = (float(row["Latitude"]), float(row["Longitude"]))
            except (KeyError, ValueError) as exc:
                raise InputFormatError(f"{path}: not the Auckland locations format "
                                       f"(Address, Latitude, Longitude): {exc}") from None
        return found


def _open(path: Path) -> io.TextIOBase:
    if not path.exists():
        raise UsageError(f"{path} not found (the Auckland counts live in "
                         f"../shared/data/auckland-pedestrians/; see its README)")
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return path.open(encoding="utf-8", newline="")


def read_counts(directory: Path = DATA_DIR, start: date | None = None,
                end: date | None = None) -> AucklandCounts:
    """The hourly counts whose local (calendar) day is in ``[start, end]`` (both optional)."""
    if start is not None and end is not None and end < start:
        raise UsageError("--to must not be before --from")
    locations = read_locations(directory)
    rows: list[tuple[int, datetime, list[str], str]] = []
    with _open(directory / COUNTS_FILE) as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or header[:2] != ["date", "hour"]:
            raise InputFormatError(f"{directory / COUNTS_FILE}: expected the columns date, "
                                   f"hour, year, then one per counter")
        names = [n.strip() for n in header[3:]]
        found = AucklandCounts([CounterSite(n, *locations.get(n, (None, None)))
                                for n in names])
        for line, row in enumerate(reader, start=2):
            found.rows_read += 1
            raw = ",".join(row)
            try:
                local = local_hour(date.fromisoformat(row[0]), _hour(row[1]))
            except (ValueError, IndexError):
                found.rejected.append(BadRow(line, "date or hour unreadable", raw))
                continue
            if (start is not None and local.date() < start) or \
                    (end is not None and local.date() > end):
                continue
            if len(row) != len(header):
                found.rejected.append(BadRow(line, f"{len(row)} columns, expected "
                                                   f"{len(header)}", raw))
                continue
            rows.append((line, local, row[3:], raw))
    lines_at: dict[datetime, list[int]] = defaultdict(list)
    for line, local, _, _ in rows:
        lines_at[local].append(line)
    for line, local, cells, raw in rows:
        if len(lines_at[local]) > 1:
            others = [n for n in lines_at[local] if n != line]
            found.rejected.append(BadRow(line, f"local time {local:%Y-%m-%d %H:00} is given "
                                               f"twice (also line {others[0]}): ambiguous",
                                         raw))
            continue
        utc = to_utc(local)
        if utc is None:
            found.rejected.append(BadRow(line, f"local time {local:%Y-%m-%d %H:00} does not "
                                               f"exist in Auckland (daylight-saving change)",
                                         raw))
            continue
        for name, cell in zip(names, cells, strict=True):
            cell = cell.strip()
            if not cell:
                continue
            try:
                value = float(cell)
            except ValueError:
                value = float("nan")
            if not value >= 0 or value != int(value):
                found.rejected.append(BadRow(line, f"{name}: {cell!r} is not a count", raw))
                continue
            found.counts.append(HourlyCount(name, utc, utc + timedelta(hours=1), int(value),
                                            line))
    found.rejected.sort(key=lambda r: r.line)
    return found


def load_counts(path: Path = DATA_DIR / COUNTS_FILE
                ) -> tuple[np.ndarray, list[str], np.ndarray]:
    """For the nowcast benchmark: local hourly times ``(n_hours,)`` datetime64[h] on a regular
    grid, counter names, counts ``(n_counters, n_hours)`` with NaN for missing hours (local
    times given twice dropped as ambiguous)."""
    import pandas as pd

    df = pd.read_csv(path)
    hour = df["hour"].str.split(":").str[0].astype(int)
    local = pd.to_datetime(df["date"]) + pd.to_timedelta(
        hour + np.where(hour < DAY_STARTS_AT, 24, 0), unit="h")
    names = [c for c in df.columns if c not in ("date", "hour", "year")]
    counts = df[names].set_axis(local)
    counts = counts[~counts.index.duplicated(keep=False)]
    grid = pd.date_range(local.min(), local.max(), freq="h")
    return (grid.to_numpy().astype("datetime64[h]"), names,
            counts.reindex(grid).to_numpy(float).T)


# --- replay ---------------------------------------------------------------------------------

def hours_in_order(counts: list[HourlyCount]) -> list[tuple[datetime, list[HourlyCount]]]:
    """The counts grouped by hour, oldest first."""
    by_hour: dict[datetime, list[HourlyCount]] = defaultdict(list)
    for count in counts:
        by_hour[count.start].append(count)
    return sorted(by_hour.items())


def replay(counts: list[HourlyCount], publish: Callable[[HourlyCount], None], speed: float,
           *, sleep: Callable[[float], None] | None = None,
           clock: Callable[[], float] | None = None,
           should_stop: Callable[[], bool] = lambda: False) -> Iterator[datetime]:
    """Publish each hour's counts when its time comes at ``speed`` x real time (``speed``
    0: as fast as possible), yielding each hour once published. At speed 600 an hour of
    counts goes out every 6 seconds."""
    import time

    sleep = sleep or time.sleep
    clock = clock or time.monotonic
    if speed < 0:
        raise UsageError("--speed must be positive (or 0 for as fast as possible)")
    hours = hours_in_order(counts)
    if not hours:
        return
    first, started = hours[0][0], clock()
    for hour, items in hours:
        if speed > 0:
            due = started + (hour - first).total_seconds() / speed
            wait = due - clock()
            if wait > 0:
                sleep(wait)
        if should_stop():
            return
        for item in items:
            publish(item)
        yield hour
