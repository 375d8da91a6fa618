"""When a campaign fires: the firing keys of one-off and cron campaigns, pure of I/O.

A firing's key (`campaign_run.scheduled_for`) is the instant it is for. A cron
expression is read on the campaign's wall clock: each wall-clock time it names fires once
(a time skipped by a spring-forward change fires when the clocks change, a repeated
autumn time fires at its first occurrence).

With recipient local time the key is the campaign's wall-clock time read as UTC. Its
moments run from `key - 14 h` (the earliest zone, UTC+14) to `key + 12 h` (the latest,
UTC-12); planning starts at the earliest moment, or when the campaign was created if that
is later, so a local-time firing due within 14 hours of its creation still fires.

A firing is never for a moment before its campaign's origin (created, or activated):
a key must be after the origin, or for local time its latest moment must be.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from apscheduler.triggers.cron import CronTrigger

from campaigns.store.models import Campaign
from scheduler.sendtime import (
    EARLIEST_OFFSET,
    LATEST_OFFSET,
    local_clock_of,
    wall_clock_in,
    zone,
)

# How far ahead a cron expression is searched before it is called exhausted (e.g. "0 0 30 2 *").
CRON_SEARCH_YEARS = 30


def origin(c: Campaign) -> datetime:
    """When the campaign's schedule starts counting: created, or activated when that is later."""
    return max(c.created_at, c.activated_at) if c.activated_at is not None else c.created_at


def first_moment(c: Campaign, key: datetime) -> datetime:
    """The earliest instant any recipient is due for firing `key`."""
    return key - EARLIEST_OFFSET if c.local_time else key


def last_moment(c: Campaign, key: datetime) -> datetime:
    """The latest instant any recipient is due for firing `key`."""
    return key + LATEST_OFFSET if c.local_time else key


def fire_at(c: Campaign, key: datetime) -> datetime:
    """The instant planning for firing `key` should start (never before the origin)."""
    return max(first_moment(c, key), origin(c)) if c.local_time else key


def local_clock_for(c: Campaign, key: datetime) -> datetime | None:
    """The naive wall-clock send time each recipient gets, for local-time campaigns."""
    return key.replace(tzinfo=None) if c.local_time else None


def local_key(c: Campaign) -> datetime:
    """The key of a one-off local-time campaign: its wall-clock time read as UTC."""
    assert c.send_at is not None
    return local_clock_of(c.send_at, c.timezone).replace(tzinfo=UTC)


def _wall_clock_trigger(c: Campaign) -> CronTrigger:
    # The expression is matched on a naive wall clock (read as UTC, which has no DST); each
    # match is then placed in the campaign's zone, so no wall-clock time fires twice.
    return CronTrigger.from_crontab(c.cron or "", timezone=UTC)


def _cron_keys(c: Campaign, after: datetime) -> Iterator[datetime]:
    trigger = _wall_clock_trigger(c)
    tz = zone(c.timezone, "UTC")
    if c.local_time:
        cursor = after.replace(microsecond=0) + timedelta(seconds=1)
    else:  # the wall clock a few hours back: a DST change may map a later wall time to `after`
        cursor = (after.astimezone(tz).replace(tzinfo=UTC, microsecond=0) - timedelta(hours=3))
    stop = after + timedelta(days=366 * CRON_SEARCH_YEARS)
    prev: datetime | None = None
    last: datetime | None = None
    while True:
        wall = trigger.get_next_fire_time(prev, cursor)
        if wall is None or wall > stop:
            return
        key = wall if c.local_time else wall_clock_in(wall.replace(tzinfo=None), tz)
        if key > after and key != last:  # keys never go backwards; a skipped time may meet the next
            yield key
            last = key
        prev, cursor = wall, wall + timedelta(seconds=1)


def iter_keys(c: Campaign, after: datetime | None = None) -> Iterator[datetime]:
    """Every firing key after `after` (default: from the origin on), oldest first, never before the origin."""
    floor = origin(c) - (LATEST_OFFSET if c.local_time else timedelta(0))  # keys must be after it
    after = max(after, floor) if after is not None else floor
    if c.schedule_kind == "once" and c.send_at is not None:
        key = local_key(c) if c.local_time else c.send_at
        if key > after:
            yield key
        return
    if c.schedule_kind == "cron" and c.cron:
        yield from _cron_keys(c, after)


def keys_between(c: Campaign, start: datetime, end: datetime, limit: int = 1000) -> list[datetime]:
    """Firing keys whose planning time falls in (start, end], oldest first."""
    # Planning time rises with the key, so the search can start at the first key that may qualify.
    after = None if origin(c) > start else start + (EARLIEST_OFFSET if c.local_time else timedelta(0))
    out: list[datetime] = []
    for key in iter_keys(c, after - timedelta(microseconds=1) if after is not None else None):
        at = fire_at(c, key)
        if at > end or len(out) >= limit:
            break
        if at > start:
            out.append(key)
    return out


def next_key(c: Campaign, after: datetime) -> datetime | None:
    """The first firing key planned after `after`, however far ahead, or None."""
    found = keys_between(c, after, datetime.max.replace(tzinfo=UTC) - timedelta(days=1), limit=1)
    return found[0] if found else None
