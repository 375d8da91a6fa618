"""What POST /webhooks/subscribe does to the database: find or create the contact, then
record the grant through the ledger (pending under double opt-in, so the request campaign
asks the person; granted under single opt-in).

A repeat changes nothing: a delivery `id` already in the ledger (it is kept in the event's
source, "signup form (webhook ID)", as proof of where the consent came from) is a replay,
even after the person has unsubscribed since; without an id, a signup for a contact who
already has an open request (double opt-in) or consent is "unchanged", as an import is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.audience import consent as ledger
from campaigns.audience.contact_ref import resolve_ref
from campaigns.audience.contacts import add_contact, normalise_email, normalise_phone
from campaigns.config import Settings
from campaigns.errors import InputError, RowError
from campaigns.store.models import ConsentEvent, Contact
from campaigns.tracking.payloads import SubscribePayload

_FIELD = {"email": "email", "sms": "phone"}


@dataclass(frozen=True)
class Subscribed:
    """The outcome: `action` is pending, granted or unchanged."""

    contact_id: int
    action: str
    created: bool


def _normalised(settings: Settings, field: str, value: str) -> str:
    try:
        return normalise_email(value) if field == "email" else normalise_phone(value, settings.default_region)
    except InputError as exc:
        raise InputError(f"{field}: {exc}") from None


def _addresses(settings: Settings, data: SubscribePayload) -> dict[str, str]:
    """{field: normalised address} of the payload ({} for a `contact` that is no address)."""
    given = {f: v for f in ("email", "phone") if (v := getattr(data, f))}
    if not given and data.contact:
        ref = data.contact.strip()
        field = "email" if "@" in ref else "phone" if ref.startswith("+") else None
        if field is None:
            return {}
        given = {field: ref}
    if not given:
        raise InputError("email: give the email (or phone, or contact) that subscribed")
    return {f: _normalised(settings, f, v) for f, v in given.items()}


def _contact(session: Session, settings: Settings, data: SubscribePayload) -> tuple[Contact, bool]:
    """The contact the payload names, created when its address is new: (contact, created?)."""
    if data.contact and not (data.email or data.phone):
        cid = resolve_ref(session, "contact", data.contact)
        if cid is not None:
            found = session.get(Contact, cid)
            if found is not None:
                return found, False
    addresses = _addresses(settings, data)
    if not addresses:
        raise InputError(f"contact: no contact '{(data.contact or '').strip()[:80]}' (give an email or +phone to create one)")
    want = _FIELD[data.channel]
    if want not in addresses:
        raise InputError(f"{want}: channel {data.channel} needs the {want} that subscribed")
    cid = resolve_ref(session, want, addresses[want])
    if cid is not None:
        existing = session.get(Contact, cid)
        if existing is not None:
            return existing, False
    try:
        return add_contact(session, settings, addresses), True
    except RowError as err:
        raise InputError(f"{err.field or 'email'}: {err.reason}") from None


def subscribe(session: Session, settings: Settings, data: SubscribePayload, at: datetime) -> Subscribed:
    """Record a signed signup's consent once (see the module docstring); InputError names the field."""
    source = f"{data.source} (webhook {data.id})" if data.id else data.source
    if data.id:
        seen = session.scalar(select(ConsentEvent.contact_id).where(ConsentEvent.source == source).limit(1))
        if seen is not None:
            return Subscribed(seen, "unchanged", False)
    contact, created = _contact(session, settings, data)
    if not (contact.email if data.channel == "email" else contact.phone):
        field = _FIELD[data.channel]
        raise InputError(f"{field}: contact {contact.id} has no {field} to consent for")
    state = ledger.current_state(session, contact.id, data.channel, at)
    if settings.consent.double_opt_in:
        done = state.action == "confirmed" or ledger.open_request(session, contact.id, data.channel, at) is not None
    else:
        done = state.action in ledger.MESSAGEABLE
    if done:
        return Subscribed(contact.id, "unchanged", created)
    event, _token = ledger.grant(session, settings, contact, data.channel, source,
                                 consent_text=data.text, occurred_at=at)
    return Subscribed(contact.id, event.action, created)
