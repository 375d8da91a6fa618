"""When a campaign fires: the firing keys of one-off and cron campaigns, pure of I/O.

A firing's key (`campaign_run.scheduled_for`) is the instant it is for. With recipient
local time the key is the campaign's wall-clock time read as UTC, and planning starts 14
hours earlier (the earliest zone), so every recipient's local moment is still ahead.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from apscheduler.triggers.cron import CronTrigger

from campaigns.models import Campaign
from scheduler.sendtime import EARLIEST_OFFSET, local_clock_of, zone


def fire_at(c: Campaign, key: datetime) -> datetime:
    """The instant planning for firing `key` should start."""
    return key - EARLIEST_OFFSET if c.local_time else key


def local_clock_for(c: Campaign, key: datetime) -> datetime | None:
    """The naive wall-clock send time each recipient gets, for local-time campaigns."""
    return key.replace(tzinfo=None) if c.local_time else None


def _cron_trigger(c: Campaign) -> CronTrigger:
    # Local-time cron runs on the campaign's wall clock read as UTC (see module doc).
    tz = "UTC" if c.local_time else c.timezone
    return CronTrigger.from_crontab(c.cron or "", timezone=zone(tz, "UTC"))


def keys_between(c: Campaign, start: datetime, end: datetime, limit: int = 1000) -> list[datetime]:
    """Firing keys whose planning time falls in (start, end], oldest first."""
    if c.schedule_kind == "once" and c.send_at is not None:
        key = local_key(c) if c.local_time else c.send_at
        return [key] if start < fire_at(c, key) <= end else []
    if c.schedule_kind != "cron" or not c.cron:
        return []
    trigger = _cron_trigger(c)
    out: list[datetime] = []
    shift = EARLIEST_OFFSET if c.local_time else timedelta(0)
    prev: datetime | None = None
    cursor = start + shift
    while len(out) < limit:
        nxt = trigger.get_next_fire_time(prev, cursor)
        if nxt is None:
            break
        nxt = nxt.astimezone(UTC)
        if nxt - shift > end:
            break
        if nxt - shift > start:
            out.append(nxt)
        prev, cursor = nxt, nxt + timedelta(seconds=1)
    return out


def local_key(c: Campaign) -> datetime:
    """The key of a one-off local-time campaign: its wall-clock time read as UTC."""
    assert c.send_at is not None
    return local_clock_of(c.send_at, c.timezone).replace(tzinfo=UTC)


def next_key(c: Campaign, after: datetime) -> datetime | None:
    """The next firing key planned after `after`, or None."""
    found = keys_between(c, after, after + timedelta(days=400), limit=1)
    return found[0] if found else None
