"""One firing -> outbox rows. Idempotent: the run's unique key makes a firing happen once.

Planning evaluates the segment at that moment and keeps only contacts with an address on
the channel, current consent, no suppression and room under the frequency cap; draws the
stable holdout; assigns the variant; computes each due time (recipient local time, quiet
hours pushed to when they end, throttle spread); snapshots lifecycle and RFM segment;
and writes every row in one transaction, counting every skipped contact by reason.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache, partial
from typing import Any

from sqlalchemy import exists, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute, Session

from campaigns.audience import consent_requests, messageable
from campaigns.config import Settings
from campaigns.errors import ConflictError, NotFoundError
from campaigns.segments import PROSPECT, members_query, population, profiles
from campaigns.store import stats
from campaigns.store.bulk import insert_columns
from campaigns.store.models import (
    Campaign,
    CampaignRun,
    ConsentEvent,
    Contact,
    Delivery,
    DripEnrollment,
    Purchase,
    Segment,
    Suppression,
)
from campaigns.timespec import ClockRange, parse_cap, parse_clock_range, utcnow
from campaigns.vocab import Channel, DeliveryState, RunStatus, SkipReason, values
from scheduler.firings import local_clock_for, origin
from scheduler.gcpause import gc_paused
from scheduler.sendtime import (
    due_time,
    push_out_of_quiet,
    throttle,
    wall_clock_in,
    zone,
)

SKIP_REASONS = values(SkipReason)  # plain strings: they are the keys of the stored, printed counts
# toward the frequency cap: handed over, not merely queued
COUNTED_STATES = (DeliveryState.SENDING, DeliveryState.SENT, DeliveryState.UNKNOWN)
BATCH = 5000
CHUNK = 5000  # audience rows planned at a time: planning's memory is one chunk's, whatever the audience


@dataclass
class PlanResult:
    """What planning a firing did (or found already done)."""

    run_id: int
    created: bool
    counts: dict[str, Any] = field(default_factory=dict)
    capped: list[int] = field(default_factory=list)  # contacts left out by the frequency cap (this planning only)


def stable_fraction(*parts: object) -> float:
    """A number in [0, 1) fixed by its inputs: the same contact lands in the same group on every re-plan."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def variant_picker(c: Campaign) -> Callable[[int], tuple[str | None, str]]:
    """Per contact: (variant name, template) by stable weighted hash; no variants -> (None, the
    template). The campaign's attributes are read once (a firing asks per contact)."""
    if not c.variants:
        same = (None, c.template_name or "")
        return lambda _cid: same
    campaign_id, variants = c.id, list(c.variants)
    total = sum(v["weight"] for v in variants)

    def pick(contact_id: int) -> tuple[str | None, str]:
        point = stable_fraction(campaign_id, contact_id, "variant") * total
        for v in variants:
            point -= v["weight"]
            if point < 0:
                return v["name"], v["template"]
        return variants[-1]["name"], variants[-1]["template"]

    return pick


def quiet_hours_of(settings: Settings, c: Campaign) -> ClockRange | None:

    """The campaign's quiet hours, else the channel default from config ('none' = none)."""
    if c.quiet_hours:
        return parse_clock_range(c.quiet_hours)
    return parse_clock_range(settings.policy.quiet_hours_sms if c.channel == Channel.SMS else settings.policy.quiet_hours_email)


def _address_column(channel: str) -> tuple[InstrumentedAttribute[str | None], InstrumentedAttribute[str | None]]:
    return (Contact.email, Contact.email_hash) if channel == Channel.EMAIL else (Contact.phone, Contact.phone_hash)


def _audience(session: Session, settings: Settings, c: Campaign, now: datetime, exclude_enrolled: bool = False,
              *, segment: Segment | None = None, only: list[int] | None = None,
              reenter_after: timedelta | None = None) -> Iterator[Sequence[Any]]:
    """Rows (id, address, timezone, consent, suppressed, left_topic) of every member now, in chunks
    of CHUNK by contact id: the skip reasons are decided in SQL, and the audience is streamed
    from one query, never held whole (a firing of 200,000 keeps one chunk in memory).

    `segment` stands in for the campaign's (a lifecycle trigger narrows it); `only` limits the
    look to these contacts (a triggered occurrence); `reenter_after` lets a contact enrolled
    that long ago enter again (with exclude_enrolled). The segment is checked here, before
    the first chunk is asked for."""
    segment = segment or c.segment
    if segment is None:  # only an archived campaign, never planned, has none: say so rather than crash
        raise NotFoundError(f"campaign {c.name}: its segment no longer exists")
    members = members_query(session, segment, settings, at=now).subquery()
    address, _digest = _address_column(c.channel)
    may = messageable.rule(c.channel, settings.consent.double_opt_in, now, topic_id=c.topic_id)  # its parts name the skip reasons
    request = consent_requests.audience_clause(c, now)  # a double opt-in request goes to a pending contact only
    consented = request if request is not None else may.consented
    q = select(Contact.id, address, Contact.timezone, consented.label("consent"), may.suppressed.label("suppressed"),
               may.left_topic.label("left_topic")) \
        .where(Contact.id.in_(select(members.c.id)), may.not_erased)
    if request is not None:
        q = q.where(request)
    if only is not None:
        q = q.where(Contact.id.in_(only))
    if exclude_enrolled:
        recent = [DripEnrollment.campaign_id == c.id, DripEnrollment.contact_id == Contact.id]
        if reenter_after is not None:
            recent.append(DripEnrollment.entered_at > now - reenter_after)
        q = q.where(~exists().where(*recent))
    return session.connection().execute(q.order_by(Contact.id).execution_options(yield_per=CHUNK)).partitions()


def _audience_rows(session: Session, settings: Settings, c: Campaign, now: datetime, exclude_enrolled: bool = False,
                   *, segment: Segment | None = None, only: list[int] | None = None,
                   reenter_after: timedelta | None = None) -> list[Any]:
    """The whole of `_audience` in one list: for a drip tick's new entrants or a trigger's few contacts only."""
    return [row for chunk in _audience(session, settings, c, now, exclude_enrolled, segment=segment, only=only,
                                       reenter_after=reenter_after) for row in chunk]


def _capped_ids(session: Session, settings: Settings, c: Campaign, now: datetime, ids: list[int]) -> set[int]:
    """Contacts already at the cap: marketing messages sent (or in flight) in the window, across all campaigns.

    Queued messages do not count (another campaign's future drip steps must not use up this
    one's room); the cap is checked again for every message at hand-over (scheduler/pacing.py).
    """
    cap = parse_cap(c.frequency_cap) if c.frequency_cap else parse_cap(settings.policy.frequency_cap)
    if cap is None or not c.marketing or not ids:
        return set()
    since = now - cap.window
    marketing = select(Campaign.id).where(Campaign.marketing.is_(True))
    when = func.coalesce(Delivery.sent_at, Delivery.updated_at)
    out: set[int] = set()
    for i in range(0, len(ids), BATCH):
        chunk = ids[i:i + BATCH]
        q = (select(Delivery.contact_id).where(
                Delivery.contact_id.in_(chunk), Delivery.is_holdout.is_(False), Delivery.state.in_(COUNTED_STATES),
                Delivery.campaign_id.in_(marketing), when >= since)
             .group_by(Delivery.contact_id).having(func.count() >= cap.count))
        out.update(session.scalars(q))
    return out


def _classify(session: Session, settings: Settings, c: Campaign, now: datetime, rows: Sequence[Any]) -> tuple[list[Any], dict[str, int], set[int]]:
    skipped = dict.fromkeys(SKIP_REASONS, 0)
    if c.topic_id is None:  # nobody can leave a topic the campaign does not have
        del skipped[SkipReason.LEFT_TOPIC]
    # (id, address, timezone, consent, suppressed, left_topic): the eligible in one pass, the rest
    # (usually few) counted by their first reason in a second.
    eligible = [row for row in rows if row[1] and row[3] and not row[4] and not row[5]]
    if len(eligible) < len(rows):
        for row in rows:
            if not row[1]:
                skipped[SkipReason.INVALID_ADDRESS] += 1
            elif not row[3]:
                skipped[SkipReason.NO_CONSENT] += 1
            elif row[4]:
                skipped[SkipReason.SUPPRESSED] += 1
            elif row[5]:
                skipped[SkipReason.LEFT_TOPIC] += 1
    capped = _capped_ids(session, settings, c, now, [r[0] for r in eligible])
    skipped[SkipReason.CAPPED] = len(capped)
    return [r for r in eligible if r[0] not in capped], skipped, capped


def _get_or_create_run(session: Session, c: Campaign, key: datetime, now: datetime) -> tuple[CampaignRun, bool]:
    run = session.scalar(select(CampaignRun).where(CampaignRun.campaign_id == c.id, CampaignRun.scheduled_for == key))
    if run is not None:
        return run, False
    try:
        with session.begin_nested():
            run = CampaignRun(campaign_id=c.id, scheduled_for=key, status=RunStatus.PLANNING, started_at=now, counts={})
            session.add(run)
            session.flush()
    except IntegrityError:  # another planner won the race: that firing is its
        run = session.scalar(select(CampaignRun).where(CampaignRun.campaign_id == c.id, CampaignRun.scheduled_for == key))
        assert run is not None
        return run, False
    return run, True


Columns = dict[str, list[Any]]  # outbox rows column by column (bulk.insert_columns), every list as long


def _rows(c: Campaign, run: CampaignRun, people: Sequence[tuple[int, datetime]], step: int,
          template_for: Callable[[int], tuple[str | None, str]], snap: dict[int, Any], now: datetime,
          occurrences: Sequence[int] | None = None) -> tuple[Columns, int]:
    """One outbox row per (contact, due time), column by column, and how many are held out;
    `occurrences` (the enrolment ids, in the same order) for a journey.

    A column the rows share is one value repeated (a list product, in C); there are 200,000
    rows in a big firing, and a dict per row cost more than inserting it."""
    n = len(people)
    ids, dues = (list(column) for column in zip(*people, strict=True)) if n else ([], [])
    holdout_pct, campaign_id = c.holdout_pct, c.id
    held_out = ([stable_fraction(campaign_id, cid, "holdout") * 100 < holdout_pct for cid in ids]
                if holdout_pct > 0 else [False] * n)
    held = sum(held_out)
    variants, templates = (list(column) for column in zip(*map(template_for, ids), strict=True)) if n else ([], [])
    profiled = [snap.get(cid) for cid in ids] if snap else []  # none: the contact never bought (profiles(..., prospects=False))
    columns: Columns = {
        "run_id": [run.id] * n, "campaign_id": [campaign_id] * n, "contact_id": ids, "channel": [c.channel] * n,
        "step": [step] * n, "variant": variants, "template_name": templates,
        "is_holdout": held_out,
        "state": [DeliveryState.HELD_OUT if h else DeliveryState.QUEUED for h in held_out] if held else [DeliveryState.QUEUED] * n,
        "attempts": [0] * n, "due_at": dues,
        "lifecycle_stage": [p.lifecycle if p is not None else PROSPECT for p in profiled] if profiled else [PROSPECT] * n,
        "rfm_segment": [p.rfm_segment if p is not None else None for p in profiled] if profiled else [None] * n,
        "created_at": [now] * n, "updated_at": [now] * n,
        "occurrence": list(occurrences) if occurrences is not None else [0] * n, "ab_remainder": [False] * n,
    }
    return columns, held


def _count(columns: Columns) -> int:
    return len(columns["contact_id"])


def in_test_share(c: Campaign, contact_id: int) -> bool:
    """Whether a contact is in the A/B test share (stable: the same on every re-plan); True without a test share."""
    return c.test_share_pct is None or stable_fraction(c.id, contact_id, "test") * 100 < c.test_share_pct


def hold_back(c: Campaign, rows: Columns) -> int:
    """Rows outside the test share wait for the winner: state 'waiting', no variant or template yet.

    They are outbox rows of the same firing (not a table of their own), so the unique
    (run, contact, step) key that makes a firing send once also makes the winner's send
    once: deciding the winner moves these very rows to 'queued', it never adds any.
    """
    if c.test_share_pct is None:  # everyone is in the test share (`_rows` wrote ab_remainder False)
        return 0
    n = 0
    state, variant, template, remainder = rows["state"], rows["variant"], rows["template_name"], rows["ab_remainder"]
    for i, contact_id in enumerate(rows["contact_id"]):
        if state[i] == DeliveryState.QUEUED and not in_test_share(c, contact_id):
            state[i], variant[i], template[i], remainder[i] = DeliveryState.WAITING, None, None, True
            n += 1
    return n


def _insert(session: Session, rows: Columns) -> None:
    for i in range(0, _count(rows), BATCH):
        insert_columns(session.connection(), Delivery.__table__, {k: v[i:i + BATCH] for k, v in rows.items()})


# What planning and the claims that follow read by contact: without statistics PostgreSQL
# guesses one row in each and picks nested loops (campaigns/store/stats.py).
_READ_BY_PLANNING = [t.__table__ for t in (Contact, ConsentEvent, Suppression, Delivery, Purchase)]


def _late_ids(c: Campaign, key: datetime, eligible: list[Any]) -> set[int]:
    """Local-time contacts whose wall-clock moment had already passed when the campaign was created."""
    clock = local_clock_for(c, key)
    if clock is None:
        return set()
    start = origin(c)
    return {cid for cid, _a, tz, *_ in eligible if wall_clock_in(clock, zone(tz, c.timezone)) < start}


def _due_in(firing: datetime, contact_tz: str | None, **how: Any) -> datetime:
    return due_time(firing, contact_tz=contact_tz, **how)


def plan_firing(session: Session, settings: Settings, c: Campaign, key: datetime, now: datetime | None = None,
                *, extra: bool = False) -> PlanResult:
    """Plan one firing of a one-off, cron or manual campaign; a second call adds nothing.

    `extra` marks a run asked for by hand (`send --now`): it is not one of the schedule's
    firings, so the schedule carries on as it was. The audience is planned CHUNK contacts
    at a time; only a throttled campaign keeps (id, due time) pairs of its whole audience,
    as its spread orders every due time of the firing.
    """
    if c.schedule_kind == "drip":  # its rows are written per contact by plan_drip, one per step
        raise ConflictError(f"campaign {c.name} is a drip: it has no firing to plan")
    now = now or utcnow()
    run, created = _get_or_create_run(session, c, key, now)
    if not created:
        return PlanResult(run.id, False, run.counts)
    with gc_paused():
        return _plan_run(session, settings, c, run, key, now, extra)


def _plan_run(session: Session, settings: Settings, c: Campaign, run: CampaignRun, key: datetime, now: datetime,
              extra: bool) -> PlanResult:
    """The rows of a firing whose run was just created (plan_firing)."""
    quiet = quiet_hours_of(settings, c)
    clock = local_clock_for(c, key) if not extra else None
    firing = max(now, key) if not c.local_time else now
    late_check = c.local_time and not extra  # their moment was gone before the campaign existed
    skipped = _classify(session, settings, c, now, [])[1]  # every reason this campaign counts, at 0
    if late_check:
        skipped["late"] = 0
    stats.never_analyzed(session, _READ_BY_PLANNING)  # a restored or bulk-loaded database: statistics first
    writer = _Writer(session, settings, c, run, now)
    due_of = cache(partial(_due_in, firing, campaign_tz=c.timezone, local_time=late_check, local_clock=clock, quiet=quiet))
    in_segment, capped_ids, spread = 0, list[int](), list[tuple[int, datetime]]()
    for chunk in _audience(session, settings, c, now):
        in_segment += len(chunk)
        eligible, skips, capped = _classify(session, settings, c, now, chunk)
        for reason, n in skips.items():
            skipped[reason] += n
        capped_ids.extend(capped)
        if late_check:
            late = _late_ids(c, key, eligible)
            if c.late_policy != "send":  # --late skip (the default), else they are sent now
                skipped["late"] += len(late)
                eligible = [r for r in eligible if r[0] not in late]
        # A due time depends on the contact only through its zone: worked out once per zone.
        people = [(r[0], due_of(r[2])) for r in eligible]  # (id, address, timezone, ...)
        if c.throttle_per_minute:
            spread.extend(people)
        else:
            writer.write(people)
    if spread:
        dues = throttle([due for _cid, due in spread], firing, c.throttle_per_minute)
        for i in range(0, len(spread), CHUNK):
            writer.write([(cid, due) for (cid, _d), due in zip(spread[i:i + CHUNK], dues[i:i + CHUNK], strict=True)])
    stats.after_bulk_write(session, [Delivery.__table__], writer.planned + writer.held + writer.waiting)
    run.counts = {"in_segment": in_segment, "planned": writer.planned, "held_out": writer.held, "skipped": skipped}
    if c.test_share_pct is not None:
        run.counts["waiting_for_winner"] = writer.waiting
        c.updated_at = now  # the daemon re-reads its campaigns and schedules the winner's tick
    if extra:
        run.counts["extra"] = True
    run.status, run.finished_at = RunStatus.PLANNED, utcnow()
    session.flush()
    return PlanResult(run.id, True, run.counts, sorted(capped_ids))


class _Writer:
    """Writes a firing's rows chunk by chunk: profile snapshot, holdout, variant, A/B test share, insert."""

    def __init__(self, session: Session, settings: Settings, c: Campaign, run: CampaignRun, now: datetime) -> None:
        self.session, self.settings, self.c, self.run, self.now = session, settings, c, run, now
        self.pop: Any = None  # the buyers' breakpoints, read once for the whole firing
        self.planned = self.held = self.waiting = 0

    def write(self, people: list[tuple[int, datetime]]) -> None:
        if not people:
            return
        if self.pop is None:
            self.pop = population(self.session, self.settings, self.now)
        snap = profiles(self.session, self.settings, [cid for cid, _ in people], at=self.now, pop=self.pop,
                        prospects=False)
        rows, held = _rows(self.c, self.run, people, 0, variant_picker(self.c), snap, self.now)
        waiting = hold_back(self.c, rows)  # per row and stable, so the same chunk by chunk as whole
        _insert(self.session, rows)
        self.planned += _count(rows) - held - waiting
        self.held += held
        self.waiting += waiting


def _same(template: str) -> Callable[[int], tuple[str | None, str]]:
    return lambda _cid: (None, template)


def enrol(session: Session, c: Campaign, eligible: list[Any], entered: list[datetime], keys: list[str],
          contexts: Sequence[dict[str, Any] | None]) -> list[int]:
    """One enrolment per eligible row (its occurrence key and what the template sees); their ids, in order."""
    if not eligible:
        return []
    table = DripEnrollment.__table__
    return list(session.connection().execute(insert(table).returning(table.c.id, sort_by_parameter_order=True), [
        {"campaign_id": c.id, "contact_id": r[0], "entered_at": at, "occurrence": key, "context": ctx}
        for r, at, key, ctx in zip(eligible, entered, keys, contexts, strict=True)]).scalars())


def plan_steps(session: Session, settings: Settings, c: Campaign, run: CampaignRun, eligible: list[Any],
               entered: list[datetime], enrolments: list[int], now: datetime) -> tuple[int, int]:
    """Every step's outbox row for these enrolments, due at entry + offset (out of quiet hours): (planned, held)."""
    quiet = quiet_hours_of(settings, c)
    snap = profiles(session, settings, [r[0] for r in eligible], at=now) if eligible else {}
    start = {e: at for e, at in zip(enrolments, entered, strict=True)}
    added = held_total = 0
    for step, spec in enumerate(c.steps):
        offset, template = spec["offset_seconds"], str(spec["template"])
        people = [(cid, push_out_of_quiet(start[e] + timedelta(seconds=offset), zone(tz, c.timezone), quiet))
                  for (cid, _a, tz, *_), e in zip(eligible, enrolments, strict=True)]
        rows, held = _rows(c, run, people, step, _same(template), snap, now, enrolments)
        _insert(session, rows)
        added += _count(rows) - held
        held_total += held
    return added, held_total


def record_drip_counts(run: CampaignRun, enrolled: int, added: int, held: int, skipped: dict[str, int], now: datetime) -> None:
    """Skipped members are looked at again on every tick (they may consent later), so the
    skip counts are the latest look, while enrolments and rows accumulate."""
    counts = dict(run.counts or {})
    total = counts.get("enrolled", 0) + enrolled
    counts.update({
        "in_segment": total + sum(skipped.values()), "enrolled": total,
        "planned": counts.get("planned", 0) + added, "held_out": counts.get("held_out", 0) + held,
        "skipped": skipped,
    })
    run.counts, run.status, run.finished_at = counts, RunStatus.PLANNED, now


def plan_drip(session: Session, settings: Settings, c: Campaign, now: datetime | None = None,
              *, segment: Segment | None = None, reenter_after: timedelta | None = None,
              only: list[int] | None = None) -> PlanResult:
    """Enrol contacts who entered the segment since last time; write every step's row for them.

    `segment` narrows who enters (a lifecycle trigger); `reenter_after` lets a contact who
    entered that long ago enter again (--reentry after:D; None: once); `only` limits the look
    to these contacts (a lifecycle trigger: those who moved into the stage)."""
    now = now or utcnow()
    run, _ = _get_or_create_run(session, c, c.created_at, now)
    # Enrolments are written after the read: a drip tick's audience is its new entrants only, read whole.
    members = _audience_rows(session, settings, c, now, exclude_enrolled=True, segment=segment, reenter_after=reenter_after,
                             only=only)
    eligible, skipped, _capped = _classify(session, settings, c, now, members)
    again: set[int] = set()
    if reenter_after is not None and eligible:
        again = set(session.scalars(select(DripEnrollment.contact_id).where(
            DripEnrollment.campaign_id == c.id, DripEnrollment.contact_id.in_([r[0] for r in eligible]))))
    keys = [f"entry:{now.isoformat()}" if r[0] in again else "" for r in eligible]
    entered = [now] * len(eligible)
    enrolments = enrol(session, c, eligible, entered, keys, [None] * len(eligible))
    added, held_total = plan_steps(session, settings, c, run, eligible, entered, enrolments, now)
    record_drip_counts(run, len(eligible), added, held_total, skipped, now)
    session.flush()
    return PlanResult(run.id, bool(eligible), run.counts)
