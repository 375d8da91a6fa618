"""Pure send-time math: recipient local time, quiet hours, throttle spread. DST-safe.

All inputs and outputs are aware datetimes; zones are IANA names. An unknown or empty
contact zone falls back to the campaign's zone, never to the server's (invariant 5).
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from campaigns.timespec import ClockRange

# The earliest zone on Earth is UTC+14: a local-time firing starts planning then, so every
# recipient's wall-clock moment is still ahead when their row is written.
EARLIEST_OFFSET = timedelta(hours=14)
# The latest zone is UTC-12: the last recipient's wall-clock moment of a local-time firing.
LATEST_OFFSET = timedelta(hours=12)


@lru_cache(maxsize=1024)  # ZoneInfo keeps only 8 zones strongly: an audience of many zones re-read tzdata files
def zone(name: str | None, fallback: str) -> ZoneInfo:
    """The contact's zone, or the campaign's when missing or unknown."""
    for candidate in (name, fallback):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def wall_clock_in(naive_local: datetime, tz: ZoneInfo) -> datetime:
    """A naive wall-clock time in `tz` -> aware UTC.

    A time skipped by a spring-forward change (02:30 on a 02:00->03:00 night) becomes the
    instant the clocks change (03:00), as cron does; a repeated autumn time takes its first
    occurrence (fold=0). So later wall-clock times never map to earlier instants.
    """
    first = naive_local.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == naive_local:
        return first
    # In a gap: fold=1 reads it with the offset after the change, which lands before the
    # change; the change itself lies between the two readings.
    low = naive_local.replace(tzinfo=tz, fold=1).astimezone(UTC)
    high = first
    after_offset = first.astimezone(tz).utcoffset()
    while high - low > timedelta(seconds=1):
        mid = low + (high - low) / 2
        if mid.astimezone(tz).utcoffset() == after_offset:
            high = mid
        else:
            low = mid
    return high.replace(microsecond=0)


def push_out_of_quiet(due_utc: datetime, tz: ZoneInfo, quiet: ClockRange | None) -> datetime:
    """Move a due time that falls inside quiet hours (recipient-local) to when they end."""
    if quiet is None:
        return due_utc
    local = due_utc.astimezone(tz)
    if not quiet.contains(local.time()):
        return due_utc
    end_date = local.date()
    if quiet.start > quiet.end and local.time() >= quiet.start:  # wrapped range, evening part: ends tomorrow
        end_date = end_date + timedelta(days=1)
    end_local = datetime.combine(end_date, quiet.end)
    return wall_clock_in(end_local, tz)


def due_time(
    firing_utc: datetime, *, contact_tz: str | None, campaign_tz: str, local_time: bool,
    local_clock: datetime | None, quiet: ClockRange | None,
) -> datetime:
    """When one contact's message is due.

    With `local_time`, `local_clock` (the campaign's naive wall-clock send time) is applied
    in the contact's zone; otherwise the firing time itself. Quiet hours always apply in the
    contact's zone. Never earlier than the firing.
    """
    tz = zone(contact_tz, campaign_tz)
    due = firing_utc
    if local_time and local_clock is not None:
        due = max(firing_utc, wall_clock_in(local_clock, tz))
    return push_out_of_quiet(due, tz, quiet)


def throttle(due_times: list[datetime], start: datetime, per_minute: int | None) -> list[datetime]:
    """Spread messages so no more than `per_minute` fall due in any minute from `start` (order kept by due time)."""
    if not per_minute:
        return due_times
    order = sorted(range(len(due_times)), key=lambda i: due_times[i])
    out = list(due_times)
    slot_start, used = start, 0
    for i in order:
        want = max(due_times[i], slot_start)
        if want >= slot_start + timedelta(minutes=1):
            slot_start, used = want, 0
        if used >= per_minute:
            slot_start, used = slot_start + timedelta(minutes=1), 0
            want = max(want, slot_start)
        out[i] = want
        used += 1
    return out


def local_clock_of(send_at_utc: datetime, campaign_tz: str) -> datetime:
    """The campaign's naive wall-clock send time (e.g. 2026-12-01 09:00) from its UTC instant."""
    return send_at_utc.astimezone(zone(campaign_tz, "UTC")).replace(tzinfo=None)


def is_quiet(at_utc: datetime, tz: ZoneInfo, quiet: ClockRange | None) -> bool:
    """True when `at_utc` falls inside quiet hours in zone `tz`."""
    return quiet is not None and quiet.contains(at_utc.astimezone(tz).time())


__all__ = [
    "EARLIEST_OFFSET",
    "LATEST_OFFSET",
    "due_time",
    "is_quiet",
    "local_clock_of",
    "push_out_of_quiet",
    "throttle",
    "time",
    "wall_clock_in",
    "zone",
]
