"""What each endpoint does to the database: plain functions on a Session, no HTTP."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.audience import consent as ledger
from campaigns.config import Settings
from campaigns.errors import InputError
from campaigns.messages.link_registry import link_url
from campaigns.store.models import Campaign, Contact, Delivery, Topic
from campaigns.tracking import events
from campaigns.tracking.attribution import attribute_purchases

STOP_WORDS = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPT OUT", "OPTOUT"}
START_WORDS = {"START", "UNSTOP", "YES"}
HELP_WORDS = {"HELP", "INFO"}


def record_open(session: Session, settings: Settings, delivery_id: int, at: datetime, ua: str | None, ip: str | None) -> None:
    """An open, flagged when a machine made it."""
    d, erased = events.delivery_and_erased(session, delivery_id)
    if d is None:
        return
    if erased:  # counted, without the person
        ua = ip = None
    machine = events.is_machine(ua, d.sent_at, at, settings)
    events.record(session, type="open", dedup_key=events.minute_key("open", d.id, at, ua), delivery=d, at=at,
                  user_agent=ua, ip=ip, machine=machine)


def record_click(session: Session, settings: Settings, delivery_id: int, link_id: int, at: datetime,
                 ua: str | None, ip: str | None) -> str | None:
    """The destination to redirect to (None if the link is unknown); the click is recorded."""
    url = link_url(session, link_id)
    if url is None:
        return None
    d, erased = events.delivery_and_erased(session, delivery_id)
    if d is not None:
        # After erasure a click is counted without the person: no IP, user agent or URL (the
        # URL may carry their address, and this process may hold it from before the erasure).
        ua, ip, recorded_url = (None, None, None) if erased else (ua, ip, url)
        machine = events.is_machine(ua, d.sent_at, at, settings)
        events.record(session, type="click", dedup_key=events.minute_key("click", d.id, at, ua, str(link_id)),
                      delivery=d, url=recorded_url, at=at, user_agent=ua, ip=ip, machine=machine)
    return url


# What an unsubscribe asks for: `ONE_CLICK` is the RFC 8058 POST (and the mailto address), which
# carries no choice and leaves the message's topic when it has one, else the channel (docs/tracking.md);
# the page's form says `topic` or `everything`.
ONE_CLICK, TOPIC, EVERYTHING = "one-click", "topic", "everything"
SCOPES = (ONE_CLICK, TOPIC, EVERYTHING)
PREFERENCES = "preferences"  # the page's second form: every topic, to leave or rejoin (save_topics)


@dataclass(frozen=True)
class Unsubscribed:
    """What an unsubscribe changed: a topic left, or the channels revoked."""

    topic: str | None
    channels: tuple[str, ...]
    new: bool  # False: this message's unsubscribe was recorded before (a retry, a re-read mailbox)


@dataclass(frozen=True)
class TopicChoice:
    """One topic on the preference form: checked when the contact is in it."""

    id: int
    name: str
    description: str | None
    member: bool


@dataclass(frozen=True)
class UnsubscribeTarget:
    """What the unsubscribe page offers for one delivery: its campaign's topic, if any, and
    every topic with the contact in it or not (the preference form, to leave or rejoin)."""

    topic: str | None
    description: str | None
    topics: tuple[TopicChoice, ...] = ()


def _delivered_to(session: Session, delivery_id: int) -> tuple[Delivery, Contact] | None:
    """The delivery a verified link names and its contact; None when either is unknown or the
    contact was erased (a link in an old message changes nothing for an erased person)."""
    d = events.delivery(session, delivery_id)
    contact = session.get(Contact, d.contact_id) if d is not None else None
    if d is None or contact is None or contact.erased_at is not None:
        return None
    return d, contact


def unsubscribe_target(session: Session, delivery_id: int, at: datetime | None = None) -> UnsubscribeTarget | None:
    """The topic the page offers to leave, and every topic (None: no such delivery, or its contact was erased)."""
    found = _delivered_to(session, delivery_id)
    if found is None:
        return None
    d, contact = found
    campaign = session.get(Campaign, d.campaign_id)
    topic = campaign.topic if campaign is not None else None
    return UnsubscribeTarget(topic.name if topic else None, topic.description if topic else None,
                             _choices(session, contact.id, at))


def _choices(session: Session, contact_id: int, at: datetime | None) -> tuple[TopicChoice, ...]:
    return tuple(TopicChoice(t.id, t.name, t.description, ledger.in_topic(session, contact_id, t.id, at))
                 for t in session.scalars(select(Topic).order_by(Topic.name)))


def save_topics(session: Session, delivery_id: int, at: datetime, wanted: Collection[int], ip: str | None,
                ua: str | None, source: str = "preference page") -> tuple[list[str], list[str]] | None:
    """The preference form: the contact is in exactly the topics `wanted` (ids) afterwards,
    leaving and rejoining through the ledger; the channel consent is untouched. Idempotent.
    Returns (topics left, topics rejoined); None when the delivery is unknown or its contact erased."""
    from campaigns.audience import stopped

    found = _delivered_to(session, delivery_id)
    if found is None:
        return None
    d, contact = found
    left, joined = [], []
    for choice in _choices(session, contact.id, at):
        if choice.member and choice.id not in wanted:
            ledger.leave_topic(session, contact, choice.id, d.channel, source, ip=ip, user_agent=ua, occurred_at=at)
            stopped.announce(session, contact.id, [stopped.topic_scope(choice.id)])
            left.append(choice.name)
        elif not choice.member and choice.id in wanted:
            ledger.join_topic(session, contact, choice.id, d.channel, source, occurred_at=at)
            joined.append(choice.name)
    return left, joined


def unsubscribe(session: Session, delivery_id: int, at: datetime, all_channels: bool, ip: str | None, ua: str | None,
                source: str = "one-click unsubscribe", proof: dict[str, str] | None = None,
                scope: str = ONE_CLICK) -> Unsubscribed | None:
    """Leave the message's topic, or revoke email (and, if asked, every channel); idempotent.
    None when the delivery is unknown. `scope`: see SCOPES; `all_channels` always means everything.

    Every sender hears of it (`stopped.announce`: the channels, or the topic) when this
    transaction commits, before the caller answers the person."""
    from campaigns.audience import stopped

    if scope not in SCOPES:
        raise InputError(f"scope: '{scope}' is not one of {', '.join(SCOPES)}")
    found = _delivered_to(session, delivery_id)
    if found is None:
        return None
    d, contact = found
    campaign = session.get(Campaign, d.campaign_id)
    topic = campaign.topic if campaign is not None else None
    if scope == TOPIC and topic is None:
        raise InputError("scope: this message has no topic to leave")
    text = ", ".join(f"{k} {v}" for k, v in (proof or {}).items() if v) or None
    channels: tuple[str, ...] = ()  # revoked (a topic left revokes no channel)
    left: str | None = None  # the topic left
    if topic is not None and not all_channels and scope in (ONE_CLICK, TOPIC):
        if ledger.in_topic(session, contact.id, topic.id, at):
            ledger.leave_topic(session, contact, topic.id, d.channel, source, ip=ip, user_agent=ua, occurred_at=at, proof=text)
        stopped.announce(session, contact.id, [stopped.topic_scope(topic.id)])
        left = topic.name
    else:
        channels = ("email", "sms") if all_channels else ("email",)
        for channel in channels:
            state = ledger.current_state(session, contact.id, channel, at)
            if state.action in ledger.MESSAGEABLE or state.pending:
                ledger.revoke(session, contact, channel, source, ip=ip, user_agent=ua, occurred_at=at, proof=text)
        stopped.announce(session, contact.id, channels)
    new = events.record(session, type="unsubscribe", dedup_key=f"unsubscribe:{d.id}", delivery=d, at=at, user_agent=ua,
                        ip=ip, data={"all_channels": all_channels, "source": source, "topic": left,
                                     "channels": list(channels), **(proof or {})})
    return Unsubscribed(left, channels, new)


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
