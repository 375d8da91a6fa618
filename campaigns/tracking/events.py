"""Recording responses: one row per real event, replays counted once (unique dedup key).

Dedup keys (documented in docs/tracking.md): opens and clicks per delivery, link, user
agent and minute (a person re-opening later is a new open; a proxy hammering the pixel is
not); unsubscribes, bounces and complaints once per delivery; inbound SMS by the
provider's message id; webhooks by the provider's event id.
"""

from __future__ import annotations

import functools
import hashlib
import re
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import bindparam, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from campaigns.audience.contacts import find_contact
from campaigns.config import Settings
from campaigns.errors import NotFoundError
from campaigns.store.models import Campaign, Contact, Delivery, Event

# Mail privacy proxies and link scanners fetch images and links without a person.
_MACHINE_AGENTS = re.compile(
    r"GoogleImageProxy|YahooMailProxy|Mozilla/5\.0 \(Macintosh; Intel Mac OS X 10_15_7\) AppleWebKit/605\.1\.15 \(KHTML, like Gecko\)$"
    r"|Microsoft Office|ms-office|Outlook-Link|BingPreview|Barracuda|Mimecast|Proofpoint|SafeLinks|python-requests|curl/|bot\b|spider|crawler",
    re.IGNORECASE,
)


def is_machine(user_agent: str | None, sent_at: datetime | None, at: datetime, settings: Settings) -> bool:
    """True for prefetches: known proxy/scanner agents, or faster than a person could react."""
    if user_agent and _MACHINE_AGENTS.search(user_agent):
        return True
    if not user_agent:
        return True
    return sent_at is not None and at - sent_at < timedelta(seconds=settings.tracking.machine_open_seconds)


def _ua_key(user_agent: str | None) -> str:
    return hashlib.sha256((user_agent or "").encode()).hexdigest()[:12]


def minute_key(kind: str, delivery_id: int, at: datetime, user_agent: str | None, extra: str = "") -> str:
    """Dedup key for opens and clicks."""
    return f"{kind}:{delivery_id}:{extra}:{_ua_key(user_agent)}:{at.strftime('%Y%m%d%H%M')}"


@functools.cache
def _insert_new(dialect: str) -> Any:
    """INSERT one event unless its dedup key exists, RETURNING its id (built once per dialect,
    so each event pays only for its values: this runs on every open and click)."""
    ins = (pg_insert if dialect == "postgresql" else sqlite_insert)(Event.__table__)
    # RETURNING, not rowcount: drivers disagree on rowcount for a skipped upsert.
    return ins.on_conflict_do_nothing(index_elements=["dedup_key"]).returning(Event.__table__.c.id)


def record(session: Session, *, type: str, dedup_key: str, delivery: Delivery | Sent | None = None,
           delivery_id: int | None = None, contact_id: int | None = None, campaign_id: int | None = None, url: str | None = None,
           at: datetime, user_agent: str | None = None, ip: str | None = None, machine: bool = False,
           data: dict | None = None) -> bool:
    """Insert one event unless its dedup key exists; True when it was new."""
    values = {
        "delivery_id": delivery.id if delivery else delivery_id,
        "campaign_id": delivery.campaign_id if delivery else campaign_id,
        "contact_id": delivery.contact_id if delivery else contact_id,
        "type": type, "url": url, "occurred_at": at, "user_agent": (user_agent or "")[:500] or None,
        "ip": ip, "is_machine": machine, "dedup_key": dedup_key[:200], "data": data or {},
    }
    conn = session.connection()  # Core, not the ORM's execute: this runs on every open and click
    return conn.execute(_insert_new(conn.dialect.name), values).scalar() is not None


def delivery(session: Session, delivery_id: int) -> Delivery | None:
    """The delivery a verified link names (None if it was deleted)."""
    return session.get(Delivery, delivery_id)


class Sent(NamedTuple):
    """What an open or a click needs of the delivery it names."""

    id: int
    campaign_id: int
    contact_id: int
    sent_at: datetime | None


_D, _C = Delivery.__table__.c, Contact.__table__.c
# Built once: it runs on every open and click (a Core row, not an ORM object: the ORM's
# statement building and object loading were most of a click's database time).
_SENT_AND_ERASED = (select(_D.id, _D.campaign_id, _D.contact_id, _D.sent_at, _C.erased_at)
                    .join_from(Delivery.__table__, Contact.__table__, _C.id == _D.contact_id)
                    .where(_D.id == bindparam("delivery_id")))


def delivery_and_erased(session: Session, delivery_id: int) -> tuple[Sent | None, bool]:
    """The delivery a verified link names, and whether its contact was erased (one query):
    an old message opened after erasure must not bring the person's IP or user agent back."""
    row = session.connection().execute(_SENT_AND_ERASED, {"delivery_id": delivery_id}).first()
    return (None, False) if row is None else (Sent(*row[:4]), row[4] is not None)


def last_sms_delivery(session: Session, contact_ids: list[int]) -> Delivery | None:
    """The newest SMS sent to any of these contacts (a reply belongs to it)."""
    if not contact_ids:
        return None
    return session.scalar(select(Delivery).where(Delivery.contact_id.in_(contact_ids), Delivery.channel == "sms",
                                                 Delivery.state == "sent").order_by(Delivery.sent_at.desc()).limit(1))


def listing(session: Session, target: str, type: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """Recorded responses of a campaign (by name) or else a contact (any reference), newest first."""
    campaign = session.scalar(select(Campaign).where(Campaign.name == target))
    q = select(Event, Campaign.name, Contact.email).outerjoin(Campaign, Campaign.id == Event.campaign_id) \
        .outerjoin(Contact, Contact.id == Event.contact_id)
    if campaign is not None:
        q = q.where(Event.campaign_id == campaign.id)
    else:
        try:
            q = q.where(Event.contact_id == find_contact(session, target).id)
        except NotFoundError:
            raise NotFoundError(f"no campaign or contact '{target}'") from None
    if type:
        q = q.where(Event.type == type)
    return [{"at": e.occurred_at, "type": e.type, "campaign": name, "contact": email or f"#{e.contact_id}",
             "delivery": e.delivery_id, "url": e.url, "machine": e.is_machine, "user_agent": e.user_agent}
            for e, name, email in session.execute(q.order_by(Event.occurred_at.desc(), Event.id.desc()).limit(limit))]
