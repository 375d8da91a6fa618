"""`campaigns status` as data: what is scheduled next, who is running, the outbox by state,
paused campaigns and the last transport error of each live campaign."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from campaigns.campaign_defs import last_transport_error
from campaigns.store.models import Campaign, Delivery, ProcessHeartbeat
from campaigns.vocab import CampaignStatus
from scheduler.jobs import next_fire_times

ALIVE_WITHIN = timedelta(seconds=60)  # a process not seen for this long is shown as not alive


def gather(session: Session, now: datetime, upcoming_limit: int = 20) -> dict[str, list[dict[str, Any]]]:
    """Every section of `campaigns status`, as lists of rows."""
    upcoming = [{"campaign": c.name, "kind": c.schedule_kind, "next": at if c.schedule_kind != "drip" else "every minute",
                 "note": c.status_reason or ""}
                for c, at in next_fire_times(session, now)[:upcoming_limit]]
    processes = [{"name": p.name, "role": p.role, "started_at": p.started_at, "last_seen": p.last_seen,
                  "alive": now - p.last_seen < ALIVE_WITHIN} for p in session.scalars(select(ProcessHeartbeat))]
    outbox = [{"campaign": name, "state": state, "count": n} for name, state, n in session.execute(
        select(Campaign.name, Delivery.state, func.count()).join(Campaign, Campaign.id == Delivery.campaign_id)
        .group_by(Campaign.name, Delivery.state).order_by(Campaign.name, Delivery.state))]
    paused = [{"campaign": c.name, "reason": c.status_reason}
              for c in session.scalars(select(Campaign).where(Campaign.status == CampaignStatus.PAUSED))]
    errors = []
    live = (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED, CampaignStatus.PAUSED)
    for c in session.scalars(select(Campaign).where(Campaign.status.in_(live)).order_by(Campaign.name)):
        found = last_transport_error(session, c.id)
        if found:
            errors.append({"campaign": c.name, "last_error": found[0], "at": found[1]})
    return {"upcoming": upcoming, "processes": processes, "outbox": outbox, "paused": paused, "errors": errors}
