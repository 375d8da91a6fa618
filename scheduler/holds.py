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

import time
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Connection, Engine, func, select, update

from campaigns.models import Campaign, Delivery

HALTED = ("paused", "cancelled")
SETTLE_SECONDS = 1.0


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
