"""Local wall-clock times of a source to UTC instants, DST included, fast enough for millions.

Police exports give local time without an offset. Across a DST change the same wall time can
happen twice (autumn) or not at all (spring). We follow Python's ``fold=0`` rule for both:
an ambiguous time is taken as the first occurrence (summer time) and a time inside the spring
gap as if the clock had not yet moved (i.e. standard time), which is what a record keeper who
missed the change would have typed. Both cases are rare and counted by callers if they wish.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from urbansec.errors import UsageError

_MINUTE = timedelta(minutes=1)


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        message = f"unknown time zone {name!r} (use an IANA name like Europe/Berlin)"
        raise UsageError(message) from exc


class LocalToUTC:
    """Converts naive local datetimes to UTC; caches the offset per local hour.

    The offset is constant within a local hour unless a transition falls inside it; that case
    (half-hour transitions) is detected and computed per minute instead of cached.
    """

    def __init__(self, tz: str) -> None:
        self.tz = zone(tz)
        self._hour_offsets: dict[tuple[int, int, int, int], timedelta | None] = {}

    def offset(self, local: datetime) -> timedelta:
        key = (local.year, local.month, local.day, local.hour)
        cached = self._hour_offsets.get(key, False)
        if cached is False:
            start = local.replace(minute=0, second=0, microsecond=0, tzinfo=self.tz)
            end = start.replace(minute=59)
            first, last = start.utcoffset(), end.utcoffset()
            cached = first if first == last else None
            self._hour_offsets[key] = cached
        if cached is None:
            found = local.replace(tzinfo=self.tz).utcoffset()
            assert found is not None
            return found
        return cached

    def to_utc(self, local: datetime) -> datetime:
        """Naive local -> naive UTC."""
        return local - self.offset(local)

    def to_utc_aware(self, local: datetime) -> datetime:
        return self.to_utc(local).replace(tzinfo=UTC)
