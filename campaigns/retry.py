"""`campaigns retry NAME`: send again what failed only because the way out was blocked.

A message that kept failing for a transient reason (the SMTP server down, 4xx replies, the
database away) is marked failed after `max_attempts` or `max_retry_age_hours`, with an
error that starts "gave up after". Those, and messages failed because their template was
missing (restored since), go back to the queue with their attempts reset: a hard bounce, a refused address, a rendering error or an `unknown`
(possibly delivered) message is never re-sent by this. Consent and suppression are
checked again when each row is claimed, as for any send.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import CursorResult, or_, update
from sqlalchemy.orm import Session

from campaigns.campaign_defs import get_campaign
from campaigns.errors import ConflictError
from campaigns.store.models import Delivery
from campaigns.timespec import utcnow

GAVE_UP = "gave up after "  # how the dispatcher marks a transient failure it stopped retrying
NO_TEMPLATE = "render: template '%' not found%"  # the template was missing when the row was rendered


@dataclass(frozen=True)
class RetryResult:
    """How many messages went back to the queue, and the campaign's status (paused ones wait)."""

    requeued: int
    status: str
    status_reason: str | None


def retry_transient(session: Session, name: str, now: datetime | None = None) -> RetryResult:
    """Queue campaign `name`'s transiently failed messages again, due now."""
    c = get_campaign(session, name)
    if c.status == "cancelled":
        raise ConflictError(f"campaign {name} is cancelled; its messages are not sent again")
    now = now or utcnow()
    d = Delivery
    result: CursorResult = session.execute(update(d).where(d.campaign_id == c.id, d.state == "failed",
                                             or_(d.error.like(GAVE_UP + "%"), d.error.like(NO_TEMPLATE))).values(
        state="queued", attempts=0, due_at=now, lease_until=None, claimed_by=None, updated_at=now,
        error="queued again by `campaigns retry` after: " + d.error))  # type: ignore[assignment]
    return RetryResult(result.rowcount or 0, c.status, c.status_reason)
