"""The calendar: every upcoming firing and drip step across campaigns, with its audience.

A firing not yet planned is counted as its audience would be planned now (segment,
address, consent, suppression, cap): an estimate, marked so. Rows already in the outbox
(drip steps, local-time firings spread over the day) are counted as they stand, grouped by
campaign, step and hour. Sorted by time, so a marketer sees which sends land together.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from campaigns.config import Settings
from campaigns.store.models import Campaign, Delivery
from scheduler.firings import fire_at, keys_between
from scheduler.planner import _audience, _classify

PER_CAMPAIGN = 500  # firings listed per campaign (a minute cron over 30 days would be 43,200)
WAITING = ("queued", "retry_wait")


@dataclass
class Entry:
    """One line of the calendar."""

    at: datetime
    campaign: str
    what: str
    audience: int
    source: str  # "estimate" (not planned yet) or "queued" (rows in the outbox)

    def as_dict(self) -> dict[str, object]:
        """Plain values for tables and JSON."""
        return {"at": self.at, "day": self.at.date().isoformat(), "campaign": self.campaign, "what": self.what,
                "audience": self.audience, "source": self.source}


def _audience_now(session: Session, settings: Settings, c: Campaign, now: datetime) -> int:
    # Chunk by chunk, as the planner reads it: the estimate never holds the whole audience either.
    return sum(len(_classify(session, settings, c, now, chunk)[0]) for chunk in _audience(session, settings, c, now))


def _firings(session: Session, settings: Settings, now: datetime, end: datetime) -> list[Entry]:
    out: list[Entry] = []
    campaigns = session.scalars(select(Campaign).where(Campaign.status == "scheduled",
                                                       Campaign.schedule_kind.in_(("once", "cron"))).order_by(Campaign.id))
    for c in campaigns:
        keys = keys_between(c, now, end, limit=PER_CAMPAIGN)
        if not keys:
            continue
        size = _audience_now(session, settings, c, now)
        for k in keys:
            label = f"firing, {k:%H:%M} in each recipient's zone" if c.local_time else "firing"
            out.append(Entry(fire_at(c, k), c.name, label, size, "estimate"))
    return out


def _queued(session: Session, now: datetime, end: datetime) -> list[Entry]:
    d = Delivery.__table__.c
    hour = func.strftime("%Y-%m-%d %H:00", d.due_at) if session.get_bind().dialect.name == "sqlite" \
        else func.to_char(func.date_trunc("hour", d.due_at), "YYYY-MM-DD HH24:00")
    q = (select(Campaign.name, Campaign.schedule_kind, d.step, hour.label("hour"), func.count())
         .join(Campaign, Campaign.id == d.campaign_id)
         .where(d.state.in_(WAITING), d.due_at <= end, Campaign.status.in_(("scheduled", "paused", "draft")))
         .group_by(Campaign.name, Campaign.schedule_kind, d.step, "hour"))
    out = []
    for name, kind, step, slot, n in session.execute(q):
        at = max(datetime.fromisoformat(slot).replace(tzinfo=now.tzinfo), now)
        out.append(Entry(at, name, f"drip step {step + 1}" if kind == "drip" else "planned firing", n, "queued"))
    return out


def calendar(session: Session, settings: Settings, now: datetime, days: int) -> list[Entry]:
    """Everything due from `now` for `days` days, soonest first (overdue queued rows show at `now`)."""
    end = now + timedelta(days=days)
    return sorted(_firings(session, settings, now, end) + _queued(session, now, end), key=lambda e: (e.at, e.campaign))
