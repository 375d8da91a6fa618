"""The dispatcher: the send loop, batch after batch, and the order of the stages.

Per batch: claim (`outbox.py`: one short transaction, consent re-checked) -> throttles and
the frequency cap (`pacing.py`: what does not fit waits in the queue, unrendered) -> render
(`render_stage.py`: one transaction, coupons and tracked links are written) -> hand over
in waves (`handover.py`) -> record every outcome (`record.py`, deciding each row's next
state with `outcomes.py`, checking the auto-pause rates with `autopause.py`).
States: queued -> claimed -> sending -> sent | retry_wait | failed | suppressed | unknown.
A crash between claim and record leaves rows `claimed` or `sending`; when their lease
expires `claimed` ones are queued again and `sending` ones become `unknown`: at most the
in-flight messages of a crash are unknown, none are sent twice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
from contextlib import nullcontext
from datetime import datetime

from campaigns.audience import stopped
from campaigns.context import App
from campaigns.errors import ConfigError
from campaigns.messages import dkim_signing
from campaigns.store.db import session_factory
from campaigns.timespec import utcnow
from scheduler import exits, pacing
from scheduler.autopause import AutoPause
from scheduler.channels import Channel, SendResult
from scheduler.dkim_pool import DkimPool
from scheduler.handover import Handover
from scheduler.holds import pause_dead_templates
from scheduler.jobs import settle_campaigns
from scheduler.outbox import (
    DB_DOWN,
    Claimed,
    claim,
    expire_leases,
    first_line,
    watermarks,
)
from scheduler.outcomes import backoff
from scheduler.record import DispatchStats, Recorder
from scheduler.render_stage import RenderStage
from scheduler.transport import make_channels

log = logging.getLogger("campaigns.dispatcher")


def default_worker_name() -> str:
    """role@host:pid, unique per process."""
    return f"worker@{socket.gethostname()}:{os.getpid()}"


class Dispatcher:
    """Sends what is due. Several dispatchers (processes, machines) can share one database."""

    def __init__(self, app: App, *, worker_name: str | None = None, channels: dict[str, Channel] | None = None) -> None:
        self.app = app
        self.settings = app.settings
        self.worker = worker_name or default_worker_name()
        self.channels = channels
        self._dkim: DkimPool | None = None
        self._renderer = RenderStage(app)
        self._recorder = Recorder(app, AutoPause(self.settings.sending), random.Random(), self.worker)
        self._use_signer(dkim_signing.signer(self.settings))  # a bad DKIM setup stops the sender here, in one line
        self._stop: asyncio.Event | None = None  # set by run(): a stop is checked between batches and waves

    def _use_signer(self, signer: dkim_signing.DkimSigner | None) -> None:
        """Sign with `signer` from now on (a changed key file starts a fresh pool)."""
        if self._dkim is not None and self._dkim.signer == signer:
            return
        if self._dkim is not None:
            self._dkim.close()
        self._dkim = DkimPool(signer, self.settings.smtp.dkim_processes) if signer is not None else None

    def _channels(self) -> dict[str, Channel]:
        if self.channels is None:
            self.channels = make_channels(self.settings)
        return self.channels

    async def dispatch_once(self, now: datetime | None = None) -> DispatchStats:
        """Send everything due at `now` (default: the real clock), batch after batch, then return.

        A campaign whose last row is final moves on (`settle_campaigns`) as soon as a batch
        comes without it, or when this returns: settling after every batch cost a write
        transaction per batch while the campaign plainly had rows left."""
        stats = DispatchStats()
        fixed = now
        engine = self.app.ready_engine()
        stopped.listen(engine)  # other processes' unsubscribes reach this sender's hand-over check
        expire_leases(engine, self.settings, fixed or utcnow())
        unsettled: set[int] = set()  # campaigns of the batches sent since they were last settled
        at = fixed or utcnow()
        try:
            while True:
                if self._stop is not None and self._stop.is_set():  # SIGTERM: no new batch
                    return stats
                at = fixed or utcnow()
                with engine.connect() as conn:
                    marks = watermarks(conn)
                batch = claim(engine, self.settings, self.worker, at, self.settings.sending.batch_size)
                if not batch:
                    return stats
                going_on = {row.campaign_id for row in batch}
                if unsettled - going_on:
                    settle_campaigns(self.app, unsettled - going_on, at)
                unsettled &= going_on
                stats.add(await self._process(batch, at, marks))
                unsettled |= going_on
        finally:
            if unsettled:
                settle_campaigns(self.app, unsettled, at)

    async def run(self, stop: asyncio.Event) -> None:
        """Loop until `stop` is set: the wave in flight is finished and recorded, the rest of
        its batch released (scheduler/holds.py), then it returns."""
        self._stop = stop
        try:
            while not stop.is_set():
                try:
                    stats = await self.dispatch_once()
                except Exception as exc:  # the database went away: wait and try again
                    log.warning("dispatch paused: %s: %s", type(exc).__name__, first_line(exc))
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
        """Close transport connections and stop the signing process."""
        for channel in (self.channels or {}).values():
            await channel.close()
        if self._dkim is not None:
            self._dkim.close()

    async def _process(self, batch: list[Claimed], now: datetime, marks: tuple[int, int] = (0, 0)) -> DispatchStats:
        """One claimed batch: render, hand over in waves, record what is left."""
        record = self._recorder.write_when_possible
        try:
            pause_dead_templates(self.app, batch, now)  # a deleted template pauses its campaign, once
            batch = exits.check(self.app, batch, now)  # --exit-when / --goal: who left their journey goes no further
            if not batch:
                return DispatchStats()
            campaigns = {r.campaign_id for r in batch}
            # Throttles and the frequency cap: what does not fit is queued again, due when it
            # fits, before it is rendered (no coupon taken, no rendering time spent on it).
            batch = [row for row, _ in pacing.hold(self.app, [(row, None) for row in batch], now)]
            self._use_signer(dkim_signing.signer(self.settings))  # cached; re-read when the key file changes
            # DKIM: each email goes to the signing process as soon as it is rendered, so the
            # signatures are made while the rest of the batch renders (scheduler/dkim_pool.py).
            stream = self._dkim.stream() if self._dkim is not None else None
            with stream or nullcontext():
                messages, failures = self._renderer.render(
                    batch, on_email=(lambda row, email: stream.add(row.id, email.data)) if stream is not None else None)
            signing = stream.futures if stream is not None else {}
        except DB_DOWN as exc:  # the database went away after the claim: nothing was handed over
            note = f"database unavailable before sending: {first_line(exc)}"
            return await record([(row, SendResult("transient", None, note)) for row in batch], [], [], now)
        except ConfigError as exc:  # the setup (DKIM or secret key) went away mid-run: nothing was sent; retry after backoff
            log.error("batch not sent: %s", exc)
            return await record([(row, SendResult("transient", None, str(exc)[:300])) for row in batch], [], [], now)
        stats = DispatchStats()
        handover = Handover(self.app, self._channels(), self._recorder)
        handover.stopping = self._stop
        left = await handover.run(messages, failures, now, marks, stats, signing)
        stats.add(await record(left.done, left.failures, left.released, now, batch_campaigns=campaigns))
        return stats


__all__ = ["DispatchStats", "Dispatcher", "backoff", "default_worker_name", "session_factory"]
