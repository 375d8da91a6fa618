"""The one place a hard bounce or a complaint is recorded, whatever reported it.

Sources: the SMTP or SMS provider's own refusal while sending (the dispatcher), a signed
bounce webhook, and DSN (RFC 3464) or ARF (RFC 5965) mail read by `bounces import`. A
report is acted on only when it names a message we sent: the signed VERP return path, or
a Message-ID we generated (also signed). Anything else is "unmatched" and changes nothing,
so a forged report listing 20,000 addresses suppresses none of them.

One dedup key per delivery and kind (`bounce:<delivery>`, `complaint:<delivery>`), so a
message that bounced at SMTP time and again by DSN counts once. The bounce count of a
campaign is the number of its deliveries with a `bounce` event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from campaigns.audience import consent as ledger
from campaigns.audience import suppression
from campaigns.config import Settings
from campaigns.messages import links
from campaigns.store.models import Contact, Delivery

KINDS = ("bounce", "complaint")
_MATCHABLE_STATES = ("sending", "sent", "unknown", "failed")


@dataclass(frozen=True)
class Target:
    """The message a report is about."""

    delivery_id: int
    campaign_id: int | None
    contact_id: int
    channel: str


def dedup_key(kind: str, delivery_id: int) -> str:
    """The event key: one bounce and one complaint per delivery, from any source."""
    return f"{kind}:{delivery_id}"


def match(session: Session, settings: Settings, *, return_path: str | None = None,
          message_id: str | None = None) -> Target | None:
    """The delivery a report names through our signed VERP address or Message-ID; else None."""
    delivery_id = links.parse_return_path(settings, return_path) if return_path else None
    if delivery_id is None and message_id:
        delivery_id = links.parse_message_id(settings, message_id)
    if delivery_id is None:
        return None
    d = session.get(Delivery, delivery_id)
    if d is None or d.state not in _MATCHABLE_STATES:
        return None
    return Target(d.id, d.campaign_id, d.contact_id, d.channel)


def record(session: Session, settings: Settings, target: Target, kind: str, *, at: datetime, source: str,
           detail: str | None = None) -> bool:
    """Suppress the address the message went to (a complaint also revokes consent) and record
    the event once; True when this delivery had no such event yet."""
    from campaigns.tracking import events

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    contact = session.get(Contact, target.contact_id)
    address = None
    if contact is not None and contact.erased_at is None:
        address = contact.email if target.channel == "email" else contact.phone
    new = events.record(session, type=kind, dedup_key=dedup_key(kind, target.delivery_id),
                        delivery_id=target.delivery_id, contact_id=target.contact_id, campaign_id=target.campaign_id,
                        at=at, data={"source": source, "detail": (detail or "")[:500]})
    if address:
        suppression.add(session, settings, target.channel, address,
                        "complaint" if kind == "complaint" else "hard_bounce", note=(detail or source)[:500])
    if kind == "complaint" and contact is not None and contact.erased_at is None:
        _revoke_for_complaint(session, contact, target.channel, at)
    return new


def _revoke_for_complaint(session: Session, contact: Contact, channel: str, at: datetime) -> None:
    from campaigns.audience import stopped

    if ledger.current_state(session, contact.id, channel, at).action in ledger.MESSAGEABLE:
        ledger.revoke(session, contact, channel, "spam complaint", occurred_at=at)
    stopped.announce(session, contact.id, (channel,))
