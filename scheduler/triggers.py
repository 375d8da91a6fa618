"""Triggered drips: what happened since the last look -> enrolments -> the steps' outbox rows.

A drip's `trigger` (campaigns/triggers.py) says what enrols a contact. Segment and lifecycle
triggers are the drip planner's segment look (planner.plan_drip), the lifecycle one on the
segment narrowed to that stage and to those who moved into it since the last look
(scheduler/stage_moves.py). Occurrence triggers (purchase, event:NAME, date:...) enrol
once per occurrence:

- Incremental: purchases and custom events are read by id above the campaign run's
  `watermark` (the highest id looked at), in batches; only occurrences since the campaign
  went live count. On PostgreSQL ids can commit out of order, so the last SLACK ids are
  read again; the enrolment's unique key drops what was already seen.
- Idempotent: an enrolment is unique per (campaign, contact, occurrence key) ("purchase:12",
  "event:40", "date:2027"), and its steps' outbox rows per (run, contact, step, enrolment).
  One tick is one transaction: a daemon killed mid-evaluation leaves nothing half-done and
  the next tick starts again from the same watermark. A replayed webhook or a file imported
  twice adds no event (custom_event's idempotency key), so nothing is enrolled twice.
- Permission: a contact enrols only while in the segment with an address, consent and no
  suppression; every step is then an ordinary outbox row, so consent, suppression, quiet
  hours, local time, the frequency cap and the throttles are checked at hand-over exactly
  as for scheduled messages (the cap is not applied here: a capped step waits, it is not lost).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from campaigns.config import Settings
from campaigns.errors import NotFoundError
from campaigns.segments.sqlfuncs import json_key, json_text
from campaigns.store.models import Campaign, CampaignRun, Contact, CustomEvent, DripEnrollment, Purchase, Segment
from campaigns.timespec import utcnow
from campaigns.triggers import Trigger, anniversary, parse_trigger, reentry_wait
from campaigns.vocab import SkipReason
from scheduler.firings import origin
from scheduler.planner import (
    SKIP_REASONS,
    PlanResult,
    _audience_rows,
    _get_or_create_run,
    enrol,
    plan_drip,
    plan_steps,
    record_drip_counts,
)
from scheduler.sendtime import wall_clock_in, zone
from scheduler.stage_moves import moved_in

BATCH = 5000
MAX_BATCHES_PER_TICK = 40  # 200,000 occurrences a tick; the rest on the next one
SLACK_IDS = 1000  # PostgreSQL: ids read again (sequences can commit out of order)
DATE_CATCH_UP = timedelta(days=1)  # a birthday missed while the daemon was down still goes within a day


@dataclass(frozen=True)
class Occurrence:
    """One thing that happened to one contact: its key, when, and what the template sees."""

    contact_id: int
    key: str
    at: datetime
    context: dict[str, Any]


def plan_triggered(session: Session, settings: Settings, c: Campaign, now: datetime | None = None) -> PlanResult:
    """Bring a drip up to date at `now`, whatever its trigger."""
    now = now or utcnow()
    trigger = parse_trigger(c.trigger)
    wait = reentry_wait(c.reentry, trigger)
    if trigger.kind == "segment":
        return plan_drip(session, settings, c, now, reenter_after=wait)
    if trigger.kind == "lifecycle":
        if c.segment is None:  # only an archived campaign, never planned, has none
            raise NotFoundError(f"campaign {c.name}: its segment no longer exists")
        narrowed = Segment(name=c.segment.name, definition=f'({c.segment.definition}) and lifecycle = "{trigger.arg}"')
        run, _ = _get_or_create_run(session, c, c.created_at, now)
        moved = moved_in(session, settings, c, narrowed, run, now)  # the move into the stage, not being in it
        return plan_drip(session, settings, c, now, segment=narrowed, reenter_after=wait, only=moved)
    run, _ = _get_or_create_run(session, c, c.created_at, now)
    totals = [0, 0, 0]  # enrolled, planned, held out
    skipped = dict.fromkeys(SKIP_REASONS, 0)
    if c.topic_id is None:  # as the planner: no topic, no such skip reason in the counts
        del skipped[SkipReason.LEFT_TOPIC]
    for _ in range(MAX_BATCHES_PER_TICK):
        found, last_id, more = _occurrences(session, settings, c, trigger, run, now)
        for i, n in enumerate(_enrol(session, settings, c, run, found, wait, now, skipped)):
            totals[i] += n
        if last_id is not None:
            run.watermark = max(run.watermark or 0, last_id)
        if not more:
            break
    record_drip_counts(run, totals[0], totals[1], totals[2], skipped, now)
    session.flush()
    return PlanResult(run.id, totals[0] > 0, run.counts)


def _occurrences(session: Session, settings: Settings, c: Campaign, trigger: Trigger, run: CampaignRun,
                 now: datetime) -> tuple[list[Occurrence], int | None, bool]:
    """The next batch of occurrences, the highest id read (None: none), and whether more may follow."""
    if trigger.kind == "date":
        return _anniversaries(session, settings, c, trigger.arg, now), None, False
    slack = 0 if session.get_bind().dialect.name == "sqlite" else SLACK_IDS
    start = max(0, (run.watermark or 0) - slack) if run.watermark else 0
    since = origin(c)
    if trigger.kind == "purchase":
        q = select(Purchase.id, Purchase.contact_id, Purchase.occurred_at, Purchase.order_id, Purchase.amount_cents,
                   Purchase.currency, Purchase.items).where(Purchase.id > start).order_by(Purchase.id).limit(BATCH)
        rows = list(session.execute(q))
        found = [Occurrence(r.contact_id, f"purchase:{r.id}", r.occurred_at, {"purchase": {
            "order_id": r.order_id, "amount": f"{r.amount_cents / 100:.2f}", "currency": r.currency,
            "occurred_at": r.occurred_at.isoformat(), "items": r.items or []}}) for r in rows if r.occurred_at >= since]
    else:
        q = select(CustomEvent.id, CustomEvent.contact_id, CustomEvent.occurred_at, CustomEvent.properties) \
            .where(CustomEvent.name == trigger.arg, CustomEvent.id > start).order_by(CustomEvent.id).limit(BATCH)
        rows = list(session.execute(q))
        found = [Occurrence(r.contact_id, f"event:{r.id}", r.occurred_at, {"event": {
            "name": trigger.arg, "properties": dict(r.properties or {}), "occurred_at": r.occurred_at.isoformat()}})
            for r in rows if r.occurred_at >= since]
    if not rows:
        return found, None, False
    return found, rows[-1].id, len(rows) == BATCH and rows[-1].id > (run.watermark or 0)


def _anniversaries(session: Session, settings: Settings, c: Campaign, field: str, now: datetime) -> list[Occurrence]:
    """Contacts whose yearly date (moved by the offset, at the clock time in their zone) came in the last day."""
    offset = timedelta(seconds=c.trigger_offset_seconds or 0)
    hour, minute = map(int, (c.trigger_clock or "09:00").split(":"))
    value = json_text(Contact.attributes, json_key(field))
    # Only the month-days that can fall due now (the offset and the zones considered): one indexed-free scan
    # over contacts, narrowed in SQL to a few day strings.
    days = {(now - offset + timedelta(days=d)).strftime("-%m-%d") for d in range(-3, 4)}
    days |= {d[1:] for d in days}
    q = select(Contact.id, Contact.timezone, value.label("on")).where(
        value.is_not(None), Contact.erased_at.is_(None), or_(*[value.endswith(d) for d in days]))
    out: list[Occurrence] = []
    since = origin(c)
    for cid, tz, raw in session.execute(q):
        where = zone(tz, c.timezone)
        local_year = now.astimezone(where).year
        for year in (local_year - 1, local_year, local_year + 1):
            day = anniversary(raw, year)
            if day is None:
                continue
            at = wall_clock_in(datetime.combine(day, time(hour, minute)), where) + offset
            if now - DATE_CATCH_UP < at <= now and at >= since:
                out.append(Occurrence(cid, f"date:{year}", at, {"date": {"year": year, "on": day.isoformat()}}))
    return out


def _enrol(session: Session, settings: Settings, c: Campaign, run: CampaignRun, found: list[Occurrence],
           wait: timedelta | None, now: datetime, skipped: dict[str, int]) -> tuple[int, int, int]:
    """Enrol the occurrences not seen before whose contact may be messaged; plan their steps.
    Returns (enrolled, planned, held out)."""
    if not found:
        return 0, 0, 0
    # By occurrence key alone (its own index): with the contacts too, SQLite probes every pair of the two lists.
    seen = set(session.execute(select(DripEnrollment.contact_id, DripEnrollment.occurrence).where(
        DripEnrollment.campaign_id == c.id, DripEnrollment.occurrence.in_(sorted({o.key for o in found})))).all())
    fresh = [o for o in found if (o.contact_id, o.key) not in seen]
    if not fresh:
        return 0, 0, 0
    audience = {row[0]: row for row in _audience_rows(session, settings, c, now, only=sorted({o.contact_id for o in fresh}))}
    last_entry: dict[int, datetime] = dict(session.execute(
        select(DripEnrollment.contact_id, DripEnrollment.entered_at).where(
            DripEnrollment.campaign_id == c.id, DripEnrollment.contact_id.in_(list(audience)))
        .order_by(DripEnrollment.entered_at)).all())
    eligible, entered, keys, contexts = [], [], [], []
    for o in sorted(fresh, key=lambda o: (o.at, o.key)):
        row = audience.get(o.contact_id)
        reason = _skip_reason(row)
        if reason is not None:
            if reason != "not_in_segment":
                skipped[reason] += 1
            continue
        before = last_entry.get(o.contact_id)
        if before is not None and (wait is None or o.at < before + wait):
            continue  # --reentry: not (yet) again
        last_entry[o.contact_id] = o.at
        eligible.append(row)
        entered.append(o.at)
        keys.append(o.key)
        contexts.append(o.context)
    enrolments = enrol(session, c, eligible, entered, keys, contexts)
    added, held = plan_steps(session, settings, c, run, eligible, entered, enrolments, now)
    return len(enrolments), added, held


def _skip_reason(row: Any) -> str | None:
    """Why a contact is not enrolled: not in the segment, no address, no consent, suppressed, left the
    campaign's topic (or None): the planner's own reasons (planner._classify), without the cap."""
    if row is None:
        return "not_in_segment"
    if not row[1]:
        return SkipReason.INVALID_ADDRESS
    if not row.consent:
        return SkipReason.NO_CONSENT
    if row.suppressed:
        return SkipReason.SUPPRESSED
    if row.left_topic:
        return SkipReason.LEFT_TOPIC
    return None
