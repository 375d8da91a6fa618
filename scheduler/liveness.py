"""Who is alive: a heartbeat per daemon and worker, and the rows of dead ones released.

Every sending process upserts its `process_heartbeat` row every `[sending] heartbeat_seconds`
(5 s by default), with its host and pid. Each beat also looks for dead senders: one on this host whose pid is gone
(a SIGKILL, an OOM kill: known at once), or one anywhere silent for DEAD_AFTER or for
MISSED_BEATS of its own beats, whichever is longer (each row says how often its process
beats: processes with different `heartbeat_seconds` judge each other right). Its
`claimed` rows were never handed over and go back to the queue at once; its `sending`
rows may have gone out and become `unknown` (or queued, with `resend_unknown`), exactly
what the lease's end would do, but seconds after the death instead of `lease_seconds`.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, select, update

from campaigns.config import Settings
from campaigns.context import App
from campaigns.store.models import Delivery, ProcessHeartbeat
from campaigns.timespec import utcnow
from scheduler.outbox import write_transaction

log = logging.getLogger("campaigns.liveness")
# A sender on another host is dead when not seen for this long. Generous: a live sender
# that lost its rows would find them re-claimed by another (its writes check the owner).
DEAD_AFTER = timedelta(seconds=60)
MISSED_BEATS = 3  # ... and never before it missed this many of its own beats
HOST = socket.gethostname()


def identity() -> dict[str, Any]:
    """What a heartbeat carries so others can tell whether this process is alive."""
    return {"pid": os.getpid(), "host": HOST}


def heartbeat(app: App, name: str, role: str, info: dict[str, Any] | None = None, stopping: bool = False) -> None:
    """Upsert this process's heartbeat row (removed when it stops cleanly)."""
    with app.session() as s:
        row = s.scalar(select(ProcessHeartbeat).where(ProcessHeartbeat.name == name))
        if stopping:
            if row is not None:
                s.delete(row)
            return
        now = utcnow()
        info = {**identity(), "beat_seconds": app.settings.sending.heartbeat_seconds, **(info or {})}
        if row is None:
            s.add(ProcessHeartbeat(name=name, role=role, started_at=now, last_seen=now, info=info))
        else:
            row.last_seen, row.info = now, info


def _pid_gone(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False


def is_dead(row: ProcessHeartbeat, now: datetime) -> bool:
    """A heartbeat row whose process is gone: its pid on this host, or silent for DEAD_AFTER
    and for MISSED_BEATS of its own beats."""
    info = row.info or {}
    if info.get("host") == HOST and info.get("pid") != os.getpid() and _pid_gone(info.get("pid")):
        return True
    every = info.get("beat_seconds")
    limit = DEAD_AFTER
    if isinstance(every, (int, float)) and every > 0:
        limit = max(limit, timedelta(seconds=min(float(every), 86_400.0) * MISSED_BEATS))
    return now - row.last_seen > limit


def release_rows(conn: Connection, settings: Settings, worker: str, now: datetime, *, in_flight: bool) -> tuple[int, int]:
    """`worker`'s claimed rows back to the queue; with `in_flight`, its `sending` rows too
    (unknown, or queued with resend_unknown). Returns (queued, in flight settled)."""
    d = Delivery
    queued = conn.execute(update(Delivery).where(d.claimed_by == worker, d.state == "claimed").values(
        state="queued", attempts=d.attempts - 1, lease_until=None, updated_at=now,
        error="released before hand-over; queued again")).rowcount or 0
    settled = 0
    if in_flight:
        target = {"state": "queued", "error": "its sender died while sending; re-sent (resend_unknown is on)"} \
            if settings.sending.resend_unknown else \
            {"state": "unknown", "error": "its sender died while sending: it may or may not have been delivered"}
        settled = conn.execute(update(Delivery).where(d.claimed_by == worker, d.state == "sending")
                               .values(**target, lease_until=None, updated_at=now)).rowcount or 0
    return queued, settled


def release_own(app: App, worker: str, *, in_flight: bool = False) -> int:
    """At a stop: this process's claimed rows (never handed over) back to the queue; with
    `in_flight` (its sender was cancelled mid-wave) its `sending` rows settled too."""
    with write_transaction(app.ready_engine()) as conn:
        return release_rows(conn, app.settings, worker, utcnow(), in_flight=in_flight)[0]


def reap_dead(app: App, now: datetime | None = None) -> list[str]:
    """Release the rows of every dead sender and forget its heartbeat; returns their names."""
    now = now or utcnow()
    with app.session(write=False) as s:
        dead = [row.name for row in s.scalars(select(ProcessHeartbeat)) if is_dead(row, now)]
    for name in dead:
        with write_transaction(app.ready_engine()) as conn:
            queued, settled = release_rows(conn, app.settings, name, now, in_flight=True)
            conn.execute(delete(ProcessHeartbeat).where(ProcessHeartbeat.name == name))
        log.warning("sender %s is gone: %d claimed rows queued again, %d in flight marked %s", name, queued, settled,
                    "queued" if app.settings.sending.resend_unknown else "unknown")
    return dead


def beat(app: App, name: str, role: str) -> None:
    """One heartbeat and one look for dead senders (each beat of every daemon and worker)."""
    heartbeat(app, name, role)
    reap_dead(app)
