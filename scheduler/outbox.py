"""Claiming and finishing outbox rows: the SQL side of the dispatcher.

A claim is one short transaction: `BEGIN IMMEDIATE` on SQLite, `FOR UPDATE SKIP LOCKED`
on PostgreSQL (so any number of workers share the outbox). In the same transaction each
row's consent and suppression are checked again: an unsubscribe that arrived after
planning wins. Claimed rows are `claimed` under a lease, and `sending` from just before their wave is
handed over; a lease that expires puts `claimed` rows back in the queue and turns
`sending` ones `unknown` (never re-sent unless configured): the message may have gone out.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    exists,
    func,
    select,
    update,
)
from sqlalchemy.exc import InterfaceError, OperationalError

from campaigns.audience import consent_requests
from campaigns.audience.messageable import campaign_topics, messageable_ids, suppression_matches_contact
from campaigns.config import Settings
from campaigns.store.db import is_sqlite, write_turn
from campaigns.store.models import Campaign, ConsentEvent, Contact, Delivery, Suppression
from campaigns.vocab import CampaignStatus, DeliveryState

_DELIVERY = Delivery.__table__
HALTED = (CampaignStatus.PAUSED, CampaignStatus.CANCELLED)
# The database is unreachable (restarting, network): wait for it rather than lose outcomes.
DB_DOWN = (OperationalError, InterfaceError)


def first_line(exc: BaseException) -> str:
    """A driver error's first line (they run to many lines of SQL and parameters)."""
    return (str(exc).splitlines() or [""])[0][:200]


class Claimed(NamedTuple):
    """A row this worker now owns until its lease ends (a named tuple: a batch builds 500)."""

    id: int
    campaign_id: int
    contact_id: int
    channel: str
    step: int
    template_name: str | None
    lifecycle: str | None
    rfm_segment: str | None
    attempts: int
    created_at: datetime


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that takes the write lock up front on SQLite (no upgrade deadlocks), after
    this process's other writers (`write_turn`)."""
    sqlite = is_sqlite(engine)
    with write_turn(engine) if sqlite else nullcontext(), engine.connect() as conn:
        if sqlite:
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        with conn.begin():
            yield conn


def claim(engine: Engine, settings: Settings, worker: str, now: datetime, limit: int) -> list[Claimed]:
    """Claim up to `limit` due rows; rows that lost consent meanwhile become `suppressed`."""
    d = Delivery.__table__.c
    with write_transaction(engine) as conn:
        # One query per state: with the state fixed, the (state, due_at) index yields rows in
        # due order and the LIMIT stops the scan. `state IN (...)` made the database collect
        # and sort every due row on each claim (EXPLAIN: USE TEMP B-TREE FOR ORDER BY), a
        # cost per claim that grows with the audience.
        found: list[Sequence[Any]] = []
        for state in (DeliveryState.QUEUED, DeliveryState.RETRY_WAIT):
            q = (select(d.id, d.campaign_id, d.contact_id, d.channel, d.step, d.template_name, d.lifecycle_stage,
                        d.rfm_segment, d.attempts, d.created_at, d.due_at)
                 .where(d.state == state, d.due_at <= now,
                        ~exists().where(Campaign.id == d.campaign_id, Campaign.status.in_(HALTED)))
                 .order_by(d.due_at, d.id).limit(limit))
            if not is_sqlite(engine):
                q = q.with_for_update(skip_locked=True, of=Delivery.__table__)
            found.append(conn.execute(q).all())
        # Each list is in due order already; merged only when both have rows (retries are few).
        rows = (sorted([*found[0], *found[1]], key=lambda r: (r.due_at, r.id))[:limit]  # rows past the limit stay queued
                if found[0] and found[1] else list(found[0] or found[1]))
        if not rows:
            return []
        allowed = still_allowed(conn, settings, rows, now)
        lost = [r.id for r in rows if r.id not in allowed]
        if lost:
            conn.execute(update(_DELIVERY).where(d.id.in_(lost)).values(
                state=DeliveryState.SUPPRESSED, error="consent revoked, topic left or address suppressed before sending", updated_at=now))
        mine = [r for r in rows if r.id in allowed]
        if mine:
            conn.execute(update(_DELIVERY).where(d.id.in_([r.id for r in mine])).values(
                state=DeliveryState.CLAIMED, attempts=d.attempts + 1, claimed_by=worker, updated_at=now,
                lease_until=now + timedelta(seconds=settings.sending.lease_seconds)))
    # The row's columns in Claimed's order (a batch's 500 built positionally, not by name).
    return [Claimed._make((*r[:8], r[8] + 1, r[9])) for r in mine]


def still_allowed(conn: Connection, settings: Settings, rows: list[Any], now: datetime) -> set[int]:
    """Ids of rows whose contact may still be messaged on the row's channel."""
    allowed: set[int] = set()
    requests = consent_requests.request_campaign_ids(conn)  # double opt-in requests need an open request instead
    for campaign_id in requests & {r.campaign_id for r in rows}:
        mine = [r for r in rows if r.campaign_id == campaign_id]
        ok_ids = consent_requests.still_open(conn, campaign_id, [r.contact_id for r in mine], now)
        allowed.update(r.id for r in mine if r.contact_id in ok_ids)
    rows = [r for r in rows if r.campaign_id not in requests]
    topic_of = campaign_topics(conn, {r.campaign_id for r in rows})
    for channel, topic in {(r.channel, topic_of.get(r.campaign_id)) for r in rows}:
        # Only the batch's contacts' ledger rows: the whole ledger per claim made claims
        # grow with the audience.
        mine = [r for r in rows if r.channel == channel and topic_of.get(r.campaign_id) == topic]
        ok = messageable_ids(conn, settings, channel, {r.contact_id for r in mine}, now, topic)
        allowed.update(r.id for r in mine if r.contact_id in ok)
    return allowed


def expire_leases(engine: Engine, settings: Settings, now: datetime) -> int:
    """Rows whose worker vanished: `claimed` ones were never handed over and go back to the
    queue; `sending` ones may have gone out and become `unknown` (or are queued again when
    `resend_unknown` is on). Returns how many became unknown or were re-queued from sending."""
    d = Delivery.__table__.c
    target = {"state": DeliveryState.QUEUED, "error": "lease expired; re-sent (resend_unknown is on)"} if settings.sending.resend_unknown \
        else {"state": DeliveryState.UNKNOWN, "error": "lease expired while sending: it may or may not have been delivered"}
    with write_transaction(engine) as conn:
        conn.execute(update(_DELIVERY).where(d.state == DeliveryState.CLAIMED, d.lease_until < now).values(
            state=DeliveryState.QUEUED, attempts=d.attempts - 1, error="lease expired before hand-over; queued again", updated_at=now))
        result = conn.execute(update(_DELIVERY).where(d.state == DeliveryState.SENDING, d.lease_until < now)
                              .values(**target, updated_at=now))
        return result.rowcount or 0


# On PostgreSQL sequences hand out ids before commit, so a revocation with a lower id can
# commit a moment after one with a higher id; looking a little behind the watermark covers
# that race. SQLite has one writer at a time: ids commit in order.
_PG_SLACK = 32


def watermarks(conn: Connection) -> tuple[int, int]:
    """(consent event id, suppression id) just before a claim: later changes are 'in flight'."""
    slack = 0 if conn.dialect.name == "sqlite" else _PG_SLACK
    ce = conn.scalar(select(func.coalesce(func.max(ConsentEvent.id), 0))) or 0
    sp = conn.scalar(select(func.coalesce(func.max(Suppression.id), 0))) or 0
    return max(0, ce - slack), max(0, sp - slack)


# Built once: it runs before every wave.
_CHANGED = select(ConsentEvent.contact_id).where(ConsentEvent.id > bindparam("consent_mark")).union(
    select(Contact.id).join(Suppression, suppression_matches_contact())
    .where(Suppression.id > bindparam("suppression_mark")))


def changed_since(conn: Connection, marks: tuple[int, int]) -> set[int]:
    """Contacts whose consent or suppression changed after `marks` (two primary-key range scans)."""
    return set(conn.scalars(_CHANGED, {"consent_mark": marks[0], "suppression_mark": marks[1]}))
