"""Record: outcomes written to the outbox, in one short transaction per wave.

This runs between every two waves, so the common case (everything sent) is Core
statements built once, on one connection; an ORM session is opened inside the same
transaction only for the rare outcomes that need one (a hard bounce's suppression). What
each outcome does to its row is decided in `scheduler/outcomes.py`; this module writes it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import bindparam, or_, update
from sqlalchemy.orm import Session

from campaigns.context import App
from campaigns.store.models import Campaign, Delivery
from campaigns.tracking import bounces
from campaigns.vocab import (
    CampaignStatus,
    DeliveryState,
)
from scheduler.autopause import BOUNCE, AutoPause
from scheduler.channels import SendResult
from scheduler.holds import campaign_states
from scheduler.outbox import (
    DB_DOWN,
    HALTED,
    Claimed,
    changed_since,
    first_line,
    write_transaction,
)
from scheduler.outcomes import RELEASED, Decidable, RetryPolicy, decide, draw_jitter

log = logging.getLogger("campaigns.dispatcher")
IN_FLIGHT = (DeliveryState.CLAIMED, DeliveryState.SENDING)  # rows this worker holds; outcomes are written only over these
Results = list[tuple[Claimed, SendResult]]
_DELIVERY = Delivery.__table__
# Built once: they run between every two waves.
_SENT = (update(_DELIVERY)
         .where(_DELIVERY.c.id == bindparam("row_id"), or_(*(_DELIVERY.c.state == st for st in IN_FLIGHT)))
         .values(state=DeliveryState.SENT, sent_at=bindparam("at", type_=_DELIVERY.c.sent_at.type), provider_message_id=bindparam("pid"),
                 error=None, lease_until=None, updated_at=bindparam("at", type_=_DELIVERY.c.updated_at.type)))
_MARK_SENDING = (update(_DELIVERY)
                 .where(_DELIVERY.c.id.in_(bindparam("ids", expanding=True)), _DELIVERY.c.state == DeliveryState.CLAIMED,
                        _DELIVERY.c.claimed_by == bindparam("worker"))
                 .values(state=DeliveryState.SENDING, updated_at=bindparam("at", type_=_DELIVERY.c.updated_at.type))
                 .returning(_DELIVERY.c.id))


@dataclass
class DispatchStats:
    """Outcomes counted over one or more batches."""

    counts: Counter[str] = field(default_factory=Counter)

    def add(self, other: DispatchStats) -> None:
        """Count `other`'s outcomes too."""
        self.counts.update(other.counts)

    @property
    def claimed(self) -> int:
        """How many rows these outcomes are of."""
        return sum(self.counts.values())


class Recorder:
    """Writes outcomes; checks the auto-pause rates of every campaign written to."""

    def __init__(self, app: App, autopause: AutoPause, rng: random.Random, worker: str) -> None:
        self.app = app
        self.worker = worker
        self.autopause = autopause
        self._rng = rng

    def write(self, results: Results, render_failures: list[tuple[Claimed, str]], released: list[Claimed], now: datetime,
              mark: list[Claimed] | None = None, marks: tuple[int, int] | None = None,
              batch_campaigns: set[int] | None = None) -> tuple[DispatchStats, set[int], set[int]]:
        """Write outcomes down in one transaction; `released`: rows never handed over (their
        campaign was paused mid-batch) go back to the queue; `mark`: rows about to be handed
        over become `sending`, except those of a campaign paused or cancelled by now (by
        anyone, or by this write's auto-pause check: they join `autopause.paused_now`, and
        the hand-over releases them); `marks`: also return the contacts whose consent or
        suppression changed since the claim. The auto-pause rates are checked for every
        campaign written to and, on a batch's last write, for every campaign of the batch
        (`batch_campaigns`). Returns the stats, the changed contacts, and the ids of `mark`
        this worker still held and marked: a row whose claim passed to another sender (this
        one was taken for dead) is not this sender's to hand over."""
        stats = DispatchStats()
        written: Counter[tuple[int, str]] = Counter()  # (campaign, sent|failed|unknown|bounce): for the rates
        mark = mark or []
        with write_transaction(self.app.engine) as conn:
            sent = [(row, result) for row, result in results if result.outcome == "sent"]
            if sent:  # one executemany
                conn.execute(_SENT, [{"row_id": row.id, "pid": result.provider_id, "at": now} for row, result in sent])
                stats.counts[DeliveryState.SENT.value] += len(sent)
                written.update((row.campaign_id, DeliveryState.SENT) for row, _ in sent)
            # Released first: a row released and then caught by a database failure stays released.
            others: list[tuple[Claimed, Decidable, str | None]] = [(row, RELEASED, None) for row in released]
            others += [(row, result.outcome, result.detail) for row, result in results if result.outcome != "sent"]
            if others or render_failures:
                with Session(bind=conn, expire_on_commit=False) as session:
                    self._write_others(session, others, render_failures, now, stats, written)
                    session.flush()
            # One read of the campaigns involved, after the writes: their status (pause means
            # pause, scheduler/holds.py) and when they last changed (the auto-pause window).
            checked = {cid for cid, _ in written} | (batch_campaigns or set())
            looked = {row.campaign_id for row in mark}
            states = campaign_states(conn, checked | looked)
            paused = self.autopause.paused_now
            for campaign_id in checked:
                self.autopause.check(conn, campaign_id, states[campaign_id][1] if campaign_id in states else None, now, written)
            paused.update(cid for cid in looked if cid in states and states[cid][0] in HALTED)
            going = [row.id for row in mark if row.campaign_id not in paused]
            marked: set[int] = set()
            if going:
                marked = set(conn.scalars(_MARK_SENDING, {"ids": going, "at": now, "worker": self.worker}))
            changed = changed_since(conn, marks) if marks is not None else set()
        return stats, changed, marked

    async def write_when_possible(self, results: Results, failures: list[tuple[Claimed, str]], released: list[Claimed],
                                  now: datetime, batch_campaigns: set[int] | None = None) -> DispatchStats:
        """The messages are out: keep trying to write down what happened while the rows' lease lasts.

        A database restart mid-batch must not turn sent messages into `unknown` ones (or,
        worse, into rows sent again), so outcomes wait in memory until it answers.
        """
        deadline = time.monotonic() + self.app.settings.sending.lease_seconds * 0.8
        delay = 0.2
        while True:
            try:
                return self.write(results, failures, released, now, batch_campaigns=batch_campaigns or set())[0]
            except DB_DOWN as exc:
                if time.monotonic() > deadline:
                    raise
                log.warning("recording %d outcomes failed (%s); retrying in %.1f s",
                            len(results) + len(failures) + len(released), first_line(exc), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _write_others(self, session: Session, results: list[tuple[Claimed, Decidable, str | None]],
                      render_failures: list[tuple[Claimed, str]], now: datetime, stats: DispatchStats,
                      written: Counter[tuple[int, str]]) -> None:
        """Every outcome but `sent`; counts what moves the auto-pause rates into `written`."""
        d = _DELIVERY.c
        conn = session.connection()
        for row, reason in render_failures:
            conn.execute(update(_DELIVERY).where(d.id == row.id).values(
                state=DeliveryState.FAILED, error=reason[:500], lease_until=None, updated_at=now))
            stats.counts[DeliveryState.FAILED.value] += 1
            written[(row.campaign_id, DeliveryState.FAILED)] += 1
        policy = RetryPolicy.from_settings(self.app.settings.sending)
        for row, outcome, detail in results:
            decision = decide(outcome, detail, attempts=row.attempts, age=now - row.created_at, now=now,
                              policy=policy, jitter=draw_jitter(self._rng))
            rule = decision.rule
            values: dict[str, object] = {"lease_until": None, "updated_at": now, "error": decision.error, "state": rule.state}
            if decision.due_at is not None:
                values["due_at"] = decision.due_at
            if rule.refund_attempt:
                values["attempts"] = d.attempts - 1
            if rule.suppress_address:
                self._hard_bounce(session, row, detail, now)
            if rule.pause_campaign:
                conn.execute(update(Campaign).where(
                    Campaign.id == row.campaign_id, Campaign.status.not_in((CampaignStatus.CANCELLED,))).values(
                    status=CampaignStatus.PAUSED, updated_at=now,
                    status_reason=f"paused: the {row.channel} provider refused us ({detail})"[:500]))
            conn.execute(update(_DELIVERY).where(d.id == row.id, d.state.in_(IN_FLIGHT)).values(**values))
            stats.counts[decision.counted_as] += 1
            if rule.state in (DeliveryState.FAILED, DeliveryState.UNKNOWN):
                written[(row.campaign_id, rule.state)] += 1
            if rule.suppress_address:
                written[(row.campaign_id, BOUNCE)] += 1

    def _hard_bounce(self, session: Session, row: Claimed, detail: str | None, now: datetime) -> None:
        """The address does not exist: campaigns/tracking/bounces.py suppresses it and records the bounce once."""
        target = bounces.Target(row.id, row.campaign_id, row.contact_id, row.channel)
        bounces.record(session, self.app.settings, target, "bounce", at=now, source=f"{row.channel} send", detail=detail)
