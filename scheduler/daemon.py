"""The daemon: the lock, APScheduler as the clock, the dispatcher, the tracking app, signals.

Jobs are rebuilt from the campaign table at start and whenever a campaign changes (a
sync job compares the table's newest `updated_at`); each job only calls `tick_campaign`,
which is idempotent, so a job fired twice or late never plans a firing twice. Firings
missed while the daemon was down are planned at start when inside their grace window.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import func, select

from campaigns.context import App
from campaigns.errors import ConflictError
from campaigns.store.models import Campaign
from campaigns.timespec import utcnow
from campaigns.vocab import CampaignStatus
from scheduler import winner
from scheduler.dispatcher import Dispatcher
from scheduler.firings import fire_at, keys_between
from scheduler.jobs import ensure_request_campaigns, tick
from scheduler.liveness import beat, heartbeat, release_own
from scheduler.locks import DaemonLock

log = logging.getLogger("campaigns.daemon")
SYNC_SECONDS = 15
STOP_GRACE_SECONDS = 8.0  # SIGTERM: the wave in flight gets this long; the process exits within 10 s
LOCK_CHECK_SECONDS = 2.0  # how long the lock can be free after its session was lost
DRIP_SECONDS = 60


class Daemon:
    """One per database. `run(stop)` returns after a clean shutdown."""

    def __init__(self, app: App, *, tracking: bool = True, dispatch: bool = True) -> None:
        self.app = app
        self.tracking = tracking
        self.dispatch = dispatch
        self.name = f"daemon@{socket.gethostname()}:{os.getpid()}"
        self._scheduler: AsyncIOScheduler | None = None
        self._stamp: datetime | None = None
        self._synced = False  # no campaign at all has the stamp None too

    def _fire(self, campaign_id: int | None = None) -> None:
        report = tick(self.app, utcnow(), None if campaign_id is None else [campaign_id])
        for name, key, counts in report.planned:
            log.info("campaign %s: firing %s planned: %s", name, key.isoformat(), counts)
        for name in report.completed:
            log.info("campaign %s: completed", name)

    def _beat(self) -> None:
        """The heartbeat, and the rows of dead workers released (see scheduler.liveness)."""
        try:
            beat(self.app, self.name, "daemon")
        except Exception as exc:
            log.warning("heartbeat failed: %s: %s", type(exc).__name__, (str(exc).splitlines() or [""])[0][:200])

    def _sync(self) -> None:
        """Rebuild one job per scheduled campaign when the campaign table changed."""
        ensure_request_campaigns(self.app)  # a new double opt-in request campaign changes the table
        with self.app.session() as s:
            stamp = s.scalar(select(func.max(Campaign.updated_at)))
            if self._synced and stamp == self._stamp:
                return
            self._stamp, self._synced = stamp, True
            campaigns = list(s.scalars(select(Campaign).where(Campaign.status == CampaignStatus.SCHEDULED)))
            decisions = [(c.id, r.id, winner.decide_at(c, r)) for c, r in winner.undecided(s)]
        assert self._scheduler is not None
        for job in self._scheduler.get_jobs():
            if job.id.startswith("campaign-"):
                job.remove()
        now = utcnow()
        for c in campaigns:
            if c.schedule_kind == "drip":
                trigger = IntervalTrigger(seconds=DRIP_SECONDS, timezone=UTC)
            else:
                keys = keys_between(c, now - timedelta(seconds=1), now + timedelta(days=400), limit=1)
                if not keys:
                    continue
                trigger = DateTrigger(run_date=max(fire_at(c, keys[0]), now), timezone=UTC)
            self._scheduler.add_job(self._fire, trigger, args=[c.id], id=f"campaign-{c.id}", replace_existing=True,
                                    misfire_grace_time=None, coalesce=True, max_instances=1)
        for cid, run_id, at in decisions:  # an A/B winner to decide: the tick at that moment sends the rest
            self._scheduler.add_job(self._fire, DateTrigger(run_date=max(at, now), timezone=UTC), args=[cid],
                                    id=f"campaign-winner-{run_id}", replace_existing=True, misfire_grace_time=None,
                                    coalesce=True, max_instances=1)
        self._fire()  # catch up anything the rebuild landed after
        log.info("scheduler: %d campaign jobs", len(campaigns))

    async def run(self, stop: asyncio.Event) -> None:
        """Hold the lock, schedule, dispatch and track until `stop` is set."""
        lock = DaemonLock(self.app.ready_engine())
        lock.acquire()
        tasks: list[asyncio.Task[Any]] = []
        lost: list[ConflictError] = []
        guard = asyncio.create_task(_guard_lock(lock, stop, lost))
        try:
            log.info("daemon %s started on %s", self.name, self.app.settings.source)
            heartbeat(self.app, self.name, "daemon")
            self._fire()  # firings missed while down: planned now if inside their grace window
            self._scheduler = AsyncIOScheduler(timezone=UTC)
            # Housekeeping runs however late a busy machine makes it (misfire_grace_time=None): with
            # APScheduler's default of 1 s a loaded host logged "Run time of job ... was missed"
            # warnings every few seconds for jobs whose lateness harms nothing.
            self._scheduler.add_job(self._sync, IntervalTrigger(seconds=SYNC_SECONDS, timezone=UTC), id="sync",
                                    next_run_time=datetime.now(UTC), coalesce=True, max_instances=1, misfire_grace_time=None)
            beat_every = self.app.settings.sending.heartbeat_seconds
            self._scheduler.add_job(self._beat, IntervalTrigger(seconds=beat_every, timezone=UTC), id="heartbeat",
                                    coalesce=True, max_instances=1, misfire_grace_time=None)
            self._scheduler.start()
            if self.dispatch:
                tasks.append(asyncio.create_task(Dispatcher(self.app, worker_name=self.name).run(stop), name="the dispatcher"))
            if self.tracking:
                from campaigns.tracking.server import serve  # loaded only when asked for; a broken one fails loudly
                tasks.append(asyncio.create_task(serve(self.app.settings, stop), name="the tracking server"))
            await stop.wait()
            log.info("daemon stopping: finishing in-flight sends")
        finally:
            if self._scheduler is not None and self._scheduler.running:
                self._scheduler.shutdown(wait=False)
            clean = await finish(tasks)
            guard.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await guard
            with contextlib.suppress(Exception):
                release_own(self.app, self.name, in_flight=not clean)
                heartbeat(self.app, self.name, "daemon", stopping=True)
            lock.release()
            log.info("daemon stopped")
        if lost:
            raise lost[0]


async def finish(tasks: list[asyncio.Task[Any]]) -> bool:
    """Give `tasks` (the dispatcher finishing its wave in flight) STOP_GRACE_SECONDS, then
    cancel what is left. True when all finished by themselves."""
    if not tasks:
        return True
    _done, pending = await asyncio.wait(tasks, timeout=STOP_GRACE_SECONDS)
    for task in pending:
        log.warning("stopping: %s did not finish within %.0f s; cancelled", task.get_name(), STOP_GRACE_SECONDS)
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return not pending


async def _guard_lock(lock: DaemonLock, stop: asyncio.Event, lost: list[ConflictError]) -> None:
    """Check the lock every LOCK_CHECK_SECONDS; take it back when its session was lost, or
    stop this daemon when another one took it meanwhile (two never run at once)."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=LOCK_CHECK_SECONDS)
        if stop.is_set():
            return
        try:
            await asyncio.to_thread(lock.ensure)
        except ConflictError:
            log.error("daemon lock: another daemon took it after this one lost its session; stopping")
            lost.append(ConflictError("another daemon took over this database after this daemon lost its lock; stopped"))
            stop.set()
        except Exception as exc:
            log.warning("daemon lock: cannot check it: %s", (str(exc).splitlines() or [""])[0][:200])


def run_until_signalled(coro_factory: Callable[[asyncio.Event], Awaitable[Any]]) -> None:
    """Run `coro_factory(stop)` with SIGTERM/SIGINT setting `stop`."""
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await coro_factory(stop)

    asyncio.run(main())
