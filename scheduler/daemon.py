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
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import func, select

from campaigns.context import App
from campaigns.models import Campaign, ProcessHeartbeat
from campaigns.timespec import utcnow
from campaigns.vocab import CampaignStatus
from scheduler.dispatcher import Dispatcher
from scheduler.firings import fire_at, keys_between
from scheduler.jobs import tick
from scheduler.locks import DaemonLock

log = logging.getLogger("campaigns.daemon")
SYNC_SECONDS = 15
DRIP_SECONDS = 60


def heartbeat(app: App, name: str, role: str, info: dict | None = None, stopping: bool = False) -> None:  # type: ignore[type-arg]
    """Upsert this process's heartbeat row (removed when it stops cleanly)."""
    with app.session() as s:
        row = s.scalar(select(ProcessHeartbeat).where(ProcessHeartbeat.name == name))
        if stopping:
            if row is not None:
                s.delete(row)
            return
        now = utcnow()
        if row is None:
            s.add(ProcessHeartbeat(name=name, role=role, started_at=now, last_seen=now, info=info or {}))
        else:
            row.last_seen, row.info = now, info or row.info


class Daemon:
    """One per database. `run(stop)` returns after a clean shutdown."""

    def __init__(self, app: App, *, tracking: bool = True, dispatch: bool = True) -> None:
        self.app = app
        self.tracking = tracking
        self.dispatch = dispatch
        self.name = f"daemon@{socket.gethostname()}:{os.getpid()}"
        self._scheduler: AsyncIOScheduler | None = None
        self._stamp: datetime | None = None

    def _fire(self, campaign_id: int | None = None) -> None:
        report = tick(self.app, utcnow(), None if campaign_id is None else [campaign_id])
        for name, key, counts in report.planned:
            log.info("campaign %s: firing %s planned: %s", name, key.isoformat(), counts)
        for name in report.completed:
            log.info("campaign %s: completed", name)

    def _sync(self) -> None:
        """Rebuild one job per scheduled campaign when the campaign table changed."""
        with self.app.session() as s:
            stamp = s.scalar(select(func.max(Campaign.updated_at)))
            if stamp == self._stamp and self._stamp is not None:
                return
            self._stamp = stamp
            campaigns = list(s.scalars(select(Campaign).where(Campaign.status == CampaignStatus.SCHEDULED)))
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
        self._fire()  # catch up anything the rebuild landed after
        log.info("scheduler: %d campaign jobs", len(campaigns))

    async def run(self, stop: asyncio.Event) -> None:
        """Hold the lock, schedule, dispatch and track until `stop` is set."""
        lock = DaemonLock(self.app.ready_engine())
        lock.acquire()
        tasks: list[asyncio.Task] = []  # type: ignore[type-arg]
        try:
            log.info("daemon %s started on %s", self.name, self.app.settings.source)
            heartbeat(self.app, self.name, "daemon", {"pid": os.getpid()})
            self._fire()  # firings missed while down: planned now if inside their grace window
            self._scheduler = AsyncIOScheduler(timezone=UTC)
            self._scheduler.add_job(self._sync, IntervalTrigger(seconds=SYNC_SECONDS, timezone=UTC), id="sync",
                                    next_run_time=datetime.now(UTC), coalesce=True, max_instances=1)
            self._scheduler.add_job(lambda: heartbeat(self.app, self.name, "daemon", {"pid": os.getpid()}),
                                    IntervalTrigger(seconds=10, timezone=UTC), id="heartbeat", coalesce=True)
            self._scheduler.start()
            if self.dispatch:
                tasks.append(asyncio.create_task(Dispatcher(self.app, worker_name=self.name).run(stop)))
            if self.tracking:
                serve = _tracking_server()
                if serve is not None:
                    tasks.append(asyncio.create_task(serve(self.app.settings, stop)))
            await stop.wait()
            log.info("daemon stopping: finishing in-flight sends")
        finally:
            if self._scheduler is not None and self._scheduler.running:
                self._scheduler.shutdown(wait=False)
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(task, timeout=self.app.settings.sending.lease_seconds)
            with contextlib.suppress(Exception):
                heartbeat(self.app, self.name, "daemon", stopping=True)
            lock.release()
            log.info("daemon stopped")


def _tracking_server():  # type: ignore[no-untyped-def]
    try:
        from campaigns.tracking.server import serve
    except ImportError:
        return None
    return serve


def run_until_signalled(coro_factory) -> None:  # type: ignore[no-untyped-def]
    """Run `coro_factory(stop)` with SIGTERM/SIGINT setting `stop`."""
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await coro_factory(stop)

    asyncio.run(main())
