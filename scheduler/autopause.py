"""Auto-pause: hold a campaign whose hard-bounce or failure rate passed its threshold.

The rates judge the recent window: outcomes since the campaign's last change (a resume
starts afresh, so an outage's failures do not pause it again) and at most
`auto_pause_window_minutes` old.

The rates need counts over the whole campaign, which is a scan of its deliveries: done
after every batch, that is a cost per batch that grows with the audience. So the counts
are read from the database at most every RATES_RESYNC_SECONDS per campaign (that also
picks up other workers' outcomes and bounces reported later), and in between this worker
adds what it writes itself.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from datetime import datetime, timedelta

from sqlalchemy import Connection, func, select, update

from campaigns.config import SendingSettings
from campaigns.store.models import Campaign, Delivery, Event
from campaigns.vocab import CampaignStatus, DeliveryState, EventType

log = logging.getLogger("campaigns.dispatcher")
RATES_RESYNC_SECONDS = 30.0  # auto-pause counts: read from the database at most this often per campaign
COUNTED = (DeliveryState.SENT, DeliveryState.FAILED, DeliveryState.UNKNOWN)
BOUNCE = "bounce"  # the key hard bounces are counted under in `written`


class AutoPause:
    """Rates per campaign, kept in memory between resyncs; `paused_now` lists the campaigns
    this worker paused during the batch in hand (their remaining rows are released)."""

    def __init__(self, sending: SendingSettings) -> None:
        self.sending = sending
        self._rates: dict[int, dict[str, float]] = {}
        self._changed: dict[int, datetime | None] = {}  # campaign -> its updated_at when the rates were read
        self.paused_now: set[int] = set()

    def check(self, conn: Connection, campaign_id: int, changed: datetime | None, now: datetime,
              written: Counter[tuple[int, str]]) -> None:
        """Pause `campaign_id` if its rates passed a threshold; `changed`: its updated_at, read
        in this transaction after its writes; `written`: (campaign, kind) counts this
        transaction wrote (kind: sent, failed, unknown or bounce)."""
        s = self.sending
        rates = self._rates.get(campaign_id)
        # The recent window: outcomes since the campaign last changed (a resume, an edit) and
        # within the last auto_pause_window_minutes; a resume after an outage is judged afresh.
        since = max(changed or now, now - timedelta(minutes=s.auto_pause_window_minutes))
        if rates is None or self._changed.get(campaign_id) != changed or time.monotonic() - rates["synced"] > RATES_RESYNC_SECONDS:
            d = Delivery.__table__.c
            counts: dict[str, int] = dict(conn.execute(select(d.state, func.count()).where(
                d.campaign_id == campaign_id, d.state.in_(COUNTED), d.updated_at >= since).group_by(d.state)).all())
            bounces = conn.execute(select(func.count()).select_from(Event.__table__).where(
                Event.campaign_id == campaign_id, Event.type == EventType.BOUNCE, Event.occurred_at >= since)).scalar_one()
            # Read inside this transaction, after its writes: `written` is already counted.
            self._changed[campaign_id] = changed
            rates = self._rates[campaign_id] = {"synced": time.monotonic(), BOUNCE: bounces,
                                                **{k: counts.get(k, 0) for k in COUNTED}}
        else:
            for kind in (*COUNTED, BOUNCE):
                rates[kind] += written.get((campaign_id, kind), 0)
        total = sum(rates[k] for k in COUNTED)
        if total < s.auto_pause_min_sample:
            return
        failure_rate = rates[DeliveryState.FAILED] / total
        bounce_rate = rates[BOUNCE] / total
        reason = None
        if bounce_rate > s.auto_pause_bounce_rate:
            reason = f"auto-paused: hard-bounce rate {bounce_rate:.1%} passed {s.auto_pause_bounce_rate:.1%}"
        elif failure_rate > s.auto_pause_failure_rate:
            reason = f"auto-paused: failure rate {failure_rate:.1%} passed {s.auto_pause_failure_rate:.1%}"
        if reason:
            paused = conn.execute(update(Campaign).where(
                Campaign.id == campaign_id, Campaign.status.in_((CampaignStatus.SCHEDULED, CampaignStatus.DRAFT)))
                .values(status=CampaignStatus.PAUSED, status_reason=reason, updated_at=now))
            if paused.rowcount:
                log.warning("campaign #%s %s", campaign_id, reason)
                self.paused_now.add(campaign_id)
