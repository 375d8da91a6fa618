"""The append-only consent ledger. The current state is derived, never overwritten.

State per (contact, channel) is the action of the latest event that is not `pending`
(granted, confirmed or revoked), ordered by (occurred_at, id). A `pending` event is a
double opt-in request: it carries a single-use, expiring token and changes nothing
until a `confirmed` event answers it.

Topic-level consent lives in the same ledger: a row with a `topic_id` says the contact
left (`revoked`) or rejoined (`granted`) that topic, whatever the channel (its `channel`
records where they said it). Every contact is in every topic until they leave it; the
channel-level state reads only the rows without a topic, so leaving "news" keeps email.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Select, and_, exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from campaigns.audience import consent_requests
from campaigns.audience.suppression import check_channel
from campaigns.config import Settings
from campaigns.errors import ConflictError, InputError, NotFoundError
from campaigns.signing import token_hash
from campaigns.store.bulk import insert_rows
from campaigns.store.models import ConsentEvent, Contact, Topic
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
    """Record a grant; with double opt-in, a pending request and its token, and the request
    message is queued (see consent_requests)."""
    _require_reachable(contact, channel)
    if double_opt_in is None:
        double_opt_in = settings.consent.double_opt_in
    if not double_opt_in:
        return _append(session, contact.id, channel, "granted", source, consent_text, ip, user_agent, occurred_at), None
    at = occurred_at or utcnow()
    event = _append(
        session, contact.id, channel, "pending", source, consent_text, ip, user_agent, at,
        token_expires_at=at + timedelta(hours=settings.consent.token_ttl_hours),
    )
    token = consent_requests.token_for(settings, event.id)
    event.token_hash = token_hash(token)
    session.flush()  # the request campaign (campaigns/request_campaigns.py) carries the request
    return event, token


def record_import(session: Session, settings: Settings, wanted: list[tuple[int, str, str]], source: str,
                  consent_text: str | None, at: datetime, *, new: Collection[int] = ()) -> tuple[int, int]:
    """Append an import's (contact, channel, action) events where they change the derived state
    (idempotent); under double opt-in a grant becomes a pending request, whose message the
    request campaign sends. Returns (events appended, requests queued).

    `new`: contacts created in this transaction, so without ledger rows: their state is not
    looked up (for a first import, that was a query per channel per 900 contacts)."""
    from sqlalchemy import bindparam, insert, update

    if not wanted:
        return 0, 0
    doi = settings.consent.double_opt_in
    fresh = set(new)
    ids = [cid for cid in {cid for cid, _, _ in wanted} if cid not in fresh]
    current: dict[tuple[int, str], str] = {}
    asked: set[tuple[int, str]] = set()
    for channel in {ch for _, ch, _ in wanted} if ids else ():  # all new: no ledger rows to read
        sub = current_action_subquery(channel).subquery()
        for i in range(0, len(ids), 900):
            part = ids[i:i + 900]
            for cid, action in session.execute(select(sub.c.contact_id, sub.c.action).where(sub.c.contact_id.in_(part))):
                current[(cid, channel)] = action
            if doi:
                asked.update((cid, channel) for cid in session.scalars(select(ConsentEvent.contact_id).where(
                    ConsentEvent.contact_id.in_(part), consent_requests.open_request_clause(channel, at))))
    rows: list[dict[str, object]] = []
    for cid, channel, action in wanted:
        state = current.get((cid, channel))
        if action == "revoked" and state not in MESSAGEABLE:
            continue
        if action == "granted" and doi:
            if state == "confirmed" or (cid, channel) in asked:
                continue
            action = "pending"
            asked.add((cid, channel))
        elif action == "granted" and state in MESSAGEABLE:
            continue
        if action == "confirmed" and state == "confirmed":
            continue
        if action != "pending":
            current[(cid, channel)] = action
        rows.append({
            "contact_id": cid, "channel": check_channel(channel), "action": action, "source": source,
            "consent_text": consent_text, "occurred_at": at, "recorded_at": at,
            "token_expires_at": at + timedelta(hours=settings.consent.token_ttl_hours) if action == "pending" else None,
        })
    if not rows:
        return 0, 0
    table = ConsentEvent.__table__
    conn = session.connection()
    if not any(r["action"] == "pending" for r in rows):  # no token to derive from the ids: one plain executemany
        insert_rows(conn, table, rows)
        return len(rows), 0
    new_ids = conn.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True), rows).scalars().all()
    pending = [(i, str(r["channel"])) for i, r in zip(new_ids, rows, strict=True) if r["action"] == "pending"]
    if pending:
        conn.execute(update(table).where(table.c.id == bindparam("eid")).values(token_hash=bindparam("th")),
                     [{"eid": i, "th": token_hash(consent_requests.token_for(settings, i))} for i, _ in pending])
    return len(rows), len(pending)


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


def open_request(session: Session, contact_id: int, channel: str, at: datetime | None = None) -> ConsentEvent | None:
    """The contact's newest unanswered, unexpired double opt-in request on a channel, if any."""
    at = at or utcnow()
    answered = select(ConsentEvent.confirms_event_id).where(ConsentEvent.confirms_event_id.is_not(None))
    return session.scalar(select(ConsentEvent).where(
        ConsentEvent.contact_id == contact_id, ConsentEvent.channel == check_channel(channel),
        ConsentEvent.action == "pending", ConsentEvent.occurred_at <= at, ConsentEvent.id.not_in(answered),
        or_(ConsentEvent.token_expires_at.is_(None), ConsentEvent.token_expires_at >= at),
    ).order_by(ConsentEvent.occurred_at.desc(), ConsentEvent.id.desc()).limit(1))


def confirm_request(session: Session, contact_id: int, channel: str, *, source: str, consent_text: str | None,
                    at: datetime | None = None) -> ConsentEvent | None:
    """Answer the open request of a contact on a channel (an SMS "YES" from its number); None when none is open."""
    at = at or utcnow()
    pending = open_request(session, contact_id, channel, at)
    if pending is None:
        return None
    return _append(session, contact_id, channel, "confirmed", source, pending.consent_text or consent_text,
                   None, None, at, confirms_event_id=pending.id)


def restore(session: Session, contact: Contact, channel: str, action: str, source: str,
            consent_text: str | None = None, occurred_at: datetime | None = None) -> ConsentEvent:
    """Give back the consent a STOP took away (`action`: what it was, granted or confirmed)."""
    if action not in MESSAGEABLE:
        raise InputError(f"action: '{action}' cannot be restored")
    _require_reachable(contact, channel)
    return _append(session, contact.id, channel, action, source, consent_text, None, None, occurred_at)


def revoke(
    session: Session, contact: Contact, channel: str, source: str, ip: str | None = None,
    user_agent: str | None = None, occurred_at: datetime | None = None, proof: str | None = None,
) -> ConsentEvent:
    """Record a revocation (always appended: the ledger keeps every request); `proof` is
    kept in the event's text (e.g. the Message-ID of an unsubscribe mail)."""
    return _append(session, contact.id, channel, "revoked", source, proof, ip, user_agent, occurred_at)


def current_state(session: Session, contact_id: int, channel: str, at: datetime | None = None) -> ConsentState:
    """The derived state as of `at` (default now)."""
    at = at or utcnow()
    events = session.scalars(
        select(ConsentEvent)
        .where(ConsentEvent.contact_id == contact_id, ConsentEvent.channel == check_channel(channel),
               ConsentEvent.topic_id.is_(None), ConsentEvent.occurred_at <= at)
        .order_by(ConsentEvent.occurred_at, ConsentEvent.id)
    ).all()
    return derive_state(channel, list(events), at)


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
                            contact_ids: Collection[int] | None = None) -> Select:
    """SQL: (contact_id, action) of each contact's latest non-pending event on a channel
    (of `contact_ids` only, when given: then the ledger is read by index, not scanned)."""
    check_channel(channel)
    later = aliased(ConsentEvent)
    newer_exists = exists().where(
        later.contact_id == ConsentEvent.contact_id,
        later.channel == ConsentEvent.channel,
        later.action != "pending",
        later.topic_id.is_(None),
        or_(later.occurred_at > ConsentEvent.occurred_at,
            and_(later.occurred_at == ConsentEvent.occurred_at, later.id > ConsentEvent.id)),
        *( [later.occurred_at <= at] if at is not None else [] ),
    )
    q = select(ConsentEvent.contact_id, ConsentEvent.action).where(
        ConsentEvent.channel == channel, ConsentEvent.action != "pending", ConsentEvent.topic_id.is_(None), ~newer_exists)
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


def leave_topic(session: Session, contact: Contact, topic_id: int, channel: str, source: str, ip: str | None = None,
                user_agent: str | None = None, occurred_at: datetime | None = None, proof: str | None = None) -> ConsentEvent:
    """Record that the contact left a topic (said through `channel`); their channel consent stays."""
    return _append(session, contact.id, channel, "revoked", source, proof, ip, user_agent, occurred_at, topic_id=topic_id)


def join_topic(session: Session, contact: Contact, topic_id: int, channel: str, source: str,
               consent_text: str | None = None, occurred_at: datetime | None = None) -> ConsentEvent:
    """Record that the contact rejoined a topic they had left."""
    _require_reachable(contact, channel)
    return _append(session, contact.id, channel, "granted", source, consent_text, None, None, occurred_at, topic_id=topic_id)


def in_topic(session: Session, contact_id: int, topic_id: int, at: datetime | None = None) -> bool:
    """False when the contact's latest event on the topic (as of `at`) is a leave; True otherwise."""
    latest = session.scalar(select(ConsentEvent.action).where(
        ConsentEvent.contact_id == contact_id, ConsentEvent.topic_id == topic_id, ConsentEvent.occurred_at <= (at or utcnow()),
    ).order_by(ConsentEvent.occurred_at.desc(), ConsentEvent.id.desc()).limit(1))
    return latest != "revoked"


def left_topic_contacts(topic_id: int | ColumnElement[int], at: datetime | None = None,
                        contact_ids: Collection[int] | None = None) -> Select[int]:
    """SQL: ids of contacts whose latest event on the topic is a leave (among `contact_ids`,
    when given). `topic_id` may be an SQL expression (the segment field names topics by name)."""
    later = aliased(ConsentEvent)
    newer_exists = exists().where(
        later.contact_id == ConsentEvent.contact_id, later.topic_id == ConsentEvent.topic_id,
        or_(later.occurred_at > ConsentEvent.occurred_at,
            and_(later.occurred_at == ConsentEvent.occurred_at, later.id > ConsentEvent.id)),
        *([later.occurred_at <= at] if at is not None else []),
    )
    q = select(ConsentEvent.contact_id).where(ConsentEvent.topic_id == topic_id, ConsentEvent.action == "revoked", ~newer_exists)
    if at is not None:
        q = q.where(ConsentEvent.occurred_at <= at)
    if contact_ids is not None:
        q = q.where(ConsentEvent.contact_id.in_(list(contact_ids)))
    return q


def left_count(session: Session, topic_id: int, at: datetime | None = None) -> int:
    """How many contacts are out of a topic (left it and did not come back) as of `at`."""
    return session.scalar(select(func.count()).select_from(left_topic_contacts(topic_id, at or utcnow()).subquery())) or 0


def topic_names(session: Session, topic_ids: Collection[int]) -> dict[int, str]:
    """Names of the topics ledger rows refer to (for history)."""
    ids = list(topic_ids)
    return {tid: name for tid, name in session.execute(select(Topic.id, Topic.name).where(Topic.id.in_(ids)))} if ids else {}


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
