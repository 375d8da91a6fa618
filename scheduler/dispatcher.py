"""The dispatcher: claims due outbox rows, renders, sends, records, retries.

Per batch: claim (one short transaction, consent re-checked) -> render (one transaction:
coupons and tracked links are written) -> send concurrently -> record every outcome in one
transaction. States: queued -> sending -> sent | retry_wait | failed | suppressed | unknown.
A crash between claim and record leaves rows `sending`; their lease expires into
`unknown`: at most the in-flight messages of a crash are unknown, none are sent twice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
from collections import Counter
from concurrent.futures.process import BrokenProcessPool
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from campaigns import bounces, dkim_signing, stopped
from campaigns.context import App
from campaigns.db import session_factory, session_scope
from campaigns.errors import ConfigError
from campaigns.models import Campaign, Contact, Delivery, Event
from campaigns.rendering import (
    RenderedEmail,
    RenderError,
    render_delivery,
    takes_coupons,
)
from campaigns.templates_store import MessageTemplate, load_template
from campaigns.timespec import utcnow
from scheduler.channels import OutgoingEmail, OutgoingSms, SendResult, make_channels
from scheduler.dkim_pool import DkimPool
from scheduler.outbox import (
    Claimed,
    changed_since,
    claim,
    expire_leases,
    still_allowed,
    watermarks,
    write_transaction,
)

# The database is unreachable (restarting, network): wait for it rather than lose outcomes.
DB_DOWN = (OperationalError, InterfaceError)
log = logging.getLogger("campaigns.dispatcher")
IN_FLIGHT = ("claimed", "sending")  # rows this worker holds; outcomes are written only over these
MAX_BACKOFF = timedelta(hours=6)
RATES_RESYNC_SECONDS = 30.0  # auto-pause counts: read from the database at most this often per campaign
_DELIVERY = Delivery.__table__
# Built once: they run between every two waves.
_SENT = (update(_DELIVERY)
         .where(_DELIVERY.c.id == bindparam("row_id"), or_(*(_DELIVERY.c.state == st for st in IN_FLIGHT)))
         .values(state="sent", sent_at=bindparam("at", type_=_DELIVERY.c.sent_at.type), provider_message_id=bindparam("pid"),
                 error=None, lease_until=None, updated_at=bindparam("at", type_=_DELIVERY.c.updated_at.type)))
_MARK_SENDING = (update(_DELIVERY)
                 .where(_DELIVERY.c.id.in_(bindparam("ids", expanding=True)), _DELIVERY.c.state == "claimed")
                 .values(state="sending", updated_at=bindparam("at", type_=_DELIVERY.c.updated_at.type)))


@dataclass
class DispatchStats:
    """Outcomes counted over one or more batches."""

    counts: Counter[str] = field(default_factory=Counter)

    def add(self, other: DispatchStats) -> None:
        self.counts.update(other.counts)

    @property
    def claimed(self) -> int:
        return sum(self.counts.values())


def backoff(settings_base: float, attempts: int, rng: random.Random) -> timedelta:
    """Exponential backoff with jitter: base * 2^(attempts-1), times 0.5..1.5, capped at 6 h."""
    seconds = settings_base * (2 ** max(0, attempts - 1)) * rng.uniform(0.5, 1.5)
    return min(timedelta(seconds=seconds), MAX_BACKOFF)


def _first_line(exc: BaseException) -> str:
    """A driver error's first line (they run to many lines of SQL and parameters)."""
    return (str(exc).splitlines() or [""])[0][:200]


def default_worker_name() -> str:
    """role@host:pid, unique per process."""
    return f"worker@{socket.gethostname()}:{os.getpid()}"


class Dispatcher:
    """Sends what is due. Several dispatchers (processes, machines) can share one database."""

    def __init__(self, app: App, *, worker_name: str | None = None, channels: dict | None = None) -> None:  # type: ignore[type-arg]
        self.app = app
        self.settings = app.settings
        self.worker = worker_name or default_worker_name()
        self.channels = channels
        self._rng = random.Random()
        self._templates: dict[str, MessageTemplate] = {}
        self._dkim: DkimPool | None = None
        self._rates: dict[int, dict[str, float]] = {}  # campaign -> auto-pause counts (see _auto_pause)
        self._paused_now: set[int] = set()  # campaigns auto-paused during the batch in hand
        self._use_signer(dkim_signing.signer(self.settings))  # a bad DKIM setup stops the sender here, in one line

    def _use_signer(self, signer: dkim_signing.DkimSigner | None) -> None:
        """Sign with `signer` from now on (a changed key file starts a fresh pool)."""
        if self._dkim is not None and self._dkim.signer == signer:
            return
        if self._dkim is not None:
            self._dkim.close()
        self._dkim = DkimPool(signer, self.settings.smtp.dkim_processes) if signer is not None else None

    def _channels(self) -> dict:  # type: ignore[type-arg]
        if self.channels is None:
            self.channels = make_channels(self.settings)
        return self.channels

    async def dispatch_once(self, now: datetime | None = None) -> DispatchStats:
        """Send everything due at `now` (default: the real clock), batch after batch, then return."""
        stats = DispatchStats()
        fixed = now
        engine = self.app.ready_engine()
        stopped.listen(engine)  # other processes' unsubscribes reach this sender's hand-over check
        expire_leases(engine, self.settings, fixed or utcnow())
        while True:
            at = fixed or utcnow()
            with engine.connect() as conn:
                marks = watermarks(conn)
            batch = claim(engine, self.settings, self.worker, at, self.settings.sending.batch_size)
            if not batch:
                return stats
            stats.add(await self._process(batch, at, marks))

    async def run(self, stop: asyncio.Event) -> None:
        """Loop until `stop` is set; a batch in flight is finished before returning."""
        try:
            while not stop.is_set():
                try:
                    stats = await self.dispatch_once()
                except Exception as exc:  # the database went away: wait and try again
                    log.warning("dispatch paused: %s: %s", type(exc).__name__, _first_line(exc))
                    stats = DispatchStats()
                    await asyncio.sleep(min(5.0, self.settings.sending.poll_seconds * 3))
                if stats.claimed:
                    log.info("dispatched %s", dict(stats.counts))
                    continue
                try:
                    await asyncio.wait_for(stop.wait(), timeout=self.settings.sending.poll_seconds)
                except TimeoutError:
                    pass
        finally:
            await self.close()

    async def close(self) -> None:
        """Close transport connections and stop the signing processes."""
        for channel in (self.channels or {}).values():
            await channel.close()
        if self._dkim is not None:
            self._dkim.close()

    # -- one batch ---------------------------------------------------------------------
    async def _process(self, batch: list[Claimed], now: datetime, marks: tuple[int, int] = (0, 0)) -> DispatchStats:
        try:
            self._use_signer(dkim_signing.signer(self.settings))  # cached; re-read when the key file changes
            messages, failures = self._render(batch)
        except DB_DOWN as exc:  # the database went away after the claim: nothing was handed over
            note = f"database unavailable before sending: {_first_line(exc)}"
            return await self._record_when_possible([(row, SendResult("transient", None, note)) for row in batch], [], now)
        except ConfigError as exc:  # the DKIM key went away mid-run: nothing was sent; retry after backoff
            log.error("batch not sent: %s", exc)
            return await self._record_when_possible([(row, SendResult("transient", None, str(exc)[:300])) for row in batch], [], now)
        channels = self._channels()
        # DKIM: the whole batch goes to the signing processes now, so they work without pause
        # while the waves go out; each message waits for its own signature at hand-over.
        signing = {row.id: asyncio.ensure_future(self._dkim.sign(msg.data))
                   for row, msg in messages if isinstance(msg, OutgoingEmail)} if self._dkim is not None else {}

        async def send(row: Claimed, message: OutgoingEmail | OutgoingSms, changed: set[int]) -> tuple[Claimed, SendResult]:
            try:
                if row.contact_id in changed and not self._still_allowed(row, now):
                    return row, SendResult("suppressed", None, "consent revoked or address suppressed while in flight")
            except DB_DOWN as exc:  # cannot tell: do not send, retry later
                return row, SendResult("transient", None, f"database unavailable: {_first_line(exc)}")
            if row.id in signing:
                try:
                    message = replace(message, data=await signing.pop(row.id))
                except BrokenProcessPool as exc:  # a signing process died: nothing was handed over
                    return row, SendResult("transient", None, f"DKIM signing: {type(exc).__name__}: {exc}"[:300])
                except Exception as exc:  # dkimpy refused this message
                    return row, SendResult("failed", None, f"DKIM signing: {type(exc).__name__}: {exc}"[:300])
            try:
                return row, await channels[row.channel].send(message)
            except Exception as exc:  # a transport bug must not lose the row
                return row, SendResult("unknown", None, f"{type(exc).__name__}: {exc}"[:300])

        # Hand over in waves of `concurrency`. One short transaction between waves writes down
        # the last wave's outcomes and marks the next wave `sending`: a crash leaves at most one
        # wave `unknown`; the rest of the batch is still `claimed` and goes back to the queue
        # when its lease ends, because none of it was handed over.
        stats = DispatchStats()
        done: list[tuple[Claimed, SendResult]] = []
        size = max(1, self.settings.sending.concurrency)
        self._paused_now.clear()

        def hold_paused(wave: list[tuple[Claimed, OutgoingEmail | OutgoingSms]]) -> list[tuple[Claimed, OutgoingEmail | OutgoingSms]]:
            """The wave without rows of auto-paused campaigns; those wait for a resume."""
            if not self._paused_now:
                return wave
            done.extend((row, SendResult("released", None, None)) for row, _ in wave if row.campaign_id in self._paused_now)
            return [(row, msg) for row, msg in wave if row.campaign_id not in self._paused_now]

        for start in range(0, len(messages), size):
            # Rows of a campaign auto-paused by an earlier write are released before they are
            # marked `sending` (a crash then requeues them instead of leaving them unknown).
            wave = hold_paused(messages[start:start + size])
            try:
                # In the same transaction, just before hand-over: whose consent or suppression
                # changed since the claim? Two primary-key range scans, almost always empty; an
                # unsubscribe acknowledged while its message waited in the batch still wins.
                recorded, changed = self._record(done, failures, now, mark=[row.id for row, _ in wave], marks=marks)
                stats.add(recorded)
                done, failures = [], []
            except DB_DOWN as exc:
                note = f"database unavailable before sending: {_first_line(exc)}"
                done += [(row, SendResult("transient", None, note)) for row, _ in messages[start:]]
                break
            wave = hold_paused(wave)  # ... and so are rows of one this very write paused
            done += await asyncio.gather(*(send(row, msg, changed) for row, msg in wave))
            if any(r.outcome == "policy" for _, r in done):  # refused: the rest waits for a resume
                done += [(row, SendResult("released", None, None)) for row, _ in messages[start + size:]]
                break
        for pending in signing.values():  # messages that were not sent (released, database down)
            pending.cancel()
        await asyncio.gather(*signing.values(), return_exceptions=True)
        stats.add(await self._record_when_possible(done, failures, now, batch_campaigns={r.campaign_id for r in batch}))
        return stats

    async def _record_when_possible(self, results: list[tuple[Claimed, SendResult]], failures: list[tuple[Claimed, str]],
                                    now: datetime, batch_campaigns: set[int] | None = None) -> DispatchStats:
        """The messages are out: keep trying to write down what happened while the rows' lease lasts.

        A database restart mid-batch must not turn sent messages into `unknown` ones (or,
        worse, into rows sent again), so outcomes wait in memory until it answers.
        """
        deadline = time.monotonic() + self.settings.sending.lease_seconds * 0.8
        delay = 0.2
        while True:
            try:
                return self._record(results, failures, now, batch_campaigns=batch_campaigns or set())[0]
            except DB_DOWN as exc:
                if time.monotonic() > deadline:
                    raise
                log.warning("recording %d outcomes failed (%s); retrying in %.1f s", len(results) + len(failures),
                            _first_line(exc), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _still_allowed(self, row: Claimed, now: datetime) -> bool:
        """The full consent and suppression check for one row whose contact changed meanwhile."""
        with self.app.engine.connect() as conn:
            return row.id in still_allowed(conn, self.settings, [row], max(now, utcnow()))

    def _template(self, name: str) -> MessageTemplate:
        tmpl = self._templates.get(name)
        if tmpl is None:
            tmpl = self._templates[name] = load_template(self.settings, name)
        return tmpl

    def _render(self, batch: list[Claimed]) -> tuple[list[tuple[Claimed, OutgoingEmail | OutgoingSms]], list[tuple[Claimed, str]]]:
        out: list[tuple[Claimed, OutgoingEmail | OutgoingSms]] = []
        failed: list[tuple[Claimed, str]] = []
        self._templates.clear()  # a template edited between batches is picked up
        engine = self.app.engine
        with session_scope(engine, immediate=True) as session:
            contacts = {c.id: c for c in session.scalars(select(Contact).where(Contact.id.in_({r.contact_id for r in batch})))}
            campaigns = {c.id: c for c in session.scalars(select(Campaign).where(Campaign.id.in_({r.campaign_id for r in batch})))}
            for row in batch:
                guarded = True
                try:
                    template = self._template(row.template_name or "")
                    # A savepoint per message only where a failed render has something to undo
                    # (a coupon taken). Tracked-link rows a failed render registered may stay:
                    # they are destinations, shared by every message that links there.
                    guarded = takes_coupons(template)
                    with session.begin_nested() if guarded else nullcontext():
                        rendered = render_delivery(
                            session, self.settings, template, contact=contacts[row.contact_id],
                            delivery_id=row.id, campaign=campaigns[row.campaign_id], lifecycle=row.lifecycle,
                            rfm_segment=row.rfm_segment, dkim=False)  # signed in the pool, just before hand-over
                except RenderError as exc:
                    failed.append((row, f"render: {exc}"))
                    continue
                except (DB_DOWN, ConfigError):  # the database or the setup, not this row: the whole batch waits
                    raise
                except SQLAlchemyError as exc:
                    if not guarded:  # the transaction may be unusable now: the batch goes back to the queue
                        raise
                    failed.append((row, f"render: {type(exc).__name__}: {_first_line(exc)}"))
                    continue
                except Exception as exc:  # a missing template file, for instance
                    failed.append((row, f"render: {type(exc).__name__}: {exc}"[:300]))
                    continue
                if isinstance(rendered, RenderedEmail):
                    out.append((row, OutgoingEmail(str(row.id), rendered.mail_from, rendered.to, rendered.data, rendered.message_id,
                                                    stopped.checker(row.contact_id, row.channel, row.created_at))))
                else:
                    out.append((row, OutgoingSms(str(row.id), rendered.to, rendered.body,
                                                  stopped.checker(row.contact_id, row.channel, row.created_at))))
            session.flush()
        return out, failed

    def _record(self, results: list[tuple[Claimed, SendResult]], render_failures: list[tuple[Claimed, str]], now: datetime,
                mark: list[int] | None = None, marks: tuple[int, int] | None = None,
                batch_campaigns: set[int] | None = None) -> tuple[DispatchStats, set[int]]:
        """Write outcomes down in one transaction; `mark`: rows about to be handed over become
        `sending`; `marks`: also return the contacts whose consent changed since the claim.

        This runs between every two waves, so the common case (everything sent) is Core
        statements built once, on one connection; an ORM session is opened inside the same
        transaction only for the rare outcomes that need one (a hard bounce's suppression).
        The auto-pause rates are checked for every campaign written to (from counts kept in
        memory, see `_auto_pause`) and for every campaign of the batch on its last write.
        """
        stats = DispatchStats()
        written: Counter[tuple[int, str]] = Counter()  # (campaign, sent|failed|unknown|bounce): for the rates
        with write_transaction(self.app.engine) as conn:
            sent = [(row, result) for row, result in results if result.outcome == "sent"]
            if sent:  # one executemany
                conn.execute(_SENT, [{"row_id": row.id, "pid": result.provider_id, "at": now} for row, result in sent])
                stats.counts["sent"] += len(sent)
                written.update((row.campaign_id, "sent") for row, _ in sent)
            others = [(row, result) for row, result in results if result.outcome != "sent"]
            if others or render_failures:
                with Session(bind=conn, expire_on_commit=False) as session:
                    self._record_others(session, others, render_failures, now, stats, written)
                    session.flush()
            if mark:
                conn.execute(_MARK_SENDING, {"ids": mark, "at": now})
            changed = changed_since(conn, marks) if marks is not None else set()
            for campaign_id in {cid for cid, _ in written} | (batch_campaigns or set()):
                self._auto_pause(conn, campaign_id, now, written)
        return stats, changed

    def _record_others(self, session: Session, results: list[tuple[Claimed, SendResult]],
                       render_failures: list[tuple[Claimed, str]], now: datetime, stats: DispatchStats,
                       written: Counter[tuple[int, str]]) -> None:
        """Every outcome but `sent`; counts what moves the auto-pause rates into `written`."""
        s = self.settings.sending
        table = Delivery.__table__
        d = table.c
        conn = session.connection()
        for row, reason in render_failures:
            conn.execute(update(table).where(d.id == row.id).values(state="failed", error=reason[:500], lease_until=None, updated_at=now))
            stats.counts["failed"] += 1
            written[(row.campaign_id, "failed")] += 1
        for row, result in results:
            outcome = result.outcome
            values: dict = {"lease_until": None, "updated_at": now, "error": result.detail}  # type: ignore[type-arg]
            if outcome == "transient":
                too_old = now - row.created_at > timedelta(hours=s.max_retry_age_hours)
                if row.attempts >= s.max_attempts or too_old:
                    values.update(state="failed", error=f"gave up after {row.attempts} attempts: {result.detail}"[:500])
                    outcome = "failed"
                else:
                    values.update(state="retry_wait", due_at=now + backoff(s.retry_base_seconds, row.attempts, self._rng))
                    outcome = "retry_wait"
            elif outcome == "hard_bounce":
                values.update(state="failed")
                self._hard_bounce(session, row, result, now)
            elif outcome == "policy":
                # The server refuses us, not this address: hold the campaign, requeue the row.
                values.update(state="queued", attempts=d.attempts - 1)
                conn.execute(update(Campaign.__table__).where(Campaign.id == row.campaign_id, Campaign.status.not_in(("cancelled",)))
                             .values(status="paused", status_reason=f"paused: the {row.channel} provider refused us ({result.detail})"[:500], updated_at=now))
            elif outcome == "unknown":
                values.update(state="unknown")
            elif outcome == "suppressed":
                values.update(state="suppressed", attempts=d.attempts - 1)
            elif outcome == "released":  # never handed over (the campaign was refused mid-batch)
                values.update(state="queued", attempts=d.attempts - 1)
            else:
                values.update(state="failed")
            conn.execute(update(table).where(d.id == row.id, d.state.in_(IN_FLIGHT)).values(**values))
            stats.counts[outcome] += 1
            if values.get("state") in ("failed", "unknown"):
                written[(row.campaign_id, values["state"])] += 1
            if outcome == "hard_bounce":
                written[(row.campaign_id, "bounce")] += 1

    def _hard_bounce(self, session: Session, row: Claimed, result: SendResult, now: datetime) -> None:
        target = bounces.Target(row.id, row.campaign_id, row.contact_id, row.channel)
        bounces.record(session, self.settings, target, "bounce", at=now, source=f"{row.channel} send", detail=result.detail)

    def _auto_pause(self, conn, campaign_id: int, now: datetime, written: Counter[tuple[int, str]]) -> None:  # type: ignore[no-untyped-def]
        """Pause a campaign whose hard-bounce or failure rate passed its threshold.

        The rates need counts over the whole campaign, which is a scan of its deliveries:
        done after every batch, that is a cost per batch that grows with the audience.
        So the counts are read from the database at most every RATES_RESYNC_SECONDS per
        campaign (that also picks up other workers' outcomes and bounces reported later), and
        in between this dispatcher adds what it writes itself (`written`, this transaction).
        """
        s = self.settings.sending
        rates = self._rates.get(campaign_id)
        if rates is None or time.monotonic() - rates["synced"] > RATES_RESYNC_SECONDS:
            d = Delivery.__table__.c
            counts = dict(conn.execute(select(d.state, func.count()).where(
                d.campaign_id == campaign_id, d.state.in_(("sent", "failed", "unknown"))).group_by(d.state)).all())
            bounces = conn.execute(select(func.count()).select_from(Event.__table__).where(
                Event.campaign_id == campaign_id, Event.type == "bounce")).scalar_one()
            # Read inside this transaction, after its writes: `written` is already counted.
            rates = self._rates[campaign_id] = {"synced": time.monotonic(), "bounce": bounces,
                                                **{k: counts.get(k, 0) for k in ("sent", "failed", "unknown")}}
        else:
            for kind in ("sent", "failed", "unknown", "bounce"):
                rates[kind] += written.get((campaign_id, kind), 0)
        total = rates["sent"] + rates["failed"] + rates["unknown"]
        if total < s.auto_pause_min_sample:
            return
        failure_rate = rates["failed"] / total
        bounce_rate = rates["bounce"] / total
        reason = None
        if bounce_rate > s.auto_pause_bounce_rate:
            reason = f"auto-paused: hard-bounce rate {bounce_rate:.1%} passed {s.auto_pause_bounce_rate:.1%}"
        elif failure_rate > s.auto_pause_failure_rate:
            reason = f"auto-paused: failure rate {failure_rate:.1%} passed {s.auto_pause_failure_rate:.1%}"
        if reason:
            paused = conn.execute(update(Campaign.__table__).where(Campaign.id == campaign_id, Campaign.status.in_(("scheduled", "draft")))
                                  .values(status="paused", status_reason=reason, updated_at=now))
            if paused.rowcount:
                log.warning("campaign #%s %s", campaign_id, reason)
                self._paused_now.add(campaign_id)

__all__ = ["DispatchStats", "Dispatcher", "backoff", "session_factory"]
