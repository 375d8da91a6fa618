"""What each endpoint does to the database: plain functions on a Session, no HTTP."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.audience import consent as ledger
from campaigns.config import Settings
from campaigns.errors import InputError
from campaigns.messages.link_registry import link_url
from campaigns.store.models import Contact
from campaigns.tracking import events
from campaigns.tracking.attribution import attribute_purchases

STOP_WORDS = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPT OUT", "OPTOUT"}
START_WORDS = {"START", "UNSTOP", "YES"}
HELP_WORDS = {"HELP", "INFO"}


def record_open(session: Session, settings: Settings, delivery_id: int, at: datetime, ua: str | None, ip: str | None) -> None:
    """An open, flagged when a machine made it."""
    d = events.delivery(session, delivery_id)
    if d is None:
        return
    machine = events.is_machine(ua, d.sent_at, at, settings)
    events.record(session, type="open", dedup_key=events.minute_key("open", d.id, at, ua), delivery=d, at=at,
                  user_agent=ua, ip=ip, machine=machine)


def record_click(session: Session, settings: Settings, delivery_id: int, link_id: int, at: datetime,
                 ua: str | None, ip: str | None) -> str | None:
    """The destination to redirect to (None if the link is unknown); the click is recorded."""
    url = link_url(session, link_id)
    if url is None:
        return None
    d = events.delivery(session, delivery_id)
    if d is not None:
        machine = events.is_machine(ua, d.sent_at, at, settings)
        events.record(session, type="click", dedup_key=events.minute_key("click", d.id, at, ua, str(link_id)),
                      delivery=d, url=url, at=at, user_agent=ua, ip=ip, machine=machine)
    return url


def unsubscribe(session: Session, delivery_id: int, at: datetime, all_channels: bool, ip: str | None, ua: str | None,
                source: str = "one-click unsubscribe", proof: dict[str, str] | None = None) -> bool:
    """Revoke email (and, if asked, every channel); idempotent. False when the delivery is unknown.

    Every sender hears of it (`stopped.announce`) when this transaction commits, before the
    caller answers the person."""
    from campaigns.audience import stopped

    d = events.delivery(session, delivery_id)
    if d is None:
        return False
    contact = session.get(Contact, d.contact_id)
    if contact is None or contact.erased_at is not None:
        return False
    channels = ("email", "sms") if all_channels else ("email",)
    for channel in channels:
        state = ledger.current_state(session, contact.id, channel, at)
        if state.action in ledger.MESSAGEABLE or state.pending:
            ledger.revoke(session, contact, channel, source, ip=ip, user_agent=ua, occurred_at=at,
                          proof=", ".join(f"{k} {v}" for k, v in (proof or {}).items() if v) or None)
    stopped.announce(session, contact.id, channels)
    events.record(session, type="unsubscribe", dedup_key=f"unsubscribe:{d.id}", delivery=d, at=at, user_agent=ua, ip=ip,
                  data={"all_channels": all_channels, "source": source, **(proof or {})})
    return True


def purchase_webhook(session: Session, settings: Settings, row: dict[str, str]) -> tuple[bool, str]:
    """Create (or find) an order from a signed, validated webhook and credit it. (created?, order_id)."""
    from sqlalchemy import insert

    from campaigns.audience.contact_ref import resolve_ref
    from campaigns.audience.purchases import parse_purchase_row
    from campaigns.store.models import Purchase

    data = parse_purchase_row(row, 1, settings)
    existing = session.scalar(select(Purchase.id).where(Purchase.order_id == data.order_id))
    if existing is not None:
        return False, data.order_id
    column, value = data.contact_ref
    cid = resolve_ref(session, column, value)
    if cid is None:
        raise InputError(f"{column}: no contact '{value}'")
    pid = session.execute(insert(Purchase).values(order_id=data.order_id, contact_id=cid, amount_cents=data.amount_cents,
                                                  currency=data.currency, occurred_at=data.occurred_at, items=data.items,
                                                  utm_campaign=data.utm_campaign, source="webhook").returning(Purchase.id)).scalar_one()
    attribute_purchases(session, settings, [pid])
    return True, data.order_id
