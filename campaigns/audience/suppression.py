"""The suppression list: addresses never to be messaged, matched by keyed hash."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.config import Settings
from campaigns.errors import InputError, NotFoundError
from campaigns.signing import address_hash
from campaigns.store.models import CHANNELS, Suppression
from campaigns.timespec import utcnow

REASONS = ("manual", "hard_bounce", "complaint", "erased", "stop", "unsubscribe")


def check_channel(channel: str) -> str:
    """A channel name, or a clear error listing the valid ones."""
    if channel not in CHANNELS:
        raise InputError(f"channel: '{channel}' is not one of {', '.join(CHANNELS)}")
    return channel


def normalise_address(settings: Settings, channel: str, address: str) -> str:
    """The canonical form suppression hashes: lower-case email, E.164 phone."""
    from campaigns.audience.contacts import normalise_email, normalise_phone

    check_channel(channel)
    if channel == "email":
        return normalise_email(address)
    return normalise_phone(address, settings.default_region)


@dataclass(frozen=True)
class SuppressionView:
    """A suppression entry as shown to the marketer."""

    channel: str
    address: str
    reason: str
    since: datetime
    note: str | None


def add(
    session: Session, settings: Settings, channel: str, address: str, reason: str = "manual",
    note: str | None = None, keep_address: bool = True,
) -> bool:
    """Suppress an address; returns False when it already was (the first reason stays)."""
    if reason not in REASONS:
        raise InputError(f"reason: '{reason}' is not one of {', '.join(REASONS)}")
    norm = normalise_address(settings, channel, address)
    digest = address_hash(settings, channel, norm)
    if session.scalar(select(Suppression.id).where(Suppression.channel == channel, Suppression.address_hash == digest)):
        return False
    session.add(Suppression(
        channel=channel, address=norm if keep_address else None, address_hash=digest,
        reason=reason, note=note, since=utcnow(),
    ))
    session.flush()
    return True


def add_hash(session: Session, channel: str, digest: str, reason: str) -> None:
    """Suppress by hash alone (erasure keeps no address)."""
    existing = session.scalar(select(Suppression).where(Suppression.channel == channel, Suppression.address_hash == digest))
    if existing is None:
        session.add(Suppression(channel=channel, address=None, address_hash=digest, reason=reason, since=utcnow()))
    else:
        existing.address = None
    session.flush()


def remove(session: Session, settings: Settings, channel: str, address: str) -> None:
    """Lift a suppression; an erased contact's hash cannot be lifted by a new address."""
    norm = normalise_address(settings, channel, address)
    row = session.scalar(select(Suppression).where(
        Suppression.channel == channel, Suppression.address_hash == address_hash(settings, channel, norm)))
    if row is None:
        raise NotFoundError(f"{norm} is not suppressed for {channel}")
    session.delete(row)
    session.flush()


def is_suppressed(session: Session, settings: Settings, channel: str, address: str) -> bool:
    """True when the address is on the list for this channel."""
    norm = normalise_address(settings, channel, address)
    digest = address_hash(settings, channel, norm)
    return session.scalar(select(Suppression.id).where(
        Suppression.channel == channel, Suppression.address_hash == digest)) is not None


def list_entries(session: Session, channel: str | None = None, limit: int = 1000) -> list[SuppressionView]:
    """Suppression entries, newest first; erased ones show as '(erased)'."""
    q = select(Suppression).order_by(Suppression.since.desc(), Suppression.id.desc()).limit(limit)
    if channel:
        q = q.where(Suppression.channel == check_channel(channel))
    return [
        SuppressionView(s.channel, s.address or "(erased)", s.reason, s.since, s.note)
        for s in session.scalars(q)
    ]
