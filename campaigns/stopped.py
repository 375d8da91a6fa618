"""Contacts who just said stop, heard by every sender before its next hand-over.

Whoever records an unsubscribe, a STOP or a complaint calls `announce` in the same
transaction. When that transaction commits, the contact is in this process's set at once
(the tracking app answers after its commit, so the dispatcher knows before the person
sees "unsubscribed"); on PostgreSQL a `NOTIFY campaigns_stopped` is sent by the commit
itself, and `Listener` adds it to the set of every other worker within milliseconds.
The sender asks `is_stopped` right before handing a message over; the ledger and the
suppression list stay the truth (the set only holds recent news, bounded).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable

from sqlalchemy import event, text
from sqlalchemy.orm import Session

CHANNEL = "campaigns_stopped"
_KEEP = 200_000  # recent stops remembered; older ones were long since seen by planning and claims
_lock = threading.Lock()
_recent: OrderedDict[tuple[int, str], float] = OrderedDict()


def announce(session: Session, contact_id: int, channels: Iterable[str]) -> None:
    """Say, as part of this transaction, that `contact_id` must get nothing more on `channels`."""
    pending: set[tuple[int, str]] = session.info.setdefault("campaigns_stopped", set())
    for channel in channels:
        pending.add((contact_id, channel))
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SELECT pg_notify(:ch, :payload)"), {"ch": CHANNEL, "payload": f"{contact_id}:{channel}"})


def remember(contact_id: int, channel: str) -> None:
    """Add one stop to this process's set (called on commit and by the listener)."""
    with _lock:
        _recent[(contact_id, channel)] = time.monotonic()
        _recent.move_to_end((contact_id, channel))
        while len(_recent) > _KEEP:
            _recent.popitem(last=False)


def is_stopped(contact_id: int, channel: str) -> bool:
    """True when this contact said stop on this channel since the process started."""
    return (contact_id, channel) in _recent


def forget_all() -> None:
    """Empty the set (tests; a process that starts fresh has nothing to forget)."""
    with _lock:
        _recent.clear()


def parse_payload(payload: str) -> tuple[int, str] | None:
    """'<contact>:<channel>' from a notification, or None for anything else."""
    cid, _, channel = payload.partition(":")
    return (int(cid), channel) if cid.isdigit() and channel in ("email", "sms") else None


@event.listens_for(Session, "after_commit")
def _on_commit(session: Session) -> None:
    for contact_id, channel in session.info.pop("campaigns_stopped", set()):
        remember(contact_id, channel)


@event.listens_for(Session, "after_rollback")
def _on_rollback(session: Session) -> None:
    session.info.pop("campaigns_stopped", None)
