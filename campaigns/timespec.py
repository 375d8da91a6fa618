"""Parsers for the small time notations marketers type: durations, caps, clock ranges.

Pure functions: strings in, plain values out, `InputError` on anything else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from campaigns.errors import InputError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")


def parse_duration(text: str, what: str = "duration") -> timedelta:
    """'90m', '36h', '7d', '2w' -> timedelta. Zero is allowed, negatives are not."""
    m = _DURATION.match(str(text))
    if not m:
        raise InputError(f"{what}: '{text}' is not a duration like 30m, 12h, 7d or 2w")
    return timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])


def format_duration(delta: timedelta) -> str:
    """timedelta -> the shortest exact notation ('7d', '90m')."""
    seconds = int(delta.total_seconds())
    for unit in ("w", "d", "h", "m"):
        size = _UNITS[unit]
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True)
class Cap:
    """At most `count` marketing messages per contact within `window`."""

    count: int
    window: timedelta

    def __str__(self) -> str:
        return f"{self.count}/{format_duration(self.window)}"


def parse_cap(text: str, what: str = "frequency cap") -> Cap | None:
    """'2/7d' -> Cap(2, 7 days); '' or 'none' -> None (no cap)."""
    text = str(text).strip()
    if text.lower() in ("", "none", "off"):
        return None
    m = re.match(r"^(\d+)\s*/\s*(\S+)$", text)
    if not m:
        raise InputError(f"{what}: '{text}' is not a cap like 2/7d (messages/window)")
    count = int(m.group(1))
    window = parse_duration(m.group(2), what)
    if count < 1 or window.total_seconds() <= 0:
        raise InputError(f"{what}: '{text}' needs at least 1 message over a non-zero window")
    return Cap(count, window)


@dataclass(frozen=True)
class ClockRange:
    """A daily range of wall-clock time; wraps midnight when start > end (21:00-08:00)."""

    start: time
    end: time

    def contains(self, t: time) -> bool:
        """True when wall-clock time `t` falls inside the range (end exclusive)."""
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


def parse_clock(text: str, what: str = "time") -> time:
    """'09:00' or '9:30' -> time."""
    m = re.match(r"^\s*(\d{1,2}):(\d{2})\s*$", str(text))
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise InputError(f"{what}: '{text}' is not a clock time like 09:00")
    return time(int(m.group(1)), int(m.group(2)))


def parse_clock_range(text: str, what: str = "quiet hours") -> ClockRange | None:
    """'21:00-08:00' -> ClockRange; '' or 'none' -> None."""
    text = str(text).strip()
    if text.lower() in ("", "none", "off"):
        return None
    parts = text.split("-")
    if len(parts) != 2:
        raise InputError(f"{what}: '{text}' is not a range like 21:00-08:00")
    return ClockRange(parse_clock(parts[0], what), parse_clock(parts[1], what))


def check_timezone(name: str, what: str = "timezone") -> ZoneInfo:
    """An IANA zone name -> ZoneInfo, or a clear InputError."""
    try:
        if not name or name != name.strip() or ".." in name or name.startswith("/"):
            raise ZoneInfoNotFoundError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, IsADirectoryError):
        raise InputError(f"{what}: '{name}' is not a known IANA time zone (e.g. Europe/Paris)") from None


_RELATIVE = re.compile(r"^\s*(\d+)\s*([smhdw])\s+ago\s*$")


def parse_datetime(text: str, tz: str = "UTC", what: str = "date") -> datetime:
    """ISO date/time, or '30d ago'. Naive values are read in zone `tz`; returns aware UTC."""
    raw = str(text).strip()
    rel = _RELATIVE.match(raw)
    if rel:
        return utcnow() - timedelta(seconds=int(rel.group(1)) * _UNITS[rel.group(2)])
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(
            f"{what}: '{text}' is not a date like 2026-01-31, 2026-01-31 09:00 or 30d ago"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=check_timezone(tz))
    return value.astimezone(UTC)


def utcnow() -> datetime:
    """The current time, aware, in UTC (one place, so tests can move the clock)."""
    return datetime.now(UTC)
