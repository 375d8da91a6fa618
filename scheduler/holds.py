"""Pause means pause: no message of a halted campaign is handed over after `pause` returned.

Two halves meet here:

- Every sender, in the transaction that writes one wave's outcomes and marks the next wave
  `sending` (scheduler/record.py), reads the status of the next wave's campaigns
  (`campaign_states`); rows of a campaign paused or cancelled by then are not marked, and
  the hand-over releases them (queued again), never handing them over.
- `pause` commits the new status and then `settle`s: it waits (at most a second) until no
  row of the campaign is `sending` anywhere. A sender that read the status just before the
  pause committed marks that wave `sending` within moments and hands it over: `settle`
  waits for it. Every other wave of the campaign sees the pause first. So when `pause`
  returns, every message of that campaign was either handed over before it returned or is
  back in (or on its way back to) the queue.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Connection, Engine, bindparam, func, select, update

from campaigns.context import App
from campaigns.errors import InputError, NotFoundError
from campaigns.messages.templates_store import load_template
from campaigns.store.models import Campaign, Delivery
from scheduler.outbox import Claimed, write_transaction

log = logging.getLogger("campaigns.dispatcher")
PAUSABLE = ("scheduled", "draft")
SETTLE_SECONDS = 1.0  # pause waits at most this long for waves being handed over
SETTLE_GRACE = 0.2  # ... and at least this long, for a wave whose status look came just before the pause


# Built once: it runs in every wave's write.
_STATES = select(Campaign.id, Campaign.status, Campaign.updated_at).where(Campaign.id.in_(bindparam("ids", expanding=True)))


def campaign_states(conn: Connection, campaign_ids: Iterable[int]) -> dict[int, tuple[str, datetime | None]]:
    """(status, updated_at) of each of `campaign_ids` now (one primary-key read); a status in
    in `scheduler.outbox.HALTED` means its rows go back to the queue instead of out."""
    ids = sorted(set(campaign_ids))
    if not ids:
        return {}
    return {cid: (status, changed) for cid, status, changed in conn.execute(_STATES, {"ids": ids})}


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
