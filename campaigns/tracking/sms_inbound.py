"""Inbound texts: STOP, START/UNSTOP/YES, HELP and replies, once per provider message id.

Only authenticated requests reach here (see guard.inbound_sms_auth). START restores SMS
consent only for a contact who had it and lost it by a STOP; YES also answers a pending
double opt-in request. Nothing here ever creates consent from nothing: any other text is
a reply. A STOP from a number we do not know suppresses the number by its keyed hash.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.audience import consent as ledger
from campaigns.audience import suppression
from campaigns.audience.contacts import normalise_phone
from campaigns.config import Settings
from campaigns.errors import InputError
from campaigns.signing import address_hash
from campaigns.store.models import Contact
from campaigns.tracking import events

STOP_WORDS = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPT OUT", "OPTOUT"}
START_WORDS = {"START", "UNSTOP", "YES"}
HELP_WORDS = {"HELP", "INFO"}
STOP_SOURCE_PREFIX = "sms "  # a revocation by a STOP keyword is recorded as "sms STOP", "sms QUIT", ...
# Exactly those sources: an operator's `consent revoke --source "sms to support"` is not a STOP.
STOP_SOURCES = frozenset(f"{STOP_SOURCE_PREFIX}{word}" for word in STOP_WORDS)


@dataclass(frozen=True)
class SmsReply:
    """What to answer an inbound text with (None: say nothing)."""

    text: str | None


def normalise_keyword(body: str) -> str:
    """'Stop.' / ' opt-out! ' -> 'STOP' / 'OPT OUT'."""
    word = re.sub(r"[^\w\s]", " ", body or "").upper()
    return " ".join(word.split())


def _restorable(session: Session, contact_id: int, at: datetime) -> str | None:
    """The action a STOP took away (granted or confirmed), when the contact's latest SMS
    consent event is that STOP; else None."""
    kept = [e for e in ledger.history(session, contact_id, "sms") if e.action != "pending" and e.occurred_at <= at]
    if len(kept) < 2 or kept[-1].action != "revoked" or kept[-1].source not in STOP_SOURCES:
        return None
    return kept[-2].action if kept[-2].action in ledger.MESSAGEABLE else None


def _plan_start(session: Session, contacts: list[Contact], keyword: str, at: datetime) -> list[tuple[Contact, str]]:
    """(contact, what to do) for a START-like word: 'confirm' a pending YES, or restore an action."""
    plan: list[tuple[Contact, str]] = []
    for c in contacts:
        pending = ledger.open_request(session, c.id, "sms", at) if keyword == "YES" else None
        if pending is not None:
            plan.append((c, "confirm"))
            continue
        action = _restorable(session, c.id, at)
        if action is not None:
            plan.append((c, action))
    return plan


def handle(session: Session, settings: Settings, sender: str, body: str, message_id: str, at: datetime) -> SmsReply:
    """Act on one authenticated inbound text; a replayed message id is answered with nothing."""
    try:
        phone = normalise_phone(sender, settings.default_region)
    except InputError:
        return SmsReply(None)
    contacts = list(session.scalars(select(Contact).where(Contact.phone == phone, Contact.erased_at.is_(None))))
    keyword = normalise_keyword(body)
    kind = "stop" if keyword in STOP_WORDS else "start" if keyword in START_WORDS else "help" if keyword in HELP_WORDS else "reply"
    plan = _plan_start(session, contacts, keyword, at) if kind == "start" else []
    if kind == "start" and not plan:
        kind = "reply"  # nothing to restore or confirm: a START never creates consent
    last = events.last_sms_delivery(session, [c.id for c in contacts])
    data = ({"from": phone, "body": body[:1600]} if contacts
            else {"from_hash": address_hash(settings, "sms", phone)})  # a stranger's number is not kept
    new = events.record(session, type="reply" if kind == "help" else kind, dedup_key=f"sms:{message_id}", delivery=last,
                        contact_id=contacts[0].id if contacts else None, at=at, data=data)
    if not new:
        return SmsReply(None)  # a replayed webhook: already handled, answer nothing twice
    if kind == "stop":
        _stop(session, settings, contacts, phone, keyword, at)
        return SmsReply(settings.sms.stop_confirmation_text)
    if kind == "start":
        for c, what in plan:
            if what == "confirm":
                ledger.confirm_request(session, c.id, "sms", source="sms YES", consent_text=body[:200], at=at)
            else:
                ledger.restore(session, c, "sms", what, f"sms {keyword}", consent_text=body[:200], occurred_at=at)
        return SmsReply(settings.sms.start_confirmation_text)
    if kind == "help":
        return SmsReply(settings.sms.help_text)
    return SmsReply(None)


def _stop(session: Session, settings: Settings, contacts: list[Contact], phone: str, keyword: str, at: datetime) -> None:
    from campaigns.audience import stopped

    if not contacts:
        suppression.add(session, settings, "sms", phone, "stop", note="STOP from an unknown number", keep_address=False)
    for c in contacts:
        state = ledger.current_state(session, c.id, "sms", at)
        if state.action in ledger.MESSAGEABLE or state.pending:
            ledger.revoke(session, c, "sms", f"{STOP_SOURCE_PREFIX}{keyword}", occurred_at=at)
        stopped.announce(session, c.id, ("sms",))

