"""The append-only consent ledger. The current state is derived, never overwritten.

State per (contact, channel) is the action of the latest event that is not `pending`
(granted, confirmed or revoked), ordered by (occurred_at, id). A `pending` event is a
double opt-in request: it carries a single-use, expiring token and changes nothing
until a `confirmed` event answers it.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, and_, exists, or_, select
from sqlalchemy.orm import Session, aliased

from campaigns.config import Settings
from campaigns.errors import ConflictError, InputError, NotFoundError
from campaigns.models import ConsentEvent, Contact
from campaigns.signing import token_hash
from campaigns.suppression import check_channel
from campaigns.timespec import utcnow

MESSAGEABLE = ("granted", "confirmed")


@dataclass(frozen=True)
class ConsentState:
    """Where a contact stands on one channel."""

    channel: str
    action: str | None  # granted | confirmed | revoked | None (never asked)
    since: datetime | None
    pending: bool  # an unconfirmed, unexpired double opt-in request exists

    def allows(self, double_opt_in: bool) -> bool:
        """True when this state lets us send marketing on the channel."""
        if double_opt_in:
            return self.action == "confirmed"
        return self.action in MESSAGEABLE


def _append(
    session: Session, contact_id: int, channel: str, action: str, source: str,
    consent_text: str | None, ip: str | None, user_agent: str | None, occurred_at: datetime | None,
    **extra: object,
) -> ConsentEvent:
    if not source or not source.strip():
        raise InputError("source: say where this consent came from (e.g. 'checkout form')")
    event = ConsentEvent(
        contact_id=contact_id, channel=check_channel(channel), action=action, source=source.strip(),
        consent_text=consent_text, ip=ip, user_agent=user_agent,
        occurred_at=occurred_at or utcnow(), recorded_at=utcnow(), **extra,
    )
    session.add(event)
    session.flush()
    return event


def grant(
    session: Session, settings: Settings, contact: Contact, channel: str, source: str,
    consent_text: str | None = None, ip: str | None = None, user_agent: str | None = None,
    occurred_at: datetime | None = None, double_opt_in: bool | None = None,
) -> tuple[ConsentEvent, str | None]:
    """Record a grant; with double opt-in, a pending request and its token (shown once)."""
    _require_reachable(contact, channel)
    if double_opt_in is None:
        double_opt_in = settings.consent.double_opt_in
    if not double_opt_in:
        return _append(session, contact.id, channel, "granted", source, consent_text, ip, user_agent, occurred_at), None
    token = "c" + secrets.token_urlsafe(24)  # never starts with "-", which a shell command would read as an option
    at = occurred_at or utcnow()
    event = _append(
        session, contact.id, channel, "pending", source, consent_text, ip, user_agent, at,
        token_hash=token_hash(token), token_expires_at=at + timedelta(hours=settings.consent.token_ttl_hours),
    )
    return event, token


def confirm(
    session: Session, token: str, ip: str | None = None, user_agent: str | None = None,
    at: datetime | None = None,
) -> ConsentEvent:
    """Answer a double opt-in request; a token works once and only before it expires."""
    at = at or utcnow()
    pending = session.scalar(select(ConsentEvent).where(
        ConsentEvent.token_hash == token_hash(token.strip()), ConsentEvent.action == "pending"))
    if pending is None:
        raise NotFoundError("this confirmation link is not valid")
    if session.scalar(select(ConsentEvent.id).where(ConsentEvent.confirms_event_id == pending.id)):
        raise ConflictError("this confirmation link was already used")
    if pending.token_expires_at is not None and at > pending.token_expires_at:
        raise ConflictError("this confirmation link has expired; ask for a new one")
    return _append(
        session, pending.contact_id, pending.channel, "confirmed", "double opt-in confirmation",
        pending.consent_text, ip, user_agent, at, confirms_event_id=pending.id,
    )


def revoke(
    session: Session, contact: Contact, channel: str, source: str, ip: str | None = None,
    user_agent: str | None = None, occurred_at: datetime | None = None,
) -> ConsentEvent:
    """Record a revocation (always appended: the ledger keeps every request)."""
    return _append(session, contact.id, channel, "revoked", source, None, ip, user_agent, occurred_at)


def current_state(session: Session, contact_id: int, channel: str, at: datetime | None = None) -> ConsentState:
    """The derived state as of `at` (default now)."""
    at = at or utcnow()
    events = session.scalars(
        select(ConsentEvent)
        .where(ConsentEvent.contact_id == contact_id, ConsentEvent.channel == check_channel(channel),
               ConsentEvent.occurred_at <= at)
        .order_by(ConsentEvent.occurred_at, ConsentEvent.id)
    ).all()
    return derive_state(channel, events, at)


def derive_state(channel: str, events: list[ConsentEvent], at: datetime) -> ConsentState:
    """Fold ordered ledger events into a state (pure: the rule lives here once)."""
    action: str | None = None
    since: datetime | None = None
    pending_after: datetime | None = None
    answered = {e.confirms_event_id for e in events if e.confirms_event_id}
    for e in events:
        if e.action == "pending":
            if e.id not in answered and (e.token_expires_at is None or e.token_expires_at >= at):
                pending_after = e.occurred_at
            continue
        action, since = e.action, e.occurred_at
    pending = pending_after is not None and (since is None or pending_after >= since)
    return ConsentState(channel, action, since, pending)


def current_action_subquery(channel: str, at: datetime | None = None,
                            contact_ids: Collection[int] | None = None) -> Select[tuple[int, str]]:
    """SQL: (contact_id, action) of each contact's latest non-pending event on a channel
    (of `contact_ids` only, when given: then the ledger is read by index, not scanned)."""
    check_channel(channel)
    later = aliased(ConsentEvent)
    newer_exists = exists().where(
        later.contact_id == ConsentEvent.contact_id,
        later.channel == ConsentEvent.channel,
        later.action != "pending",
        or_(later.occurred_at > ConsentEvent.occurred_at,
            and_(later.occurred_at == ConsentEvent.occurred_at, later.id > ConsentEvent.id)),
        *( [later.occurred_at <= at] if at is not None else [] ),
    )
    q = select(ConsentEvent.contact_id, ConsentEvent.action).where(
        ConsentEvent.channel == channel, ConsentEvent.action != "pending", ~newer_exists)
    if at is not None:
        q = q.where(ConsentEvent.occurred_at <= at)
    if contact_ids is not None:
        q = q.where(ConsentEvent.contact_id.in_(list(contact_ids)))
    return q


def consented_contacts(channel: str, double_opt_in: bool, at: datetime | None = None,
                       contact_ids: Collection[int] | None = None) -> Select[tuple[int]]:
    """SQL: ids of contacts whose current consent allows marketing on the channel (among
    `contact_ids`, when given)."""
    sub = current_action_subquery(channel, at, contact_ids).subquery()
    allowed = ("confirmed",) if double_opt_in else MESSAGEABLE
    return select(sub.c.contact_id).where(sub.c.action.in_(allowed))


def history(session: Session, contact_id: int, channel: str | None = None) -> list[ConsentEvent]:
    """Every ledger event of a contact, oldest first."""
    q = select(ConsentEvent).where(ConsentEvent.contact_id == contact_id)
    if channel:
        q = q.where(ConsentEvent.channel == check_channel(channel))
    return list(session.scalars(q.order_by(ConsentEvent.occurred_at, ConsentEvent.id)))


def _require_reachable(contact: Contact, channel: str) -> None:
    check_channel(channel)
    if contact.erased_at is not None:
        raise ConflictError(f"contact {contact.id} was erased; consent cannot be recorded")
    if channel == "email" and not contact.email:
        raise InputError(f"contact {contact.id} has no email address to consent for")
    if channel == "sms" and not contact.phone:
        raise InputError(f"contact {contact.id} has no phone number to consent for")
