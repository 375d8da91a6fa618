"""Firings from the campaign table: catch-up, grace, missed runs, drips, completion.

`tick_campaign` is idempotent: it plans the firings that are due and not yet recorded
(each firing is a unique `campaign_run` row). When several firings came due while the
daemon was away, only the latest one inside the grace window runs ("caught up"); the
earlier ones are recorded `missed` with the reason. A firing is never for a moment before
the campaign was created (see scheduler/firings.py). `settle` moves a campaign's status as
soon as its work is done: a one-off "completed", a manual campaign "sent".
APScheduler only decides *when* to call these; the database decides *what* is done.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from campaigns import request_campaigns
from campaigns.audience import consent_requests
from campaigns.campaign_defs import grace_for
from campaigns.config import Settings
from campaigns.context import App
from campaigns.store.models import Campaign, CampaignRun, Delivery
from campaigns.timespec import format_duration, utcnow
from campaigns.vocab import CampaignStatus, DeliveryState, RunStatus
from scheduler.firings import fire_at, iter_keys, keys_between, next_key
from scheduler.journeys import advance
from scheduler.outbox import first_line
from scheduler.planner import plan_firing
from scheduler.triggers import plan_triggered

log = logging.getLogger("campaigns.scheduler")
# WAITING: held back for an A/B winner; the campaign is not done until the rest is sent
PENDING = (DeliveryState.QUEUED, DeliveryState.RETRY_WAIT, DeliveryState.CLAIMED, DeliveryState.SENDING, DeliveryState.WAITING)
# A firing planned later than this after its time was caught up after downtime.
CATCH_UP_AFTER = timedelta(minutes=1)
# At most this many overdue firings are recorded one by one per tick (a minute cron after a week away).
MAX_RECORDED = 1000
# A double opt-in request campaign looks back at most this far for its latest due firing.
REQUEST_LOOKBACK = timedelta(days=1)
PLANNING_FAILED = "planning failed"


@dataclass
class TickReport:
    """What one tick did."""

    planned: list[tuple[str, datetime, dict[str, Any]]] = field(default_factory=list)
    missed: list[tuple[str, datetime]] = field(default_factory=list)
    completed: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    decided: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (campaign, A/B winner decision)


def last_scheduled_key(session: Session, c: Campaign) -> datetime | None:
    """The newest firing of the schedule recorded (planned or missed); extra runs (`send --now`) do not count."""
    q = select(CampaignRun.scheduled_for, CampaignRun.counts).where(CampaignRun.campaign_id == c.id) \
        .order_by(CampaignRun.scheduled_for.desc())
    for key, counts in session.execute(q):
        if not (counts or {}).get("extra"):
            return key
    return None


def _span(delta: timedelta) -> str:
    """'2d 3h', '45m', '30s': how late, for people."""
    seconds = int(delta.total_seconds())
    parts = [(seconds // 86400, "d"), (seconds % 86400 // 3600, "h"), (seconds % 3600 // 60, "m")]
    text = " ".join(f"{n}{u}" for n, u in parts if n)
    return text or f"{seconds}s"


def _missed(session: Session, c: Campaign, key: datetime, now: datetime, reason: str, report: TickReport) -> None:
    late = now - fire_at(c, key)
    session.add(CampaignRun(campaign_id=c.id, scheduled_for=key, status=RunStatus.MISSED, started_at=now, finished_at=now,
                            counts={"missed_by_seconds": int(late.total_seconds()), "reason": reason}))
    session.flush()
    report.missed.append((c.name, key))
    log.warning("campaign %s: firing %s missed: %s", c.name, key.isoformat(), reason)


def _overdue(session: Session, c: Campaign, now: datetime) -> list[datetime]:
    """Keys due at `now` and not yet recorded, oldest first (the newest MAX_RECORDED of them)."""
    due: deque[datetime] = deque(maxlen=MAX_RECORDED)
    for key in iter_keys(c, last_scheduled_key(session, c)):
        if fire_at(c, key) > now:
            break
        due.append(key)
    return list(due)


def tick_campaign(session: Session, settings: Settings, c: Campaign, now: datetime, report: TickReport) -> None:
    """Bring one campaign up to date at `now`."""
    if c.status != CampaignStatus.SCHEDULED:
        return
    if c.status_reason and c.status_reason.startswith(PLANNING_FAILED):
        c.status_reason = None  # this attempt is the retry; a new failure writes it again
    if c.schedule_kind == "drip":
        result = plan_triggered(session, settings, c, now)
        if c.journey:  # a branching journey: move its contacts on (scheduler/journeys.py)
            moved = advance(session, settings, c, now)
            if moved:
                log.info("campaign %s: journey moves %s", c.name, moved)
        if result.created:
            report.planned.append((c.name, now, result.counts))
        return
    if consent_requests.is_request_campaign(c):
        _tick_requests(session, settings, c, now, report)
        return
    grace = grace_for(settings, c)
    due = _overdue(session, c, now)
    for key in due:
        late = now - fire_at(c, key)
        if late > grace:
            _missed(session, c, key, now, f"{_span(late)} late, beyond the {format_duration(grace)} grace window", report)
        elif key != due[-1]:
            _missed(session, c, key, now, f"superseded by the later firing {due[-1].isoformat()}: after downtime only "
                                          "the latest missed firing runs", report)
        else:
            result = plan_firing(session, settings, c, key, now)
            if result.created and late > CATCH_UP_AFTER:
                run = session.get(CampaignRun, result.run_id)
                assert run is not None
                run.counts = {**run.counts, "caught_up": True, "late_by_seconds": int(late.total_seconds())}
                result.counts = run.counts
                log.info("campaign %s: firing %s caught up, %s late", c.name, key.isoformat(), _span(late))
            if result.created:
                report.planned.append((c.name, key, result.counts))
                log.info("campaign %s: run %s for %s planned %s", c.name, result.run_id, key.isoformat(), result.counts)
    if due:
        # The schedule moved on: a newer updated_at makes the daemon schedule the next firing.
        c.updated_at = now
    report.completed.extend(settle(session, [c.id], now))


def _tick_requests(session: Session, settings: Settings, c: Campaign, now: datetime, report: TickReport) -> None:
    """A double opt-in request campaign: its firings poll for open requests, so only the latest
    due firing is planned, and it leaves a run only when it asks someone (an hour with nobody to
    ask is not 12 empty runs). A firing that asked nobody loses nothing (the next one asks any
    request opened since), so none is ever recorded as missed."""
    after = max(last_scheduled_key(session, c) or now - REQUEST_LOOKBACK, now - REQUEST_LOOKBACK)
    due = list(itertools.takewhile(lambda k: fire_at(c, k) <= now, iter_keys(c, after)))
    if not due:
        return
    c.updated_at = now  # the schedule moved on: the daemon schedules the next firing
    savepoint = session.begin_nested()
    try:
        result = plan_firing(session, settings, c, due[-1], now)
    except BaseException:
        savepoint.rollback()
        raise
    if result.created and not result.counts.get("planned"):
        savepoint.rollback()  # nobody to ask: no run
        return
    savepoint.commit()
    if result.created:
        report.planned.append((c.name, due[-1], result.counts))
        log.info("campaign %s: run %s for %s planned %s", c.name, result.run_id, due[-1].isoformat(), result.counts)


def settle(session: Session, campaign_ids: Iterable[int], now: datetime | None = None) -> list[str]:
    """Move campaigns whose work is done: one-off -> completed, manual -> sent. Returns their names.

    Done means: the schedule has no firing left and none of the campaign's outbox rows is
    still waiting or in flight (every row is final).
    """
    now = now or utcnow()
    moved: list[str] = []
    for c in session.scalars(select(Campaign).where(Campaign.id.in_(list(campaign_ids)))):
        if c.status == CampaignStatus.SCHEDULED and c.schedule_kind in ("once", "cron"):
            last = last_scheduled_key(session, c)
            if last is None or next_key(c, fire_at(c, last)) is not None:
                continue
            target = CampaignStatus.COMPLETED
        elif c.status == CampaignStatus.DRAFT and c.schedule_kind == "manual":
            if not session.scalar(select(exists().where(CampaignRun.campaign_id == c.id))):
                continue
            target = CampaignStatus.SENT
        else:
            continue
        if session.scalar(select(exists().where(Delivery.campaign_id == c.id, Delivery.state.in_(PENDING)))):
            continue
        c.status, c.updated_at = target, now
        moved.append(c.name)
        log.info("campaign %s: %s", c.name, target)
    session.flush()
    return moved


def settle_campaigns(app: App, campaign_ids: Iterable[int], now: datetime) -> list[str]:
    """`settle` in its own transaction, for the sender after a batch; a failure is logged, never raised."""
    try:
        with app.session() as session:
            return settle(session, campaign_ids, now)
    except Exception as exc:  # the messages are out and recorded; the status can move on the next tick
        log.warning("settling campaigns %s failed: %s: %s", sorted(campaign_ids), type(exc).__name__, first_line(exc))
        return []


def tick(app: App, now: datetime | None = None, campaign_ids: list[int] | None = None) -> TickReport:
    """Tick every scheduled campaign (or the given ones), each in its own transaction."""
    now = now or utcnow()
    report = TickReport()
    if campaign_ids is None:  # a whole tick: a double opt-in request waiting for its campaign gets one
        ensure_request_campaigns(app)
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
            _record_failure(app, cid, now, exc, report)
    _winners(app, now, campaign_ids, report)
    return report


def ensure_request_campaigns(app: App) -> None:
    """Create the double opt-in request campaigns that open requests need (campaigns/request_campaigns.py)."""
    try:
        with app.session() as session:
            for name in request_campaigns.ensure(session, app.settings):
                log.info("created the double opt-in request campaign %s", name)
    except Exception as exc:  # the next sync tries again; nothing else depends on it
        log.warning("double opt-in request campaigns: %s: %s", type(exc).__name__, first_line(exc))


def _winners(app: App, now: datetime, campaign_ids: list[int] | None, report: TickReport) -> None:
    """Decide the A/B winners that are due and queue the rest of their audience, each firing in its own transaction."""
    from scheduler import winner  # its statistics bring numpy: imported by a process that ticks, not by every sender
    with app.session(write=False) as session:
        due = [(c.id, r.id) for c, r in winner.undecided(session, campaign_ids) if winner.decide_at(c, r) <= now]
    for cid, run_id in due:
        try:
            with app.session() as session:
                c, run = session.get(Campaign, cid), session.get(CampaignRun, run_id)
                if c is not None and run is not None:
                    decision = winner.release(session, app.settings, c, run, now)
                    if decision is not None:
                        report.decided.append((c.name, decision))
        except Exception as exc:  # the next tick tries again; nothing was released
            _record_failure(app, cid, now, exc, report)


def _record_failure(app: App, cid: int, now: datetime, exc: Exception, report: TickReport) -> None:
    """Say why planning failed, on the campaign (show, status); the newer updated_at makes the daemon retry."""
    detail = (str(exc).splitlines() or [""])[0][:200]
    reason = f"{PLANNING_FAILED} at {now:%Y-%m-%d %H:%M:%S} UTC ({type(exc).__name__}: {detail}); retried on the next tick"
    log.error("campaign #%s: %s", cid, reason)
    try:
        with app.session() as session:
            c = session.get(Campaign, cid)
            if c is not None:
                c.status_reason, c.updated_at = reason[:500], now
                report.failed.append((c.name, reason))
    except Exception as again:  # the database itself is away: the log line is all we can leave
        log.error("campaign #%s: could not record the failure: %s", cid, type(again).__name__)


def next_fire_times(session: Session, now: datetime, horizon: timedelta | None = None) -> list[tuple[Campaign, datetime]]:
    """(campaign, next planning time) for scheduled campaigns, soonest first; no horizon unless given."""
    out = []
    for c in session.scalars(select(Campaign).where(Campaign.status == CampaignStatus.SCHEDULED)):
        if c.schedule_kind == "drip":
            out.append((c, now))
            continue
        keys = keys_between(c, now, now + horizon, limit=1) if horizon is not None else [k for k in [next_key(c, now)] if k]
        if keys:
            out.append((c, fire_at(c, keys[0])))
    return sorted(out, key=lambda pair: pair[1])
