"""Firings from the campaign table: catch-up, grace, missed runs, drips, completion.

`tick_campaign` is idempotent: it plans every firing that is due and not yet recorded
(each firing is a unique `campaign_run` row), records firings older than the grace window
as `missed`, enrols new drip members, and marks finished one-off campaigns `completed`.
APScheduler only decides *when* to call it; the database decides *what* is done.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from campaigns.campaign_defs import grace_for
from campaigns.config import Settings
from campaigns.context import App
from campaigns.models import Campaign, CampaignRun, Delivery
from campaigns.timespec import utcnow
from campaigns.vocab import CampaignStatus, DeliveryState, RunStatus
from scheduler.firings import fire_at, keys_between
from scheduler.planner import plan_drip, plan_firing

log = logging.getLogger("campaigns.scheduler")
PENDING = (DeliveryState.QUEUED, DeliveryState.RETRY_WAIT, DeliveryState.CLAIMED, DeliveryState.SENDING)


@dataclass
class TickReport:
    """What one tick did."""

    planned: list[tuple[str, datetime, dict]] = field(default_factory=list)  # type: ignore[type-arg]
    missed: list[tuple[str, datetime]] = field(default_factory=list)
    completed: list[str] = field(default_factory=list)


def tick_campaign(session: Session, settings: Settings, c: Campaign, now: datetime, report: TickReport) -> None:
    """Bring one campaign up to date at `now`."""
    if c.status != CampaignStatus.SCHEDULED:
        return
    if c.schedule_kind == "drip":
        result = plan_drip(session, settings, c, now)
        if result.created:
            report.planned.append((c.name, now, result.counts))
        return
    grace = grace_for(settings, c)
    last_key = session.scalar(select(func.max(CampaignRun.scheduled_for)).where(CampaignRun.campaign_id == c.id))
    start = fire_at(c, last_key) if last_key is not None else c.created_at - grace
    for key in keys_between(c, start, now):
        if now - fire_at(c, key) > grace:
            session.add(CampaignRun(campaign_id=c.id, scheduled_for=key, status=RunStatus.MISSED, started_at=now,
                                    finished_at=now, counts={"missed_by_seconds": int((now - fire_at(c, key)).total_seconds())}))
            session.flush()
            report.missed.append((c.name, key))
            log.warning("campaign %s: firing %s missed (older than the %s grace window)", c.name, key.isoformat(), grace)
            continue
        result = plan_firing(session, settings, c, key, now)
        if result.created:
            report.planned.append((c.name, key, result.counts))
            log.info("campaign %s: run %s for %s planned %s", c.name, result.run_id, key.isoformat(), result.counts)
    if c.schedule_kind == "once":
        has_run = session.scalar(select(exists().where(CampaignRun.campaign_id == c.id)))
        pending = session.scalar(select(exists().where(Delivery.campaign_id == c.id, Delivery.state.in_(PENDING))))
        if has_run and not pending:
            c.status, c.updated_at = CampaignStatus.COMPLETED, now
            report.completed.append(c.name)


def tick(app: App, now: datetime | None = None, campaign_ids: list[int] | None = None) -> TickReport:
    """Tick every scheduled campaign (or the given ones), each in its own transaction."""
    now = now or utcnow()
    report = TickReport()
    with app.session() as session:
        q = select(Campaign.id).where(Campaign.status == CampaignStatus.SCHEDULED)
        if campaign_ids is not None:
            q = q.where(Campaign.id.in_(campaign_ids))
        ids = list(session.scalars(q.order_by(Campaign.id)))
    for cid in ids:
        try:
            with app.session() as session:
                c = session.get(Campaign, cid)
                if c is not None:
                    tick_campaign(session, app.settings, c, now, report)
        except Exception as exc:  # one broken campaign must not stop the others
            log.error("campaign #%s: planning failed: %s: %s", cid, type(exc).__name__, exc)
    return report


def next_fire_times(session: Session, now: datetime, horizon: timedelta = timedelta(days=400)) -> list[tuple[Campaign, datetime]]:
    """(campaign, next planning time) for scheduled one-off/cron campaigns, soonest first."""
    out = []
    for c in session.scalars(select(Campaign).where(Campaign.status == CampaignStatus.SCHEDULED)):
        if c.schedule_kind == "drip":
            out.append((c, now))
            continue
        keys = keys_between(c, now, now + horizon, limit=1)
        if keys:
            out.append((c, fire_at(c, keys[0])))
    return sorted(out, key=lambda pair: pair[1])
