"""Pause means pause: no message of a halted campaign is handed over after `pause` returned.

Two halves meet here:

- Every sender, before each wave (`before_wave`, called by scheduler/handover.py), asks
  which of the batch's campaigns are paused or cancelled now; its rows of those campaigns
  are released (queued again) in the write that precedes the wave, never handed over.
- `pause` commits the new status and then `settle`s: it waits (at most a second) until no
  row of the campaign is `sending` anywhere. A sender that read the status just before the
  pause committed marks that wave `sending` within moments and hands it over: `settle`
  waits for it. Every other wave of the campaign sees the pause first. So when `pause`
  returns, every message of that campaign was either handed over before it returned or is
  back in (or on its way back to) the queue.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select, update

from campaigns.context import App
from campaigns.errors import InputError, NotFoundError
from campaigns.messages.templates_store import load_template
from campaigns.store.models import Campaign, Delivery
from scheduler.outbox import Claimed, write_transaction

log = logging.getLogger("campaigns.dispatcher")
HALTED = ("paused", "cancelled")
PAUSABLE = ("scheduled", "draft")
SETTLE_SECONDS = 1.0  # pause waits at most this long for waves being handed over
SETTLE_GRACE = 0.2  # ... and at least this long, for a wave whose status look came just before the pause


def halted_now(engine: Engine, campaign_ids: Iterable[int]) -> set[int]:
    """Which of `campaign_ids` are paused or cancelled now (one primary-key read)."""
    ids = set(campaign_ids)
    if not ids:
        return set()
    with engine.connect() as conn:
        return set(conn.scalars(select(Campaign.id).where(Campaign.id.in_(ids), Campaign.status.in_(HALTED))))


def before_wave(engine: Engine, pending: Sequence[tuple[Claimed, Any]], paused: set[int], stopping: asyncio.Event | None,
                released: list[Claimed]) -> bool:
    """The hand-over's last look before a wave. `pending`: the batch's rows not handed over yet.

    The sender is stopping (SIGTERM): every pending row goes to `released` and the answer is
    True (hand over nothing more). Otherwise campaigns paused or cancelled meanwhile, by
    anyone, join `paused`, whose rows the hand-over releases instead of sending.
    """
    if stopping is not None and stopping.is_set():
        released.extend(row for row, _ in pending)
        return True
    paused |= halted_now(engine, {row.campaign_id for row, _ in pending} - paused)
    return False


def pause_dead_templates(app: App, batch: list[Claimed], now: datetime) -> None:
    """A template that cannot be loaded (its folder or files gone) pauses its campaign with the
    reason, once (one WARNING), so the rest of the audience waits for the fix instead of failing
    batch after batch. The batch's own rows still fail with the reason at rendering; restore
    the template, then `campaigns retry NAME` and `campaigns resume NAME`."""
    dead: dict[str, str] = {}
    for name in {row.template_name or "" for row in batch}:
        try:
            load_template(app.settings, name)
        except (NotFoundError, InputError) as exc:
            dead[name] = str(exc)
    if not dead:
        return
    reasons = {row.campaign_id: dead[row.template_name or ""] for row in batch if (row.template_name or "") in dead}
    with write_transaction(app.engine) as conn:
        for campaign_id, reason in reasons.items():
            paused = conn.execute(update(Campaign).where(Campaign.id == campaign_id, Campaign.status.in_(PAUSABLE)).values(
                status="paused", status_reason=f"paused: {reason}"[:500], updated_at=now)).rowcount
            if paused:
                log.warning("campaign #%s paused: %s", campaign_id, reason)


def in_flight(engine: Engine, campaign_id: int) -> int:
    """Rows of the campaign being handed over now (`sending`)."""
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(Delivery).where(
            Delivery.campaign_id == campaign_id, Delivery.state == "sending")) or 0


def settle(engine: Engine, campaign_id: int, timeout: float = SETTLE_SECONDS, grace: float = SETTLE_GRACE) -> int:
    """After a pause: wait until no wave of the campaign is being handed over (at least
    `grace`, at most `timeout`); returns how many rows were still `sending` when it gave up.

    A sender that looked at the status just before the pause committed marks its wave
    `sending` within moments: `grace` covers that, and the wait covers the wave. Rows merely
    `claimed` need no wait: their sender sees the pause before their wave and releases them.
    """
    start = time.monotonic()
    while True:
        held = in_flight(engine, campaign_id)
        waited = time.monotonic() - start
        if (held == 0 and waited >= grace) or waited >= timeout:
            return held
        time.sleep(0.05)
