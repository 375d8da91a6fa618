"""An A/B test share's firing -> after `winner_after`, the rest of its audience sent the winner.

At the firing the planner (scheduler/planner.py) queues only the test share and writes the
rest as outbox rows in state `waiting` (no variant or template yet). Once the firing's
planning time plus `winner_after` has passed, a tick decides the winner
(campaigns/reports/abwinner.py) and, in the same transaction, stores the decision on the
firing and moves exactly those waiting rows to `queued` with the winner's variant and
template. From there they take the normal path: the claim re-checks consent and
suppression, hand-over checks the frequency cap and throttles, the channel asks
`still_wanted`. Due times keep the recipient's local time and leave quiet hours.

Once only: the decision is written by `UPDATE ... WHERE ab_decision IS NULL` before any
row moves, so a second decider (another tick, or a retry after a crash) finds it taken and
rolls back; a crash before the commit leaves nothing decided and nothing released. Rows
are moved, never added, so the (run, contact, step) key still allows one message each.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, exists, select, update
from sqlalchemy.orm import Session

from campaigns.config import Settings
from campaigns.reports.abwinner import arms, decide
from campaigns.store.models import Campaign, CampaignRun, Contact, Delivery
from campaigns.vocab import CampaignStatus, DeliveryState
from scheduler.planner import quiet_hours_of
from scheduler.sendtime import push_out_of_quiet, throttle, zone

log = logging.getLogger("campaigns.scheduler")
# A paused campaign decides when resumed; a cancelled one has no waiting rows left.
DECIDING = (CampaignStatus.SCHEDULED, CampaignStatus.DRAFT, CampaignStatus.SENT, CampaignStatus.COMPLETED)


def decide_at(c: Campaign, run: CampaignRun) -> datetime:
    """When a firing's winner is decided: its planning time plus the campaign's `winner_after`."""
    start = run.started_at or run.scheduled_for
    return start + timedelta(seconds=c.winner_after_seconds or 0)


def undecided(session: Session, campaign_ids: list[int] | None = None) -> list[tuple[Campaign, CampaignRun]]:
    """Firings with rows waiting for a winner not yet decided, of campaigns that may send."""
    waiting = exists().where(Delivery.run_id == CampaignRun.id, Delivery.state == DeliveryState.WAITING)
    q = (select(Campaign, CampaignRun).join(CampaignRun, CampaignRun.campaign_id == Campaign.id)
         .where(CampaignRun.ab_decision.is_(None), Campaign.status.in_(DECIDING), waiting).order_by(CampaignRun.id))
    if campaign_ids is not None:
        q = q.where(Campaign.id.in_(campaign_ids))
    return [(c, r) for c, r in session.execute(q).all()]


def release(session: Session, settings: Settings, c: Campaign, run: CampaignRun, now: datetime) -> dict[str, Any] | None:
    """Decide this firing's winner and queue the waiting rows with it; None when not due or already decided."""
    if now < decide_at(c, run) or not c.variants:
        return None
    decision = decide(c, arms(session, c, run.id, now), now)
    taken = session.execute(update(CampaignRun).where(CampaignRun.id == run.id, CampaignRun.ab_decision.is_(None))
                            .values(ab_decision=decision).execution_options(synchronize_session=False))
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        return None  # another tick decided it first
    rows = session.execute(select(Delivery.id, Delivery.due_at, Contact.timezone).join(Contact, Contact.id == Delivery.contact_id)
                           .where(Delivery.run_id == run.id, Delivery.state == DeliveryState.WAITING)
                           .order_by(Delivery.id)).all()
    quiet = quiet_hours_of(settings, c)
    # A local-time moment still ahead is kept; a moment gone is now, moved out of the recipient's quiet hours.
    dues = [max(due, push_out_of_quiet(now, zone(tz, c.timezone), quiet)) for _id, due, tz in rows]
    dues = throttle(dues, now, c.throttle_per_minute)
    if rows:
        d = Delivery.__table__
        session.connection().execute(
            update(d).where(d.c.id == bindparam("row_id"), d.c.state == DeliveryState.WAITING)
            .values(state=DeliveryState.QUEUED, variant=decision["winner"], template_name=decision["template"],
                    due_at=bindparam("due"), updated_at=now),
            [{"row_id": r[0], "due": due} for r, due in zip(rows, dues, strict=True)])
    decision["released"] = len(rows)
    run.ab_decision = decision
    counts = dict(run.counts or {})
    counts["planned"] = counts.get("planned", 0) + len(rows)
    counts["waiting_for_winner"] = 0
    run.counts = counts
    c.updated_at = now  # the daemon re-reads its campaigns
    session.flush()
    log.info("campaign %s: A/B winner %s by %s (%s); %d waiting messages queued", c.name, decision["winner"],
             decision["metric"], decision["reason"], len(rows))
    return decision
