"""Pause means pause: no message of a halted campaign is handed over after `pause` returned.

Two halves meet here:

- Every sender, in the transaction that marks its next wave `sending` (scheduler/handover),
  asks `release_halted` which of the batch's campaigns are paused or cancelled now; that
  sender's `claimed` rows of those campaigns go back to the queue and leave the batch.
- `pause` commits the new status and then `settle`s: it waits (at most a second) until no
  row of the campaign is `claimed` or `sending` anywhere. A sender that read the status
  just before the pause committed still holds its rows `claimed` (or `sending`, when its
  wave went out first): `settle` sees them and waits for the wave to be recorded and the
  rest to be released. So when `pause` returns, every message of that campaign was either
  handed over before it returned or is back in the queue.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, select, update

from campaigns.context import App
from campaigns.errors import InputError, NotFoundError
from campaigns.models import Campaign, Delivery
from campaigns.templates_store import load_template
from scheduler.outbox import Claimed, write_transaction

log = logging.getLogger("campaigns.dispatcher")
HALTED = ("paused", "cancelled")
PAUSABLE = ("scheduled", "draft")
SETTLE_SECONDS = 1.0


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


def hold_dead_templates(app: App, batch: list[Claimed], now: datetime) -> list[Claimed]:
    """The batch without rows whose template cannot be loaded (its folder or files gone).

    Their campaign is paused with the reason, once (one WARNING); the rows go back to the
    queue, so restoring the template and `resume` sends them. Rows of a campaign that cannot
    be paused (completed) fail with the reason instead: a row is never claimed forever.
    """
    dead: dict[str, str] = {}
    for name in {row.template_name or "" for row in batch}:
        try:
            load_template(app.settings, name)
        except (NotFoundError, InputError) as exc:
            dead[name] = str(exc)
    if not dead:
        return batch
    gone = [row for row in batch if (row.template_name or "") in dead]
    with write_transaction(app.engine) as conn:
        for campaign_id in {row.campaign_id for row in gone}:
            reason = next(dead[row.template_name or ""] for row in gone if row.campaign_id == campaign_id)
            paused = conn.execute(update(Campaign).where(Campaign.id == campaign_id, Campaign.status.in_(PAUSABLE)).values(
                status="paused", status_reason=f"paused: {reason}"[:500], updated_at=now)).rowcount
            ids = [row.id for row in gone if row.campaign_id == campaign_id]
            held = conn.scalar(select(Campaign.status).where(Campaign.id == campaign_id)) in HALTED
            if paused:
                log.warning("campaign #%s paused: %s", campaign_id, reason)
            conn.execute(update(Delivery).where(Delivery.id.in_(ids), Delivery.state == "claimed").values(
                lease_until=None, updated_at=now,
                **({"state": "queued", "attempts": Delivery.attempts - 1} if held else {"state": "failed", "error": f"render: {reason}"[:500]})))
    return [row for row in batch if (row.template_name or "") not in dead]


def release_halted(conn: Connection, worker: str, campaign_ids: Iterable[int], now: datetime) -> set[int]:
    """Campaigns among `campaign_ids` halted now; `worker`'s claimed rows of them are queued again."""
    ids = set(campaign_ids)
    if not ids:
        return set()
    halted = set(conn.scalars(select(Campaign.id).where(Campaign.id.in_(ids), Campaign.status.in_(HALTED))))
    if halted:
        conn.execute(update(Delivery).where(Delivery.campaign_id.in_(halted), Delivery.claimed_by == worker,
                                            Delivery.state == "claimed")
                     .values(state="queued", attempts=Delivery.attempts - 1, lease_until=None, updated_at=now))
    return halted


def in_flight(engine: Engine, campaign_id: int) -> int:
    """Rows of the campaign some sender holds (claimed or being handed over)."""
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(Delivery).where(
            Delivery.campaign_id == campaign_id, Delivery.state.in_(("claimed", "sending")))) or 0


def settle(engine: Engine, campaign_id: int, timeout: float = SETTLE_SECONDS) -> int:
    """After a pause: wait until the campaign's in-flight rows are recorded or released
    (at most `timeout`); returns how many were still held when it gave up (0: settled)."""
    deadline = time.monotonic() + timeout
    while True:
        held = in_flight(engine, campaign_id)
        if held == 0 or time.monotonic() >= deadline:
            return held
        time.sleep(0.05)
