"""What each endpoint does to the database: plain functions on a Session, no HTTP."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns import consent as ledger
from campaigns import suppression
from campaigns.attribution import attribute_purchases
from campaigns.config import Settings
from campaigns.contacts import normalise_phone
from campaigns.errors import InputError
from campaigns.link_registry import link_url
from campaigns.models import Contact, Delivery
from campaigns.tracking import events

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


def unsubscribe(session: Session, delivery_id: int, at: datetime, all_channels: bool, ip: str | None, ua: str | None) -> bool:
    """Revoke email (and, if asked, every channel); idempotent. False when the delivery is unknown."""
    d = events.delivery(session, delivery_id)
    if d is None:
        return False
    contact = session.get(Contact, d.contact_id)
    if contact is None:
        return False
    for channel in (("email", "sms") if all_channels else (d.channel if d.channel == "email" else "email",)):
        state = ledger.current_state(session, contact.id, channel, at)
        if state.action in ledger.MESSAGEABLE:
            ledger.revoke(session, contact, channel, "one-click unsubscribe", ip=ip, user_agent=ua, occurred_at=at)
    events.record(session, type="unsubscribe", dedup_key=f"unsubscribe:{d.id}", delivery=d, at=at, user_agent=ua, ip=ip,
                  data={"all_channels": all_channels})
    return True


@dataclass(frozen=True)
class SmsReply:
    """What to answer an inbound text with (None: say nothing)."""

    text: str | None


def normalise_keyword(body: str) -> str:
    """'Stop.' / ' opt-out! ' -> 'STOP' / 'OPT OUT'."""
    word = re.sub(r"[^\w\s]", " ", body or "").upper()
    return " ".join(word.split())


def inbound_sms(session: Session, settings: Settings, sender: str, body: str, message_sid: str, at: datetime) -> SmsReply:
    """STOP/HELP/START keywords and replies, deduplicated by the provider's message id."""
    try:
        phone = normalise_phone(sender, settings.default_region)
    except InputError:
        return SmsReply(None)
    contacts = list(session.scalars(select(Contact).where(Contact.phone == phone, Contact.erased_at.is_(None))))
    keyword = normalise_keyword(body)
    last = events.last_sms_delivery(session, [c.id for c in contacts])
    kind = "stop" if keyword in STOP_WORDS else "start" if keyword in START_WORDS else "help" if keyword in HELP_WORDS else "reply"
    new = events.record(session, type="reply" if kind == "help" else kind, dedup_key=f"sms:{message_sid}", delivery=last,
                        contact_id=contacts[0].id if contacts else None, at=at, data={"from": phone, "body": body[:1600]})
    if not new:
        return SmsReply(None)  # a replayed webhook: already handled, answer nothing twice
    if kind == "stop":
        for c in contacts:
            if ledger.current_state(session, c.id, "sms", at).action in ledger.MESSAGEABLE:
                ledger.revoke(session, c, "sms", f"sms {keyword}", occurred_at=at)
        return SmsReply(settings.sms.stop_confirmation_text)
    if kind == "start":
        # STOP only revokes consent (it never suppresses), so START can restore it.
        for c in contacts:
            ledger.grant(session, settings, c, "sms", "sms START", consent_text=body[:200], occurred_at=at, double_opt_in=False)
        return SmsReply(settings.sms.start_confirmation_text if contacts else None)
    if kind == "help":
        return SmsReply(settings.sms.help_text)
    return SmsReply(None)


def bounce(session: Session, settings: Settings, *, delivery_id: int | None, recipient: str | None, kind: str,
           event_id: str, at: datetime, detail: str | None = None) -> bool:
    """A hard bounce or complaint: suppress the address, record the event once. False if nothing matched."""
    d = session.get(Delivery, delivery_id) if delivery_id else None
    if d is None and recipient:
        contact = session.scalar(select(Contact).where(Contact.email == recipient.strip().lower()))
        if contact is not None:
            d = session.scalar(select(Delivery).where(Delivery.contact_id == contact.id, Delivery.channel == "email",
                                                      Delivery.state == "sent").order_by(Delivery.sent_at.desc()).limit(1))
    if d is None and not recipient:
        return False
    address = recipient
    if d is not None and not address:
        contact = session.get(Contact, d.contact_id)
        address = contact.email if contact else None
    if address:
        suppression.add(session, settings, "email", address, "complaint" if kind == "complaint" else "hard_bounce", note=detail)
    if d is not None and kind == "complaint":
        contact = session.get(Contact, d.contact_id)
        if contact is not None and ledger.current_state(session, contact.id, "email", at).action in ledger.MESSAGEABLE:
            ledger.revoke(session, contact, "email", "spam complaint", occurred_at=at)
    events.record(session, type=kind, dedup_key=f"{kind}:{event_id}", delivery=d, at=at,
                  data={"detail": (detail or "")[:500], "recipient": address})
    return True


def purchase_webhook(session: Session, settings: Settings, payload: dict) -> tuple[bool, str]:  # type: ignore[type-arg]
    """Create (or find) an order from a signed webhook and credit it. (created?, order_id)."""
    from sqlalchemy import insert

    from campaigns.contact_ref import resolve_ref
    from campaigns.models import Purchase
    from campaigns.purchases import parse_purchase_row

    row = {k: str(v) for k, v in payload.items() if v is not None and k in
           ("order_id", "external_id", "email", "contact", "amount", "currency", "occurred_at", "utm_campaign")}
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


def import_reports(session: Session, settings: Settings, raw_messages: list[bytes], at: datetime) -> dict[str, int]:
    """Apply DSNs and abuse reports read from a mailbox; counts of what happened."""
    from campaigns import links
    from campaigns.tracking.dsn import parse_report

    counts = {"messages": len(raw_messages), "bounces": 0, "complaints": 0, "unmatched": 0, "ignored": 0}
    for raw in raw_messages:
        notices = parse_report(raw)
        if not notices:
            counts["ignored"] += 1
            continue
        for n in notices:
            delivery_id = links.parse_return_path(settings, n.verp) if n.verp else None
            if delivery_id is None and n.original_message_id:
                delivery_id = session.scalar(select(Delivery.id).where(Delivery.provider_message_id == n.original_message_id))
            ok = bounce(session, settings, delivery_id=delivery_id, recipient=n.recipient, kind=n.kind,
                        event_id=f"{n.report_id}:{n.recipient}", at=at, detail=n.status)
            counts["complaints" if n.kind == "complaint" else "bounces"] += ok
            counts["unmatched"] += not ok
    return counts
